"""Small exact solvers on the (K x K) Gram matrix ``M = G G^T`` of the task gradients.

Every gradient aggregator that combines the rows of ``G`` linearly only needs ``M``:
``||G^T w||^2 = w^T M w``.  The problems below are solved in float64 on the CPU (K is
small).  The min-norm and dual-cone problems are solved exactly (NNLS, up to floating-point
rounding); CAGrad's dual is solved iteratively and its answer certified by its duality gap;
Nash-MTL's equation by Newton's method to a stated residual.  Tests compare them with
independent solvers (cvxpy).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, nnls


def gram_factor(gram: np.ndarray) -> np.ndarray:
    """A (K x K) matrix ``R`` with ``R^T R = M`` (``M`` symmetric PSD, tiny negative
    eigenvalues from rounding clipped to zero), so ``w^T M w = ||R w||^2``."""
    eigenvalues, eigenvectors = np.linalg.eigh((gram + gram.T) / 2)
    return np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * eigenvectors.T


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """``argmin_{w in simplex} w^T M w``: weights of the minimum-norm point of the
    convex hull of the task gradients (MGDA).

    Solved exactly with non-negative least squares: the minimiser ``u >= 0`` of
    ``||G^T u||^2 + (1^T u - 1)^2`` is ``u = w* / (1 + m*)`` (``m*`` the optimal value of the
    simplex problem, since for ``1^T u = s`` the first term is at least ``s^2 m*``), so
    ``w* = u / 1^T u``; ``1^T u > 0`` always.
    """
    k = gram.shape[0]
    design = np.vstack([gram_factor(gram), np.ones((1, k))])
    target = np.zeros(k + 1)
    target[-1] = 1.0
    u, _ = nnls(design, target, maxiter=50 * (k + 1))
    return u / u.sum()


def dual_cone_weights(gram: np.ndarray, preference: np.ndarray) -> np.ndarray:
    """``argmin_{v >= u} v^T M v`` for ``u = preference``: the weights ``v`` with
    ``G^T v`` the projection of ``G^T u`` onto the dual cone ``{x : G x >= 0}``
    (Quinton & Rey 2024, Prop. 1).  With ``v = u + z``, ``z >= 0``, this is the NNLS
    problem ``min_z ||R z + R u||``."""
    factor = gram_factor(gram)
    z, _ = nnls(factor, -factor @ preference, maxiter=50 * (gram.shape[0] + 1))
    return preference + z


class SolverError(ArithmeticError):
    """A small problem on the Gram matrix could not be solved to its stated accuracy."""


CAGRAD_GAP_TOLERANCE = 1e-6
"""Largest duality gap accepted for CAGrad's dual, in units of ``tr M`` (the problem is solved on
``M / tr M``).  SLSQP's answers have gaps below ~1e-9 on generic and mixed-norm Gram matrices and
~1e-8 on nearly parallel gradients (a flat objective); its uniform start, where it used to stop
on badly scaled input, is off by far more."""


def cagrad_dual_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """``argmin_{w in simplex} w^T M 1/K + c ||g_0|| sqrt(w^T M w)`` (CAGrad's dual,
    Liu et al. 2021, eq. 5), with ``||g_0||^2 = 1^T M 1 / K^2``.

    The objective is homogeneous of degree 1 in ``M``, so the minimiser is that of the same
    problem on ``M / tr M``: solved there, it does not depend on the gradients' scale.  SLSQP
    (the authors' solver) runs from the uniform weights with the analytic gradient, and its
    answer is certified by the duality gap of CAGrad's primal/dual pair: with
    ``g_w = G^T w`` and ``d(w) = g_0 + c ||g_0|| g_w / ||g_w||`` (feasible for the primal
    ``max_d min_k g_k . d``, ``||d - g_0|| <= c ||g_0||``), the gap
    ``dual(w) - min_k g_k . d(w) >= 0`` vanishes exactly at the optimum.  If SLSQP reports
    failure or the gap exceeds :data:`CAGRAD_GAP_TOLERANCE`, it is restarted from every
    vertex of the simplex and the best certified answer is kept; if none is certified,
    :class:`SolverError` is raised (no uncertified update is returned).
    """
    k = gram.shape[0]
    uniform = np.full(k, 1.0 / k)
    trace = float(np.trace(gram))
    if not trace > 0:
        return uniform
    scaled = gram / trace
    mean_direction = scaled @ uniform
    radius = c * np.sqrt(max(uniform @ mean_direction, 0.0))
    tiny = 1e-30

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = scaled @ w
        norm = np.sqrt(max(w @ gw, 0.0) + tiny)
        return float(w @ mean_direction + radius * norm), mean_direction + radius * gw / norm

    def duality_gap(w: np.ndarray) -> float:
        gw = scaled @ w
        norm = np.sqrt(max(w @ gw, 0.0))
        dual = float(w @ mean_direction + radius * norm)
        # d(w) = g_0 + radius g_w / ||g_w||; with g_w = 0 any unit direction is allowed and
        # d = g_0 is a feasible lower bound
        products = mean_direction + (radius * gw / norm if norm > 0 else 0.0)
        return dual - float(np.min(products))

    def solve(start: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Weights, their duality gap, and whether SLSQP succeeded with a gap within tolerance."""
        result = minimize(
            objective,
            start,
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * k,
            constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},),
            options={"ftol": 1e-15, "maxiter": 500},
        )
        weights = np.clip(result.x, 0.0, None)
        weights = weights / weights.sum()
        gap = duality_gap(weights)
        return weights, gap, bool(result.success) and gap <= CAGRAD_GAP_TOLERANCE

    attempts = [solve(uniform)]
    if not attempts[0][2]:
        attempts += [solve(vertex) for vertex in np.eye(k)]
    weights, gap, _ = min(attempts, key=lambda attempt: attempt[1])
    if gap <= CAGRAD_GAP_TOLERANCE:
        return weights
    raise SolverError(
        f"CAGrad's dual problem was not solved: duality gap {gap:.3g} tr(M) after SLSQP from the "
        f"uniform weights and from every vertex (tolerance {CAGRAD_GAP_TOLERANCE:g}); "
        f"Gram matrix diagonal {np.diag(gram).tolist()}"
    )


