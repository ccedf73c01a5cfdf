"""How much one-level power a paired test that holds its level under skewness can have, against the sign-flip test.

Not a speed benchmark: the evidence behind docs/statistics.md §3's onset-power reading (issue 23: "the onset test's
power is ≥ 0.9× the fixed-sequence reference"; the onset of a lone curve is found when its end level's one-level
test rejects, so the ratio is, within noise, the one-level power ratio).  Per number of seeds ``n`` and effect
``d_z`` (the designs of ``benchmarks/gap_onset_power.py``), power at two-sided level ``alpha`` against normal
differences with mean ``d_z``:

- **sign flips**: the exact sign-flip test of the mean (all ``2^n`` patterns): the issue's reference, whose level
  holds only for symmetric differences;
- **Student's t**: the paired t test, which holds its level only for normal ones;
- **Hall, bound 2**: the report's paired test (Hall's statistic, least-favourable over the normal and the
  mean-zero shifted gamma of skewness 2: :func:`~mtlens.analysis.inference.hall_critical`);
- **best region**: the most powerful of a family of skew-adaptive tests that hold the same level over the same
  nulls: reject when ``|t| > c0 + c1 · max(−s, 0) + c2 · max(s, 0)`` with ``s = sign(t) · g`` (``g`` the
  sample skewness: a larger critical value where ``t`` points against the skew, the direction a skewed null
  produces large ``|t|``), ``c0`` set so that the largest size over skewness 0, 0.25, …, 2 is ``alpha``, over a
  grid of ``(c1, c2)``.  Hall's statistic is one such region; the grid shows how far any of them gets.

Also the size of Student's t and of the sign flips at skewness 2 (what a test that reaches the reference pays),
and the size of Hall's test at ``alpha / 4``, ``alpha / 2`` and ``alpha`` on differences outside the family it
is calibrated on: ``sqrt(1 − w²) Z + w (E − 1)`` (normal noise plus a shifted exponential, the held-out skewed
null's shape; ``w = 1`` is the shifted gamma of skewness 2 itself).

``.venv/bin/python benchmarks/skew_robust_ceiling.py``
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
from scipy import stats
from skewness_bound import draws  # the shifted-gamma draws of the sibling benchmark (this script's folder)

from mtlens.analysis.inference import hall_critical, hall_p_value, hall_statistic

DESIGNS = ((6, 1.5), (8, 1.0), (12, 0.8))
"""(pairs, d_z): the designs of benchmarks/gap_onset_power.py."""

SKEWNESS = np.arange(0.0, 2.01, 0.25)
"""The nulls every test here must hold its level under: mean-zero shifted gamma differences of these skewnesses
(0: normal), as the report's paired test does (docs/statistics.md §2)."""

GRID = tuple(itertools.product((0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0), (-1.0, -0.5, 0.0, 0.5)))
"""``(c1, c2)`` of the skew-adaptive regions."""


def t_and_skewness(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: ``(t, g, mean, sd)`` with ``sd`` ddof 1 and ``g = m_3 / sd^3``, as the report's test uses them."""
    n = x.shape[1]
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    sd = np.sqrt((centred**2).sum(axis=1) / (n - 1))
    g = (centred**3).mean(axis=1) / sd**3
    return math.sqrt(n) * mean / sd, g, mean, sd


def sign_flip_rejects(x: np.ndarray, alpha: float) -> np.ndarray:
    """The exact two-sided sign-flip test of the mean on each row of ``x``."""
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=x.shape[1])))
    rejects = []
    for chunk in np.array_split(x, max(1, len(x) // 2000)):
        null = np.abs(chunk @ patterns.T)
        p = (null >= np.abs(chunk.sum(axis=1))[:, None] * (1 - 1e-9)).mean(axis=1)
        rejects.append(p <= alpha)
    return np.concatenate(rejects)


def region_rejects(t: np.ndarray, g: np.ndarray, c0: float, c1: float, c2: float) -> np.ndarray:
    """The skew-adaptive region of the module docstring: ``|t| > c0 + c1 · max(−s, 0) + c2 · max(s, 0)``."""
    s = np.sign(t) * g
    return np.abs(t) > c0 + c1 * np.maximum(-s, 0) + c2 * np.maximum(s, 0)


def calibrated_c0(nulls: list[tuple[np.ndarray, np.ndarray]], c1: float, c2: float, alpha: float) -> float:
    """The smallest ``c0`` (bisection to 1e-4) whose largest size over ``nulls`` is at most ``alpha``."""
    low, high = 0.0, 50.0
    while high - low > 1e-4:
        middle = (low + high) / 2
        size = max(float(np.mean(region_rejects(t, g, middle, c1, c2))) for t, g in nulls)
        low, high = (middle, high) if size > alpha else (low, middle)
    return high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200_000, help="simulated data sets per null and alternative")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    for n, d_z in DESIGNS:
        rng = np.random.default_rng([n, 20261206])
        nulls = [t_and_skewness(draws(rng, float(gamma), (args.draws, n)))[:2] for gamma in SKEWNESS]
        x = rng.standard_normal((args.draws, n)) + d_z
        t, g, mean, sd = t_and_skewness(x)
        flips = float(np.mean(sign_flip_rejects(x[:20_000], args.alpha)))
        student = float(np.mean(np.abs(t) > stats.t.isf(args.alpha / 2, n - 1)))
        hall = float(np.mean(np.abs(hall_statistic(mean, sd, g, n)) > hall_critical(n, args.alpha)))
        best = max(
            (float(np.mean(region_rejects(t, g, calibrated_c0(nulls, c1, c2, args.alpha), c1, c2))), c1, c2)
            for c1, c2 in GRID
        )
        skewed = draws(rng, 2.0, (20_000, n))
        t_size = float(np.mean(np.abs(t_and_skewness(skewed)[0]) > stats.t.isf(args.alpha / 2, n - 1)))
        flip_size = float(np.mean(sign_flip_rejects(skewed, args.alpha)))
        print(
            f"{n} pairs, d_z {d_z}: sign flips {flips:.3f} | Student's t {student:.3f} ({student / flips:.2f}x) | "
            f"Hall, bound 2 {hall:.3f} ({hall / flips:.2f}x) | best region {best[0]:.3f} ({best[0] / flips:.2f}x; "
            f"c1 {best[1]:g}, c2 {best[2]:g}) | size at skewness 2: t {t_size:.3f}, sign flips {flip_size:.3f}",
            flush=True,
        )
    for n, _ in DESIGNS:
        rng = np.random.default_rng([n, 7])
        sizes = []
        for w in (0.8, 0.9, 0.95, 1.0):
            x = math.sqrt(1 - w**2) * rng.standard_normal((args.draws, n)) + w * (
                rng.exponential(size=(args.draws, n)) - 1
            )
            _, g, mean, sd = t_and_skewness(x)
            p = hall_p_value(hall_statistic(mean, sd, g, n), n)
            sizes.append(
                f"w {w:g}: "
                + " / ".join(f"{100 * np.mean(p <= a):.2f}" for a in (args.alpha / 4, args.alpha / 2, args.alpha))
            )
        print(
            f"{n} pairs, Hall bound 2, size (%) at alpha/4 / alpha/2 / alpha on normal + exponential: "
            + " | ".join(sizes),
            flush=True,
        )


if __name__ == "__main__":
    main()
