"""Time per training step of every registered multi-task optimizer, relative to ``sum``.

Two cases on the demo's CNN (``conv_encoder(1, 28)`` of ``mnist_pair``, 10-way linear heads),
random 28 x 28 inputs and labels, Adam:

- ``mnist_pair``: K = 2, one input batch per task (two encoder passes per step, as the
  trainer runs ``mnist_pair``);
- ``synthetic_k6``: K = 6 tasks on one shared input batch (one encoder pass per step).

A step is what the trainer does: forward, ``method.backward``, ``optimizer.step``.  Each
method is timed for ``--steps`` steps after ``--warmup``, in ``--rounds`` interleaved rounds
over all methods; the median is divided by the median of ``sum`` measured in the same run.
Times are the process's CPU time (``time.process_time``, one torch thread), so that other
load on a shared machine does not count.

Second table: the (K x P) task-gradient matrix of the shared parameters from one forward
pass (:func:`mtlens.gradients.task_gradients`, K backward passes) against K separate
forward + backward passes, same inputs (checked equal).

Run: ``.venv/bin/python benchmarks/aggregators.py`` (a few minutes on one CPU thread).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mtlens.aggregators import available_methods, make_method
from mtlens.gradients import task_gradients
from mtlens.models import MultiTaskModel, build_model
from mtlens.models.encoders import conv_encoder
from mtlens.tasks import classification_task


@dataclass(frozen=True)
class Case:
    """``n_tasks`` 10-way tasks; ``shared_input``: one batch for all tasks, else one per task."""

    name: str
    n_tasks: int
    shared_input: bool


CASES = (Case("mnist_pair", 2, shared_input=False), Case("synthetic_k6", 6, shared_input=True))


def make_model(case: Case) -> MultiTaskModel:
    tasks = [classification_task(f"t{k}", 10) for k in range(case.n_tasks)]
    return build_model(lambda: conv_encoder(1, 28), 64, tasks, seed=0)


def make_batches(case: Case, batch_size: int, seed: int) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """``[(inputs, {task: labels})]``: one entry for a shared input, else one per task."""
    g = torch.Generator().manual_seed(seed)
    names = [f"t{k}" for k in range(case.n_tasks)]
    groups = [names] if case.shared_input else [[n] for n in names]
    return [
        (
            torch.randn(batch_size, 1, 28, 28, generator=g),
            {n: torch.randint(0, 10, (batch_size,), generator=g) for n in group},
        )
        for group in groups
    ]


def losses_of(model: MultiTaskModel, batches) -> dict[str, torch.Tensor]:
    losses = {}
    for inputs, targets in batches:
        outputs = model(inputs, list(targets))
        losses.update({t: torch.nn.functional.cross_entropy(outputs[t], y) for t, y in targets.items()})
    return losses


def step_timer(case: Case, method_name: str, batch_size: int) -> Callable[[int], float]:
    """A function ``steps -> seconds`` training a fresh model with ``method_name``."""
    model = make_model(case)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    method = make_method(method_name, {}, seed=0)
    method.attach(model)
    batches = [make_batches(case, batch_size, seed) for seed in range(4)]
    count = [0]

    def run(steps: int) -> float:
        start = time.process_time()
        for _ in range(steps):
            losses = losses_of(model, batches[count[0] % len(batches)])
            optimizer.zero_grad(set_to_none=True)
            method.backward(losses, model)
            optimizer.step()
            count[0] += 1
        return time.process_time() - start

    return run


def time_methods(
    case: Case, methods: list[str], batch_size: int, steps: int, warmup: int, rounds: int
) -> dict[str, float]:
    """Median seconds per step of each method over ``rounds`` interleaved rounds."""
    timers = {m: step_timer(case, m, batch_size) for m in methods}
    for timer in timers.values():
        timer(warmup)
    samples: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for method, timer in timers.items():
            samples[method].append(timer(steps) / steps)
    return {m: statistics.median(s) for m, s in samples.items()}


def time_task_gradients(case: Case, batch_size: int, repeats: int) -> tuple[float, float]:
    """Median seconds for G from one forward pass, and from K separate forward + backward passes."""
    model = make_model(case)
    shared = model.shared_parameters()
    batches = make_batches(case, batch_size, seed=0)

    def one_forward() -> torch.Tensor:
        losses = losses_of(model, batches)
        return task_gradients(list(losses.values()), shared)

    def separate() -> torch.Tensor:
        rows = []
        for task in model.task_names:
            inputs, targets = next((x, {task: y[task]}) for x, y in batches if task in y)
            loss = losses_of(model, [(inputs, targets)])[task]
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, shared)]))
        return torch.stack(rows)

    torch.testing.assert_close(one_forward(), separate(), rtol=1e-5, atol=1e-7)
    results = []
    for compute in (one_forward, separate):
        compute()
        times = []
        for _ in range(repeats):
            start = time.process_time()
            compute()
            times.append(time.process_time() - start)
        results.append(statistics.median(times))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods = ["sum", *[m for m in available_methods() if m != "sum"]]
    print(
        f"batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, {args.threads} thread(s), "
        f"torch {torch.__version__}"
    )
    per_case = {c.name: time_methods(c, methods, args.batch_size, args.steps, args.warmup, args.rounds) for c in CASES}
    print("\nTime per training step relative to sum (same run):")
    print(f"{'method':<12}" + "".join(f"{c.name + f' (K={c.n_tasks})':>22}" for c in CASES))
    for method in methods:
        print(f"{method:<12}" + "".join(f"{per_case[c.name][method] / per_case[c.name]['sum']:>21.2f}x" for c in CASES))
    print(f"{'sum (ms)':<12}" + "".join(f"{1e3 * per_case[c.name]['sum']:>22.1f}" for c in CASES))

    print("\nTask-gradient matrix G (K x P): one forward + K backward vs K separate forward + backward:")
    for case in CASES:
        one, separate = time_task_gradients(case, args.batch_size, repeats=5 * args.rounds)
        print(
            f"{case.name} (K={case.n_tasks}): one forward {1e3 * one:.1f} ms, separate {1e3 * separate:.1f} ms, "
            f"separate / one = {separate / one:.2f}"
        )


if __name__ == "__main__":
    main()
