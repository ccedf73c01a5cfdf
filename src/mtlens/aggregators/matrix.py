r"""Gradient aggregators: pure maps from the (K x P) task-gradient matrix ``G`` to a P-vector.

Row ``k`` of ``G`` is ``g_k = nabla_theta L_k`` on the shared parameters.  Most methods
return a linear combination ``G^T w`` whose task weights ``w`` depend on ``G`` only through
its Gram matrix ``M = G G^T`` (``M_ij = g_i . g_j``); they subclass
:class:`GramianAggregator` and report ``w``.  GradDrop mixes coordinates and has no
weights.  Each class states its formula, its hyperparameters with the source paper's
defaults, and how it treats degenerate input.  Formulas, costs and references are
collected in ``docs/methods.md``.

Every aggregator raises :class:`NonFiniteGradientError` on a NaN/inf entry (naming the
rows) instead of returning a NaN update, and returns a defined finite update for zero,
identical and single (K = 1) gradients.  Random aggregators draw from the explicit
``torch.Generator`` they are given (PCGrad, GradVac, GradDrop, RGW); stateful ones
(GradVac, Nash-MTL, and the random ones' generators) expose ``state_dict`` /
``load_state_dict`` so a resumed run continues exactly.

Each class also declares what it guarantees (:attr:`Aggregator.scale_degree`,
:attr:`Aggregator.permutation_invariant`, :attr:`Aggregator.task_scale_invariant`,
:meth:`Aggregator.conflict_bound`); ``tests/test_aggregator_properties.py`` checks these
claims for every method in the registry, so a newly registered aggregator is tested for
what it declares.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import NonNegativeFloat, PositiveInt
from torch import Tensor

from mtlens.aggregators.solvers import cagrad_dual_weights, dual_cone_weights, min_norm_weights, nash_bargaining_weights
from mtlens.registry import UnitInterval, validate_options


class NonFiniteGradientError(FloatingPointError):
    """A task gradient contains NaN or inf; no update is computed from it."""


@dataclass(frozen=True)
class Aggregate:
    """``update`` (P,) to apply to the shared parameters, and the task ``weights`` (K,)
    with ``update = weights @ G`` where the method is a linear combination (else ``None``)."""

    update: Tensor
    weights: Tensor | None


def check_gradient_matrix(matrix: Tensor, task_names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` unless ``matrix`` is (K >= 1, P), and
    :class:`NonFiniteGradientError` naming the tasks whose rows are not finite."""
    if matrix.dim() != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected a (K, P) task-gradient matrix with K >= 1, got shape {tuple(matrix.shape)}")
    finite_rows = torch.isfinite(matrix).all(dim=1)
    if not bool(finite_rows.all()):
        bad = [int(k) for k in (~finite_rows).nonzero().flatten()]
        names = [task_names[k] for k in bad] if task_names is not None else bad
        raise NonFiniteGradientError(f"non-finite (NaN or inf) gradient for task(s) {names}; refusing to aggregate")


class Aggregator(ABC):
    """Maps ``G (K, P)`` to an update ``(P,)``; call it, or :meth:`aggregate` for the weights too.

    The attributes below state the method's guarantees (up to rounding; random methods for
    equal generator states; a subclass whose guarantee depends on its options sets them in
    ``__init__``), checked for every registered method by the property tests:
    """

    scale_degree: int | None = 1
    """``update(a G) = a ** scale_degree * update(G)`` for every ``a > 0`` (``None``: no claim)."""

    permutation_invariant: bool = True
    """Reordering the tasks (rows of ``G``) leaves the update unchanged and permutes the weights."""

    task_scale_invariant: bool = False
    """Scaling each task's gradient by its own factor ``s_k > 0`` leaves the update unchanged."""

    def __call__(self, matrix: Tensor) -> Tensor:
        return self.aggregate(matrix).update

    def aggregate(self, matrix: Tensor) -> Aggregate:
        check_gradient_matrix(matrix)
        return self._aggregate(matrix)

    @abstractmethod
    def _aggregate(self, matrix: Tensor) -> Aggregate:
        """The method itself, on a checked finite matrix."""

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
        """A guaranteed lower bound ``(K,)`` on ``g_k . update`` given the Gram matrix and the
        weights the method returned (up to rounding), or ``None`` if the method does not
        claim to avoid conflicts.  ``0`` means the update never conflicts with a task."""
        del gram, weights
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class GramianAggregator(Aggregator):
    """``update = G^T w`` with weights ``w = weights(M)`` from the Gram matrix ``M = G G^T``.

    ``M`` is computed in ``G``'s dtype on its device (one K x K product, ``O(K^2 P)``), then
    the weights in float64 on the CPU; ``eps`` is the machine epsilon of ``G``'s dtype,
    for rank decisions.
    """

    def _aggregate(self, matrix: Tensor) -> Aggregate:
        gram = (matrix @ matrix.T).detach().to("cpu", torch.float64).numpy()
        weights = self.weights(gram, torch.finfo(matrix.dtype).eps)
        w = torch.as_tensor(weights, dtype=matrix.dtype).to(matrix.device)
        return Aggregate(w @ matrix, w)

    @abstractmethod
    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        """Task weights ``(K,)`` from the Gram matrix ``(K, K)``."""


