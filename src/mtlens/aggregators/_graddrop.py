"""GradDrop: gradient sign dropout (Chen et al. 2020).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlens.aggregators._aggregator import Aggregate, RandomAggregator
from mtlens.registry import UnitInterval, validate_options


class GradDrop(RandomAggregator):
    r"""GradDrop (Chen et al., NeurIPS 2020, "Just Pick a Sign: Optimizing Deep Multitask
    Models with Gradient Sign Dropout", Alg. 1, lines 10-15), on the parameter gradients.

    Per coordinate, the positive sign purity ``P = (1 + sum_k g_k / sum_k |g_k|) / 2``
    (``1/2`` where all gradients are 0); draw ``U ~ Uniform(0, 1)``; task ``k`` keeps its
    coordinate if it is positive and ``P > U`` or negative and ``P < U`` (mask ``m_k``).
    Update ``sum_k (l_k + (1 - l_k) m_k) g_k`` with leak ``l_k`` (default 0, the paper's
    plain GradDrop).  The paper applies it to gradients at a shared activation layer
    summed over the batch; here it acts on the shared-parameter gradients (as torchjd).
    """

    @validate_options
    def __init__(self, generator: torch.Generator, leak: UnitInterval | list[UnitInterval] = 0.0):
        super().__init__(generator)
        self.leak = leak

    def _aggregate(self, matrix: Tensor) -> Aggregate:
        k = matrix.shape[0]
        leak = torch.as_tensor(
            [self.leak] * k if isinstance(self.leak, (int, float)) else self.leak,
            dtype=matrix.dtype,
            device=matrix.device,
        )
        if leak.shape != (k,):
            raise ValueError(f"leak has {leak.numel()} entries for {k} tasks")
        magnitude = matrix.abs().sum(dim=0)
        ratio = matrix.sum(dim=0) / magnitude.clamp_min(torch.finfo(matrix.dtype).tiny)
        purity = 0.5 * (1.0 + torch.where(magnitude > 0, ratio, torch.zeros_like(ratio)))
        uniform = torch.rand(matrix.shape[1], generator=self.generator, dtype=matrix.dtype).to(matrix.device)
        keep = ((purity > uniform) & (matrix > 0)) | ((purity < uniform) & (matrix < 0))
        update = ((leak[:, None] + (1 - leak[:, None]) * keep.to(matrix.dtype)) * matrix).sum(dim=0)
        return Aggregate(update, None)
