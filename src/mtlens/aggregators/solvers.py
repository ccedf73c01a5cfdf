"""Small exact solvers on the (K x K) Gram matrix ``M = G G^T`` of the task gradients.

Every gradient aggregator that combines the rows of ``G`` linearly only needs ``M``:
``||G^T w||^2 = w^T M w``.  The problems below are solved in float64 on the CPU (K is
small); they are exact up to floating-point rounding, not iterative approximations
with a stopping tolerance, so tests can compare them with independent QP solvers.
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


def cagrad_dual_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """``argmin_{w in simplex} w^T M 1/K + c ||g_0|| sqrt(w^T M w)`` (CAGrad's dual,
    Liu et al. 2021, eq. 5), with ``||g_0||^2 = 1^T M 1 / K^2``.

    Solved with SLSQP from the uniform start as in the authors' code, with the analytic
    gradient and a tight tolerance; the objective is convex.
    """
    k = gram.shape[0]
    mean_direction = gram @ np.full(k, 1.0 / k)
    radius = c * np.sqrt(max(np.full(k, 1.0 / k) @ mean_direction, 0.0))
    tiny = 1e-30

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = gram @ w
        norm = np.sqrt(max(w @ gw, 0.0) + tiny)
        return float(w @ mean_direction + radius * norm), mean_direction + radius * gw / norm

    result = minimize(
        objective, np.full(k, 1.0 / k), jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * k,
        constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},),
        options={"ftol": 1e-15, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def nash_bargaining_weights(gram: np.ndarray, tol: float = 1e-10, max_iter: int = 100,
                            accept: float = 1e-6) -> np.ndarray:
    """The ``alpha > 0`` with ``M alpha = 1 / alpha`` (elementwise): Nash-MTL's bargaining
    solution (Navon et al. 2022, Claim 3.1).

    It is the minimiser of the strictly convex ``f(a) = a^T M a / 2 - sum_k log a_k`` on
    ``a > 0`` (``grad f = M a - 1/a``, Hessian ``M + diag(1/a^2)``), found by damped Newton
    steps that stay in the positive orthant, until the relative residual
    ``||alpha * M alpha - 1||`` is below ``tol`` or rounding stops progress (then it must be
    below ``accept``).  ``f`` is bounded below exactly when no non-negative combination of
    the gradients vanishes (Gordan's alternative), which the caller checks; ``M`` may
    otherwise be singular (e.g. identical gradients).
    """
    k = gram.shape[0]
    alpha = 1.0 / np.sqrt(np.maximum(np.diag(gram), 1e-300) * k)

    def f(a: np.ndarray) -> float:
        return 0.5 * a @ gram @ a - np.log(a).sum()

    def residual(a: np.ndarray) -> float:
        return float(np.linalg.norm(a * (gram @ a) - 1.0))

    for _ in range(max_iter):
        if residual(alpha) < tol:
            return alpha
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
    if residual(alpha) < accept:
        return alpha
    raise ArithmeticError(f"Nash-MTL's bargaining equation did not converge (residual {residual(alpha):.3g})")
