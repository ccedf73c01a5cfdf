"""Readers of the published image formats, on tiny files written in those formats."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtlens.data.images import (
    DatasetFormatError,
    LazyImageFolder,
    fine_to_coarse_map,
    idx_dataset,
    load_cifar100,
    read_celeba_attributes,
    read_celeba_partition,
    read_idx,
    read_letter_folder,
)
from paper_files import (
    CELEBA_ATTRIBUTES,
    CIFAR100_SUPERCLASSES,
    set_celeba_attribute,
    write_celeba,
    write_cifar100,
    write_idx,
    write_idx_dataset,
    write_notmnist,
)


def test_idx_reader_round_trips_and_rejects_bad_magic(tmp_path, monkeypatch):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    with gzip.open(tmp_path / "x.gz") as handle:
        assert handle.read(4) == b"\x00\x00\x08\x03"  # the published magic number of image files
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")  # 0x0d = float, not ubyte
    with pytest.raises(DatasetFormatError, match="unsigned-byte IDX"):
        read_idx(tmp_path / "bad")

    monkeypatch.setenv("MTLENS_DATA", str(tmp_path / "root"))
    written = write_idx_dataset(tmp_path / "root" / "kmnist", n_train=30, n_test=7, seed=1)
    loaded = idx_dataset("kmnist")
    images, labels = loaded["test"]
    assert images.shape == (7, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    np.testing.assert_allclose(images[:, 0].numpy() * 255, written["test_images"], atol=1e-3)
    assert labels.tolist() == written["test_labels"].tolist()


def test_letter_folder_skips_unreadable_files_resizes_and_caches(tmp_path):
    write_notmnist(tmp_path, per_letter=4)
    root = tmp_path / "notMNIST_large"
    images, labels = read_letter_folder(root, n=40, seed=3)  # all 40 readable ones; 10 broken files skipped
    assert images.shape == (40, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [4] * 10
    # The pixels of letter k's images are 20 k but the bottom-right one (also after resizing the 32x32 ones).
    np.testing.assert_allclose((images[:, 0, 0, 0] * 255).round(), 20 * labels.float())
    np.testing.assert_allclose((images * 255).round().amin(dim=(1, 2, 3)), 20 * labels.float())
    assert list(tmp_path.glob("notmnist-cache-*.npz"))
    again = read_letter_folder(root, n=40, seed=3)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)
    first = read_letter_folder(root, n=12, seed=3)[1]
    assert not torch.equal(first, read_letter_folder(root, n=12, seed=4)[1])
    with pytest.raises(DatasetFormatError, match="only 40 readable images"):
        read_letter_folder(root, n=41, seed=3)


def test_cifar100_pickles_and_the_official_superclass_table(tmp_path):
    write_cifar100(tmp_path, train_per_class=2, test_per_class=1)
    raw = load_cifar100(tmp_path)
    images, fine, coarse = raw["train"]
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert images[:, 0, 0, 0].long().tolist() == fine.tolist()  # byte 0 of the row is the red channel's (0, 0)
    derived = {
        raw["coarse_names"][c]: sorted(raw["fine_names"][f] for f in range(100) if raw["fine_to_coarse"][f] == c)
        for c in range(20)
    }
    assert derived == {k: sorted(v) for k, v in CIFAR100_SUPERCLASSES.items()}
    with pytest.raises(DatasetFormatError, match="fine class 1 has coarse labels"):
        fine_to_coarse_map(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)


def test_celeba_lists_and_lazy_center_cropped_images(tmp_path):
    attributes = write_celeba(tmp_path, partition=(0, 0, 1, 2))
    files, names, values = read_celeba_attributes(tmp_path / "list_attr_celeba.txt")
    assert files == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert names == CELEBA_ATTRIBUTES and len(names) == 40
    assert values.tolist() == (attributes > 0).astype(int).tolist()
    assert read_celeba_partition(tmp_path / "list_eval_partition.txt") == dict(zip(files, (0, 0, 1, 2)))

    # A 30 wide, 40 high image: red bands in the 5 top and 5 bottom rows are cut by the center crop.
    picture = np.zeros((40, 30, 3), dtype=np.uint8)
    picture[:5, :, 0] = picture[35:, :, 0] = 255
    picture[5:35, :, 1] = 255
    Image.fromarray(picture).save(tmp_path / "bands.png")
    folder = LazyImageFolder(tmp_path, ["bands.png", "img_align_celeba/000001.jpg"], size=16)
    batch = folder[torch.tensor([0, 1, 0])]
    assert len(folder) == 2 and batch.shape == (3, 3, 16, 16) and batch.dtype == torch.float32
    assert batch[0, 0].max() < 0.05 and batch[0, 1].min() > 0.95
    assert torch.equal(batch[0], batch[2])
    threaded = LazyImageFolder(tmp_path, folder.files, size=16, workers=2)[torch.tensor([0, 1, 0, 1, 1, 0])]
    assert torch.equal(threaded, torch.cat([batch, batch[[1, 1, 0]]]))
    assert torch.equal(folder[:2], batch[:2])


def _rewrite_pickle(path: Path, **changes: object) -> None:
    """Replace entries (``data``, ``fine_labels``, ...) of the CIFAR-100 pickle at ``path``."""
    batch = pickle.loads(path.read_bytes())
    batch.update({key.encode(): value for key, value in changes.items()})
    path.write_bytes(pickle.dumps(batch))


def _one_test_label_too_few(test: Path) -> None:
    batch = pickle.loads(test.read_bytes())
    _rewrite_pickle(test, fine_labels=batch[b"fine_labels"][:-1], coarse_labels=batch[b"coarse_labels"][:-1])


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _test_superclass_changed(test: Path) -> None:
    batch = pickle.loads(test.read_bytes())
    coarse = list(batch[b"coarse_labels"])
    coarse[7] = (coarse[7] + 1) % 20
    _rewrite_pickle(test, coarse_labels=coarse)


def _drop_key(path: Path) -> None:
    batch = pickle.loads(path.read_bytes())
    del batch[b"coarse_labels"]
    path.write_bytes(pickle.dumps(batch))


CIFAR100_DAMAGES = {
    "fewer labels than images": (_one_test_label_too_few, "test: 100 images but 99 fine_labels and 99 coarse_labels"),
    "rows of 3071 bytes": (
        lambda test: _rewrite_pickle(test, data=np.zeros((100, 3071), dtype=np.uint8)),
        "test: data must be a uint8 array of N rows of 3072 bytes, got \\(100, 3071\\)",
    ),
    "fine label 100": (
        lambda test: _rewrite_pickle(test, fine_labels=[100] * 100),
        r"test: fine_labels\[0\] = 100, expected 0 to 99",
    ),
    "test superclass contradicts train": (_test_superclass_changed, r"test: coarse_labels\[7\] = "),
    "truncated pickle": (_truncated, "test: not a readable CIFAR-100 pickle"),
    "a key missing": (_drop_key, r"test: the pickle lacks the published key\(s\) \['coarse_labels'\]"),
    "truncated meta": (lambda test: _truncated(test.parent / "meta"), "meta: not a readable CIFAR-100 pickle"),
    "meta names not strings": (
        lambda test: _rewrite_pickle(test.parent / "meta", fine_label_names=list(range(100))),
        "meta: the class names must be a non-empty list of strings",
    ),
}


@pytest.mark.parametrize("damage", list(CIFAR100_DAMAGES))
def test_a_malformed_cifar100_file_is_refused_naming_it(tmp_path, damage):
    """A test batch with fewer labels than images was read, its images paired with other images' labels;
    malformed pickles were tracebacks.  Each is now one DatasetFormatError naming the file (audit C)."""
    write_cifar100(tmp_path, train_per_class=2, test_per_class=1)
    damage_file, message = CIFAR100_DAMAGES[damage]
    damage_file(tmp_path / "cifar-100-python" / "test")
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_cifar100(tmp_path)
    assert str(tmp_path / "cifar-100-python") in str(info.value)


def _gzip_cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


IDX_DAMAGES = {
    "gzip stream cut off": (_gzip_cut, "cannot be read as an IDX file"),
    "header cut off": (
        lambda path: path.write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x02")),
        "header of 3 sizes is cut off after 8 bytes",
    ),
    "not gzip": (lambda path: path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02ab"), "cannot be read as an IDX file"),
    "negative sizes": (  # (-1) x (-1) = 1 value, which numpy's reshape refused with a traceback
        lambda path: path.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + b"\xff" * 8 + b"a")),
        r"header says shape \(-1, -1\) but holds 1 values",
    ),
}


@pytest.mark.parametrize("damage", list(IDX_DAMAGES))
def test_a_malformed_idx_file_is_refused_naming_it(tmp_path, damage):
    """A truncated gzip stream (EOFError) or header (struct.error) was a traceback (audit C)."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    write_idx(path, np.zeros((3, 28, 28), dtype=np.uint8))
    damage_file, message = IDX_DAMAGES[damage]
    damage_file(path)
    with pytest.raises(DatasetFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _replace_in(name: str, old: str, new: str):
    """A damage that replaces the first ``old`` by ``new`` in the CelebA list ``name``."""

    def damage(root: Path) -> None:
        path = root / name
        path.write_text(path.read_text().replace(old, new, 1))

    return damage


CELEBA_DAMAGES = {
    # (damage, the file read, the message)
    "attribute not a number": (
        lambda root: set_celeba_attribute(root, 1, 0, "x"),
        "list_attr_celeba.txt",
        r"line 4: expected a file name and 40 values -1 or 1, got '000002.jpg x ",
    ),
    "attribute 0": (lambda root: set_celeba_attribute(root, 0, 5, "0"), "list_attr_celeba.txt", "line 3: expected"),
    "attribute 2": (lambda root: set_celeba_attribute(root, 3, 39, "2"), "list_attr_celeba.txt", "line 6: expected"),
    "empty attribute list": (
        lambda root: (root / "list_attr_celeba.txt").write_text(""),
        "list_attr_celeba.txt",
        "line 1: expected the number of images",
    ),
    "partition code 3": (
        _replace_in("list_eval_partition.txt", "000003.jpg 1", "000003.jpg 3"),
        "list_eval_partition.txt",
        r"line 3: expected a file name and a partition \['0', '1', '2'\], got '000003.jpg 3'",
    ),
    "partition row without a code": (
        _replace_in("list_eval_partition.txt", "000004.jpg 2", "000004.jpg"),
        "list_eval_partition.txt",
        "line 4: expected a file name and a partition",
    ),
}


@pytest.mark.parametrize("damage", list(CELEBA_DAMAGES))
def test_a_malformed_celeba_list_is_refused_naming_file_and_line(tmp_path, damage):
    """A non-integer attribute was a ValueError the CLI blamed on the setting's options, a missing partition code
    a tuple-unpacking traceback; attribute values other than -1/1 and partition codes other than 0/1/2 were
    silently read (as 0/1, and as rows of no split) (audit C)."""
    write_celeba(tmp_path, partition=(0, 0, 1, 2))
    damage_file, name, message = CELEBA_DAMAGES[damage]
    damage_file(tmp_path)
    reader = read_celeba_attributes if name == "list_attr_celeba.txt" else read_celeba_partition
    with pytest.raises(DatasetFormatError, match=message) as info:
        reader(tmp_path / name)
    assert str(tmp_path / name) in str(info.value)


def test_an_image_that_cannot_be_decoded_is_refused_naming_it(tmp_path):
    """A truncated JPEG was an OSError traceback from a decoding thread (audit C)."""
    write_celeba(tmp_path, partition=(0, 0, 1, 2))
    jpeg = tmp_path / "img_align_celeba" / "000003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    folder = LazyImageFolder(tmp_path / "img_align_celeba", [f"{i:06d}.jpg" for i in range(1, 5)], size=8)
    with pytest.raises(DatasetFormatError, match=f"{jpeg}: cannot be read as an image"):
        folder[torch.arange(4)]
