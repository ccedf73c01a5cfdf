"""Speed of the per-example-gradient probes against a Python loop and against BackPACK.

Times, on N = 2,048 examples, ``gradient_coherence`` (per-example gradients of the data's
labels) and ``fisher_trace(estimator="exact")`` (per-example gradients of labels sampled
from the model) of mtlens (``torch.func`` ``vmap(grad)`` in chunks) against

* a loop: one ``torch.autograd.grad`` call per example, accumulating ``sum g_i`` and
  ``sum ||g_i||^2`` (the same numbers, the obvious way);
* BackPACK 1.7.1: one backward pass with ``SumGradSquared`` (gives ``sum_i g_i**2``
  elementwise, hence ``sum ||g_i||^2``; ``.grad`` gives ``sum g_i``), and with ``BatchGrad``
  (materializes ``(N, P)``).

It also times one batched forward + backward of the summed loss over the N examples, the
floor of any method that needs per-example norms (they cost at least the gradient of the sum).

Two models: the small CNN of the embedded settings (``conv_encoder(1, 28)``, 28x28 inputs)
and an MLP (784-256-128), each with a 10-way head.  Every timing is the best of
``--repeats`` runs; the script checks that all methods agree before printing ratios
(> 1 means mtlens is faster).  Run: ``.venv/bin/python benchmarks/probes.py``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtlens.models import MultiTaskModel
from mtlens.models.encoders import conv_encoder
from mtlens.probes import fisher_trace, gradient_coherence, probe_parameters
from mtlens.probes.fisher import sample_model_labels
from mtlens.tasks import Task, classification_task


def mlp_encoder() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def coherence_from_moments(total: Tensor, sum_sq: float, m: int) -> float:
    return float(total.pow(2).sum()) / m**2 / (sum_sq / m)


def loop_moments(model: MultiTaskModel, task: Task, x: Tensor, y: Tensor) -> tuple[Tensor, float]:
    params = list(probe_parameters(model, task.name).values())
    total, sum_sq = None, 0.0
    for i in range(len(x)):
        loss = task.loss(model(x[i : i + 1], [task.name])[task.name], y[i : i + 1]).sum()
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
        total = g if total is None else total + g
        sum_sq += float(g.pow(2).sum())
    return total, sum_sq


def backpack_moments(model: MultiTaskModel, task: Task, x: Tensor, y: Tensor, extension: str) -> tuple[Tensor, float]:
    from backpack import backpack
    from backpack.extensions import BatchGrad, SumGradSquared

    params = list(probe_parameters(model, task.name).values())
    for p in params:
        p.grad = None
    loss = task.loss(model(x, [task.name])[task.name], y).sum()
    with backpack(SumGradSquared() if extension == "SumGradSquared" else BatchGrad()):
        loss.backward()
    total = torch.cat([p.grad.reshape(-1) for p in params])
    if extension == "SumGradSquared":
        sum_sq = sum(float(p.sum_grad_squared.sum()) for p in params)
    else:
        sum_sq = sum(float(p.grad_batch.pow(2).sum()) for p in params)
    for p in params:
        p.grad = None
    return total, sum_sq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-n", type=int, default=256, help="examples timed in the loop (scaled to --n)")
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[256, 1024, 2048])
    args = parser.parse_args()
    from backpack import extend

    print(
        f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.platform()}; N = {args.n}, best of {args.repeats}"
    )
    task = classification_task("t", 10)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.n,), generator=generator)
    encoders = {"cnn": (lambda: conv_encoder(1, 28), 64), "mlp": (mlp_encoder, 128)}
    for model_name, (factory, feature_dim) in encoders.items():
        torch.manual_seed(0)
        model = MultiTaskModel(factory(), {"t": task.head(feature_dim)}).eval()
        extended = extend(copy.deepcopy(model))  # BackPACK's module hooks do not mix with torch.func
        n_params = sum(p.numel() for p in probe_parameters(model, "t").values())
        labels = sample_model_labels(model, task, x, torch.Generator().manual_seed(1))
        for probe, targets in (("coherence", y), ("fisher_exact", labels)):
            compare(args, model_name, model, extended, n_params, task, x, y, probe, targets)


def compare(
    args: argparse.Namespace,
    model_name: str,
    model: MultiTaskModel,
    extended: nn.Module,
    n_params: int,
    task: Task,
    x: Tensor,
    y: Tensor,
    probe: str,
    targets: Tensor,
) -> None:
    """Time and print one probe (``coherence`` or ``fisher_exact``) on one model by every method."""

    def ours(chunk: int) -> float:
        if probe == "coherence":
            return gradient_coherence(model, task, x, y, chunk_size=chunk)["grad_coherence"]
        return fisher_trace(model, task, x, torch.Generator().manual_seed(1), estimator="exact", chunk_size=chunk)[
            "fisher_trace"
        ]

    def from_moments(total: Tensor, sum_sq: float) -> float:
        return coherence_from_moments(total, sum_sq, args.n) if probe == "coherence" else sum_sq / args.n

    timings = {f"mtlens chunk={c}": best_time(lambda c=c: ours(c), args.repeats) for c in args.chunk_sizes}
    for ext in ("SumGradSquared", "BatchGrad"):
        timings[f"backpack {ext}"] = best_time(
            lambda ext=ext: from_moments(*backpack_moments(extended, task, x, targets, ext)), args.repeats
        )

    def floor() -> None:  # one batched forward + backward of the summed loss: no per-example work at all
        loss = task.loss(model(x, ["t"])["t"], targets).sum()
        torch.autograd.grad(loss, list(probe_parameters(model, "t").values()))

    floor_time = best_time(floor, args.repeats)[0]
    loop_time, loop_value = best_time(
        lambda: from_moments(*loop_moments(model, task, x[: args.loop_n], targets[: args.loop_n])), 1
    )
    reference = timings["backpack SumGradSquared"][1]
    for name, (_, value) in timings.items():
        assert abs(value - reference) <= 1e-3 * abs(reference), (name, value, reference)
    loop_time *= args.n / args.loop_n
    best = min((t, name) for name, (t, _) in timings.items() if name.startswith("mtlens"))
    print(f"\n{model_name} ({n_params:,} probe parameters), {probe}: value {reference:.6g}")
    print(f"  {'loop (autograd.grad per example)':34s} {loop_time:8.3f} s  (timed on {args.loop_n}, scaled)")
    for name, (seconds, _) in timings.items():
        print(f"  {name:34s} {seconds:8.3f} s  loop/this {loop_time / seconds:6.1f}x")
    print(
        f"  {'floor: one batched forward+backward':34s} {floor_time:8.3f} s  loop/this "
        f"{loop_time / floor_time:6.1f}x  (best mtlens / floor = {best[0] / floor_time:.2f})"
    )
    bp = timings["backpack SumGradSquared"][0]
    print(
        f"  best mtlens ({best[1]}): {loop_time / best[0]:.1f}x faster than the loop, "
        f"{bp / best[0]:.2f}x BackPACK SumGradSquared's speed, "
        f"{timings['backpack BatchGrad'][0] / best[0]:.2f}x BatchGrad's"
    )


if __name__ == "__main__":
    main()
