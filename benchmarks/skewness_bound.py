"""Size and power of the paired one-level test under the family skewness bound, against the fixed bound.

Not a speed benchmark: the figures of docs/statistics.md §2 ("The family's skewness bound").  A family
is ``tasks x methods`` rows of ``n`` per-seed differences ``MTL − STL``; every method's row of a task
shares the task's STL runs (the report's design: one STL run per (task, seed)), so rows of one task are
dependent.  STL noise has sd 1 and the null's skewness (a shifted gamma, normal at 0); MTL noise is
normal with sd ``--mtl-sd``.  Counted per null, at ``alpha`` per row (no multiplicity control, the
row's own level): the share of rows rejected under

- the **family bound** (:func:`~mtlens.analysis.inference.family_skewness_bound` of the family's rows,
  Berger–Boos p-value), the **fixed bound** 2, and Student's paired t (for reference);

and, for power, one row with a true difference of ``d_z`` (the effect Student's t detects with 80%
power at ``n`` seeds and ``alpha``) added to a symmetric (normal) family.  Also the median family bound.
"Lone skewed row": one task's STL runs are Exp(1) − 1 (skewness 2), the others normal: the bound's
assumption of one common skewness broken, the rejection rate of that task's rows alone.

"Two settings": a table over two settings of 8 x 3 rows each, one symmetric (normal) and one skewed
(skewness 2): the skewed setting's rows rejected under one bound pooled over both settings and under each
setting's own bound (:func:`~mtlens.analysis.inference.grouped_bounds`, the report's rule).

``.venv/bin/python benchmarks/skewness_bound.py --families 400``
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import optimize, stats

from mtlens.analysis.inference import (
    FIXED_BOUND,
    SkewnessBound,
    family_skewness_bound,
    grouped_bounds,
    hall_p_value,
    hall_statistic,
)


def draws(rng: np.random.Generator, skewness: float, size: tuple[int, ...]) -> np.ndarray:
    """Standardized mean-zero draws of ``skewness`` (normal at 0)."""
    if skewness == 0:
        return rng.normal(size=size)
    shape = 4 / skewness**2
    return (rng.gamma(shape, size=size) - shape) / math.sqrt(shape)


def family(
    rng: np.random.Generator, tasks: int, methods: int, n: int, skewness: list[float], mtl_sd: float
) -> np.ndarray:
    """``(tasks * methods, n)`` differences; task ``t``'s STL noise has skewness ``skewness[t]``."""
    stl = np.stack([draws(rng, skewness[t], (n,)) for t in range(tasks)])
    return np.concatenate([mtl_sd * rng.normal(size=(methods, n)) - stl[t] for t in range(tasks)])


def p_values(d: np.ndarray, bound: SkewnessBound) -> np.ndarray:
    n = d.shape[1]
    g = stats.skew(d, axis=1) * ((n - 1) / n) ** 1.5
    return hall_p_value(hall_statistic(d.mean(axis=1), d.std(axis=1, ddof=1), g, n), n, bound)


def bound_of(d: np.ndarray) -> SkewnessBound:
    n = d.shape[1]
    g = stats.skew(d, axis=1) * ((n - 1) / n) ** 1.5
    return family_skewness_bound(list(g), [n] * len(d))


def bound_of_rows(rows: list[np.ndarray]) -> SkewnessBound:
    """:func:`bound_of` of a list of rows (the form :func:`~mtlens.analysis.inference.grouped_bounds` passes)."""
    return bound_of(np.array(rows))


def t_effect(n: int, alpha: float, power: float = 0.8) -> float:
    """``d_z`` that Student's paired t detects with ``power`` (noncentral t)."""
    c = stats.t.ppf(1 - alpha / 2, n - 1)
    return optimize.brentq(lambda d: stats.nct.sf(c, n - 1, d * math.sqrt(n)) - power, 0.05, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--mtl-sd", type=float, default=0.3)
    args = parser.parse_args()
    designs = [(2, 3), (8, 3), (8, 7)]  # the demo-like table, a larger study, the grouping experiment's 56 pairs
    for n in (6, 8, 12):
        effect = t_effect(n, args.alpha)
        for tasks, methods in designs:
            rng = np.random.default_rng([n, tasks, methods])
            nulls = {"normal": [0.0] * tasks, "skewness 1": [1.0] * tasks, "skewness 2": [2.0] * tasks}
            nulls["lone skewed task"] = [2.0] + [0.0] * (tasks - 1)
            line = [f"n={n:2d} {tasks}x{methods}:"]
            for name, skew in nulls.items():
                rates = np.zeros(3)
                for k in range(args.families):
                    d = family(rng, tasks, methods, n, skew, args.mtl_sd) * (-1) ** k
                    rows = d[:methods] if name == "lone skewed task" else d
                    rates += [
                        np.mean(p_values(rows, bound_of(d)) <= args.alpha),
                        np.mean(p_values(rows, FIXED_BOUND) <= args.alpha),
                        np.mean(stats.ttest_1samp(rows, 0, axis=1).pvalue <= args.alpha),
                    ]
                family_rate, fixed_rate, t_rate = 100 * rates / args.families
                line.append(f"{name} {family_rate:.1f}/{fixed_rate:.1f}/{t_rate:.1f}%")
            powers, bounds = np.zeros(3), []
            for _ in range(args.families):
                d = family(rng, tasks, methods, n, [0.0] * tasks, args.mtl_sd)
                d[0] += effect * math.sqrt(1 + args.mtl_sd**2)  # d_z in units of the differences' true sd
                bound = bound_of(d)
                bounds.append(bound.value)
                powers += [
                    p_values(d[:1], bound)[0] <= args.alpha,
                    p_values(d[:1], FIXED_BOUND)[0] <= args.alpha,
                    stats.ttest_1samp(d[0], 0).pvalue <= args.alpha,
                ]
            family_power, fixed_power, t_power = 100 * powers / args.families
            line.append(
                f"| power at d_z {effect:.2f}: {family_power:.1f}/{fixed_power:.1f}/{t_power:.1f}% "
                f"| median bound {np.median(bounds):.2f}"
            )
            print(" ".join(line), flush=True)
    print("each: family bound / fixed bound 2 / Student's t")
    for n in (6, 8, 12):
        rng = np.random.default_rng([n, 2])
        rates, medians = np.zeros(2), {"pooled": [], "own": []}
        for k in range(args.families):
            symmetric = family(rng, 8, 3, n, [0.0] * 8, args.mtl_sd)
            skewed = family(rng, 8, 3, n, [2.0] * 8, args.mtl_sd) * (-1) ** k
            rows = [*symmetric, *skewed]
            bounds = {
                "pooled": bound_of(np.array(rows)),
                "own": grouped_bounds(bound_of_rows, rows, ["sym"] * len(symmetric) + ["skew"] * len(skewed))[-1],
            }
            for name, bound in bounds.items():
                medians[name].append(bound.value)
            rates += [np.mean(p_values(skewed, bounds[name]) <= args.alpha) for name in ("pooled", "own")]
        pooled, own = 100 * rates / args.families
        print(
            f"n={n:2d} two settings, 8x3 normal + 8x3 skewness 2: the skewed setting's rows rejected {pooled:.1f}% "
            f"under the pooled bound (median {np.median(medians['pooled']):.2f}), {own:.1f}% under its own "
            f"(median {np.median(medians['own']):.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
