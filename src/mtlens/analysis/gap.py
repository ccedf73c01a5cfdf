"""The generalization gap at comparable training loss (Mueller et al.): when it opens and whether it persists.

For one task, every run (STL or MTL, one seed) gives checkpoints ``k`` (in training order) with training
loss ``x_k`` (on the fixed training subset) and a generalization measure ``G_k`` (validation loss or
error).  The curve ``G(x)`` is built as follows:

1. **Monotonize** (:func:`monotone_curve`): the isotonic (non-increasing) least-squares fit of the
   training loss over the checkpoints (pool-adjacent-violators, ``scipy.optimize.isotonic_regression``);
   checkpoints that the fit ties form one knot at the fitted loss, with the mean ``G`` and epoch of the
   tied checkpoints.  Unlike running minima, the fit does not select the checkpoints whose training-loss
   noise happened to be low, so a noisier training loss (MTL's, often) does not bias ``G`` upward.
2. **Grid** (:func:`common_levels`): ``n`` log-spaced training-loss levels from the highest loss that
   every run used covers (the start) to the **end**, the lowest loss that every run used reached (the
   largest of the runs' lowest fitted losses; the runs attaining it are named by mode and seed:
   ``end_limited_by``), in
   training order.  ``n = min(n_grid, fewest knots any run has in that range)``: never finer than the
   checkpoints the runs have.  The grid does not move the persistence verdict, which is tested at the
   end level alone.
3. **Interpolate** ``G`` (and the epoch) linearly in ``log x`` at the levels.

**Design.** STL and MTL runs of one seed share the encoder and head initialization and the batch order,
so the comparison is *paired* by seed: with ``n >= 2`` seeds that have exactly one STL and one MTL run,
the per-seed differences ``d_s(lambda) = G_MTL,s(lambda) − G_STL,s(lambda)`` are tested with the paired
test of :mod:`mtlens.analysis.inference` (runs of other seeds are left out).  Otherwise, with ``>= 2``
runs per mode, the curves are compared *unpaired* (label permutation, Welch t, Hall's two-sample test); with
fewer, nothing is tested.

    gap(lambda) = mean_s d_s(lambda)  (paired)  or  mean G_MTL − mean G_STL  (unpaired)

(negative in loss/error = MTL generalizes better at equal training loss).

**Gap somewhere: simultaneous band.** The max-|T| test over all levels gives the band that holds at every
level at once, and ``p_any`` ("a gap at some level").  Paired: Hall's skewness-corrected ``T_H`` per level
against the larger of the sign-flip tail and a simulated tail with per-seed shifts of skewness 2 common to
every level (:func:`~mtlens.analysis.inference.paired_band_test`; the band per level is Hall's interval at
``c_alpha``); unpaired: Welch's t per level against the larger of the label permutations' tail and Bonferroni's
bound over the levels of Hsu's t (:func:`~mtlens.analysis.inference.unpaired_band_test`; the permutations alone
gave 27% at 5% with 3 runs of 3× the spread of 9), band ``gap ± c_alpha * se``.

**Onset and persistence: fixed-sequence testing from the end.** The claim "a gap of sign ``s`` at every
level from ``j`` to the end" is an intersection of per-level alternatives, so it is tested at level
``alpha`` by requiring each level in ``[j, end]`` to be significant on its own unadjusted test
(intersection–union test, Berger 1982).  Testing the end, then the level before, ... in that fixed order
and stopping at the first non-rejection (or the first level whose estimate has another sign than the
end's) controls the family-wise error of all onset claims at ``alpha`` with no adjustment (fixed-sequence
testing, Maurer, Hothorn & Lehmacher 1995; Westfall & Krishen 2001).  Per level ``j`` the p-value
``p_level_j`` (:func:`level_p_values`) is that of, paired, the paired one-level test of the per-seed
differences (Hall's skewness-corrected statistic against its least-favourable reference,
:attr:`~mtlens.analysis.inference.MaxTTest.pointwise_p`, as every one-level table of the report),
whose p-value, unlike the exact sign-flip test's ``>= 2 / 2^n``, is not bound to the seeds, so a family of
curves can be controlled at the seeds people run (6 pairs: sign flips never give less than 0.031,
while Benjamini–Hochberg over 4 curves needs 0.0125 for one true curve); unpaired, the larger of the
unpaired one-level test's (Hall's two-sample statistic, :attr:`~mtlens.analysis.inference.MaxTTest.pointwise_p`)
and the label permutation's p-value.  Level ``j``'s fixed-sequence adjusted p-value is
``p_sequence_j = max_{k >= j} p_level_k`` (1 from the last sign change on).  The **onset** at ``alpha``
is the earliest level with ``p_sequence <= alpha`` (the start of the uninterrupted run of rejections
that ends at the end); ``p_persistent`` = the end level's own ``p_level`` (an onset exists iff
``p_persistent <= alpha``).

**Many curves** (:func:`gap_family`): curves are selected by Benjamini–Hochberg at FDR ``alpha`` on their
``p_persistent`` and the onsets of the ``R`` selected curves (of ``m``) are tested at the BH-adjusted
level ``R * alpha / m`` (selective inference on multiple families, Benjamini & Bogomolov 2014), which
keeps the expected share of curves with any false onset claim at ``alpha`` or below.

**Stability.** ``loo_p_persistent_max``: the largest ``p_persistent`` when one seed's runs are left out
(each time with the end recomputed from the remaining runs); a verdict that one seed carries, or that the
slowest seed's end hides, shows up here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from mtlens.analysis.inference import (
    MaxTTest,
    SkewnessBound,
    bh_adjust,
    bh_level,
    family_skewness_bound,
    grouped_bounds,
    paired_band_test,
    paired_max_t,
    sample_skewness,
    scalar_test,
    shift_interval,
    skewness_of,
    unpaired_band_test,
    unpaired_max_t,
)

DEFAULT_ALPHA = 0.05
"""Level of the band and the onset unless the caller controls a family (the report uses its BH level)."""
DEFAULT_N_GRID = 200
"""Most training-loss levels of a gap curve (fewer where a run has fewer checkpoints in the common range)."""
BOUND_LEVELS = 16
"""Training-loss levels (log-spaced over the curve's common range, fewer where a run has fewer checkpoints
there) whose per-seed differences give a curve's skewness for its family's bound (:func:`bound_of_gaps`):
fixed, so that the grid cannot change the bound."""
GAP_DIRECTIONS: dict[float | None, str] = {1.0: "MTL worse", -1.0: "MTL better"}
"""What the sign of a persistent gap says (none: ``None``)."""

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A monotonized run: knots' training loss (strictly decreasing), measure and epoch, each ``(K,)``."""


