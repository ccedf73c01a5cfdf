"""Random gradient weighting (Lin et al. 2022).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np
import torch

from mtlens.aggregators._aggregator import GramianAggregator, RandomAggregator


class RGW(RandomAggregator, GramianAggregator):
    r"""Random gradient weighting (RGW; Lin et al., TMLR 2022, "Reasonable Effectiveness of
    Random Weighting: A Litmus Test for Multi-Task Learning", Alg. 2): ``w = softmax(z)``,
    ``z ~ N(0, I_K)`` drawn fresh each step; update ``G^T w``.  No hyperparameters (the
    paper's default normal distribution).  torchjd calls it ``Random``.  The draws are by
    task index (not permutation-invariant for a given generator).
    """

    permutation_invariant = False

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        z = torch.randn(gram.shape[0], generator=self.generator, dtype=torch.float64)
        return torch.softmax(z, dim=0).numpy()
