"""Readers of the published image-classification datasets, and their registry entries.

Each reader takes the files in the layout the dataset's authors publish them, under
``dataset_dir(name)`` (see :mod:`mtlens.data.registry`):

``mnist``, ``fashion_mnist``, ``kmnist``
    The four IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (60,000 train,
    10,000 test, 28x28 grey).  IDX: big-endian magic ``0x00 0x00 TYPE NDIM`` (``TYPE 0x08`` =
    unsigned byte), ``NDIM`` big-endian ``int32`` sizes, then the row-major data.
``notmnist``
    ``notMNIST_large/{A..J}/*.png`` (Bulatov's letter images, 10 classes A-J, ~53k each),
    as unpacked from ``notMNIST_large.tar.gz``.  The published folders contain a few
    unreadable files; the reader skips them.  Images are converted to grey and resized to
    28x28 if needed.
``cifar100``
    ``cifar-100-python/{train,test,meta}``: pickles with ``b'data'`` (N, 3072 uint8, CHW),
    ``b'fine_labels'``, ``b'coarse_labels'``; ``meta`` has ``b'fine_label_names'`` and
    ``b'coarse_label_names'``.
``celeba``
    ``img_align_celeba/*.jpg`` (202,599 aligned 178x218 faces), ``list_attr_celeba.txt``
    (line 1: count; line 2: the 40 attribute names; then ``FILE v1 ... v40`` with
    ``v in {-1, 1}``) and ``list_eval_partition.txt`` (``FILE k`` with ``k`` 0 = train,
    1 = val, 2 = test).  Images are read lazily by :class:`LazyImageFolder`.

Images come back as ``float32`` in ``[0, 1]`` with a channel axis; labels as ``int64``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pickle
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mtlens.data.registry import (
    DatasetFormatError,
    DatasetSpec,
    RemoteFile,
    dataset_lines,
    register_dataset,
    require_dataset,
)
from mtlens.data.views import ArrayView, unit_interval_images
from mtlens.store.atomic import atomic_write

IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
IDX_UBYTE = 0x08

NOTMNIST_CLASSES = tuple("ABCDEFGHIJ")
CELEBA_PARTITIONS = {"train": 0, "val": 1, "test": 2}


def _idx_dataset(name: str, description: str, base_url: str, md5: Sequence[str]) -> DatasetSpec:
    files = tuple(IDX_FILES.values())
    return DatasetSpec(
        name=name,
        description=description,
        files=files,
        size_bytes={"mnist": 11_600_000, "fashion_mnist": 30_900_000, "kmnist": 20_300_000}[name],
        downloads=tuple(RemoteFile(base_url + f, checksum=f"md5:{h}") for f, h in zip(files, md5)),
        instructions=f"download {', '.join(files)} from {base_url} and put them in this directory.",
    )


register_dataset(
    _idx_dataset(
        "mnist",
        "MNIST handwritten digits (IDX)",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    )
)
register_dataset(
    _idx_dataset(
        "fashion_mnist",
        "Fashion-MNIST (IDX)",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    )
)
register_dataset(
    _idx_dataset(
        "kmnist",
        "Kuzushiji-MNIST (IDX)",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        (
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ),
    )
)
register_dataset(
    DatasetSpec(
        name="notmnist",
        description="notMNIST letters A-J (PNG folders)",
        files=tuple(f"notMNIST_large/{c}" for c in NOTMNIST_CLASSES),
        size_bytes=1_700_000_000,
        instructions=(
            "download notMNIST_large.tar.gz (no published checksum; http://yaroslavvb.com/upload/notMNIST/) "
            "and unpack it in this directory so that notMNIST_large/A ... notMNIST_large/J hold the PNGs."
        ),
    )
)
register_dataset(
    DatasetSpec(
        name="cifar100",
        description="CIFAR-100, python version",
        files=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        size_bytes=340_000_000,
        downloads=(
            RemoteFile(
                "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                checksum="md5:eb9058c3a382ffc7106e4002c42a8d85",
                extract=True,
            ),
        ),
        instructions=(
            "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it "
            "in this directory (giving cifar-100-python/train, test and meta)."
        ),
    )
)
register_dataset(
    DatasetSpec(
        name="celeba",
        description="CelebA aligned faces with 40 attributes",
        files=("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"),
        size_bytes=1_450_000_000,
        instructions=(
            "CelebA is distributed through Google Drive (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html), "
            "not by a plain URL: download img_align_celeba.zip (Img/), list_attr_celeba.txt (Anno/) and "
            "list_eval_partition.txt (Eval/), unzip the images so that img_align_celeba/000001.jpg exists, "
            "and put the two text files next to that folder in this directory."
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST, KMNIST)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped if its name ends in ``.gz``) of unsigned bytes as an array of its shape.

    A file that cannot be decompressed (truncated or damaged gzip), has a short header or holds
    another number of values than its header says is a :class:`DatasetFormatError` naming it.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetFormatError(f"{path}: cannot be read as an IDX file ({type(err).__name__}: {err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE:
        raise DatasetFormatError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetFormatError(f"{path}: header of {ndim} sizes is cut off after {len(raw)} bytes")
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)) or min(shape, default=0) < 0:
        raise DatasetFormatError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


@lru_cache(maxsize=8)
def load_idx_dataset(name: str, root: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """``{"train": (images (N, 1, 28, 28) in [0, 1], labels (N,)), "test": ...}`` of an IDX dataset in ``root``."""
    del name  # part of the cache key only
    out = {}
    for split in ("train", "test"):
        images = read_idx(root / IDX_FILES[(split, "images")])
        labels = read_idx(root / IDX_FILES[(split, "labels")])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetFormatError(f"{root}: {split} images {images.shape} do not match labels {labels.shape}")
        out[split] = (
            torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
        )
    return out


def idx_dataset(name: str) -> dict[str, tuple[Tensor, Tensor]]:
    """The registered IDX dataset ``name`` (``mnist``, ``fashion_mnist``, ``kmnist``); see :func:`load_idx_dataset`."""
    return load_idx_dataset(name, require_dataset(name))


# ---------------------------------------------------------------------------------------------
# notMNIST (folders of PNG letters)


def read_letter_folder(root: Path, n: int, seed: int, size: int = 28) -> tuple[Tensor, Tensor]:
    """``n`` readable images drawn at random (fixed ``seed``) from ``root/{A..J}/*``.

    Returns ``(images (n, 1, size, size) in [0, 1], labels (n,))`` with label ``k`` for
    folder ``NOTMNIST_CLASSES[k]``.  Files PIL cannot read (the published notMNIST has a
    few empty or corrupt ones) are skipped and replaced by the next file in the draw.
    The result is cached in ``root/../notmnist-cache-*.npz``: decoding PNGs is slow.
    """
    files = [
        (path, label)
        for label, letter in enumerate(NOTMNIST_CLASSES)
        for path in sorted((root / letter).iterdir())
        if path.is_file()
    ]
    key = hashlib.sha256(f"{len(files)}:{n}:{seed}:{size}".encode()).hexdigest()[:12]
    cache = root.parent / f"notmnist-cache-{key}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            return torch.from_numpy(stored["images"].astype(np.float32) / 255.0), torch.from_numpy(stored["labels"])
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    images: list[np.ndarray] = []
    labels: list[int] = []
    for i in order:
        if len(images) == n:
            break
        path, label = files[i]
        try:
            with Image.open(path) as image:
                grey = image.convert("L")
                if grey.size != (size, size):
                    grey = grey.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(grey, dtype=np.uint8))
        except (UnidentifiedImageError, OSError, SyntaxError):
            continue
        labels.append(label)
    if len(images) < n:
        raise DatasetFormatError(f"{root}: only {len(images)} readable images, {n} needed")
    stacked, label_array = np.stack(images)[:, None], np.asarray(labels, dtype=np.int64)
    atomic_write(cache, lambda tmp: _save_npz(tmp, images=stacked, labels=label_array))
    return torch.from_numpy(stacked.astype(np.float32) / 255.0), torch.from_numpy(label_array)


def notmnist(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images of the registered ``notmnist`` dataset; see :func:`read_letter_folder`."""
    return read_letter_folder(require_dataset("notmnist") / "notMNIST_large", n, seed)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:
        named: dict[str, Any] = dict(arrays)  # typed as savez's **kwds, which also hold its allow_pickle flag
        np.savez(handle, **named)


# ---------------------------------------------------------------------------------------------
# CIFAR-100 (python pickles)


_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    ImportError,
)
"""What :func:`pickle.load` raises on a truncated or damaged file, or one that is no pickle."""


def _unpickle(path: Path, keys: Sequence[bytes]) -> dict[bytes, Any]:
    """The dict pickled in ``path`` (Python 2 strings as bytes); a file that is not such a pickle (truncated,
    damaged, another format) or lacks one of ``keys`` is a :class:`DatasetFormatError` naming it."""
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle, encoding="bytes")
    except FileNotFoundError:
        raise
    except _UNPICKLING_ERRORS as err:
        raise DatasetFormatError(f"{path}: not a readable CIFAR-100 pickle ({type(err).__name__}: {err})") from None
    missing = [key.decode() for key in keys if not isinstance(content, dict) or key not in content]
    if missing:
        raise DatasetFormatError(f"{path}: the pickle lacks the published key(s) {missing}")
    return content


def _cifar100_batch(path: Path, n_fine: int, n_coarse: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(images (N, 3, 32, 32) uint8, fine (N,), coarse (N,))`` of the batch pickle at ``path``.

    Images and both label lists are indexed by the same rows downstream, so their lengths must agree
    (a batch with fewer labels than images would pair images with other images' labels); the labels
    must be classes of ``meta``.
    """
    batch = _unpickle(path, (b"data", b"fine_labels", b"coarse_labels"))
    data, fine_list, coarse_list = batch[b"data"], batch[b"fine_labels"], batch[b"coarse_labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", type(data).__name__)
        raise DatasetFormatError(f"{path}: data must be a uint8 array of N rows of 3072 bytes, got {shape}")
    if not len(data) == len(fine_list) == len(coarse_list):
        raise DatasetFormatError(
            f"{path}: {len(data)} images but {len(fine_list)} fine_labels and {len(coarse_list)} coarse_labels"
        )
    try:
        fine = torch.tensor(fine_list, dtype=torch.int64)
        coarse = torch.tensor(coarse_list, dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DatasetFormatError(f"{path}: labels must be lists of integers ({err})") from None
    for what, labels, n in (("fine_labels", fine, n_fine), ("coarse_labels", coarse, n_coarse)):
        bad = ((labels < 0) | (labels >= n)).nonzero()
        if len(bad):
            row = int(bad[0])
            raise DatasetFormatError(f"{path}: {what}[{row}] = {int(labels[row])}, expected 0 to {n - 1}")
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), fine, coarse


def _class_names(path: Path, names: Any) -> list[str]:
    """The class names of a CIFAR-100 ``meta`` list (bytes, as the published pickle has them, or str); anything
    else is a :class:`DatasetFormatError` naming ``path``."""
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetFormatError(f"{path}: the class names must be a non-empty list of strings, got {names!r:.80}")
    try:
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: a class name is not UTF-8 ({err})") from None


@lru_cache(maxsize=2)
def load_cifar100(root: Path) -> dict[str, Any]:
    """CIFAR-100 from ``root/cifar-100-python``.

    Returns ``train`` and ``test`` as ``(images (N, 3, 32, 32) uint8, fine (N,), coarse (N,))``,
    ``fine_names`` and ``coarse_names`` (lists of str), and ``fine_to_coarse`` (100,): the
    superclass of every fine class, read off the train batch's ``coarse_labels``; the test batch's
    ``coarse_labels`` must agree with it.  Every file is checked first (:func:`_cifar100_batch`): a
    malformed one is a :class:`DatasetFormatError` naming it.
    """
    folder = root / "cifar-100-python"
    meta = _unpickle(folder / "meta", (b"fine_label_names", b"coarse_label_names"))
    out: dict[str, Any] = {
        f"{kind}_names": _class_names(folder / "meta", meta[f"{kind}_label_names".encode()])
        for kind in ("fine", "coarse")
    }
    for split in ("train", "test"):
        out[split] = _cifar100_batch(folder / split, len(out["fine_names"]), len(out["coarse_names"]))
    _, fine, coarse = out["train"]
    try:
        out["fine_to_coarse"] = fine_to_coarse_map(fine, coarse, len(out["fine_names"]))
    except DatasetFormatError as err:
        raise DatasetFormatError(f"{folder / 'train'}: {err}") from None
    _, test_fine, test_coarse = out["test"]
    wrong = (out["fine_to_coarse"][test_fine] != test_coarse).nonzero()
    if len(wrong):
        row = int(wrong[0])
        raise DatasetFormatError(
            f"{folder / 'test'}: coarse_labels[{row}] = {int(test_coarse[row])}, but fine class "
            f"{int(test_fine[row])} is in superclass {int(out['fine_to_coarse'][test_fine[row]])} in the train batch"
        )
    return out


def fine_to_coarse_map(fine: Tensor, coarse: Tensor, n_fine: int) -> Tensor:
    """``map[f]`` = the one coarse label that co-occurs with fine label ``f``; an error if not unique."""
    mapping = torch.full((n_fine,), -1, dtype=torch.int64)
    for f in range(n_fine):
        seen = coarse[fine == f].unique()
        if len(seen) != 1:
            raise DatasetFormatError(f"CIFAR-100 fine class {f} has coarse labels {seen.tolist()}, expected one")
        mapping[f] = seen[0]
    return mapping


# ---------------------------------------------------------------------------------------------
# CelebA (aligned JPEG folder + attribute and partition lists)


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], Tensor]:
    """``(file names, the 40 attribute names, attributes (N, 40) in {0, 1})`` of ``list_attr_celeba.txt``.

    Every row must be a file name and one ``-1`` or ``1`` per attribute, and there must be as many rows as
    line 1 says; anything else is a :class:`DatasetFormatError` naming the file and line.
    """
    lines = dataset_lines(path)
    if len(lines) < 2 or not lines[0].strip().isdigit():
        first = lines[0].strip() if lines else ""
        raise DatasetFormatError(
            f"{path}, line 1: expected the number of images, then the attribute names; got {first!r}"
        )
    count, names = int(lines[0]), lines[1].split()
    files, values = [], []
    for number, line in enumerate(lines[2:], start=3):
        row = line.split()
        if not row:
            continue
        if len(row) != len(names) + 1 or any(v not in ("-1", "1") for v in row[1:]):
            raise DatasetFormatError(
                f"{path}, line {number}: expected a file name and {len(names)} values -1 or 1, got {line[:80]!r}"
            )
        files.append(row[0])
        values.append([v == "1" for v in row[1:]])
    if len(files) != count:
        raise DatasetFormatError(f"{path}: line 1 says {count} images, the file lists {len(files)}")
    return files, names, torch.tensor(values, dtype=torch.int64).reshape(len(files), len(names))


def read_celeba_partition(path: Path) -> dict[str, int]:
    """``file name -> 0 (train), 1 (val) or 2 (test)`` of ``list_eval_partition.txt``; a row that is not a
    file name and one of those codes is a :class:`DatasetFormatError` naming the file and line."""
    codes = {str(k): k for k in CELEBA_PARTITIONS.values()}
    partition = {}
    for number, line in enumerate(dataset_lines(path), start=1):
        row = line.split()
        if not row:
            continue
        if len(row) != 2 or row[1] not in codes:
            raise DatasetFormatError(
                f"{path}, line {number}: expected a file name and a partition {sorted(codes)}, got {line[:80]!r}"
            )
        partition[row[0]] = codes[row[1]]
    return partition


def celeba_partition_codes(files: Sequence[str], partition: dict[str, int], path: Path) -> Tensor:
    """The partition code of every file in ``files`` (the attribute list's order); an image that
    ``partition`` (read from ``path``) does not list is a :class:`DatasetFormatError` naming it."""
    missing = [f for f in files if f not in partition]
    if missing:
        raise DatasetFormatError(
            f"{path}: no partition for {len(missing)} image(s) of list_attr_celeba.txt, the first {missing[0]}"
        )
    return torch.tensor([partition[f] for f in files], dtype=torch.int64)


class LazyImageFolder:
    """RGB images read from disk only when indexed: ``folder[idx] -> (len(idx), 3, size, size)`` in ``[0, 1]``.

    Each image is center-cropped to a square (CelebA's 178x178 faces -> 178x178) and
    resized to ``size`` x ``size`` with bilinear interpolation; the result is the resized
    ``uint8`` pixels (:meth:`read_bytes`) divided by 255 in float32.  A batch is decoded by
    ``workers`` threads (PIL releases the GIL while decoding); the order is kept.
    """

    def __init__(self, folder: Path, files: Sequence[str], size: int = 64, workers: int | None = None):
        self.folder, self.files, self.size = folder, list(files), size
        self.workers = workers or min(8, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Tensor | slice) -> Tensor:
        return self.read_bytes(index).float().div_(255.0)

    def read_bytes(self, index: Tensor | slice) -> Tensor:
        """The decoded, cropped and resized images ``(len(index), 3, size, size)`` as ``uint8``."""
        rows = range(len(self))[index] if isinstance(index, slice) else torch.as_tensor(index).reshape(-1).tolist()
        names = [self.files[i] for i in rows]
        if self.workers == 1 or len(names) < 2 * self.workers:
            return torch.stack([self._decode(n) for n in names])
        with ThreadPoolExecutor(self.workers) as pool:
            return torch.stack(list(pool.map(self._decode, names)))

    def _decode(self, name: str) -> Tensor:
        """One image, cropped and resized; one that cannot be read or decoded (missing, truncated, not an
        image) is a :class:`DatasetFormatError` naming it."""
        try:
            with Image.open(self.folder / name) as image:
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError and truncation are OSErrors
            raise DatasetFormatError(f"{self.folder / name}: cannot be read as an image ({err})") from None
        width, height = rgb.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        square = rgb.crop((left, top, left + side, top + side)).resize(
            (self.size, self.size), Image.Resampling.BILINEAR
        )
        return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1)

    def source_key(self) -> str:
        """A checksum of what the decoded images depend on: the image size, the decoding rule, and
        every file's name and byte size, in order (a replaced or added file changes it)."""
        digest = hashlib.sha256(f"center-crop bilinear uint8 v1; size {self.size}".encode())
        for name in self.files:
            digest.update(f"\n{name} {(self.folder / name).stat().st_size}".encode())
        return digest.hexdigest()[:16]


def decoded_image_cache(folder: LazyImageFolder, cache_dir: Path, chunk: int = 2048) -> ArrayView:
    """``folder``'s images decoded once into ``cache_dir/decoded-<size>px-<key>.npy`` and served from there.

    The file is a ``uint8`` array ``(N, 3, size, size)`` (12 KiB per 64x64 image; CelebA's
    202,599 images take 2.5 GB) named by :meth:`LazyImageFolder.source_key`, written
    atomically in chunks of ``chunk`` images (a killed build leaves no cache), and read
    memory-mapped (copy-on-write, so nothing is ever written back): processes reading one
    cache share its pages, and indexing returns exactly ``folder[idx]`` (the same bytes / 255).
    A cache that cannot be read as an array of that shape is rebuilt.  A build that fails (an image that cannot
    be decoded) leaves nothing behind: no file, and no ``cache_dir`` if it created it.
    """
    shape = (len(folder), 3, folder.size, folder.size)
    path = cache_dir / f"decoded-{folder.size}px-{folder.source_key()}.npy"
    images = _open_cache(path, shape)
    if images is None:

        def write(tmp: Path) -> None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            for start in range(0, len(folder), chunk):
                array[start : start + chunk] = folder.read_bytes(slice(start, start + chunk)).numpy()
            array.flush()
            del array

        created = not cache_dir.exists()
        try:
            atomic_write(path, write)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):  # not empty: another process's cache is in it
                    cache_dir.rmdir()
            raise
        images = _open_cache(path, shape)
        if images is None:
            raise DatasetFormatError(f"{path}: the decoded-image cache just written cannot be read back")
    return unit_interval_images(torch.from_numpy(images))


def _open_cache(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The memory-mapped cache at ``path`` if it holds a ``uint8`` array of ``shape``, else None."""
    try:
        images = np.load(path, mmap_mode="c")
    except (OSError, ValueError):
        return None
    return images if images.dtype == np.uint8 and images.shape == shape else None
