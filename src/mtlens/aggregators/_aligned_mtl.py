"""Aligned-MTL: orthogonal, equal-norm aligned gradients (Senushkin et al. 2023).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from mtlens.aggregators._aggregator import GramianAggregator
from mtlens.registry import validate_options


class AlignedMTL(GramianAggregator):
    r"""Aligned-MTL (Senushkin et al., CVPR 2023, "Independent Component Alignment for
    Multi-Task Learning", Alg. 1).

    With ``M = V diag(lambda) V^T`` restricted to its rank ``r`` (eigenvalues above
    ``max(lambda) K eps``), the balance transformation ``B = sqrt(lambda_R) V diag(lambda)^{-1/2} V^T``
    makes the aligned gradients ``B G`` orthogonal with equal squared norms ``lambda_R``
    (on the span of the gradients); the update is their sum ``1^T B G`` (weights ``B 1``,
    as in the authors' code; torchjd uses the mean).  ``scale_mode``: ``"min"`` (default,
    ``lambda_R`` = smallest non-zero eigenvalue), ``"median"`` or ``"rmse"`` (mean eigenvalue).
    Zero matrix: zero update.
    """

    @validate_options
    def __init__(self, scale_mode: Literal["min", "median", "rmse"] = "min"):
        self.scale_mode = scale_mode

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        return self.balance_transformation(gram, eps) @ np.ones(gram.shape[0])

    def balance_transformation(self, gram: np.ndarray, eps: float) -> np.ndarray:
        """``B`` (K x K); ``B G`` has Gram ``lambda_R P`` with ``P`` the projector on range(M)."""
        eigenvalues, eigenvectors = np.linalg.eigh((gram + gram.T) / 2)
        keep = eigenvalues > eigenvalues.max(initial=0.0) * len(gram) * eps
        if not keep.any():
            return np.zeros_like(gram)
        values, vectors = eigenvalues[keep], eigenvectors[:, keep]
        scale = {"min": values.min(), "median": float(np.median(values)), "rmse": values.mean()}[self.scale_mode]
        return math.sqrt(scale) * (vectors / np.sqrt(values)) @ vectors.T
