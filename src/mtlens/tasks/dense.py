"""Per-pixel tasks: semantic segmentation and depth estimation (outputs ``(N, C, H, W)``).

``segmentation_task``
    Categorical likelihood per pixel, pixels independent given the image.  Targets are
    ``(N, H, W)`` class indices, ``-1`` (:data:`IGNORE_INDEX`) marks pixels without a label.
    The per-image loss is the cross-entropy *averaged* over the image's labelled pixels,
    ``L_i = (1/|V_i|) sum_{p in V_i} -log softmax(f_p)[y_p]`` (0 if ``V_i`` is empty), i.e. the
    image's NLL scaled by ``1/|V_i|``.  Corpus metrics: ``miou`` and ``pixel_accuracy``
    (pixels pooled over the split).  Labels for the Fisher probe are drawn per pixel from
    the softmax at every pixel.

``depth_task``
    Laplace likelihood with unit scale per pixel: ``-log p(y|f) = |y - f| + log 2``.  Targets
    are ``(N, 1, H, W)`` depths, ``0`` marks a missing depth.  The per-image loss is the L1
    error averaged over the valid pixels ``V_i = {p : y_p != 0}`` (the NLL up to a constant,
    scaled by ``1/|V_i|``).  Corpus metrics over pixels with ``y > 0`` pooled over the split:
    ``abs_err = sum |f - y| / n`` and ``rel_err = sum |f - y| / y / n``.  Fisher labels are
    ``f + Laplace(0, 1)`` noise at every pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mtlens.tasks.metrics import miou, pixel_accuracy
from mtlens.tasks.task import CorpusMetric, Task

IGNORE_INDEX = -1
"""Target value of pixels without a class label."""


def _per_image_mean(values: Tensor, valid: Tensor) -> Tensor:
    """``sum_p values[i, p] * valid[i, p] / max(1, |valid_i|)`` for each image ``i``; shape ``(N,)``."""
    values, valid = values.reshape(len(values), -1), valid.reshape(len(valid), -1).to(values.dtype)
    return (values * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)


def segmentation_task(name: str, n_classes: int, head: Callable[[int], nn.Module]) -> Task:
    """``n_classes``-way per-pixel classification; logits ``(N, C, H, W)``, targets ``(N, H, W)``."""

    def cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
        targets = targets.long()
        per_pixel = nn.functional.cross_entropy(outputs, targets, ignore_index=IGNORE_INDEX, reduction="none")
        return _per_image_mean(per_pixel, targets != IGNORE_INDEX)

    def sample(outputs: Tensor, generator: torch.Generator) -> Tensor:
        n, c, h, w = outputs.shape
        probs = torch.softmax(outputs.detach().float(), dim=1).permute(0, 2, 3, 1).reshape(-1, c)
        return torch.multinomial(probs, 1, generator=generator).reshape(n, h, w)

    return Task(
        name=name,
        head=head,
        loss=cross_entropy,
        metrics={},
        sample_labels=sample,
        lower_is_better={"miou": False, "pixel_accuracy": False},
        selection_metric="miou",
        corpus_metrics={"miou": miou(n_classes), "pixel_accuracy": pixel_accuracy(n_classes)},
    )


def _depth_errors(outputs: Tensor, targets: Tensor) -> Tensor:
    """``[sum |f - y|, sum |f - y| / y, n]`` over pixels with ``y > 0``."""
    valid = targets > 0
    error = (outputs.float() - targets.float()).abs()[valid]
    return torch.stack([error.sum(), (error / targets.float()[valid]).sum(), valid.sum().to(error.dtype)])


def _ratio(numerator: int) -> Callable[[Tensor], float]:
    return lambda stats: float(stats[numerator] / stats[2]) if stats[2] > 0 else 0.0


def depth_task(name: str, head: Callable[[int], nn.Module]) -> Task:
    """Per-pixel depth with a unit-scale Laplace likelihood; outputs and targets ``(N, 1, H, W)``."""

    def l1(outputs: Tensor, targets: Tensor) -> Tensor:
        return _per_image_mean((outputs - targets.to(outputs.dtype)).abs(), targets != 0)

    def sample(outputs: Tensor, generator: torch.Generator) -> Tensor:
        mean = outputs.detach().float()
        u = torch.rand(mean.shape, generator=generator, device=mean.device) - 0.5
        return mean - torch.sign(u) * torch.log1p(-2.0 * u.abs())

    return Task(
        name=name,
        head=head,
        loss=l1,
        metrics={},
        sample_labels=sample,
        lower_is_better={"abs_err": True, "rel_err": True},
        selection_metric="abs_err",
        corpus_metrics={
            "abs_err": CorpusMetric(statistics=_depth_errors, finalize=_ratio(0)),
            "rel_err": CorpusMetric(statistics=_depth_errors, finalize=_ratio(1)),
        },
    )
