"""Cityscapes: 7-class semantic segmentation + depth, DeepLabV3 on a dilated ResNet.

Tasks ``segmentation`` (7 classes, see :mod:`mtlens.data.cityscapes`; corpus metrics
``miou`` and ``pixel_accuracy``) and ``depth`` (L1 / Laplace likelihood; ``abs_err`` and
``rel_err``), both read from the same images (single-input MTL, source ``cityscapes``), at
``size = (128, 256)``.  The model is a dilated ResNet-50 encoder (output stride 8, randomly
initialised) with one DeepLabV3 ASPP head per task (:mod:`mtlens.models.deeplab`); the loss
definitions are in :mod:`mtlens.tasks.dense`.

Splits.  Test labels of the official 1,525 test images are not public, so: **test** is the
official *val* split (500 images); **val** is ``n_val`` (default 500) images carved from the
official *train* split (2,975) with the fixed seed :data:`DATA_SEED`; **train** is the
remaining 2,475.

Data.  Either the official layout (``dataset_dir('cityscapes')``, needs a free login at
cityscapes-dataset.com) or the preprocessed 128x256 ``.npy`` release
(``dataset_dir('cityscapes_npy')``); ``root`` points at either directly.  The official
layout is decoded and resized once when the setting is built (minutes for the full data).

Default hyperparameters: Adam, lr 1e-4, batch 8, 100 epochs (eval batch 16).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import PositiveInt

from mtlens.data.cityscapes import (
    OFFICIAL,
    PREPROCESSED,
    npy_layout_present,
    raw_layout_present,
    read_npy,
    read_official,
)
from mtlens.data.registry import DatasetMissingError, dataset_dir, require_dataset
from mtlens.data.views import long_labels, unit_interval_images
from mtlens.models.deeplab import ASPPHead, dilated_resnet
from mtlens.models.resnet import ResNetDepth, resnet_channels
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Setting, Split, TaskData, random_partition
from mtlens.tasks.dense import depth_task, segmentation_task

DATA_SEED = 0
"""Seed of the fixed carve-out of the validation images from the official train split."""

N_CLASSES = 7


def _find_root(root: str | None) -> tuple[Path, str]:
    """The data directory and its layout (``'official'`` or ``'npy'``)."""
    candidates = [Path(root)] if root is not None else [dataset_dir(OFFICIAL.name), dataset_dir(PREPROCESSED.name)]
    for path in candidates:
        if raw_layout_present(path):
            return path, "official"
        if npy_layout_present(path):
            return path, "npy"
    if root is not None:
        raise DatasetMissingError(
            f"{root} holds neither the official Cityscapes layout (leftImg8bit/, gtFine/, disparity/ with "
            f"train/ and val/) nor the preprocessed one (train/ and val/ with image/, label/, depth/ .npy files)"
        )
    require_dataset(OFFICIAL.name)  # raises the actionable error; its instructions name the .npy alternative
    raise DatasetMissingError(f"{dataset_dir(OFFICIAL.name)} lacks Cityscapes' train/ or val/ files")


@register_setting("cityscapes", data=(("cityscapes", "cityscapes_npy"),))
def cityscapes(
    root: str | None = None,
    size: tuple[PositiveInt, PositiveInt] = (128, 256),
    n_val: PositiveInt = 500,
    resnet_depth: ResNetDepth = 50,
    width: PositiveInt = 64,
) -> Setting:
    """Cityscapes segmentation + depth (see the module doc); ``width`` scales the ResNet's channels."""
    path, layout = _find_root(root)
    size = (int(size[0]), int(size[1]))
    read = read_official if layout == "official" else read_npy
    train_all, test = read(path, "train", size), read(path, "val", size)
    val_rows, train_rows = random_partition(len(train_all), [n_val, len(train_all) - n_val], seed=DATA_SEED)
    images = {"train": train_all.images[train_rows], "val": train_all.images[val_rows], "test": test.images}
    targets = {
        "segmentation": {"train": train_all.labels[train_rows], "val": train_all.labels[val_rows], "test": test.labels},
        "depth": {"train": train_all.depth[train_rows], "val": train_all.depth[val_rows], "test": test.depth},
    }
    wrap = {"segmentation": long_labels, "depth": lambda t: t}
    data = {
        task: TaskData(
            "cityscapes",
            *(Split(unit_interval_images(images[s]), wrap[task](targets[task][s])) for s in ("train", "val", "test")),
        )
        for task in ("segmentation", "depth")
    }
    channels = resnet_channels(resnet_depth, width)
    return Setting(
        name="cityscapes",
        tasks=(
            segmentation_task("segmentation", N_CLASSES, head=lambda dim: ASPPHead(dim, N_CLASSES, size)),
            depth_task("depth", head=lambda dim: ASPPHead(dim, 1, size)),
        ),
        data=data,
        encoder=lambda: dilated_resnet(resnet_depth, width),
        feature_dim=channels,
        defaults=Defaults(lr=1e-4, batch_size=8, epochs=100, eval_batch_size=16),
        description=(
            f"Cityscapes ({layout} layout) at {size[0]}x{size[1]}: 7-class segmentation + depth on one dilated "
            f"ResNet-{resnet_depth} with ASPP heads; {len(train_rows)}/{n_val}/{len(test)} train/val/test "
            "(val carved from official train, test = official val)."
        ),
    )
