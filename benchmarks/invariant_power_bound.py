"""The most power any paired test that holds its level on the skewed nulls can have: a Neyman–Pearson bound.

Not a speed benchmark: the evidence behind docs/statistics.md §3's onset-power reading (issue 23: "the onset
test's power is ≥ 0.9× the fixed-sequence reference").  ``skew_robust_ceiling.py`` searches families of tests;
this script bounds **every** test from above.  A test of "mean zero" from ``n`` paired differences that is
invariant under scale (as the sign flips, Student's t and Hall's test are) sees only ``u = d / ||d||``, whose
density on the unit sphere under a distribution ``f`` of the differences is ``∫_0^∞ f(r u) r^(n−1) dr``.  (A test
that is not scale-invariant cannot do better at every scale: the group of scalings is amenable, Hunt–Stein.)  If
such a test holds level ``alpha`` under every null member — the normal and the mean-zero shifted gammas
``(Gamma(k) − k) / sqrt(k)``, ``k = 4 / γ²``, of skewness ``±γ`` for ``γ`` in 0.25, 0.5, …, 2, the family the
report's paired test is calibrated on (docs/statistics.md §2) — it holds it under any mixture ``Λ`` of them,
so its power against the alternative is at most that of the Neyman–Pearson test of ``Λ`` against it
(Lehmann & Romano 2005, §3.8): for every ``Λ`` an upper bound, the tightest at the least-favourable
``Λ``.  The alternative is normal differences of mean ``± d_z`` sd (both signs equally: the tests are
two-sided).

Densities on the sphere: the alternative's in closed form, ``∫ exp(−r²/2 + b r) r^(n−1) dr =
Γ(n) exp(b²/4) D_−n(−b)`` with ``b = ± d_z Σ u_i`` (``scipy.special.pbdv``); the normal null's is a
constant; a shifted gamma's by Gauss–Legendre quadrature in ``log r`` up to the support's edge
``r < sqrt(k) / max(−u_i)``.  ``Λ`` is searched by multiplicative weights on the members' sizes (a member
over ``alpha`` gains weight) on one half of the samples; the bound is the Neyman–Pearson power at the
least-favourable ``Λ`` found, measured on the other half (threshold at ``alpha`` under ``Λ``), so the search's
selection does not bias it.  A ``Λ`` short of the least-favourable gives a bound that is still valid, only
looser.  Also printed, on the same alternative samples: the exact sign-flip test (the issue's reference)
and the report's Hall test at bound 2.

``--convolutions`` adds to the null the shape real runs' differences have (docs/statistics.md §2): normal run
noise plus a skewed seed effect, ``sqrt(2) z + k (E − 1)`` scaled to unit variance (both signs), whose density
is the exponentially modified Gaussian's in closed form (:func:`log_convolution`).  These have no edge to their
support, which the shifted gammas have and a Neyman–Pearson test against the gammas alone exploits; it also
prints Hall's test at the largest 95% point of ``|T_H|`` over the members (the test that holds 5% on them).

``.venv/bin/python benchmarks/invariant_power_bound.py --designs 8:1 [--convolutions]``
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import special
from skew_robust_ceiling import sign_flip_rejects, t_and_skewness  # this script's folder
from skewness_bound import draws

from mtlens.analysis.inference import hall_critical, hall_statistic

SKEWNESS = tuple(0.25 * i for i in range(1, 9))
"""``γ`` of the shifted-gamma members, each with both signs; with the normal, the family of §2."""

NODES, NODE_WEIGHTS = np.polynomial.legendre.leggauss(128)
"""Gauss–Legendre rule in ``log r`` for the shifted gammas' densities on the sphere."""

R_RANGE = (1e-2, 1e2)
"""Range of the radius ``r`` the quadrature covers (the data have unit variance, so ``||d|| ≈ sqrt(n)``)."""


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit norm: the maximal invariant of the scale group."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def log_alternative(u: np.ndarray, d_z: float) -> np.ndarray:
    """Log density on the sphere of ``n`` normal differences of mean ``+d_z`` or ``−d_z`` (each half)."""
    n = u.shape[1]
    logs = []
    for b in (d_z * u.sum(axis=1), -d_z * u.sum(axis=1)):
        cylinder, _ = special.pbdv(-n, -b)
        logs.append(special.gammaln(n) + b**2 / 4 + np.log(cylinder))
    return np.logaddexp(*logs) - math.log(2) - n * d_z**2 / 2 - n / 2 * math.log(2 * math.pi)


def log_normal(u: np.ndarray) -> np.ndarray:
    """Log density on the sphere of ``n`` standard normal values (uniform: a constant)."""
    n = u.shape[1]
    return np.full(u.shape[0], (n / 2 - 1) * math.log(2) + special.gammaln(n / 2) - n / 2 * math.log(2 * math.pi))


