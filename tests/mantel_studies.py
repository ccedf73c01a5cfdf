"""Synthetic pairwise matrices of the grouping experiment's Mantel table (docs/grouping.md), shared by
tests/test_mantel.py and benchmarks/mantel_claim_rates.py."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pair_table(a: np.ndarray, t: np.ndarray) -> pd.DataFrame:
    """The ordered pairs of two ``(k, k)`` matrices as the affinity table has them."""
    k = len(a)
    cells = [(i, j) for i in range(k) for j in range(k) if i != j]
    return pd.DataFrame(
        {
            "source": [f"t{i}" for i, _ in cells],
            "target": [f"t{j}" for _, j in cells],
            "x": [a[i, j] for i, j in cells],
            "y": [t[i, j] for i, j in cells],
        }
    )


def structured_matrix(rng: np.random.Generator, k: int) -> np.ndarray:
    """A pairwise matrix with source, target and (symmetric) pair effects, as transfer and affinities have:
    ``i → j`` and ``j → i`` share their pair's runs, every ``· → j`` its target's STL run."""
    pair = rng.standard_normal((k, k))
    return (
        rng.standard_normal(k)[:, None]
        + 2 * rng.standard_normal(k)[None, :]
        + (pair + pair.T)
        + rng.standard_normal((k, k))
    )
