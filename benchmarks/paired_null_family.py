"""Size of the paired one-level test on the members of its null family, at the fixed bound and a family bound.

Not a speed benchmark: the evidence behind :data:`mtlens.analysis.inference.CONVOLUTION_STEPS` and
docs/statistics.md §2 ("the paired null family").  The family at a skewness bound ``b`` is every mean-zero
``sqrt(1 − w²) Z + w X`` (``Z`` normal run noise, ``X`` a standardized shifted gamma of skewness ``s``, the
skewed seed effect) of skewness ``w³ s <= b``.  Per number of pairs ``n``, the share of ``--draws`` simulated
null data sets whose Hall p-value (:func:`~mtlens.analysis.inference.hall_p_value` under ``SkewnessBound(b)``)
is at most ``alpha / 4`` and ``alpha`` (BH's first threshold of a family of four, and the level), for the
members on two lines of the family: the shifted gammas ``w = 1``, ``s`` up to ``b``, and the sums with the
exponential ``s = 2``, ``w`` up to ``(b / 2)^{1/3}``; and one member between them at skewness ``b``
(``s = (b + 2) / 2``).  Each cell's simulation SE is about ``sqrt(alpha (1 − alpha) / draws)``.

``.venv/bin/python benchmarks/paired_null_family.py [--draws 100000] [--bounds 2 1] [--pairs 3 4 6 8 12 16]``
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from mtlens.analysis.inference import SkewnessBound, hall_p_value, hall_statistic, moments_of_rows


def member_draws(rng: np.random.Generator, skewness: float, weight: float, size: tuple[int, int]) -> np.ndarray:
    """``sqrt(1 − w²) Z + w X``, ``X`` the standardized shifted gamma of ``skewness`` (drawn here, not by the
    module under test)."""
    shape = 4 / skewness**2
    x = (rng.gamma(shape, size=size) - shape) / math.sqrt(shape)
    return math.sqrt(max(0.0, 1 - weight**2)) * rng.standard_normal(size) + weight * x


def members(bound: float) -> list[tuple[float, float]]:
    """``(s, w)`` of the measured members at ``bound``: the two lines and the one between (module docstring)."""
    gammas = [(s, 1.0) for s in (0.5 * bound, bound)]
    top = (bound / 2) ** (1 / 3)
    sums = [(2.0, round(r * top, 3)) for r in (0.8, 0.9, 0.95, 0.97, 1.0)]
    middle = (0.5 * (bound + 2), round((bound / (0.5 * (bound + 2))) ** (1 / 3), 3))
    return sorted(set(gammas + sums + ([middle] if bound < 2 else [])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=100_000)
    parser.add_argument("--bounds", type=float, nargs="+", default=[2.0, 1.0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[3, 4, 6, 8, 12, 16])
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    for bound in args.bounds:
        cells = members(bound)
        print(f"\nbound {bound}: size in % at {args.alpha / 4:g} / {args.alpha:g} (members s, w; skewness w^3 s)")
        print("| pairs | " + " | ".join(f"s {s:g}, w {w:g} ({w**3 * s:.2f})" for s, w in cells) + " |")
        print("|---" * (len(cells) + 1) + "|")
        for n in args.pairs:
            row = []
            for s, w in cells:
                rng = np.random.default_rng([n, round(100 * s), round(1000 * w)])
                x = member_draws(rng, s, w, (args.draws, n))
                p = hall_p_value(hall_statistic(*moments_of_rows(x), n), n, SkewnessBound(bound))
                row.append(f"{100 * np.mean(p <= args.alpha / 4):.2f} / {100 * np.mean(p <= args.alpha):.2f}")
            print(f"| {n} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
