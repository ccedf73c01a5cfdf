"""MNISTS (Hsieh & Chen 2018): three MNIST-like 10-way tasks, each on its own images.

Tasks ``mnist``, ``fashion`` and a third MNIST-like dataset: ``notmnist`` (default, as in
Hsieh & Chen: letters A-J from ``notMNIST_large``) or ``kmnist`` (Kuzushiji-MNIST, a
documented alternative that ships with published checksums), chosen by ``third``.
Each task reads its own inputs (multi-input MTL).

Splits per task (:func:`mnists_partition`, fixed data seed): for the IDX datasets, the
60,000-image training file is permuted once and cut into 50,000 train and 5,000
validation images (the remaining 5,000 are unused); 5,000 of the 10,000 official test
images, drawn at random, are the test split.  notMNIST has no official split: 60,000
readable images are drawn at random from its folders and cut into 50,000 / 5,000 / 5,000.

Encoder: :func:`mtlens.models.encoders.conv_encoder` with widths (32, 64) and 128
features (all inputs are 1x28x28).  Defaults (this package's choice): Adam, lr 1e-3,
batch 128, 20 epochs.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import PositiveInt
from torch import Tensor

from mtlens.data.images import idx_dataset, notmnist
from mtlens.settings import register_setting
from mtlens.settings.base import Setting, Split, TaskData, random_partition
from mtlens.settings.embedded import DATA_SEED
from mtlens.settings.fashion_mtl import DEFAULTS, FEATURE_DIM, small_image_encoder
from mtlens.tasks import classification_task

ThirdTask = Literal["notmnist", "kmnist"]
"""The third MNIST-like task of ``mnists``."""

THIRD_TASKS: tuple[str, ...] = get_args(ThirdTask)


def mnists_partition(
    n_train_file: int,
    n_test_file: int,
    n_train: int = 50_000,
    n_val: int = 5_000,
    n_test: int = 5_000,
    seed: int = DATA_SEED,
) -> dict[str, Tensor]:
    """Row indices ``{"train", "val"}`` into the train file and ``{"test"}`` into the test file of one task."""
    train, val = random_partition(n_train_file, [n_train, n_val], seed)
    (test,) = random_partition(n_test_file, [n_test], seed)
    return {"train": train, "val": val, "test": test}


def _idx_task(dataset: str, source: str, n_train: int, n_val: int, n_test: int) -> TaskData:
    raw = idx_dataset(dataset)
    (train_x, train_y), (test_x, test_y) = raw["train"], raw["test"]
    rows = mnists_partition(len(train_x), len(test_x), n_train, n_val, n_test)
    return TaskData(
        source,
        train=Split(train_x[rows["train"]], train_y[rows["train"]]),
        val=Split(train_x[rows["val"]], train_y[rows["val"]]),
        test=Split(test_x[rows["test"]], test_y[rows["test"]]),
    )


def _notmnist_task(source: str, n_train: int, n_val: int, n_test: int) -> TaskData:
    x, y = notmnist(n_train + n_val + n_test, seed=DATA_SEED)
    cuts = [0, n_train, n_train + n_val, n_train + n_val + n_test]
    train, val, test = (Split(x[lo:hi], y[lo:hi]) for lo, hi in zip(cuts, cuts[1:]))
    return TaskData(source, train=train, val=val, test=test)


@register_setting("mnists", data=("mnist", "fashion_mnist", "notmnist"))
def mnists(
    third: ThirdTask = "notmnist",
    n_train: PositiveInt = 50_000,
    n_val: PositiveInt = 5_000,
    n_test: PositiveInt = 5_000,
) -> Setting:
    """MNISTS: MNIST, Fashion-MNIST and notMNIST (or KMNIST), 50,000/5,000/5,000 each, own inputs per task."""
    data = {
        "mnist": _idx_task("mnist", "mnists/mnist", n_train, n_val, n_test),
        "fashion": _idx_task("fashion_mnist", "mnists/fashion", n_train, n_val, n_test),
        third: (
            _notmnist_task("mnists/notmnist", n_train, n_val, n_test)
            if third == "notmnist"
            else _idx_task("kmnist", "mnists/kmnist", n_train, n_val, n_test)
        ),
    }
    return Setting(
        name="mnists",
        tasks=tuple(classification_task(t, 10) for t in data),
        data=data,
        encoder=small_image_encoder,
        feature_dim=FEATURE_DIM,
        defaults=DEFAULTS,
        description=(
            f"MNIST, Fashion-MNIST and {third}, each its own 10-way task on its own images; "
            f"{n_train}/{n_val}/{n_test} train/val/test per task."
        ),
    )
