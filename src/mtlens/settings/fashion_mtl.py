"""Fashion MTL: two 10-way tasks on disjoint halves of Fashion-MNIST (Mueller et al. 2025).

Construction (:func:`fashion_mtl_partition`, fixed data seed :data:`DATA_SEED`): the
60,000 images of the official training file are permuted once and cut into task ``a``'s
25,000 training images, task ``b``'s 25,000, then 5,000 validation images for ``a`` and
5,000 for ``b`` (together exactly the 60,000).  The 10,000 official test images are
permuted and halved: 5,000 test images per task.  Tasks read their own inputs
(multi-input MTL).

``variant="permuted"`` (default) gives task ``b`` the labels mapped through
:data:`mtlens.settings.embedded.LABEL_PERMUTATION` (controlled conflict: the heads differ,
the features needed are the same); ``variant="same"`` keeps the true labels on both
halves (pure data sharing).

Encoder: the small CNN :func:`mtlens.models.encoders.conv_encoder` with widths (32, 64)
and 128 features.  Defaults (this package's choice; the record sweeps learning rate and
batch size with Adam): Adam, lr 1e-3, batch 128, 20 epochs.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import Tensor, nn

from mtlens.data.images import idx_dataset
from mtlens.models.encoders import conv_encoder
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, PairVariant, Setting, Split, TaskData, random_partition
from mtlens.settings.embedded import DATA_SEED, LABEL_PERMUTATION
from mtlens.tasks import classification_task

TASKS = ("a", "b")

FEATURE_DIM = 128
DEFAULTS = Defaults(lr=1e-3, batch_size=128, epochs=20)
"""Encoder width and training defaults of the paper's 28x28 grey-image settings (Fashion MTL, MNISTs)."""


def small_image_encoder() -> nn.Module:
    """The CNN of the paper's 28x28 grey-image settings: ``conv_encoder`` with widths 32, 64 to 128 features."""
    return conv_encoder(1, 28, widths=(32, 64), feature_dim=FEATURE_DIM)


def fashion_mtl_partition(
    n_train_file: int,
    n_test_file: int,
    n_train: int = 25_000,
    n_val: int = 5_000,
    n_test: int = 5_000,
    seed: int = DATA_SEED,
) -> dict[str, dict[str, Tensor]]:
    """Row indices ``{task: {"train", "val" (into the train file), "test" (into the test file)}}``.

    The train file is cut into ``[n_train (a), n_train (b), n_val (a), n_val (b)]`` after
    one seeded permutation, the test file into ``[n_test (a), n_test (b)]``.
    """
    train_a, train_b, val_a, val_b = random_partition(n_train_file, [n_train, n_train, n_val, n_val], seed)
    test_a, test_b = random_partition(n_test_file, [n_test, n_test], seed)
    return {
        "a": {"train": train_a, "val": val_a, "test": test_a},
        "b": {"train": train_b, "val": val_b, "test": test_b},
    }


@register_setting("fashion_mtl", data=("fashion_mnist",))
def fashion_mtl(
    variant: PairVariant = "permuted",
    n_train: PositiveInt = 25_000,
    n_val: PositiveInt = 5_000,
    n_test: PositiveInt = 5_000,
) -> Setting:
    """Fashion MTL: two 10-way Fashion-MNIST tasks on disjoint halves (25,000/5,000/5,000 each)."""
    raw = idx_dataset("fashion_mnist")
    (train_x, train_y), (test_x, test_y) = raw["train"], raw["test"]
    rows = fashion_mtl_partition(len(train_x), len(test_x), n_train, n_val, n_test)
    permutation = torch.tensor(LABEL_PERMUTATION)
    data = {}
    for task in TASKS:
        relabel = (lambda y: permutation[y]) if task == "b" and variant == "permuted" else (lambda y: y)
        splits = {
            split: Split(x[rows[task][split]], relabel(y[rows[task][split]]))
            for split, (x, y) in (
                ("train", (train_x, train_y)),
                ("val", (train_x, train_y)),
                ("test", (test_x, test_y)),
            )
        }
        data[task] = TaskData(f"fashion_mtl/{task}", **splits)
    return Setting(
        name="fashion_mtl",
        tasks=tuple(classification_task(t, 10) for t in TASKS),
        data=data,
        encoder=small_image_encoder,
        feature_dim=FEATURE_DIM,
        defaults=DEFAULTS,
        description=(
            f"Fashion-MNIST split at random into two tasks, {n_train}/{n_val}/{n_test} train/val/test each; "
            f"task b labels {'permuted' if variant == 'permuted' else 'unchanged'}."
        ),
    )
