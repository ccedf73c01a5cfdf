"""The decoded-image cache of JPEG settings: decode once into a memory-mapped uint8 array keyed
by the source files, and serve exactly the images the lazy reader gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtlens.data.images import LazyImageFolder, decoded_image_cache
from mtlens.settings import load_setting
from paper_files import write_celeba


def _reference(path, size: int) -> torch.Tensor:
    """Center crop + bilinear resize with PIL, float32 pixels / 255 (the lazy reader's rule, restated)."""
    rgb = Image.open(path).convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.size[0] - side) // 2, (rgb.size[1] - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(square, dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture
def jpegs(tmp_path):
    write_celeba(tmp_path, partition=(0,) * 7)
    files = [f"{i + 1:06d}.jpg" for i in range(7)]
    return LazyImageFolder(tmp_path / "img_align_celeba", files, size=12, workers=1)


def test_cache_serves_the_lazy_readers_images_and_is_decoded_once(jpegs, tmp_path, monkeypatch):
    cached = decoded_image_cache(jpegs, tmp_path / "cache", chunk=3)  # chunks 3 + 3 + 1
    (path,) = (tmp_path / "cache").glob("decoded-12px-*.npy")
    stored = np.load(path)
    assert stored.dtype == np.uint8 and stored.shape == (7, 3, 12, 12)
    index = torch.tensor([6, 0, 3, 3, 5])
    expected = torch.stack([_reference(jpegs.folder / jpegs.files[i], 12) for i in index.tolist()])
    assert torch.equal(jpegs[index], expected)
    assert torch.equal(cached[index], expected)  # bit-identical to decoding
    assert len(cached) == 7

    def no_decoding(self, name):
        raise AssertionError(f"decoded {name} again")

    monkeypatch.setattr(LazyImageFolder, "_decode", no_decoding)
    again = decoded_image_cache(LazyImageFolder(jpegs.folder, jpegs.files, size=12), tmp_path / "cache")
    assert torch.equal(again[index], expected)


def test_cache_key_follows_the_file_list_and_a_damaged_cache_is_rebuilt(jpegs, tmp_path):
    decoded_image_cache(jpegs, tmp_path / "cache")
    decoded_image_cache(LazyImageFolder(jpegs.folder, jpegs.files[:5], size=12), tmp_path / "cache")
    decoded_image_cache(LazyImageFolder(jpegs.folder, jpegs.files, size=8), tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("decoded-*.npy"))) == 3
    # A replaced image (different bytes) gets a new cache holding the new picture.
    Image.fromarray(np.full((40, 30, 3), 200, dtype=np.uint8)).save(jpegs.folder / jpegs.files[2], quality=100)
    replaced = decoded_image_cache(jpegs, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("decoded-*.npy"))) == 4
    assert torch.equal(replaced[torch.tensor([2])], jpegs[torch.tensor([2])])
    # A truncated cache file is rebuilt, not read.
    path = max((tmp_path / "cache").glob("decoded-12px-*.npy"), key=lambda p: p.stat().st_mtime_ns)
    path.write_bytes(path.read_bytes()[:200])
    rebuilt = decoded_image_cache(jpegs, tmp_path / "cache")
    assert torch.equal(rebuilt[torch.arange(7)], jpegs[torch.arange(7)])


def test_celeba_setting_reads_its_images_from_the_cache_under_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    write_celeba(tmp_path / "celeba", partition=(0, 0, 0, 1, 2))
    setting = load_setting("celeba", image_size=10, width=2)
    caches = sorted((tmp_path / "celeba" / "decoded").glob("decoded-10px-*.npy"))
    assert len(caches) == 3  # one per split
    lazy = LazyImageFolder(tmp_path / "celeba" / "img_align_celeba", ["000001.jpg", "000002.jpg", "000003.jpg"], 10)
    assert torch.equal(setting.data["Smiling"].train.inputs[torch.arange(3)], lazy[torch.arange(3)])