@dataclass(frozen=True)
class GapResult:
    """The gap analysis of one task.

    ``curves``: one row per (mode, grid level) with ``mode, train_loss, mean, std, n, epoch`` over the
    runs used; ``levels``: the grid ``(L,)``, training order (its last entry is the end);
    ``estimate``: the gap per level; ``test``: the band's max test over all levels (paired: Hall's ``T_H``,
    :func:`~mtlens.analysis.inference.paired_band_test`; unpaired: Welch's t,
    :func:`~mtlens.analysis.inference.unpaired_band_test`; ``None`` when not testable); ``alpha``: the level
    of :attr:`gap`'s band and :attr:`onset`; ``level_p``: per level the unadjusted p-value of the one-level
    test (:func:`level_p_values`, ``(L,)``; NaN without a test); ``final_test``: the one-level test at the end
    (its interval, effect size and detectable gap are the table's ``final_*``);
    ``end_limited_by``: the runs (``"stl seed 3"``) whose lowest training loss is the end;
    ``loo_p_persistent``: ``p_persistent`` with each seed left out in turn (NaN where untestable);
    ``end_values``: the MTL and STL runs' values at the end (``(n_1,)``, ``(n_2,)``; paired: seeds in the same
    order), from which :meth:`summary` takes the skewness of the paired differences and, unpaired, inverts the
    permutation half of ``p_persistent``; ``bound_skewness`` (paired): the mean over the :data:`BOUND_LEVELS`
    levels of the per-seed differences' skewness (:func:`~mtlens.analysis.inference.skewness_of`), the
    curve's share of its family's bound (:func:`bound_of_gaps`), the same on every grid.
    """

    task: str
    measure: str
    curves: pd.DataFrame
    levels: np.ndarray
    estimate: np.ndarray
    test: MaxTTest | None
    alpha: float = DEFAULT_ALPHA
    level_p: np.ndarray = field(default_factory=lambda: np.array([]))
    final_test: MaxTTest | None = None
    end_limited_by: tuple[str, ...] = ()
    loo_p_persistent: np.ndarray = field(default_factory=lambda: np.array([]))
    end_values: tuple[np.ndarray, np.ndarray] | None = None
    bound_skewness: float = np.nan

    @property
    def design(self) -> str:
        """``paired``, ``unpaired`` or ``none`` (too few runs to test)."""
        return self.test.design if self.test is not None else "none"

    def with_bound(self, bound: SkewnessBound) -> GapResult:
        """The same result with its paired one-level tests (every level's ``level_p``, the end's interval)
        under the family's skewness ``bound`` (:func:`gap_family`); unpaired results are unchanged.  The
        leave-one-seed-out check keeps the fixed bound it was computed with (conservative)."""
        if self.design != "paired" or self.test is None or self.final_test is None:
            return self
        test = self.test.with_bound(bound)
        return replace(self, test=test, final_test=self.final_test.with_bound(bound), level_p=test.pointwise_p)

    def at_alpha(self, alpha: float) -> GapResult:
        """The same result with band and onset at level ``alpha`` (unpaired, the onset is exact for an
        ``alpha`` up to the one the result was built with: :func:`level_p_values`)."""
        return replace(self, alpha=alpha)

    @cached_property
    def sequence_p(self) -> np.ndarray:
        """Per level the fixed-sequence adjusted p-value (:func:`fixed_sequence_p`); 1 without a test."""
        if self.test is None or len(self.level_p) != len(self.levels):
            return np.ones(len(self.levels))
        return fixed_sequence_p(self.level_p, self.estimate)

    @property
    def p_persistent(self) -> float:
        """p-value of "a gap that persists to the end": the end level's own unadjusted p-value."""
        return float(self.level_p[-1]) if self.test is not None and len(self.level_p) else np.nan

    @property
    def min_p_persistent(self) -> float:
        """The smallest ``p_persistent`` the design allows: paired, the one-level test's
        (:attr:`~mtlens.analysis.inference.MaxTTest.pointwise_min_p`, not bound to the seeds); unpaired, the
        label permutation's ``min_p`` (:func:`level_p_values`); NaN without a test."""
        if self.final_test is None:
            return np.nan
        return self.final_test.pointwise_min_p if self.design == "paired" else self.final_test.min_p

    def persistent_from(self, alpha: float) -> int | None:
        """The onset at ``alpha``: the earliest level of the run of fixed-sequence rejections ending at the
        end, or ``None`` when the end is not rejected."""
        hit = self.sequence_p <= alpha
        return int(np.argmax(hit)) if len(hit) and hit[-1] else None

    @cached_property
    def gap(self) -> pd.DataFrame:
        """One row per level: ``train_loss, gap, se, t, p_adjusted, band_low, band_high, excludes_zero,
        min_detectable`` (the simultaneous max-|t| band and the gap it detects with 80% power at
        :attr:`alpha`; ``t`` is the statistic the band tests, paired Hall's ``T_H``, unpaired Welch's t,
        :attr:`~mtlens.analysis.inference.MaxTTest.level_statistic`, ``|t| > c_alpha`` exactly where
        ``p_adjusted <= alpha``), ``p_level`` (unadjusted), ``p_sequence`` (fixed-sequence adjusted) and
        ``persistent`` (rejected by the fixed sequence at :attr:`alpha`: the levels from the onset on);
        NaN without a test."""
        columns: dict[str, np.ndarray] = {"train_loss": self.levels, "gap": self.estimate}
        sequence = self.sequence_p
        fixed = {
            "p_level": self.level_p if self.test is not None else np.full(len(self.levels), np.nan),
            "p_sequence": sequence if self.test is not None else np.full(len(self.levels), np.nan),
            "persistent": sequence <= self.alpha,
        }
        if self.test is None:
            nan = np.full(len(self.levels), np.nan)
            columns |= dict.fromkeys(("se", "t", "p_adjusted", "band_low", "band_high", "min_detectable"), nan)
            return pd.DataFrame(columns | {"excludes_zero": np.zeros(len(self.levels), dtype=bool)} | fixed)
        low, high = self.test.band(self.alpha)
        return pd.DataFrame(
            columns
            | {
                "se": self.test.se,
                "t": self.test.level_statistic,
                "p_adjusted": self.test.adjusted_p,
                "band_low": low,
                "band_high": high,
                "excludes_zero": self.test.significant(self.alpha),
                "min_detectable": self.test.min_detectable(self.alpha, simultaneous=True),
            }
            | fixed
        )

    @property
    def onset(self) -> dict[str, float] | None:
        """``None`` or ``train_loss, gap, sign, epoch_mtl, epoch_stl`` of the persistent gap's first level."""
        i = self.persistent_from(self.alpha)
        if i is None:
            return None
        epochs = self.curves.set_index(["mode", "train_loss"])["epoch"]
        return {
            "train_loss": float(self.levels[i]),
            "gap": float(self.estimate[i]),
            "sign": float(np.sign(self.estimate[i])),
            "epoch_mtl": float(epochs[("mtl", self.levels[i])]),
            "epoch_stl": float(epochs[("stl", self.levels[i])]),
        }

    def summary(self) -> dict[str, object]:
        """One row of the report's gap table: design, seeds, p-values, onset, the end of the common range
        (and the runs that set it), the final gap with its interval, and the leave-one-seed-out check."""
        test, final = self.test, self.final_test
        onset = self.onset or {}
        modes, runs = self.curves["mode"].to_numpy(), self.curves["n"].to_numpy()
        n_mtl, n_stl = (int(runs[modes == m][0]) for m in ("mtl", "stl"))
        end = scalar_test(final, self.alpha) if final else dict.fromkeys(("low", "high", "effect_size"), np.nan)
        if final is not None and self.end_values is not None and self.design == "unpaired":
            end.update(unpaired_end(end, final, self.end_values, self.alpha))
        loo = self.loo_p_persistent[np.isfinite(self.loo_p_persistent)]
        return {
            "task": self.task,
            "measure": self.measure,
            "design": self.design,
            "n_mtl": n_mtl,
            "n_stl": n_stl,
            "final_gap": float(self.estimate[-1]),
            "final_band_low": end["low"],
            "final_band_high": end["high"],
            "final_effect_size": end["effect_size"],
            "min_detectable_final": end.get("min_detectable", np.nan),
            "p_any": test.p_any if test else np.nan,
            "p_persistent": self.p_persistent,
            "min_p": self.min_p_persistent,
            "min_p_any": test.min_p if test else np.nan,
            "band_level": self.alpha,
            "onset_train_loss": onset.get("train_loss", np.nan),
            "onset_epoch_mtl": onset.get("epoch_mtl", np.nan),
            "onset_epoch_stl": onset.get("epoch_stl", np.nan),
            "direction": GAP_DIRECTIONS.get(onset.get("sign"), "no persistent gap"),
            "n_levels": len(self.levels),
            "end_train_loss": float(self.levels[-1]),
            "end_limited_by": ", ".join(self.end_limited_by),
            "loo_p_persistent_max": float(loo.max()) if len(loo) else np.nan,
            "skewness": (
                sample_skewness(self.end_values[0] - self.end_values[1])
                if self.end_values is not None and self.design == "paired"
                else np.nan
            ),
            "skewness_bound": final.bound.value if final is not None and self.design == "paired" else np.nan,
        }


