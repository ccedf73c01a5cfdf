"""Size and power of the unpaired one-level test on skewed, unbalanced nulls: Welch's t with Hsu's df (before)
against Hall's two-sample statistic with the least-favourable reference (the report's test).

Not a speed benchmark: the evidence behind docs/statistics.md §2's unpaired bullet and its Welch table.  Per
design ``n_1`` vs ``n_2`` runs, the first group with ``ratio`` times the second's sd:

- **size** at two-sided level ``alpha`` on mean-zero groups, each normal or skewed ``±2`` (``Exp(1) − 1`` and
  ``1 − Exp(1)``; the pairs with both signs flipped give the same two-sided rates), ``--draws`` data sets each,
  the after rate with its 95% Clopper–Pearson interval;
- **power** on normal groups at Welch's 80% point: the shift Welch's t with the Welch–Satterthwaite df detects
  with 80% power (noncentral t, :func:`~mtlens.analysis.inference.detectable_noncentrality`), for Welch's df,
  Hsu's df and the report's test;
- **plug-in**: the same statistic against the reference at the *observed* variance share only (each group's
  skewness still least favourable; critical value interpolated between the grid's shares): what the worst case
  over the variance ratio costs and why it is needed;
- **stated power**: the report's test's rate at its own ``min_detectable`` (of a sample with exactly the
  design's sds), which should be 80%;
- **gap A/A**: false onsets (``p_persistent <= alpha``) of the gap's unpaired test on ``--gap-sets`` data sets
  without a gap per design, the curves of ``tests/test_gap.py``'s unpaired null (30 checkpoints, a per-run
  offset, normal or ``Exp(1) − 1``, plus AR(1) noise, the first group with ``ratio`` times the spread).

``.venv/bin/python benchmarks/unpaired_skew.py``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from mtlens.analysis.gap import gap_from_checkpoints
from mtlens.analysis.inference import (
    SKEWNESS_BOUND,
    VARIANCE_SHARES,
    clopper_pearson,
    detectable_noncentrality,
    hall_p_value,
    moments_of_rows,
    unpaired_max_t,
    welch_hall_statistic,
    welch_reference,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gap_curves import ar1, unpaired_runs  # noqa: E402  (the tests' generator of synthetic gap curves)

DESIGNS = ((3, 9, 3.0), (3, 9, 1.0), (9, 3, 3.0), (9, 3, 1.0), (4, 8, 2.0), (6, 6, 3.0), (6, 6, 1.0))
"""``(n_1, n_2, sd ratio)``: the unbalanced designs where Welch–Hsu failed, and their mirrors."""

NULLS = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (2, -2))
"""Skewness of each group: 0 normal, 2 ``Exp(1) − 1``, −2 ``1 − Exp(1)``."""

GAP_DESIGNS = ((3, 9, 1.0), (3, 9, 3.0), (9, 3, 3.0), (6, 6, 1.0))
"""``(n_MTL, n_STL, sd ratio)`` of the gap's unpaired nulls (tests/test_gap.py)."""


def draws(rng: np.random.Generator, skewness: int, size: tuple[int, int]) -> np.ndarray:
    """Mean-zero, sd-1 values of ``skewness`` 0, 2 or −2."""
    return np.sign(skewness) * (rng.exponential(size=size) - 1.0) if skewness else rng.standard_normal(size)


