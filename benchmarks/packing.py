"""Runs per hour of small runs: one at a time, as ``torch.func`` packs, or as separate processes.

Usage: ``python benchmarks/packing.py [--packs 1 4 8 16] [--steps 20] [--device cpu|cuda] [--threads N]``.
For two MTL models of ``mnist_pair``'s shape (two 10-way tasks on their own 28x28 inputs, batch 64,
Adam) -- its conv encoder (``conv_encoder(1, 28)``) and an MLP encoder 784-256-128 -- the script
times training steps of M runs that differ in seed and learning rate, each on its own batches:

* ``one at a time``: the M runs stepped one after another in this process (the baseline);
* ``pack``: one ``torch.func.stack_module_state`` pack, ``vmap(grad(loss))`` over the members
  and one Adam update of the stacked parameters with a learning rate per member;
* ``processes``: M worker processes (spawned, ``max(1, threads // M)`` torch threads each, on the
  same ``--device``), each stepping its run, timed from a common start signal.

A run is ``mnist_pair``'s default schedule, 8 epochs x 24 steps = 192 steps; runs/hour is
``3600 * M / (seconds per step of all M runs * 192)``.  Evaluation and the store are left out
(they are the same for every mechanism).  With ``--device cuda`` the same comparison runs on the
GPU (data made on the device).  Each figure is the best of ``--repeats`` timings.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from mtlens.models import MultiTaskModel
from mtlens.models.encoders import conv_encoder

BATCH, STEPS_PER_RUN = 64, 8 * 24


def mlp_encoder() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())


ENCODERS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "conv (mnist_pair)": (lambda: conv_encoder(1, 28), 64),
    "mlp 784-256-128": (mlp_encoder, 128),
}


def make_model(encoder: str, seed: int) -> MultiTaskModel:
    factory, features = ENCODERS[encoder]
    torch.manual_seed(seed)
    return MultiTaskModel(factory(), {"a": nn.Linear(features, 10), "b": nn.Linear(features, 10)})


def batches(members: int, steps: int, device: str) -> list[tuple[torch.Tensor, ...]]:
    """Per step: inputs (M, 2 tasks, B, 1, 28, 28) and labels (M, 2, B): each run its own batches."""
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.rand(members, 2, BATCH, 1, 28, 28, generator=g).to(device),
            torch.randint(0, 10, (members, 2, BATCH), generator=g).to(device),
        )
        for _ in range(steps)
    ]


def mtl_loss(model: nn.Module, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the two tasks of the mean cross-entropy, each task on its own inputs."""
    total = 0.0
    for t, task in enumerate(("a", "b")):
        out = functional_call(model, (params, buffers), (x[t], [task]))[task]
        total = total + F.cross_entropy(out, y[t])
    return total


