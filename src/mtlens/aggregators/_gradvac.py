"""Gradient Vaccine (Wang et al. 2021).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import NonNegativeFloat

from mtlens.aggregators._aggregator import GramianAggregator, RandomAggregator
from mtlens.registry import UnitInterval, validate_options


class GradVac(RandomAggregator, GramianAggregator):
    r"""Gradient Vaccine (Wang et al., ICLR 2021, "Gradient Vaccine: Investigating and
    Improving Multi-task Optimization in Massively Multilingual Models", Alg. 1), on the
    whole shared-parameter vector.

    Keeps EMA targets ``phi_hat_ij`` (start 0).  For each ``i``, for ``j != i`` in random
    order: ``phi_ij = cos(g_i^PC, g_j)``; if ``phi_ij < phi_hat_ij``,
    ``g_i^PC += ||g_i^PC|| (phi_hat_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phi_hat_ij^2)) /
    (||g_j|| sqrt(1 - phi_hat_ij^2)) g_j`` (which sets the cosine to ``phi_hat_ij``); then
    ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij``.  Update ``sum_i g_i^PC``.

    ``beta = 0.01`` (the paper's EMA rate; LibMTL and torchjd default to 0.5).  The cosines
    ``phi_ij`` are clipped to ``[-1 + delta, 1 - delta]`` before use, ``delta = 64 eps_G``
    (``eps_G`` the machine epsilon of ``G``'s dtype: cosines closer to +-1 than that are
    rounding), so the targets stay inside: rounding of exactly (anti)parallel gradients
    otherwise pushes ``phi_hat`` to or past 1, where ``sqrt(1 - phi_hat^2)`` vanishes, and the
    next cosine that rounds a little lower is "corrected" by a huge multiple of ``g_j`` (the
    update exploded to 1e9 times the gradients in float32).  Exactly (anti)parallel
    gradients then get no correction after the first steps.  A pair is left uncorrected
    when ``||g_j|| sqrt(1 - phi_hat_ij^2) + eps`` is 0 (a zero gradient); a zero gradient
    has ``phi = 0``.  ``eps`` (default 0, so the method is scale-equivariant) is added to the
    norm denominators as in the authors' code and torchjd (both use 1e-8, an absolute
    value that halves the cosines of gradients with norms near 1e-4).  State: ``phi_hat``
    (K x K) and the generator.  The visiting order is ``torch.randperm(K - 1, generator)``
    over the other tasks (torchjd's convention), by task index (not permutation-invariant
    for a given generator).
    """

    permutation_invariant = False
    cosine_resolution: ClassVar[float] = 64.0
    """``delta / eps_G``: cosines within ``delta`` of +-1 are clipped to +-(1 - delta)."""

    @validate_options
    def __init__(self, generator: torch.Generator, beta: UnitInterval = 0.01, eps: NonNegativeFloat = 0.0):
        super().__init__(generator)
        self.beta, self.eps = beta, eps
        self.phi_hat: np.ndarray | None = None

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        if self.phi_hat is None:
            self.phi_hat = np.zeros((k, k))
        if self.phi_hat.shape != (k, k):
            raise ValueError(f"GradVac was used with {self.phi_hat.shape[0]} tasks and now gets {k}")
        coefficients = np.eye(k)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        bound = 1.0 - self.cosine_resolution * eps
        for i in range(k):
            others = [j for j in range(k) if j != i]
            for position in torch.randperm(k - 1, generator=self.generator).tolist():
                j = others[position]
                inner = coefficients[i] @ gram[:, j]
                norm_i = math.sqrt(max(coefficients[i] @ gram @ coefficients[i], 0.0))
                denominator = norm_i * norms[j] + self.eps
                phi = min(max(inner / denominator, -bound), bound) if denominator > 0 else 0.0
                target = self.phi_hat[i, j]
                root_target = math.sqrt(max(1.0 - target * target, 0.0))
                scale = norms[j] * root_target + self.eps
                if phi < target and scale > 0:
                    root_phi = math.sqrt(max(1.0 - phi * phi, 0.0))
                    coefficients[i, j] += norm_i * (target * root_phi - phi * root_target) / scale
                self.phi_hat[i, j] = (1.0 - self.beta) * target + self.beta * phi
        return coefficients.sum(axis=0)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.phi_hat is not None:
            state["phi_hat"] = torch.from_numpy(self.phi_hat.copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.phi_hat = state["phi_hat"].cpu().numpy().copy() if "phi_hat" in state else None