def p_values(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Welch df, Hsu df, report's test)`` two-sided p-values of each row pair."""
    welch = stats.ttest_ind(x, y, axis=1, equal_var=False)
    hsu = 2 * stats.t.sf(np.abs(welch.statistic), min(x.shape[1], y.shape[1]) - 1)
    sizes = (x.shape[1], y.shape[1])
    hall = hall_p_value(welch_hall_statistic(moments_of_rows(x), moments_of_rows(y), sizes), sizes)
    return welch.pvalue, hsu, hall


def gap_false_onsets(rng: np.random.Generator, design: tuple[int, int, float], skewed: bool, sets: int) -> int:
    """How many of ``sets`` unpaired data sets without a gap show an onset (``p_persistent <= 0.05``)."""
    levels = np.geomspace(2.0, 0.1, 30)
    n_mtl, n_stl, ratio = design

    def noise(n: int) -> np.ndarray:
        offset = rng.exponential(size=(n, 1)) - 1.0 if skewed else rng.standard_normal((n, 1))
        return offset + 0.5 * ar1(rng, n, 30)

    onsets = 0
    for _ in range(sets):
        values = {"mtl": 0.3 + levels + 0.05 * ratio * noise(n_mtl), "stl": 0.3 + levels + 0.05 * noise(n_stl)}
        result = gap_from_checkpoints(unpaired_runs(values, levels, 3.0), "t", stability=False)
        onsets += result is not None and result.onset is not None
    return onsets


def plug_in_critical(sizes: tuple[int, int], alpha: float) -> np.ndarray:
    """Per share of :data:`VARIANCE_SHARES`, the ``1 − alpha`` quantile of ``|T_H|`` least favourable over the
    groups' skewness at that share alone."""
    return np.array([np.quantile(welch_reference(sizes, SKEWNESS_BOUND, (w,)), 1 - alpha) for w in VARIANCE_SHARES])


def plug_in_rejects(x: np.ndarray, y: np.ndarray, critical: np.ndarray) -> np.ndarray:
    """Per row pair: ``|T_H|`` above the critical value of :func:`plug_in_critical` at the observed share
    ``(s_1^2 / n_1) / se^2`` (interpolated)."""
    sizes = (x.shape[1], y.shape[1])
    first, second = moments_of_rows(x), moments_of_rows(y)
    a, b = first[1] ** 2 / sizes[0], second[1] ** 2 / sizes[1]
    return np.abs(welch_hall_statistic(first, second, sizes)) > np.interp(a / (a + b), VARIANCE_SHARES, critical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=40_000)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--gap-sets", type=int, default=300, help="data sets per gap A/A design (0: skip)")
    args = parser.parse_args()
    rng = np.random.default_rng(20261206)
    print("size: before (Welch-Hsu) -> after (report's test, 95% CI) [plug-in share]")
    critical = {(n1, n2): plug_in_critical((n1, n2), args.alpha) for n1, n2, _ in DESIGNS}
    for n1, n2, ratio in DESIGNS:
        cells = []
        for g1, g2 in NULLS:
            x, y = draws(rng, g1, (args.draws, n1)) * ratio, draws(rng, g2, (args.draws, n2))
            _, hsu, hall = p_values(x, y)
            hits = int(np.sum(hall <= args.alpha))
            low, high = clopper_pearson(hits, args.draws)
            plug_in = np.mean(plug_in_rejects(x, y, critical[(n1, n2)]))
            cells.append(
                f"({g1:+d},{g2:+d}) {np.mean(hsu <= args.alpha):.1%} -> {hits / args.draws:.1%} "
                f"({low:.1%}-{high:.1%}) [{plug_in:.1%}]"
            )
        print(f"{n1} vs {n2}, sd ratio {ratio:g}: " + "; ".join(cells))
    print(
        "power at Welch's 80% point (Welch df / Hsu df / report's test / plug-in); report's test at its min_detectable"
    )
    for n1, n2, ratio in DESIGNS:
        a, b = ratio**2 / n1, 1 / n2
        df = (a + b) ** 2 / (a**2 / (n1 - 1) + b**2 / (n2 - 1))
        shift = detectable_noncentrality(float(stats.t.ppf(1 - args.alpha / 2, df)), df) * np.sqrt(a + b)
        x, y = rng.standard_normal((args.draws, n1)) * ratio, rng.standard_normal((args.draws, n2))
        welch, hsu, hall = (np.mean(p <= args.alpha) for p in p_values(x + shift, y))
        plug_in = np.mean(plug_in_rejects(x + shift, y, critical[(n1, n2)]))
        first, second = rng.standard_normal(n1), rng.standard_normal(n2)
        first = (first - first.mean()) / first.std(ddof=1) * ratio
        second = (second - second.mean()) / second.std(ddof=1)
        stated = float(unpaired_max_t(first, second).min_detectable(args.alpha)[0])
        own = np.mean(p_values(x + stated, y)[2] <= args.alpha)
        print(
            f"{n1} vs {n2}, sd ratio {ratio:g}: shift {shift:.3f}: {welch:.1%} / {hsu:.1%} / {hall:.1%} / "
            f"{plug_in:.1%}; "
            f"min_detectable {stated:.3f} ({stated / shift:.2f}x): {own:.1%}"
        )
    if args.gap_sets:
        print(f"gap A/A, false onsets at 0.05 of {args.gap_sets} data sets (95% CI)")
        for skewed in (False, True):
            cells = []
            for design in GAP_DESIGNS:
                onsets = gap_false_onsets(rng, design, skewed, args.gap_sets)
                low, high = clopper_pearson(onsets, args.gap_sets)
                rate = f"{onsets / args.gap_sets:.1%} ({low:.1%}-{high:.1%})"
                cells.append(f"{design[0]} vs {design[1]}, ratio {design[2]:g}: {rate}")
            print(("Exp(1) - 1" if skewed else "normal") + " offsets: " + "; ".join(cells))


if __name__ == "__main__":
    main()
