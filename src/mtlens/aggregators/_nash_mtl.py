"""Nash-MTL: the Nash bargaining solution (Navon et al. 2022).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import NonNegativeFloat, PositiveInt

from mtlens.aggregators._aggregator import GramianAggregator
from mtlens.aggregators.solvers import min_norm_weights, nash_bargaining_weights
from mtlens.registry import validate_options


class NashMTL(GramianAggregator):
    r"""Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game").

    The weights solve the bargaining condition ``M alpha = 1 / alpha`` (elementwise),
    ``alpha > 0``; update ``G^T alpha``, rescaled to norm ``max_norm`` if larger (the authors
    clip the shared gradient norm; ``0`` disables).  The solution is invariant to each
    task's gradient scale (``g_k -> s_k g_k`` gives ``alpha_k -> alpha_k / s_k``), so it is
    computed for the unit gradients ``u_k = g_k / ||g_k||`` (Gram matrix ``C_ij = M_ij /
    (||g_i|| ||g_j||)``, which also conditions the problem as the authors' normalisation by
    ``||M||_F`` does) and divided by the norms: a task with a small gradient gets a large
    weight, as the method prescribes, however small.  The update ``G^T alpha`` has norm
    ``sqrt(K)`` before clipping, whatever the gradients' scale (scale degree 0).  Solved by
    Newton's method on the equivalent convex problem
    (:func:`~mtlens.aggregators.solvers.nash_bargaining_weights`) instead of the paper's
    sequence of ``optim_niter = 20`` convex approximations.  Weights are recomputed every
    ``update_weights_every`` calls (default 1) and reused in between.

    Degenerate input: tasks with an exactly zero gradient get weight 0 and are left out of
    the game.  If a non-negative combination of the remaining gradients vanishes (0 in the
    convex hull of the ``u_k``, e.g. opposite gradients) no direction improves every task,
    the game has no solution, and the update is zero.  "Vanishes" is judged at the
    rounding level of ``G``'s dtype: the squared norm of the min-norm point of the ``u_k``'s
    hull at most ``64 K eps`` (``eps`` the machine epsilon of ``G``'s dtype; float32 Gram
    matrices of gradients that cancel exactly give about ``13 K eps`` at 10^6 parameters).
    Near that boundary rounding limits how well the bargaining equation can be met; the
    solver then returns its best iterate and never raises.  Every task improves:
    ``g_k . update = 1 / alpha_k > 0`` (times the clipping factor), or the update is 0.
    Defaults ``max_norm = 1.0``, ``update_weights_every = 1`` (the authors' code).
    """

    scale_degree = 0
    task_scale_invariant = True
    stationarity_tolerance: ClassVar[float] = 64.0
    """Multiple of ``K eps`` below which the hull's min-norm point counts as zero."""

    @validate_options
    def __init__(self, max_norm: NonNegativeFloat = 1.0, update_weights_every: PositiveInt = 1):
        self.max_norm, self.update_weights_every = max_norm, update_weights_every
        self.calls = 0
        self.alpha: np.ndarray | None = None

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        if self.alpha is None or self.calls % self.update_weights_every == 0 or len(self.alpha) != len(gram):
            self.alpha = self.bargaining_weights(gram, eps)
        self.calls += 1
        alpha = self.alpha.copy()
        norm = math.sqrt(max(alpha @ gram @ alpha, 0.0))
        if self.max_norm > 0 and norm > self.max_norm:
            alpha *= self.max_norm / norm
        return alpha

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        return np.zeros(gram.shape[0])

    @classmethod
    def bargaining_weights(cls, gram: np.ndarray, eps: float) -> np.ndarray:
        """``alpha`` with ``M alpha = 1/alpha`` on the tasks with non-zero gradients (0 elsewhere),
        or all zeros when 0 is in the convex hull of their unit gradients (``eps``: the machine
        epsilon of the gradients' dtype)."""
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        alpha = np.zeros(gram.shape[0])
        active = np.flatnonzero(norms > 0)
        if active.size == 0:
            return alpha
        unit = gram[np.ix_(active, active)] / np.outer(norms[active], norms[active])
        hull = min_norm_weights(unit)
        if hull @ unit @ hull <= cls.stationarity_tolerance * active.size * eps:
            return alpha
        alpha[active] = nash_bargaining_weights(unit) / norms[active]
        return alpha

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "alpha": None if self.alpha is None else torch.from_numpy(self.alpha.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])
        self.alpha = None if state["alpha"] is None else state["alpha"].cpu().numpy().copy()