def unpaired_end(
    welch: dict[str, float], final_test: MaxTTest, end_values: tuple[np.ndarray, np.ndarray], alpha: float
) -> dict[str, float]:
    """The end's ``low, high`` and ``min_detectable`` under the unpaired ``p_persistent = max(p_Hall,
    p_perm)`` (:func:`level_p_values`), from the one-level test's ``welch``
    (:func:`~mtlens.analysis.inference.scalar_test` of ``final_test``: Hall's two-sample statistic) and the runs'
    values at the end ``end_values`` (MTL, STL).  That test rejects a shift
    only where both do, so the shifts it keeps are the union of the one-level interval and the permutation test's
    (:func:`~mtlens.analysis.inference.shift_interval`; unbounded where its ``min_p`` exceeds ``alpha``),
    which excludes 0 exactly when ``p_persistent <= alpha``.  The gap it detects with 80% power is at least
    the one-level test's, and there is none where the permutation floor is above ``alpha``."""
    low, high = shift_interval(*end_values, alpha)
    return {
        "low": min(welch["low"], low),
        "high": max(welch["high"], high),
        "min_detectable": welch["min_detectable"] if final_test.min_p <= alpha else np.inf,
    }


def fixed_sequence_p(p_level: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Fixed-sequence adjusted p-values of the levels tested from the last one backwards (``(L,)`` each):

        p_sequence_j = max_{k >= j} p_level_k,   and 1 where some ``k >= j`` has an estimate whose sign is
        not the last level's (the sequence stops at a sign change; a last estimate of 0 rejects nothing).

    At level ``alpha`` the rejected levels are ``{j : p_sequence_j <= alpha}``, a run that ends at the
    last level; NaN p-values count as 1."""
    p = np.where(np.isfinite(p_level), p_level, 1.0)
    adjusted = np.maximum.accumulate(p[::-1])[::-1]
    end_sign = np.sign(estimate[-1])
    other = (np.sign(estimate) != end_sign) | (end_sign == 0)
    stopped = np.logical_or.accumulate(other[::-1])[::-1]
    return np.where(stopped, 1.0, adjusted)


def monotone_curve(train_loss: np.ndarray, measure: np.ndarray, epoch: np.ndarray) -> Curve:
    """The isotonic (non-increasing) fit of ``train_loss`` over the checkpoints in training order (PAVA,
    ``scipy.optimize.isotonic_regression``), one knot per block of tied fitted values: the fitted loss,
    the mean ``measure`` and the mean ``epoch`` of the block's checkpoints.  Checkpoints whose loss is
    not finite are dropped first; a knot whose block misses the measure somewhere has a NaN measure (the
    curve cannot be tested there).  Knots' losses strictly decrease."""
    train_loss, measure, epoch = (np.asarray(a, float) for a in (train_loss, measure, epoch))
    finite = np.isfinite(train_loss)
    x, g, e = train_loss[finite], measure[finite], epoch[finite]
    if len(x) == 0:
        return x, g, e
    fit = isotonic_regression(x, increasing=False)
    starts = np.asarray(fit.blocks[:-1])
    sizes = np.diff(fit.blocks)
    return fit.x[starts], np.add.reduceat(g, starts) / sizes, np.add.reduceat(e, starts) / sizes


def interpolate_at(levels: np.ndarray, train_loss: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation in ``log(train_loss)`` of a monotonized curve; NaN outside its range."""
    order = np.argsort(train_loss)
    log_x, y = np.log(train_loss[order]), values[order]
    out = np.interp(np.log(levels), log_x, y)
    out[(levels < train_loss.min()) | (levels > train_loss.max())] = np.nan
    return out


def common_levels(curves: Sequence[Curve], n_grid: int = DEFAULT_N_GRID) -> tuple[np.ndarray, np.ndarray] | None:
    """``(levels, limiting)``: the grid of step 2 of the module docstring for ``curves`` (from the highest
    loss all cover to the **end**, the largest of their lowest losses; ``min(n_grid, fewest knots any
    curve has in that range)`` levels, at least 2, log-spaced, training order) and per curve whether its
    lowest loss is the end.  ``None`` when the ranges do not overlap."""
    lows = np.array([c[0].min() if len(c[0]) else np.nan for c in curves])
    highs = np.array([c[0].max() if len(c[0]) else np.nan for c in curves])
    end, start = lows.max(), highs.min()
    if not (np.isfinite(end) and np.isfinite(start) and 0 < end < start):
        return None
    knots = min(int(((c[0] >= end) & (c[0] <= start)).sum()) for c in curves)
    return np.geomspace(start, end, max(2, min(n_grid, knots))), lows == end


def _level_test(mtl: np.ndarray, stl: np.ndarray, paired: bool, seed: int) -> MaxTTest:
    """The one-level test of :mod:`mtlens.analysis.inference` of the runs' values at one level (``(n,)``
    each; paired: rows are seeds in the same order)."""
    return paired_max_t(mtl - stl, seed=seed) if paired else unpaired_max_t(mtl, stl, seed=seed)


def level_p_values(
    test: MaxTTest, final_test: MaxTTest, mtl: np.ndarray, stl: np.ndarray, alpha: float, seed: int = 0
) -> np.ndarray:
    """Per level the unadjusted p-value of the one-level test, ``(L,)``, from the max-|t| ``test`` and the
    end level's own test ``final_test`` of the values ``mtl``, ``stl`` (``(n, L)`` each; paired: rows are
    seeds in the same order).

    Paired: the paired one-level test (:attr:`~mtlens.analysis.inference.MaxTTest.pointwise_p`), not
    bound to the seeds.  Unpaired: ``max(p_Hall, p_perm)``, the unpaired one-level test (Hall's two-sample
    statistic, least favourable over groups of skewness up to the bound at any variance ratio) and the
    label-permutation test of Welch's t at that level (exact over all relabellings up to
    :data:`~mtlens.analysis.inference.MAX_EXACT`).  Each is valid where the other may not be (the
    permutation test needs exchangeable labels, which unequal variances break: 13% at 3 vs 9 runs with
    an sd ratio of 3; the one-level test needs groups within its skewness family, where Welch's t with Hsu's
    df gave up to 8.8% on skewed groups, and on real A/A runs at 3 vs 9 with equal spread 8.5% (Welch's df),
    benchmarks/gap_heldout.py), and the larger p-value rejects only where both do, so its size is
    at most the smaller of theirs.  Unpaired splits have a low permutation floor (1 / C(12, 3) = 0.0045
    at 3 vs 9, 2 / C(12, 6) = 0.0022 at 6 vs 6), unlike the ``2 / 2^n`` of few paired seeds.  The
    permutation p-value is computed as the fixed sequence at ``alpha`` needs it (a test per level costs
    up to C(16, 8) relabellings): at the end, then backwards while the levels are rejected with the
    end's sign; before the first level that fails, ``p_Hall`` alone (a lower bound, exact for the
    fixed sequence at any level up to ``alpha``)."""
    p = test.pointwise_p
    if test.design == "paired":
        return p
    p[-1] = max(p[-1], final_test.p_any)
    end_sign = np.sign(test.estimate[-1])
    for j in range(len(p) - 2, -1, -1):
        if not p[j + 1] <= alpha or end_sign == 0 or np.sign(test.estimate[j]) != end_sign or p[j] > alpha:
            break
        p[j] = max(p[j], unpaired_max_t(mtl[:, j], stl[:, j], seed=seed).p_any)
    return p


def _leave_one_seed_out(used: dict[str, list[tuple[int, str, Curve]]], paired: bool, seed: int) -> np.ndarray:
    """``p_persistent`` with each seed's runs left out in turn, the end recomputed from the other runs
    (NaN where a mode keeps fewer than 2 runs or the ranges stop overlapping)."""
    seeds = sorted({s for runs in used.values() for s, _, _ in runs})
    out = np.full(len(seeds), np.nan)
    for i, left in enumerate(seeds):
        kept = {mode: [c for s, _, c in runs if s != left] for mode, runs in used.items()}
        if min(len(cs) for cs in kept.values()) < 2:
            continue
        grid = common_levels([c for cs in kept.values() for c in cs], 2)
        if grid is None:
            continue
        end = grid[0][-1:]
        at = {mode: np.array([interpolate_at(end, c[0], c[1])[0] for c in cs]) for mode, cs in kept.items()}
        test = _level_test(at["mtl"], at["stl"], paired, seed)
        out[i] = level_p_values(test, test, at["mtl"][:, None], at["stl"][:, None], 1.0, seed)[0]
    return out


def generalization_gap(
    runs: pd.DataFrame,
    task: str,
    measure: str = "val/loss",
    n_grid: int = DEFAULT_N_GRID,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    stability: bool = True,
) -> GapResult | None:
    """Gap analysis of ``task`` from tidy trajectory rows of STL and MTL runs.

    ``runs`` holds rows (columns of ``mtlens.store.ROW_COLUMNS``) of any number of runs;
    rows of ``task`` with quantities ``train/loss`` and ``measure`` are used, grouped by
    ``mode`` and ``run_id``.  ``seed`` seeds the Monte Carlo patterns (only used beyond 14 seeds);
    ``stability=False`` skips the leave-one-seed-out check (``loo_p_persistent`` stays empty).
    Returns ``None`` when a mode is missing or the curves' training-loss ranges do not overlap.
    """
    rows = runs[(runs["task"] == task) & runs["quantity"].isin(["train/loss", measure])]
    wide = rows.pivot_table(index=["mode", "run_id", "seed", "step", "epoch"], columns="quantity", values="value")
    return gap_from_checkpoints(wide.reset_index(), task, measure, n_grid, alpha, seed, stability)


def _curves_by(
    checkpoints: pd.DataFrame, measure: str, keys: Sequence[str], time: str = "epoch"
) -> list[tuple[tuple, Curve]] | None:
    """``(key, curve)`` per group of ``checkpoints`` (wide form) with equal ``keys`` columns, sorted by
    the keys, each group's checkpoints in step order and monotonized (:func:`monotone_curve`, with the
    ``time`` column as the epoch); ``None`` when a column is missing or NaN throughout."""
    if not {measure, "train/loss"} <= set(checkpoints):
        return None
    # numpy columns, not DataFrame selections: this runs once per (setting, method, task, measure)
    measured = ~np.isnan(np.column_stack([checkpoints[c].to_numpy(float) for c in (measure, "train/loss")]))
    kept = measured.any(axis=1)
    if not measured.any(axis=0).all() or not kept.any():
        return None
    coded = [pd.factorize(checkpoints[k].to_numpy()[kept], sort=True) for k in keys]
    order = np.lexsort((checkpoints["step"].to_numpy()[kept], *[codes for codes, _ in reversed(coded)]))
    codes = np.stack([c[order] for c, _ in coded])
    starts = np.flatnonzero(np.r_[True, (codes[:, 1:] != codes[:, :-1]).any(axis=0)])
    x, g, e = (checkpoints[c].to_numpy(float)[kept][order] for c in ("train/loss", measure, time))
    return [
        (tuple(uniques[codes[i, a]] for i, (_, uniques) in enumerate(coded)), monotone_curve(x[a:b], g[a:b], e[a:b]))
        for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True)
    ]


def gap_from_checkpoints(
    checkpoints: pd.DataFrame,
    task: str,
    measure: str = "val/loss",
    n_grid: int = DEFAULT_N_GRID,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
    stability: bool = True,
) -> GapResult | None:
    """:func:`generalization_gap` from the task's checkpoints in wide form: one row per (run, step)
    with columns ``mode, run_id, seed, step, epoch``, ``train/loss`` and ``measure`` (other columns
    are ignored), e.g. a pivot of the trajectory rows made once for many tasks.  A column that is NaN
    throughout counts as missing, and rows where both are NaN as absent, as in the pivot of
    :func:`generalization_gap`."""
    runs = _curves_by(checkpoints, measure, ("mode", "seed", "run_id"))
    if runs is None:
        return None
    by_mode: dict[str, dict[int, list[tuple[str, Curve]]]] = {}
    for (mode, seed_of_run, run_id), curve in runs:
        by_mode.setdefault(str(mode), {}).setdefault(int(seed_of_run), []).append((str(run_id), curve))
    if set(by_mode) != {"stl", "mtl"}:
        return None
    common = sorted(
        s for s in set(by_mode["stl"]) & set(by_mode["mtl"]) if len(by_mode["stl"][s]) == 1 == len(by_mode["mtl"][s])
    )
    paired = len(common) >= 2
    used = {
        mode: [(s, r, c) for s, rs in sorted(by_seed.items()) if not paired or s in common for r, c in rs]
        for mode, by_seed in by_mode.items()
    }
    ordered = [(mode, *run) for mode in ("stl", "mtl") for run in used[mode]]
    grid = common_levels([c for _, _, _, c in ordered], n_grid)
    if grid is None:
        return None
    levels, limiting = grid
    n_levels = len(levels)
    values, curves_of = {}, {}
    for mode in ("stl", "mtl"):
        values[mode] = np.stack([interpolate_at(levels, c[0], c[1]) for _, _, c in used[mode]])
        epochs = np.stack([interpolate_at(levels, c[0], c[2]) for _, _, c in used[mode]])
        n = len(used[mode])
        std = values[mode].std(axis=0, ddof=1) if n > 1 else np.full(n_levels, np.nan)
        curves_of[mode] = (levels, values[mode].mean(axis=0), std, np.full(n_levels, n), epochs.mean(axis=0))
    testable = all(np.isfinite(v).all() for v in values.values()) and (
        paired or (len(used["mtl"]) >= 2 and len(used["stl"]) >= 2)
    )
    test, final_test = None, None
    level_p, loo, bound_skewness = np.full(n_levels, np.nan), np.array([]), np.nan
    if testable:
        mtl, stl = values["mtl"], values["stl"]
        test = paired_band_test(mtl - stl, seed=seed) if paired else unpaired_band_test(mtl, stl, seed=seed)
        final_test = _level_test(mtl[:, -1], stl[:, -1], paired, seed)
        level_p = level_p_values(test, final_test, mtl, stl, alpha, seed)
        loo = _leave_one_seed_out(used, paired, seed) if stability else loo
        bound_grid = common_levels([c for _, _, _, c in ordered], BOUND_LEVELS)  # the same range, any n_grid
        if paired and bound_grid is not None:
            at = bound_grid[0]
            pairs = [np.stack([interpolate_at(at, c[0], c[1]) for _, _, c in used[m]]) for m in ("mtl", "stl")]
            bound_skewness = skewness_of(pairs[0] - pairs[1])
    return GapResult(
        task=task,
        measure=measure,
        curves=pd.DataFrame(
            {
                "mode": np.repeat(["stl", "mtl"], n_levels),
                **{
                    name: np.concatenate([curves_of["stl"][i], curves_of["mtl"][i]])
                    for i, name in enumerate(("train_loss", "mean", "std", "n", "epoch"))
                },
            }
        ),
        levels=levels,
        estimate=values["mtl"].mean(axis=0) - values["stl"].mean(axis=0),
        test=test,
        alpha=alpha,
        level_p=level_p,
        final_test=final_test,
        end_limited_by=tuple(f"{m} seed {s}" for (m, s, _, _), hit in zip(ordered, limiting, strict=True) if hit),
        loo_p_persistent=loo,
        end_values=None if final_test is None else (values["mtl"][:, -1], values["stl"][:, -1]),
        bound_skewness=bound_skewness,
    )


def bound_of_gaps(results: Sequence[GapResult]) -> SkewnessBound:
    """:func:`~mtlens.analysis.inference.family_skewness_bound` of the paired curves among ``results``, each
    by its ``bound_skewness`` and seeds (the grid does not enter: :data:`BOUND_LEVELS`)."""
    seeds = {
        i: len(r.end_values[0])
        for i, r in enumerate(results)
        if r.design == "paired" and r.end_values is not None and np.isfinite(r.bound_skewness)
    }
    return family_skewness_bound([results[i].bound_skewness for i in seeds], list(seeds.values()))


def gap_family(
    results: list[GapResult], alpha: float = DEFAULT_ALPHA, settings: Sequence[Hashable] | None = None
) -> tuple[list[GapResult], pd.DataFrame]:
    """Error control over a family of gap curves (e.g. every setting x method x task x measure of a report).

    The paired curves' one-level tests are first put under their setting's skewness bound
    (:func:`bound_of_gaps` over the curves of the same ``settings`` entry, one setting when ``None``: each
    curve's skewness averaged over :data:`BOUND_LEVELS` levels, a ``1 − beta`` upper confidence
    limit of the curves' common |skewness|, Berger & Boos 1994; :func:`~mtlens.analysis.inference.grouped_bounds`).
    Selective inference on multiple families (Benjamini & Bogomolov 2014): the curves are selected by
    Benjamini–Hochberg at FDR ``alpha`` on their ``p_persistent``; with ``R`` of ``m`` curves selected,
    every curve's onset (fixed sequence) and band are then taken at BH's rejection level
    ``alpha_used = R * alpha / m`` (:func:`mtlens.analysis.inference.bh_level`; ``alpha / m`` when
    nothing is selected), discrete-aware: ``m`` counts only the curves whose smallest attainable p-value
    can reach ``alpha`` (:func:`mtlens.analysis.inference.attainable`): for ``p_persistent``, whose paired
    floor is not bound to the seeds, every testable paired curve; for ``p_any`` those whose max-T test's
    ``min_p`` (``2 / 2^n`` for ``n`` paired seeds) is at most ``alpha``.  A curve's end level is rejected at
    ``alpha_used`` exactly when it is selected, so an onset is shown iff the curve is a BH discovery, and the
    expected share of shown onsets with any false claim stays at most ``alpha``.  Returns the results at that
    level and one :meth:`GapResult.summary` row per result with ``p_any_adjusted`` and
    ``p_persistent_adjusted`` (BH within the family) added.
    """
    groups = [0] * len(results) if settings is None else settings
    bounds = grouped_bounds(bound_of_gaps, results, groups)
    results = [r.with_bound(bound) for r, bound in zip(results, bounds, strict=True)]
    p_persistent = np.array([r.p_persistent for r in results])
    p_any = np.array([r.test.p_any if r.test else np.nan for r in results])
    min_persistent = np.array([r.min_p_persistent for r in results])
    min_any = np.array([r.test.min_p if r.test else np.nan for r in results])
    level = bh_level(p_persistent, alpha, min_persistent)
    results = [r.at_alpha(level) for r in results]
    table = pd.DataFrame.from_records([r.summary() for r in results])
    if len(table):
        table.insert(table.columns.get_loc("p_any") + 1, "p_any_adjusted", bh_adjust(p_any, min_any, alpha))
        table.insert(
            table.columns.get_loc("p_persistent") + 1,
            "p_persistent_adjusted",
            bh_adjust(p_persistent, min_persistent, alpha),
        )
    return results, table


UNIT_GAP_COLUMNS = ["setting", "task", "seed", "method", "gap_mean"]


def unit_gap_means(rows: pd.DataFrame, measure: str = "val/loss", n_grid: int = DEFAULT_N_GRID) -> pd.DataFrame:
    """Per MTL unit (setting, task, seed, method) with a same-seed STL run: ``gap_mean``, the mean of
    ``G_MTL − G_STL`` (``G`` = ``measure``) over **one common grid per (setting, task)**:
    :func:`common_levels` of every STL and MTL run of the task (all methods and seeds), each run
    monotonized by :func:`monotone_curve`.  Every unit of a task averages over the same training-loss
    levels, so a unit whose MTL run optimizes slower does not average over an earlier stage of training
    (averaging over each pair's own range ties ``gap_mean`` to the optimization effect mechanically).
    ``rows`` are tidy trajectory rows; returns columns :data:`UNIT_GAP_COLUMNS`."""
    frame = rows[rows["quantity"].isin(["train/loss", measure])]
    wide = frame.pivot_table(
        index=["setting", "mode", "method", "seed", "task", "step"], columns="quantity", values="value"
    ).reset_index()
    runs = _curves_by(wide, measure, ("setting", "task", "mode", "method", "seed"), time="step")
    records = []
    by_task: dict[tuple[str, str], dict[tuple[str, str, int], Curve]] = {}
    for (setting, task, mode, method, seed), curve in runs or []:
        if len(curve[0]) >= 2:
            unit = (str(mode), str(method) if mode == "mtl" else "", int(seed))
            by_task.setdefault((str(setting), str(task)), {})[unit] = curve
    for (setting, task), curves in by_task.items():
        grid = common_levels(list(curves.values()), n_grid)
        if grid is None:
            continue
        levels = grid[0]
        for (mode, method, seed), curve in curves.items():
            reference = curves.get(("stl", "", seed))
            if mode != "mtl" or reference is None:
                continue
            gap = interpolate_at(levels, curve[0], curve[1]) - interpolate_at(levels, reference[0], reference[1])
            records.append((setting, task, seed, method, float(gap.mean())))
    return pd.DataFrame.from_records(records, columns=UNIT_GAP_COLUMNS)