def log_shifted_gamma(u: np.ndarray, skewness: float, chunk: int = 1000) -> np.ndarray:
    """Log density on the sphere of ``n`` values ``(Gamma(k) − k) / sqrt(k)``, ``k = 4 / skewness²`` (the
    mirror image for negative ``skewness``): ``∫ Π_i sqrt(k) g_k(sqrt(k) r u_i + k) r^(n−1) dr``."""
    n, k = u.shape[1], 4 / skewness**2
    root, u = math.sqrt(k), u * math.copysign(1.0, skewness)
    largest_negative = np.max(-u, axis=1)
    edge = np.where(largest_negative > 0, root / np.maximum(largest_negative, 1e-300), np.inf)
    upper = np.log(np.clip(edge, R_RANGE[0], R_RANGE[1]))
    lower = math.log(R_RANGE[0])
    out = np.empty(u.shape[0])
    for start in range(0, u.shape[0], chunk):
        rows = slice(start, start + chunk)
        half = (upper[rows, None] - lower) / 2
        log_r = half * NODES + (upper[rows, None] + lower) / 2
        y = root * np.exp(log_r)[:, :, None] * u[rows, None, :] + k
        with np.errstate(divide="ignore"):
            log_g = np.where(y > 0, (k - 1) * np.log(np.maximum(y, 1e-300)) - y, -np.inf).sum(axis=2)
        out[rows] = special.logsumexp(log_g + n * log_r + np.log(NODE_WEIGHTS * half), axis=1)
    return out + n * (math.log(root) - special.gammaln(k))


CONVOLUTIONS = (2.0, 4.0, 6.0, 10.0)
"""``k`` of the convolution members ``sqrt(2) z + k (E − 1)`` (scaled to unit variance, both signs): the shape of
real runs' differences with a skewed seed effect (normal run noise plus the skewed effect), skewness
``2 k³ / (2 + k²)^1.5`` = 1.09 / 1.68 / 1.84 / 1.94 (docs/statistics.md §2)."""


def log_convolution(u: np.ndarray, k: float) -> np.ndarray:
    """Log density on the sphere of ``n`` values ``(sqrt(2) z + k (E − 1)) / sqrt(2 + k²)`` (the mirror image for
    negative ``k``): the exponentially modified Gaussian ``f(y) = (1 / |k|) exp(σ² / (2 k²) − (y + |k|) / |k|)
    Φ((y + |k|) / σ − σ / |k|)``, ``σ = sqrt(2)``, integrated over ``r`` by Gauss–Legendre in ``log r``."""
    n, scale, sigma = u.shape[1], math.sqrt(2 + k**2), math.sqrt(2.0)
    u, k = u * math.copysign(1.0, k), abs(k)
    half = (math.log(R_RANGE[1]) - math.log(R_RANGE[0])) / 2
    log_r = half * NODES + (math.log(R_RANGE[1]) + math.log(R_RANGE[0])) / 2
    y = scale * np.exp(log_r)[None, :, None] * u[:, None, :] + k
    log_f = -math.log(k) + sigma**2 / (2 * k**2) - y / k + special.log_ndtr(y / sigma - sigma / k)
    return special.logsumexp(log_f.sum(axis=2) + n * log_r + np.log(NODE_WEIGHTS * half), axis=1) + n * math.log(scale)


def members(convolutions: bool) -> list[tuple[str, float]]:
    """Null members as ``(kind, parameter)``: the normal, the shifted gammas by signed skewness and, with
    ``convolutions``, the :data:`CONVOLUTIONS` by signed ``k``."""
    gammas = [("gamma", s * g) for g in SKEWNESS for s in (1.0, -1.0)]
    sums = [("normal+exp", s * k) for k in CONVOLUTIONS for s in (1.0, -1.0)] if convolutions else []
    return [("normal", 0.0), *gammas, *sums]


def log_member(u: np.ndarray, member: tuple[str, float], chunk: int = 1000) -> np.ndarray:
    """Log density on the sphere of one null member."""
    kind, value = member
    if kind == "normal":
        return log_normal(u)
    if kind == "gamma":
        return log_shifted_gamma(u, value)
    return np.concatenate([log_convolution(u[i : i + chunk], value) for i in range(0, len(u), chunk)])


def draw(rng: np.random.Generator, member: tuple[str, float], size: tuple[int, int]) -> np.ndarray:
    """Mean-zero unit-variance draws of a null member (negative parameter: the mirror image)."""
    kind, value = member
    if kind == "normal+exp":
        k = abs(value)
        sums = math.sqrt(2) * rng.normal(size=size) + k * (rng.exponential(size=size) - 1)
        return math.copysign(1.0, value) * sums / math.sqrt(2 + k**2)
    return math.copysign(1.0, value) * draws(rng, abs(value), size)


