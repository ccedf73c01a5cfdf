"""Dataset-level (corpus) metrics: mIoU, pixel accuracy, F1, Matthews, Pearson and Spearman.

Each constructor returns a :class:`mtlens.tasks.CorpusMetric`.  Classification metrics
accumulate a ``(C, C)`` confusion matrix ``M[true, predicted]`` (rows of ignored targets,
label ``< 0``, are left out) and are computed from it:

* ``miou``: mean over classes present in targets or predictions of
  ``IoU_c = M_cc / (sum_j M_cj + sum_i M_ic - M_cc)``.
* ``pixel_accuracy``: ``trace(M) / sum(M)``.
* ``f1`` (binary, positive class 1): ``2 TP / (2 TP + FP + FN)``.
* ``matthews``: the multi-class Matthews correlation (Gorodkin's R_K, as scikit-learn):
  ``(c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2))`` with
  ``c = trace(M)``, ``s = sum(M)``, ``t_k`` true and ``p_k`` predicted counts; 0 when undefined.

Correlation metrics concatenate ``(prediction, target)`` rows and compute Pearson's r or
Spearman's rho with :mod:`scipy.stats` (0 when a side is constant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from mtlens.tasks.task import CorpusMetric

Predict = Callable[[Tensor], Tensor]
"""``outputs -> predicted labels`` with the shape of the targets."""


def _argmax_classes(outputs: Tensor) -> Tensor:
    return outputs.argmax(dim=1)


def confusion_matrix(predicted: Tensor, targets: Tensor, n_classes: int) -> Tensor:
    """``M[i, j]`` = number of elements with target ``i`` predicted as ``j``; targets ``< 0`` ignored."""
    predicted, targets = predicted.reshape(-1).long(), targets.reshape(-1).long()
    keep = targets >= 0
    flat = targets[keep] * n_classes + predicted[keep]
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _confusion_metric(n_classes: int, finalize: Callable[[Tensor], float], predict: Predict) -> CorpusMetric:
    return CorpusMetric(
        statistics=lambda outputs, targets: confusion_matrix(predict(outputs), targets, n_classes),
        finalize=finalize,
    )


def miou_from_confusion(matrix: Tensor) -> float:
    matrix = matrix.double()
    intersection = matrix.diag()
    union = matrix.sum(0) + matrix.sum(1) - intersection
    present = union > 0
    return float((intersection[present] / union[present]).mean()) if present.any() else 0.0


def accuracy_from_confusion(matrix: Tensor) -> float:
    total = matrix.sum()
    return float(matrix.diag().sum().double() / total) if total > 0 else 0.0


def f1_from_confusion(matrix: Tensor) -> float:
    matrix = matrix.double()
    tp, fp, fn = matrix[1, 1], matrix[0, 1], matrix[1, 0]
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator > 0 else 0.0


def matthews_from_confusion(matrix: Tensor) -> float:
    matrix = matrix.double()
    s, c = matrix.sum(), matrix.diag().sum()
    t, p = matrix.sum(1), matrix.sum(0)
    denominator = torch.sqrt((s**2 - (p * p).sum()) * (s**2 - (t * t).sum()))
    return float((c * s - (p * t).sum()) / denominator) if denominator > 0 else 0.0


def miou(n_classes: int, predict: Predict = _argmax_classes) -> CorpusMetric:
    """Mean intersection over union of ``n_classes`` classes (logits ``(N, C, ...)`` by default)."""
    return _confusion_metric(n_classes, miou_from_confusion, predict)


def pixel_accuracy(n_classes: int, predict: Predict = _argmax_classes) -> CorpusMetric:
    """Fraction of non-ignored elements predicted correctly, pooled over the split."""
    return _confusion_metric(n_classes, accuracy_from_confusion, predict)


def binary_f1(predict: Predict = _argmax_classes) -> CorpusMetric:
    """F1 score of the positive class 1 of a two-class task."""
    return _confusion_metric(2, f1_from_confusion, predict)


def matthews(n_classes: int = 2, predict: Predict = _argmax_classes) -> CorpusMetric:
    """Matthews correlation coefficient (multi-class R_K for ``n_classes > 2``)."""
    return _confusion_metric(n_classes, matthews_from_confusion, predict)


def _correlation(statistic: Callable[[np.ndarray, np.ndarray], float]) -> CorpusMetric:
    def pairs(outputs: Tensor, targets: Tensor) -> Tensor:
        return torch.stack([outputs.reshape(-1).float(), targets.reshape(-1).float()], dim=1)

    def finalize(rows: Tensor) -> float:
        predicted, target = rows[:, 0].numpy(), rows[:, 1].numpy()
        if len(rows) < 2 or predicted.std() == 0 or target.std() == 0:
            return 0.0
        return float(statistic(predicted, target))

    return CorpusMetric(statistics=pairs, finalize=finalize, combine="cat")


def pearson() -> CorpusMetric:
    """Pearson's r between the (scalar) outputs and the targets over the split."""
    return _correlation(lambda a, b: stats.pearsonr(a, b).statistic)


def spearman() -> CorpusMetric:
    """Spearman's rank correlation between the (scalar) outputs and the targets over the split."""
    return _correlation(lambda a, b: stats.spearmanr(a, b).statistic)
