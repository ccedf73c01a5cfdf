"""The sum of the task gradients (linear scalarization on ``G``).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np

from mtlens.aggregators._aggregator import GramianAggregator


class Sum(GramianAggregator):
    r"""``sum_k g_k`` (linear scalarization, the paper's baseline with C = 1)."""

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        return np.ones(gram.shape[0])
