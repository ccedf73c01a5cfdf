"""Evaluation on one split: mean loss, mean of every per-example metric, and every corpus
metric from its statistics combined over the split's batches.

Tasks reading the same inputs (one source, the same rows) are evaluated in one pass:
each batch of inputs runs through the encoder once and every task's head reads the same
features (:func:`evaluate_tasks`), so CelebA's 40 attributes cost one encoder pass per
split instead of 40.  The numbers are those of evaluating each task alone
(:func:`evaluate_task`): the batches, the per-batch sums and their order are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtlens.models import MultiTaskModel
from mtlens.seeding import derived_seed
from mtlens.settings.base import Split
from mtlens.tasks import Task


def train_eval_rows(split: Split, size: int, task: str) -> Tensor:
    """The fixed training subset on which training loss is measured.

    ``min(size, len(split))`` rows drawn once with a seed that depends only on the task,
    so every run (STL or MTL, any seed) measures training loss on the same examples.
    """
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(0, "train-eval", task)))
    return order[: min(size, n)].sort().values


@torch.no_grad()
def evaluate_tasks(
    model: MultiTaskModel,
    splits: Sequence[tuple[Task, Split]],
    device: torch.device,
    rows: Tensor | None = None,
    batch_size: int = 512,
) -> dict[str, dict[str, float]]:
    """``{task name: scores}`` (scores as in :func:`evaluate_task`) of every ``(task, split)``
    pair, all on the same ``rows`` (default: every row) of inputs they share.

    The splits must read the same inputs (tasks of one source, :class:`~mtlens.settings.TaskData`);
    the first split's ``inputs`` are read, each split's own ``targets``.  One encoder forward per batch of
    ``batch_size`` rows serves every task.  Sums are accumulated in float64 on the evaluation device and read
    once at the end (one host synchronisation per task and quantity, not per batch).
    """
    tasks = [task for task, _ in splits]
    first = splits[0][1]
    indices = rows if rows is not None else torch.arange(len(first))
    was_training = model.training
    model.eval()
    zero = torch.zeros((), dtype=torch.float64, device=device)
    totals = {t.name: {"loss": zero.clone(), **{m: zero.clone() for m in t.metrics}} for t in tasks}
    statistics: dict[str, dict[str, list[Tensor]]] = {t.name: {m: [] for m in t.corpus_metrics} for t in tasks}
    try:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            outputs = model(first.inputs[chunk].to(device), [t.name for t in tasks])
            for task, split in splits:
                out, y = outputs[task.name], split.targets[chunk].to(device)
                sums = totals[task.name]
                sums["loss"] += task.loss(out, y).double().sum()
                for name, metric in task.metrics.items():
                    sums[name] += metric(out, y).double().sum()
                for name, corpus in task.corpus_metrics.items():
                    batch_stats = corpus.statistics(out, y).double()
                    kept = statistics[task.name][name]
                    if corpus.combine == "sum" and kept:
                        kept[0] += batch_stats
                    else:
                        kept.append(batch_stats)
    finally:
        model.train(was_training)
    scores = {}
    for task in tasks:
        scores[task.name] = {name: value.item() / len(indices) for name, value in totals[task.name].items()}
        for name, corpus in task.corpus_metrics.items():
            scores[task.name][name] = float(corpus.finalize(torch.cat(statistics[task.name][name]).cpu()))
    return scores


def evaluate_task(
    model: MultiTaskModel,
    task: Task,
    split: Split,
    device: torch.device,
    rows: Tensor | None = None,
    batch_size: int = 512,
) -> dict[str, float]:
    """``{'loss': mean NLL, metric: mean score, ..., corpus_metric: value, ...}`` of ``task`` on
    ``split`` (or its ``rows``), in the order of ``task.metric_names``.

    Corpus statistics are accumulated in float64 on the evaluation device: summed
    (``combine='sum'``) or concatenated (``'cat'``) over batches, then finalized once.
    The model is put in eval mode for the duration and restored afterwards.
    """
    return evaluate_tasks(model, [(task, split)], device, rows, batch_size)[task.name]
