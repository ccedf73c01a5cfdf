"""CIFAR-100 as 20 tasks: one per coarse superclass, 5-way over its fine classes.

Task names are the superclass names of the ``meta`` pickle (``aquatic_mammals``, ...,
``vehicles_2``); a task's label ``k`` is the ``k``-th of its five fine classes in
ascending fine-label order.  The fine -> coarse map is read off the training batch's
``coarse_labels`` (:func:`mtlens.data.images.fine_to_coarse_map`).  Each task reads its
own images (multi-input MTL).

Splits per task (:func:`cifar100_partition`, fixed data seed, stratified by fine class):
of the 500 training images of each fine class, 400 are training and 100 validation
images; the 100 official test images of each fine class are the test split.  Per task
that is **2,000 / 500 / 500**.  The record lists 5,000 training images per task ("about
1,000 per class"), which CIFAR-100 cannot provide (600 images per fine class in all); the
500 validation and 500 test images match.

Encoder: :func:`mtlens.models.encoders.cifar_cnn` (six 3x3 conv-BN-ReLU layers, widths
``width``/2``width``/4``width`` = 32/64/128 by default, ``8 * width`` = 256 features).  Images are
scaled to ``[0, 1]``; no augmentation.  Defaults (this package's choice): Adam, lr 1e-3, batch 64, 40 epochs.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import Tensor

from mtlens.data.images import load_cifar100
from mtlens.data.registry import require_dataset
from mtlens.data.views import unit_interval_images
from mtlens.models.encoders import cifar_cnn
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Setting, Split, TaskData, random_partition
from mtlens.settings.embedded import DATA_SEED
from mtlens.tasks import classification_task


def cifar100_partition(
    fine_labels: Tensor,
    classes: list[int],
    n_train_per_class: int = 400,
    n_val_per_class: int = 100,
    seed: int = DATA_SEED,
) -> tuple[Tensor, Tensor]:
    """Row indices ``(train, val)`` into the train batch: per fine class in ``classes``, a seeded
    random ``n_train_per_class`` for training and a disjoint ``n_val_per_class`` for validation."""
    train, val = [], []
    for fine in classes:
        rows = (fine_labels == fine).nonzero().squeeze(1)
        train_idx, val_idx = random_partition(len(rows), [n_train_per_class, n_val_per_class], seed + fine)
        train.append(rows[train_idx])
        val.append(rows[val_idx])
    return torch.cat(train), torch.cat(val)


def _task_split(images: Tensor, fine: Tensor, rows: Tensor, classes: list[int]) -> Split:
    relabel = torch.full((int(fine.max()) + 1,), -1, dtype=torch.int64)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    return Split(unit_interval_images(images[rows]), relabel[fine[rows]])


@register_setting("cifar100", data=("cifar100",))
def cifar100(
    n_train_per_class: PositiveInt = 400, n_val_per_class: PositiveInt = 100, width: PositiveInt = 32
) -> Setting:
    """CIFAR-100: 20 superclass tasks, 5-way over fine classes; 2,000/500/500 per task."""
    raw = load_cifar100(require_dataset("cifar100"))
    train_x, train_fine, _ = raw["train"]
    test_x, test_fine, _ = raw["test"]
    fine_to_coarse: Tensor = raw["fine_to_coarse"]
    data = {}
    for coarse, task in enumerate(raw["coarse_names"]):
        classes = (fine_to_coarse == coarse).nonzero().squeeze(1).tolist()
        train_rows, val_rows = cifar100_partition(train_fine, classes, n_train_per_class, n_val_per_class)
        test_rows = torch.isin(test_fine, torch.tensor(classes)).nonzero().squeeze(1)
        data[task] = TaskData(
            f"cifar100/{task}",
            train=_task_split(train_x, train_fine, train_rows, classes),
            val=_task_split(train_x, train_fine, val_rows, classes),
            test=_task_split(test_x, test_fine, test_rows, classes),
        )
    return Setting(
        name="cifar100",
        tasks=tuple(classification_task(t, 5) for t in data),
        data=data,
        encoder=lambda: cifar_cnn(widths=(width, 2 * width, 4 * width), feature_dim=8 * width),
        feature_dim=8 * width,
        defaults=Defaults(lr=1e-3, batch_size=64, epochs=40),
        description=(
            f"CIFAR-100: 20 tasks, one per superclass, 5-way over its fine classes; "
            f"{n_train_per_class}/{n_val_per_class} train/val images per fine class, official test images."
        ),
    )