def log_null(u: np.ndarray, null: list[tuple[str, float]]) -> np.ndarray:
    """``(members, samples)`` log densities on the sphere of every null member."""
    return np.array([log_member(u, member) for member in null])


class Samples:
    """Log-likelihood ratios' ingredients on one set of samples: the alternative's draws and each member's."""

    def __init__(self, rng: np.random.Generator, n: int, d_z: float, size: int, null: list[tuple[str, float]]) -> None:
        raw = rng.standard_normal((size, n)) + d_z * rng.choice([-1.0, 1.0], size=(size, 1))
        self.raw_alternative = raw
        alternative = unit(raw)
        self.alternative = (log_alternative(alternative, d_z), log_null(alternative, null))
        self.null_draws = []
        self.nulls = []
        for member in null:
            x = draw(rng, member, (size, n))
            self.null_draws.append(x)
            u = unit(x)
            self.nulls.append((log_alternative(u, d_z), log_null(u, null)))

    def test(self, weights: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
        """Power and per-member sizes of the Neyman–Pearson test of the mixture ``weights`` at ``alpha``."""
        log_w = np.log(np.maximum(weights, 1e-300))[:, None]
        ratios = [alt - special.logsumexp(members + log_w, axis=0) for alt, members in self.nulls]
        size = len(ratios[0])
        values = np.concatenate(ratios)
        mass = np.repeat(weights / size, size)
        order = np.argsort(-values)
        cut = values[order][min(int(np.searchsorted(np.cumsum(mass[order]), alpha)), len(values) - 1)]
        alt, members = self.alternative
        power = float(np.mean(alt - special.logsumexp(members + log_w, axis=0) > cut))
        return power, np.array([np.mean(r > cut) for r in ratios])


def least_favourable(samples: Samples, alpha: float, steps: int) -> np.ndarray:
    """Mixture weights over the null members that minimize the Neyman–Pearson power (multiplicative weights)."""
    weights = np.full(len(samples.nulls), 1 / len(samples.nulls))
    best = (math.inf, weights)
    for _ in range(steps):
        power, sizes = samples.test(weights, alpha)
        best = min(best, (power, weights), key=lambda item: item[0])
        weights = weights * np.exp(4.0 * (sizes - alpha) / alpha)
        weights /= weights.sum()
    return best[1]


def hall_of(x: np.ndarray) -> np.ndarray:
    """The report's paired statistic ``T_H`` of each row of ``x``."""
    _, g, mean, sd = t_and_skewness(x)
    return hall_statistic(mean, sd, g, x.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", nargs="+", default=["8:1"], help="pairs:d_z")
    parser.add_argument("--samples", type=int, default=20_000, help="per member and half")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--convolutions", action="store_true", help="add the normal + exponential members (real runs' shape)"
    )
    args = parser.parse_args()
    null = members(args.convolutions)
    for design in args.designs:
        n, d_z = int(design.split(":")[0]), float(design.split(":")[1])
        rng = np.random.default_rng([n, round(100 * d_z), 20261206])
        search, check = (Samples(rng, n, d_z, args.samples, null) for _ in range(2))
        weights = least_favourable(search, args.alpha, args.steps)
        bound, sizes = check.test(weights, args.alpha)
        raw = check.raw_alternative
        flips = float(np.mean(sign_flip_rejects(raw, args.alpha)))
        hall, *hall_nulls = (np.abs(hall_of(x)) for x in (raw, *check.null_draws))
        critical = hall_critical(n, args.alpha)
        hall_power = float(np.mean(hall > critical))
        hall_sizes = [float(np.mean(h > critical)) for h in hall_nulls]
        held = max(float(np.quantile(h, 1 - args.alpha)) for h in hall_nulls)
        held_power = float(np.mean(hall > held))
        heaviest = ", ".join(f"{k} {v:+g}: {w:.2f}" for (k, v), w in zip(null, weights, strict=True) if w >= 0.05)
        print(
            f"{n} pairs, d_z {d_z:g}: sign flips {flips:.3f} | Hall, bound 2 {hall_power:.3f} "
            f"({hall_power / flips:.2f}x; its sizes on the members {min(hall_sizes):.3f}-{max(hall_sizes):.3f}) | "
            f"Hall at the members' largest 95% point {held:.3f} (bound 2's: {critical:.3f}) {held_power:.3f} "
            f"({held_power / flips:.2f}x) | Neyman-Pearson bound {bound:.3f} ({bound / flips:.2f}x; its sizes "
            f"{sizes.min():.3f}-{sizes.max():.3f} on the check half; least-favourable weights {heaviest})",
            flush=True,
        )


if __name__ == "__main__":
    main()
