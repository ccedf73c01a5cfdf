"""Encoder forwards per evaluation record in a synthetic 40-task shared-source setting
(CelebA-shaped: 40 binary attributes of the same inputs), before and after sharing passes.

Usage: ``python benchmarks/eval_forwards.py [--tasks 40] [--n-val 2000] [--train-eval-size 1024]``.
*Before* is the per-task path the trainer took until issue 17 (``evaluate_task`` once per task
and split, each running the encoder); *after* is ``train_run``'s record (one pass per source and
split).  Forwards are counted with a forward hook on the encoder (eval-mode calls only), in
batches of the setting's ``eval_batch_size`` (512), and also as examples pushed through the encoder.
Both paths' numbers are asserted equal first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from mtlens import RunStore, parse_config, train_run
from mtlens.models import build_model
from mtlens.settings import Defaults, Setting, Split, TaskData, register_setting
from mtlens.tasks import binary_task
from mtlens.training.config import resolve_config
from mtlens.training.evaluate import evaluate_task, train_eval_rows

COUNT = {"forwards": 0, "examples": 0}


def _encoder() -> torch.nn.Module:
    encoder = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU())

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not module.training:
            COUNT["forwards"] += 1
            COUNT["examples"] += len(inputs[0])

    encoder.register_forward_hook(count)
    return encoder


@register_setting("synthetic_shared")
def shared_source_setting(n_tasks: int = 40, n_train: int = 16000, n_val: int = 2000) -> Setting:
    """``n_tasks`` binary attributes of one source (32-dimensional Gaussian inputs)."""
    g = torch.Generator().manual_seed(0)
    sizes = {"train": n_train, "val": n_val, "test": n_val}
    inputs = {s: torch.randn(n, 32, generator=g) for s, n in sizes.items()}
    labels = {s: torch.randint(0, 2, (n, n_tasks), generator=g) for s, n in sizes.items()}
    names = [f"attr{j:02d}" for j in range(n_tasks)]
    data = {
        name: TaskData("images", **{s: Split(inputs[s], labels[s][:, j].contiguous()) for s in sizes})
        for j, name in enumerate(names)
    }
    return Setting(
        name="synthetic_shared",
        tasks=tuple(binary_task(n) for n in names),
        data=data,
        encoder=_encoder,
        feature_dim=64,
        defaults=Defaults(batch_size=n_train, epochs=1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--n-train", type=int, default=16000)
    parser.add_argument("--n-val", type=int, default=2000)
    parser.add_argument("--train-eval-size", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    setting = shared_source_setting(args.tasks, args.n_train, args.n_val)
    # One step per epoch, one epoch: records at step 0 and step 1.
    options = {"n_tasks": args.tasks, "n_train": args.n_train, "n_val": args.n_val}
    config = resolve_config(
        parse_config(
            {
                "setting": "synthetic_shared",
                "setting_options": options,
                "epochs": 1,
                "batch_size": args.n_train,
                "probes": [],
                "train_eval_size": args.train_eval_size,
            }
        ),
        setting,
    )
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(Path(root))
        train_run(config, store, setting, progress=False)
        after = {k: v / 2 for k, v in COUNT.items()}
        rows = store.trajectory(config.run_id)
        state = torch.load(store.checkpoint_path(config.run_id), weights_only=False)
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, config.seed)
    model.load_state_dict(state["model"])
    last = rows[rows["step"] == 1].set_index(["task", "quantity"])["value"]
    COUNT.update(forwards=0, examples=0)
    for task in setting.tasks:  # the per-task path
        data = setting.data[task.name]
        for split in ("train", "val", "test"):
            subset = train_eval_rows(data.train, config.train_eval_size, task.name) if split == "train" else None
            scores = evaluate_task(model, task, data.split(split), torch.device("cpu"), subset)
            assert all(last[task.name, f"{split}/{m}"] == v for m, v in scores.items())
    before = dict(COUNT)
    print(
        f"{args.tasks} tasks of one source; train subset {args.train_eval_size} rows per task of {args.n_train}, "
        f"val {args.n_val}, test {args.n_val}; eval batch {setting.defaults.eval_batch_size}"
    )
    print("  per record          forwards  examples")
    print(f"  before (per task)   {before['forwards']:8.0f}  {before['examples']:8.0f}")
    print(f"  after (per source)  {after['forwards']:8.0f}  {after['examples']:8.0f}")
    print(
        f"  before/after        {before['forwards'] / after['forwards']:8.1f}x "
        f"{before['examples'] / after['examples']:8.1f}x   (numbers identical)"
    )


if __name__ == "__main__":
    main()