def nash_bargaining_weights(gram: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """The ``alpha > 0`` with ``M alpha = 1 / alpha`` (elementwise): Nash-MTL's bargaining
    solution (Navon et al. 2022, Claim 3.1).

    It is the minimiser of the strictly convex ``f(a) = a^T M a / 2 - sum_k log a_k`` on
    ``a > 0`` (``grad f = M a - 1/a``, Hessian ``M + diag(1/a^2)``), found by damped Newton
    steps that stay in the positive orthant, until the relative residual
    ``||alpha * M alpha - 1||`` is below ``tol`` or rounding stops progress; then the last
    iterate is returned (never an error).  The attainable residual grows as the gradients
    approach a Pareto-stationary point (0 in their convex hull): for unit gradients whose
    hull's min-norm point has squared norm ``h`` (K = 2...10, measured) it stays below
    ~1e-5 for ``h >= 1e-9`` and reaches ~1e-2 at ``h = 1e-13`` (below ~``64 K eps``
    :class:`~mtlens.aggregators.NashMTL` treats the point as stationary).  ``f`` is bounded
    below exactly when no non-negative combination of the gradients vanishes (Gordan's alternative),
    which the caller checks;
    ``M`` may otherwise be singular (e.g. identical gradients).
    """
    k = gram.shape[0]
    alpha = 1.0 / np.sqrt(np.maximum(np.diag(gram), 1e-300) * k)

    def f(a: np.ndarray) -> float:
        return 0.5 * a @ gram @ a - np.log(a).sum()

    def residual(a: np.ndarray) -> float:
        return float(np.linalg.norm(a * (gram @ a) - 1.0))

    for _ in range(max_iter):
        if residual(alpha) < tol:
            break
        gradient = gram @ alpha - 1.0 / alpha
        step = np.linalg.solve(gram + np.diag(1.0 / alpha**2), -gradient)
        shrink = step < 0
        t = min(1.0, 0.99 * float(np.min(-alpha[shrink] / step[shrink]))) if shrink.any() else 1.0
        current = f(alpha)
        while f(alpha + t * step) > current + 0.25 * t * gradient @ step and t > 1e-12:
            t /= 2
        if t <= 1e-12:
            break
        alpha = alpha + t * step
    return alpha