def check_pack_gradients(encoder: str, members: int, batch: tuple[torch.Tensor, ...], device: str) -> None:
    """The pack's ``vmap(grad)`` gives every member the gradient its separate run computes (relative
    error < 1e-4; the trajectories then differ only by float reassociation, which Adam's
    normalisation can amplify where gradients are near zero)."""
    x, y = batch
    models = [make_model(encoder, seed).to(device) for seed in range(members)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    packed = vmap(grad(lambda p, b, xi, yi: mtl_loss(base, p, b, xi, yi)))(
        {k: v.detach() for k, v in params.items()}, buffers, x, y
    )
    for i, model in enumerate(models):
        sum(F.cross_entropy(model(x[i, t], [task])[task], y[i, t]) for t, task in enumerate("ab")).backward()
        for name, p in model.named_parameters():
            error = (packed[name][i] - p.grad).norm() / p.grad.norm().clamp_min(1e-12)
            assert error < 1e-4, f"member {i}, {name}: pack gradient differs by {error:.1e} (relative)"


def time_one_at_a_time(encoder: str, members: int, data: list, device: str) -> tuple[float, dict]:
    """Seconds per step of all members, and the members' final parameters stacked."""
    models = [make_model(encoder, seed).to(device) for seed in range(members)]
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-3 * (1 + i)) for i, m in enumerate(models)]
    start = time.perf_counter()
    for x, y in data:
        for i, (model, optimizer) in enumerate(zip(models, optimizers)):
            loss = sum(F.cross_entropy(model(x[i, t], [task])[task], y[i, t]) for t, task in enumerate("ab"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    _sync(device)
    return (time.perf_counter() - start) / len(data), stack_module_state(models)[0]


def time_pack(encoder: str, members: int, data: list, device: str) -> tuple[float, dict]:
    """Seconds per step of the pack, and its final stacked parameters."""
    models = [make_model(encoder, seed).to(device) for seed in range(members)]
    params, buffers = stack_module_state(models)
    params = {k: v.detach().requires_grad_(False) for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    lrs = torch.tensor([1e-3 * (1 + i) for i in range(members)], device=device)
    state = {k: (torch.zeros_like(v), torch.zeros_like(v)) for k, v in params.items()}
    step_grads = vmap(grad(lambda p, b, x, y: mtl_loss(base, p, b, x, y)), in_dims=(0, 0, 0, 0))
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    start = time.perf_counter()
    for step, (x, y) in enumerate(data, start=1):
        grads = step_grads(params, buffers, x, y)
        for name, g in grads.items():  # Adam, elementwise, with each member's own learning rate
            m, v = state[name]
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = (v / (1 - beta2**step)).sqrt_().add_(eps)
            shape = (members,) + (1,) * (g.dim() - 1)
            params[name].sub_(lrs.view(shape) / (1 - beta1**step) * m / denom)
    _sync(device)
    return (time.perf_counter() - start) / len(data), params


def _process_worker(encoder: str, steps: int, device: str, threads: int, ready, go, out) -> None:
    torch.set_num_threads(threads)
    data = batches(1, steps, device)
    model = make_model(encoder, 0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    ready.release()
    go.wait()
    start = time.perf_counter()
    for x, y in data:
        loss = sum(F.cross_entropy(model(x[0, t], [task])[task], y[0, t]) for t, task in enumerate("ab"))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    out.put(time.perf_counter() - start)


def time_processes(encoder: str, members: int, steps: int, device: str, threads: int) -> float:
    """Wall time per step of M processes stepping together (from a common start to the last one's end)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(encoder, steps, device, max(1, threads // members), ready, go, out))
        for _ in range(members)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    go.set()
    elapsed = max(out.get() for _ in procs)
    for p in procs:
        p.join()
    return elapsed / steps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-processes", action="store_true", help="skip the separate-processes timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), batch {BATCH}, "
        f"{args.steps} timed steps, best of {args.repeats}; a run = {STEPS_PER_RUN} steps"
    )
    for encoder in ENCODERS:
        print(f"\n{encoder}")
        print(f"  {'M':>3} {'one at a time':>15} {'pack':>15} {'processes':>15}   pack/one  proc/one  (runs/hour)")
        for members in args.packs:
            data = batches(members, args.steps, args.device)
            check_pack_gradients(encoder, members, data[0], args.device)
            time_pack(encoder, members, data[:2], args.device)  # warm-up (vmap tracing, allocator)
            one = min(time_one_at_a_time(encoder, members, data, args.device)[0] for _ in range(args.repeats))
            pack = min(time_pack(encoder, members, data, args.device)[0] for _ in range(args.repeats))
            proc = (
                float("nan")
                if args.no_processes
                else min(
                    time_processes(encoder, members, args.steps, args.device, args.threads) for _ in range(args.repeats)
                )
            )
            rate = {k: 3600 * members / (s * STEPS_PER_RUN) for k, s in (("one", one), ("pack", pack), ("proc", proc))}
            print(
                f"  {members:>3} {rate['one']:15.0f} {rate['pack']:15.0f} {rate['proc']:15.0f}   "
                f"{rate['pack'] / rate['one']:7.2f}x {rate['proc'] / rate['one']:8.2f}x"
            )


if __name__ == "__main__":
    main()
