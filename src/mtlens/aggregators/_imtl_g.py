"""IMTL-G: equal projections on every unit gradient (Liu et al. 2021).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np

from mtlens.aggregators._aggregator import GramianAggregator


class IMTLG(GramianAggregator):
    r"""IMTL-G (Liu et al., ICLR 2021, "Towards Impartial Multi-task Learning", gradient
    balance): weights ``w`` with ``sum_k w_k = 1`` such that the update ``d = G^T w`` has
    equal projections ``u_k . d`` on every unit gradient ``u_k = g_k / ||g_k||``.

    ``u_k . d = (M w)_k / ||g_k||`` is constant iff ``M w ∝ n`` (``n_k = ||g_k||``), so
    ``w = M^+ n / 1^T M^+ n`` — the paper's closed form ``alpha = g_1 U^T (D U^T)^{-1}`` when
    ``M`` is invertible, and defined for dependent gradients through the pseudo-inverse
    (the generalisation of Quinton & Rey 2024).  ``w = 0`` (zero update) when
    ``|1^T M^+ n| < 1e-12`` (e.g. all gradients zero).  No hyperparameters.
    """

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        v = np.linalg.pinv(gram, rcond=gram.shape[0] * eps, hermitian=True) @ norms
        total = v.sum()
        return np.zeros_like(v) if abs(total) < 1e-12 else v / total
