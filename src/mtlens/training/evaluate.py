"""Evaluation of one task on one split: mean loss, mean of every per-example metric, and
every corpus metric from its statistics combined over the split's batches."""

from __future__ import annotations

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
def evaluate_task(model: MultiTaskModel, task: Task, split: Split, device: torch.device,
                  rows: Tensor | None = None, batch_size: int = 512) -> dict[str, float]:
    """``{'loss': mean NLL, metric: mean score, ..., corpus_metric: value, ...}`` of ``task`` on
    ``split`` (or its ``rows``), in the order of ``task.metric_names``.

    Corpus statistics are accumulated in float64 on the evaluation device: summed
    (``combine='sum'``) or concatenated (``'cat'``) over batches, then finalized once.
    The model is put in eval mode for the duration and restored afterwards.
    """
    indices = rows if rows is not None else torch.arange(len(split))
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss": 0.0, **{m: 0.0 for m in task.metrics}}
    statistics: dict[str, list[Tensor]] = {m: [] for m in task.corpus_metrics}
    try:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            x = split.inputs[chunk].to(device)
            y = split.targets[chunk].to(device)
            outputs = model(x, [task.name])[task.name]
            totals["loss"] += task.loss(outputs, y).double().sum().item()
            for name, metric in task.metrics.items():
                totals[name] += metric(outputs, y).double().sum().item()
            for name, corpus in task.corpus_metrics.items():
                batch_stats = corpus.statistics(outputs, y).double()
                if corpus.combine == "sum" and statistics[name]:
                    statistics[name][0] += batch_stats
                else:
                    statistics[name].append(batch_stats)
    finally:
        model.train(was_training)
    scores = {name: value / len(indices) for name, value in totals.items()}
    for name, corpus in task.corpus_metrics.items():
        scores[name] = float(corpus.finalize(torch.cat(statistics[name]).cpu()))
    return scores
