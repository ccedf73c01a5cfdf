"""The one compact-array view: converts only the indexed rows, exactly as converting everything would."""

from __future__ import annotations

import pytest
import torch

from mtlens.data.views import ArrayView, long_labels, unit_interval_images


def test_unit_interval_images_equal_the_converted_array_and_keep_bytes():
    images = torch.randint(0, 256, (7, 3, 4, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    view = unit_interval_images(images)
    index = torch.tensor([6, 0, 3, 3])
    rows = view[index]
    assert rows.dtype == torch.float32 and len(view) == 7
    assert torch.equal(rows, images.float()[index] / 255.0)
    assert rows.min() >= 0 and rows.max() <= 1
    assert view.values.dtype == torch.uint8  # stored compactly, not converted once
    assert torch.equal(images, view.values)  # indexing converted a copy, not the storage
    with pytest.raises(TypeError, match="uint8"):
        unit_interval_images(images.float())


def test_long_labels_and_a_general_view():
    labels = torch.tensor([[-1, 2], [6, 0]], dtype=torch.int8)
    assert torch.equal(long_labels(labels)[torch.tensor([1])], torch.tensor([[6, 0]], dtype=torch.int64))
    assert ArrayView(torch.tensor([2, 4]), torch.float64, 4.0)[torch.tensor([1, 0])].tolist() == [1.0, 0.5]