class RandomAggregator(Aggregator):
    """An aggregator that draws from ``generator`` (a CPU ``torch.Generator``) and saves its state."""

    @validate_options
    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())


# -- linear scalarization ------------------------------------------------------------------
class Sum(GramianAggregator):
    r"""``sum_k g_k`` (linear scalarization, the paper's baseline with C = 1)."""

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        return np.ones(gram.shape[0])


class Mean(GramianAggregator):
    r"""``(1/K) sum_k g_k``."""

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        return np.full(gram.shape[0], 1.0 / gram.shape[0])


# -- projection methods -----------------------------------------------------------------
class PCGrad(RandomAggregator, GramianAggregator):
    r"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1).

    For each task ``i``: ``g_i^PC = g_i``; for ``j != i`` in random order, if
    ``g_i^PC . g_j < 0`` then ``g_i^PC -= (g_i^PC . g_j / ||g_j||^2) g_j``.  Update
    ``sum_i g_i^PC``.  No hyperparameters.  Computed in Gram space: ``g_i^PC = sum_k C_ik g_k``
    so ``g_i^PC . g_j = (C M)_ij``; the weights are ``1^T C``.  Without conflicts (all
    ``M_ij >= 0``) it equals the sum.  Zero gradients never conflict.  For each ``i`` the
    order is ``torch.randperm(K, generator)`` with ``i`` skipped (the convention of torchjd,
    so both agree for equal seeds).  The order is drawn by task index, so reordering the
    tasks changes which order a task gets (not permutation-invariant for a given generator).
    """

    permutation_invariant = False

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        total = np.zeros(k)
        for i in range(k):
            row = np.zeros(k)
            row[i] = 1.0
            for j in torch.randperm(k, generator=self.generator).tolist():
                if j == i:
                    continue
                inner = row @ gram[:, j]
                if inner < 0.0:
                    row[j] -= inner / gram[j, j]
            total += row
        return total


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


# -- min-norm and bargaining methods ------------------------------------------------------
class MGDA(GramianAggregator):
    r"""MGDA (Désidéri 2012; Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as
    Multi-Objective Optimization"): the minimum-norm point of the convex hull of the
    gradients, ``w = argmin_{w in simplex} ||G^T w||^2``, update ``G^T w``.

    Solved exactly (NNLS reformulation, :func:`~mtlens.aggregators.solvers.min_norm_weights`)
    rather than by the paper's Frank-Wolfe iterations.  ``normalization``: ``"none"``
    (default, the algorithm as stated) or ``"l2"`` (rows scaled to unit norm first, one of
    the options of the authors' code; the update is then a combination of unit gradients).
    The update is zero whenever 0 is in the hull (a zero gradient, or opposite gradients):
    the point is Pareto-stationary.  The update ``d`` never conflicts: ``g_k . d >= ||d||^2``
    for every task (optimality of the projection of 0 onto the hull).  With ``"l2"`` it is
    unchanged when a task's gradient is scaled (and so of scale degree 0).
    """

    @validate_options
    def __init__(self, normalization: Literal["none", "l2"] = "none"):
        self.normalization = normalization
        self.task_scale_invariant = normalization == "l2"
        self.scale_degree = 0 if normalization == "l2" else 1

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        return np.zeros(gram.shape[0])

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        if self.normalization == "none":
            return min_norm_weights(gram)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return min_norm_weights(gram * np.outer(scale, scale)) * scale


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


class CAGrad(GramianAggregator):
    r"""CAGrad (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent for Multi-task
    Learning", Alg. 1).

    ``d = argmax_d min_k g_k . d  s.t.  ||d - g_0|| <= c ||g_0||`` with ``g_0`` the mean
    gradient, via the dual ``w = argmin_{w in simplex} g_w . g_0 + c ||g_0|| ||g_w||``
    (``g_w = G^T w``): ``d = g_0 + (c ||g_0|| / ||g_w||) g_w``, then divided by
    ``1 + c^2`` (``rescale = 1``, the authors' default), ``1 + c`` (``rescale = 2``) or
    not (``rescale = 0``, torchjd's CAGrad).  ``c = 0.5`` (the authors' default); ``c = 0``
    gives the mean.  If ``g_w`` vanishes (0 in the hull) the update is ``g_0`` rescaled.
    The dual is solved on ``M / tr M`` (so the update is scale-equivariant) and certified by
    its duality gap (:func:`~mtlens.aggregators.solvers.cagrad_dual_weights`, which raises
    :class:`~mtlens.aggregators.solvers.SolverError` rather than return an uncertified
    update).
    """

    @validate_options
    def __init__(self, c: NonNegativeFloat = 0.5, rescale: Literal[0, 1, 2] = 1):
        self.c, self.rescale = c, rescale

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        weights = np.full(k, 1.0 / k)
        mean_norm = math.sqrt(max(weights @ gram @ weights, 0.0))
        if self.c > 0 and mean_norm > 0:
            dual = cagrad_dual_weights(gram, self.c)
            dual_norm = math.sqrt(max(dual @ gram @ dual, 0.0))
            if dual_norm > 1e-12 * mean_norm:
                weights = weights + (self.c * mean_norm / dual_norm) * dual
        return weights / {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]


class UPGrad(GramianAggregator):
    r"""UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"):
    the mean of the projections of every ``g_k`` onto the dual cone ``{x : G x >= 0}``,
    ``(1/K) sum_k pi(g_k)``, so the update has a non-negative inner product with every
    task gradient.

    Projection weights: ``v_k = argmin_{v >= e_k / K} v^T M' v`` (Prop. 1), solved exactly by
    NNLS (:func:`~mtlens.aggregators.solvers.dual_cone_weights`); weights ``w = sum_k v_k``.
    As in torchjd (the reference implementation) the Gram matrix is normalised and
    regularised, ``M' = M / tr(M) + reg_eps I``, which makes the weights independent of the
    gradients' scale.  Guarantee (from the KKT conditions ``M' v_k >= 0``): every task gets
    ``g_j . update >= -reg_eps w_j tr(M)`` — no conflict with ``reg_eps = 0`` (the exact
    projection), a conflict of at most ``reg_eps w_j`` in units of ``tr(M)`` with the
    default ``reg_eps = 1e-4`` (torchjd's).  ``norm_eps``: torchjd's absolute threshold
    (there ``1e-4``) below which ``tr(M)`` is treated as 0 and ``M' = reg_eps I``, which
    turns UPGrad into the plain mean — conflicting, and not scale-equivariant — for
    gradients with ``sum_k ||g_k||^2 < norm_eps``, i.e. late in training; the default 0
    applies the normalisation whenever ``tr(M) > 0`` (all-zero gradients give a zero update).
    """

    @validate_options
    def __init__(self, norm_eps: NonNegativeFloat = 0.0, reg_eps: NonNegativeFloat = 1e-4):
        self.norm_eps, self.reg_eps = norm_eps, reg_eps

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        trace = np.trace(gram)
        normalized = gram / trace if trace >= self.norm_eps and trace > 0 else np.zeros_like(gram)
        regularized = normalized + self.reg_eps * np.eye(k)
        weights = np.zeros(k)
        for i in range(k):
            weights = weights + dual_cone_weights(regularized, np.eye(k)[i] / k)
        return weights

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
        if np.trace(gram) < self.norm_eps:
            return None  # below norm_eps UPGrad is the mean, which may conflict
        assert weights is not None
        return -self.reg_eps * np.trace(gram) * weights


# -- random methods ----------------------------------------------------------------------
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
