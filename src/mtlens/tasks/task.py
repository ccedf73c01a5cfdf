"""Tasks: what a head predicts, how it is scored, and how labels are sampled from it.

A :class:`Task` bundles everything the trainer, the probes and the analysis need to
know about one prediction problem.  Its ``loss`` is the per-example negative
log-likelihood ``-log p_theta(y | x)`` (up to a constant), which is what makes the
Fisher-information probe well defined: with labels ``y_hat ~ sample_labels(outputs)``
drawn from the model, ``grad loss(outputs, y_hat) = -grad log p_theta(y_hat | x)``.

Three constructors cover the common heads:

* :func:`classification_task` -- ``C``-way softmax, cross-entropy, accuracy/error.
* :func:`binary_task` -- one logit, Bernoulli likelihood, accuracy/error.
* :func:`regression_task` -- ``d`` outputs, unit-variance Gaussian likelihood
  (loss ``0.5 * ||y - f(x)||^2``), mean squared error.

A user's own task is just another ``Task`` with these fields.

Metrics come in two kinds.  ``Task.metrics`` are per-example scores that the evaluator
averages (accuracy, squared error).  ``Task.corpus_metrics`` are dataset-level scores that
are *not* means of per-example scores (mIoU, F1, Matthews correlation, Pearson/Spearman):
each :class:`CorpusMetric` turns every evaluation batch into a statistics tensor, the
evaluator combines them over the split (sum, e.g. a confusion matrix; or concatenation,
e.g. the predictions for a rank correlation) and ``finalize`` maps the result to a float.
Both kinds are recorded as ``<split>/<name>`` rows and may be a ``selection_metric``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from mtlens.quantities import check_task_name

PerExampleLoss = Callable[[Tensor, Tensor], Tensor]
"""``(outputs (N, ...), targets (N, ...)) -> per-example losses (N,)``."""

Metric = Callable[[Tensor, Tensor], Tensor]
"""``(outputs (N, ...), targets (N, ...)) -> per-example scores (N,)``; averaged by the evaluator."""

LabelSampler = Callable[[Tensor, torch.Generator], Tensor]
"""``(outputs (N, ...), generator) -> targets (N, ...)`` drawn from ``p_theta(. | x)``."""


@dataclass(frozen=True)
class CorpusMetric:
    """A dataset-level metric computed from statistics accumulated over evaluation batches.

    Attributes:
        statistics: ``(outputs (N, ...), targets (N, ...)) -> Tensor`` of one batch.
        finalize: the combined statistics -> the metric's value.
        combine: ``"sum"`` adds the batches' statistics (all of one shape, e.g. a ``(C, C)``
            confusion matrix); ``"cat"`` concatenates them along dim 0 (e.g. ``(N, 2)`` rows of
            prediction and target for a correlation).
    """

    statistics: Callable[[Tensor, Tensor], Tensor]
    finalize: Callable[[Tensor], float]
    combine: Literal["sum", "cat"] = "sum"

    def __post_init__(self) -> None:
        if self.combine not in ("sum", "cat"):
            raise ValueError(f"combine must be 'sum' or 'cat', got {self.combine!r}")


@dataclass(frozen=True)
class Task:
    """One prediction problem solved by one head on top of the shared encoder.

    Attributes:
        name: unique name of the task inside its setting, free of the characters that join task names in
            rows and labels (:data:`~mtlens.quantities.TASK_NAME_FORBIDDEN`).
        head: ``feature_dim -> nn.Module`` building the task's head.
        loss: per-example negative log-likelihood, shape ``(N,)``.
        metrics: name -> per-example score, each shape ``(N,)``; the evaluator averages them.
        sample_labels: draws targets from the model's predictive distribution.
        lower_is_better: for each metric name (per-example or corpus), whether smaller is better.
        selection_metric: the validation metric used to select checkpoints.
        corpus_metrics: name -> dataset-level metric (names distinct from ``metrics``).
    """

    name: str
    head: Callable[[int], nn.Module]
    loss: PerExampleLoss
    metrics: Mapping[str, Metric]
    sample_labels: LabelSampler
    lower_is_better: Mapping[str, bool] = field(default_factory=dict)
    selection_metric: str = "loss"
    corpus_metrics: Mapping[str, CorpusMetric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_task_name(self.name)
        clash = sorted(set(self.metrics) & set(self.corpus_metrics) | {"loss"} & set(self.corpus_metrics))
        if clash:
            raise ValueError(f"task {self.name!r}: corpus metric names {clash} clash with per-example metrics")
        unknown = set(self.lower_is_better) - set(self.metric_names)
        if unknown:
            raise ValueError(f"task {self.name!r}: lower_is_better names unknown metrics {sorted(unknown)}")
        if self.selection_metric not in self.metric_names:
            raise ValueError(
                f"task {self.name!r}: selection_metric {self.selection_metric!r} is not one of {self.metric_names}"
            )

    @property
    def metric_names(self) -> list[str]:
        """Every quantity the evaluator reports: ``'loss'``, the per-example and the corpus metrics."""
        return ["loss", *self.metrics, *self.corpus_metrics]

    def is_lower_better(self, metric: str) -> bool:
        """Whether smaller values of ``metric`` (``'loss'`` or a metric name) are better."""
        return True if metric == "loss" else self.lower_is_better.get(metric, False)


def selection_scores(values: np.ndarray | float, lower_is_better: bool) -> np.ndarray:
    """The rule that picks a task's checkpoint: the step of the smallest score wins (the first on ties).

    Score = ``values`` when lower is better, ``-values`` otherwise; a non-finite value (a
    diverged evaluation) scores ``+inf``, the worst.  Shapes follow ``values``.
    """
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values if lower_is_better else -values, np.inf)


def _linear_head(out_features: int) -> Callable[[int], nn.Module]:
    return lambda feature_dim: nn.Linear(feature_dim, out_features)


def _accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs.argmax(dim=-1) == targets).float()


def _sample_categorical(outputs: Tensor, generator: torch.Generator) -> Tensor:
    probs = torch.softmax(outputs.detach().float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def classification_task(name: str, n_classes: int, head: Callable[[int], nn.Module] | None = None) -> Task:
    """A ``n_classes``-way softmax task: loss = cross-entropy, metrics = accuracy and error."""

    def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.cross_entropy(outputs, targets, reduction="none")

    return Task(
        name=name,
        head=head or _linear_head(n_classes),
        loss=cross_entropy,
        metrics={"accuracy": _accuracy, "error": lambda o, t: 1.0 - _accuracy(o, t)},
        sample_labels=_sample_categorical,
        lower_is_better={"accuracy": False, "error": True},
        selection_metric="error",
    )


def binary_task(name: str, head: Callable[[int], nn.Module] | None = None) -> Task:
    """A binary task with one logit ``z``: ``p(y=1|x) = sigmoid(z)``, loss = binary cross-entropy."""

    def bce(outputs: Tensor, targets: Tensor) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            outputs.squeeze(-1), targets.to(outputs.dtype), reduction="none"
        )

    def accuracy(outputs: Tensor, targets: Tensor) -> Tensor:
        return ((outputs.squeeze(-1) > 0).long() == targets.long()).float()

    def sample(outputs: Tensor, generator: torch.Generator) -> Tensor:
        return torch.bernoulli(torch.sigmoid(outputs.detach().float().squeeze(-1)), generator=generator)

    return Task(
        name=name,
        head=head or _linear_head(1),
        loss=bce,
        metrics={"accuracy": accuracy, "error": lambda o, t: 1.0 - accuracy(o, t)},
        sample_labels=sample,
        lower_is_better={"accuracy": False, "error": True},
        selection_metric="error",
    )


def regression_task(name: str, dim: int = 1, head: Callable[[int], nn.Module] | None = None) -> Task:
    """A ``dim``-output regression with unit-variance Gaussian likelihood.

    loss = ``0.5 * sum_j (y_j - f_j(x))^2`` (the NLL up to a constant); metric ``mse`` is
    the per-example mean of squared errors over the ``dim`` outputs.
    """

    def gaussian_nll(outputs: Tensor, targets: Tensor) -> Tensor:
        diff = outputs.reshape(len(outputs), -1) - targets.reshape(len(targets), -1).to(outputs.dtype)
        return 0.5 * diff.pow(2).sum(dim=1)

    def mse(outputs: Tensor, targets: Tensor) -> Tensor:
        diff = outputs.reshape(len(outputs), -1) - targets.reshape(len(targets), -1).to(outputs.dtype)
        return diff.pow(2).mean(dim=1)

    def sample(outputs: Tensor, generator: torch.Generator) -> Tensor:
        mean = outputs.detach().float()
        return mean + torch.randn(mean.shape, generator=generator, device=mean.device)

    return Task(
        name=name,
        head=head or _linear_head(dim),
        loss=gaussian_nll,
        metrics={"mse": mse},
        sample_labels=sample,
        lower_is_better={"mse": True},
        selection_metric="mse",
    )
