"""Compact arrays served converted when indexed: one view class for every dataset.

Datasets keep images as ``uint8`` and label maps as ``int8`` (4x and 8x less memory than the
``float32``/``int64`` the model needs) and convert only the rows a batch indexes::

    ArrayView(values, dtype, divisor)[index] == values[index].to(dtype) / divisor   (no division if divisor is None)

:func:`unit_interval_images` (uint8 images to ``float32`` in ``[0, 1]``) and :func:`long_labels`
(int8 labels to ``int64``) are the two views the settings use.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ArrayView:
    """``values`` served as ``values[index].to(dtype) / divisor``; see the module docstring."""

    def __init__(self, values: Tensor, dtype: torch.dtype, divisor: float | None = None):
        self.values = values
        self.dtype = dtype
        self.divisor = divisor

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: Tensor) -> Tensor:
        rows = self.values[index].to(self.dtype)
        return rows if self.divisor is None else rows.div_(self.divisor)


def unit_interval_images(images: Tensor) -> ArrayView:
    """``uint8`` images (any shape) served as ``float32`` in ``[0, 1]`` (``x / 255``)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return ArrayView(images, torch.float32, 255.0)


def long_labels(labels: Tensor) -> ArrayView:
    """Integer labels stored compactly (e.g. ``int8`` label maps) served as ``int64``."""
    return ArrayView(labels, torch.int64)
