"""The mean of the task gradients.

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np

from mtlens.aggregators._aggregator import GramianAggregator


class Mean(GramianAggregator):
    r"""``(1/K) sum_k g_k``."""

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        return np.full(gram.shape[0], 1.0 / gram.shape[0])
