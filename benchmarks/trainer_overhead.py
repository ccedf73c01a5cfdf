"""Wall time of ``train_run`` against a plain PyTorch loop doing the same work.

Usage: ``python benchmarks/trainer_overhead.py [--repeats 5] [--epochs 2] [--eval-every N] [--threads 1]
[--device cuda]``.
Both train the MTL model of ``mnist_pair`` (both tasks, seed 0, the setting's defaults: Adam at
lr 1e-3, batch 64) for the same number of steps with probes off, and evaluate at step 0 and
every epoch end (and every ``--eval-every`` steps if given) each task on its 1,024-row training
subset, validation and test splits (loss and accuracy, batches of 512).  The plain loop is what a
user would write: the same model and data tensors, a ``randperm`` per source and epoch, one
encoder pass per source, ``sum(losses).backward()``, ``Adam.step()``, and an evaluation loop; it
writes nothing.  ``train_run`` additionally writes its rows, checkpoints and status to a store.
The two alternate ``--repeats`` times, so that load on a shared machine hits both alike; the
script prints the best and median of each and the ratio of the bests.  It also prints the in-run
ratio: each ``train_run``'s CPU time over its CPU time less the CPU time spent inside the run
handle's methods (:class:`~mtlens.training.handle.RunHandle`: lock, verification, rows, checkpoints,
status), which shares its execution's load and so stays readable on a busy machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mtlens import RunStore, parse_config, train_run
from mtlens.models import build_model
from mtlens.settings import Setting, load_setting
from mtlens.training.config import resolve_config
from mtlens.training.handle import RunHandle

HANDLE_METHODS = (
    "open",
    "resume",
    "start_fresh",
    "write_step",
    "save_checkpoint",
    "save_selected",
    "keep_selected",
    "mark_running",
    "finish",
    "close",
)
"""The run handle's methods the trainer calls (timed by :func:`time_handle`)."""


def time_handle() -> dict[str, float]:
    """Wrap :data:`HANDLE_METHODS` so that the CPU time spent inside them (outermost calls only) accumulates
    in the returned ``{"cpu": seconds}``."""
    spent: dict[str, float] = {"cpu": 0.0, "depth": 0}

    def timed(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            spent["depth"] += 1
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent["depth"] -= 1
                if not spent["depth"]:
                    spent["cpu"] += time.process_time() - start

        return wrapper

    for name in HANDLE_METHODS:
        setattr(RunHandle, name, timed(getattr(RunHandle, name)))
    return spent


def plain_loop(
    setting: Setting, epochs: int, batch_size: int, lr: float, eval_every: int | None, train_eval_size: int, device: str
) -> None:
    """The same training and evaluation as ``train_run``, written as a plain PyTorch loop
    (data kept on the host and copied to ``device`` per batch, as ``train_run`` does)."""
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    names = setting.task_names
    train = {t: setting.data[t].train for t in names}
    eval_sets = {
        t: {
            "train": (train[t].inputs[:train_eval_size], train[t].targets[:train_eval_size]),
            "val": (setting.data[t].val.inputs, setting.data[t].val.targets),
            "test": (setting.data[t].test.inputs, setting.data[t].test.targets),
        }
        for t in names
    }
    steps_per_epoch = setting.steps_per_epoch(batch_size)
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def evaluate() -> dict[tuple[str, str], tuple[float, float]]:
        model.eval()
        scores = {}
        for task, splits in eval_sets.items():
            for split, (x, y) in splits.items():
                loss = correct = torch.zeros((), dtype=torch.float64, device=device)
                for start in range(0, len(x), 512):
                    xb, yb = x[start : start + 512].to(device), y[start : start + 512].to(device)
                    out = model(xb, [task])[task]
                    loss = loss + F.cross_entropy(out, yb, reduction="sum").double()
                    correct = correct + (out.argmax(1) == yb).double().sum()
                scores[task, split] = (loss.item() / len(x), correct.item() / len(x))
        model.train()
        return scores

    evaluate()
    orders = {t: torch.randperm(len(train[t]), generator=generator) for t in names}
    positions = dict.fromkeys(names, 0)
    for step in range(1, epochs * steps_per_epoch + 1):
        losses = []
        for task in names:
            if positions[task] + batch_size > len(train[task]):
                orders[task], positions[task] = torch.randperm(len(train[task]), generator=generator), 0
            rows = orders[task][positions[task] : positions[task] + batch_size]
            positions[task] += batch_size
            out = model(train[task].inputs[rows].to(device), [task])[task]
            losses.append(F.cross_entropy(out, train[task].targets[rows].to(device)))
        optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        optimizer.step()
        if step % steps_per_epoch == 0 or (eval_every and step % eval_every == 0):
            evaluate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setting = load_setting("mnist_pair")
    raw = {
        "setting": "mnist_pair",
        "epochs": args.epochs,
        "probes": [],
        "eval_every_steps": args.eval_every,
        "device": args.device,
    }
    config = resolve_config(parse_config(raw), setting)
    assert all(
        setting.data[t].source != setting.data[u].source
        for t in setting.task_names
        for u in setting.task_names
        if t != u
    ), "the plain loop assumes one source per task"
    times: dict[str, list[float]] = {"plain loop": [], "train_run": []}
    in_run: list[float] = []
    handle = time_handle()
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            start = time.perf_counter()
            plain_loop(
                setting, args.epochs, config.batch_size, config.lr, args.eval_every, config.train_eval_size, args.device
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times["plain loop"].append(time.perf_counter() - start)
            start, cpu, handle["cpu"] = time.perf_counter(), time.process_time(), 0.0
            assert train_run(config, RunStore(Path(root) / str(repeat)), setting, progress=False) == "finished"
            times["train_run"].append(time.perf_counter() - start)
            cpu = time.process_time() - cpu
            in_run.append(cpu / (cpu - handle["cpu"]))
    print(
        f"mnist_pair MTL, {args.epochs} epochs x {setting.steps_per_epoch(config.batch_size)} steps, "
        f"eval_every={args.eval_every}, {args.threads} thread(s), {args.device}, {args.repeats} alternating repeats; "
        f"torch {torch.__version__}"
    )
    for label, values in times.items():
        print(
            f"  {label:11s} best {min(values):6.2f} s  median {statistics.median(values):6.2f} s  "
            f"(spread {min(values):.2f}-{max(values):.2f})"
        )
    print(
        f"  train_run / plain loop: best {min(times['train_run']) / min(times['plain loop']):.3f}x, "
        f"median {statistics.median(times['train_run']) / statistics.median(times['plain loop']):.3f}x"
    )
    print(
        f"  in-run (CPU with / without the handle's calls): best {min(in_run):.3f}x, "
        f"median {statistics.median(in_run):.3f}x, spread {min(in_run):.3f}-{max(in_run):.3f}x"
    )


if __name__ == "__main__":
    main()
