"""CelebA: 40 binary attribute tasks on the same face images (single-input MTL).

Every task reads the same images (one ``TaskData.source``), so the trainer runs the
encoder once per batch for all 40 heads.  Task names are the attribute names of
``list_attr_celeba.txt`` (``5_o_Clock_Shadow``, ..., ``Young``); targets are 1 where the
file says 1 and 0 where it says -1.  Splits are the official ``list_eval_partition.txt``
(162,770 train / 19,867 val / 19,962 test).

Images are read from ``img_align_celeba/`` (:class:`mtlens.data.images.LazyImageFolder`),
center-cropped to 178x178 and resized to ``image_size`` (64), once: the first load decodes every
split into a memory-mapped ``uint8`` cache under ``decoded/`` in the dataset directory, keyed by a
checksum of the file list (:func:`mtlens.data.images.decoded_image_cache`; 2.5 GB at 64x64), which
every later epoch, evaluation and process reads instead of the JPEGs.  Encoder:
:class:`mtlens.models.encoders.ResNet18Encoder` with BatchNorm, base width ``width``
(64 gives the standard ResNet-18 and 512 features).  Defaults (this package's choice):
Adam, lr 1e-3, batch 256, 15 epochs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveInt

from mtlens.data.images import (
    CELEBA_PARTITIONS,
    LazyImageFolder,
    celeba_partition_codes,
    decoded_image_cache,
    read_celeba_attributes,
    read_celeba_partition,
)
from mtlens.data.registry import require_dataset
from mtlens.models.encoders import ResNet18Encoder
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Setting, Split, TaskData
from mtlens.tasks import binary_task


@register_setting("celeba", data=("celeba",))
def celeba(image_size: Annotated[int, Field(ge=8)] = 64, width: PositiveInt = 64) -> Setting:
    """CelebA: 40 binary attributes, official partition, ResNet-18 at 64x64."""
    root = require_dataset("celeba")
    files, names, attributes = read_celeba_attributes(root / "list_attr_celeba.txt")
    partition_file = root / "list_eval_partition.txt"
    part = celeba_partition_codes(files, read_celeba_partition(partition_file), partition_file)
    splits = {}
    for split, code in CELEBA_PARTITIONS.items():
        rows = (part == code).nonzero().squeeze(1)
        images = decoded_image_cache(
            LazyImageFolder(root / "img_align_celeba", [files[i] for i in rows.tolist()], image_size), root / "decoded"
        )
        splits[split] = (images, attributes[rows])
    data = {
        name: TaskData(
            "celeba", **{split: Split(images, labels[:, j].contiguous()) for split, (images, labels) in splits.items()}
        )
        for j, name in enumerate(names)
    }
    return Setting(
        name="celeba",
        tasks=tuple(binary_task(n) for n in names),
        data=data,
        encoder=lambda: ResNet18Encoder(3, width),
        feature_dim=8 * width,
        defaults=Defaults(lr=1e-3, batch_size=256, epochs=15),
        description=(
            f"CelebA: {len(names)} binary attributes of the same images at {image_size}x{image_size}, "
            f"official partition ({len(splits['train'][0])}/{len(splits['val'][0])}/"
            f"{len(splits['test'][0])})."
        ),
    )
