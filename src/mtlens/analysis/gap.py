"""The generalization gap at comparable training loss (Mueller et al.), with a simultaneous test.

For one task, every run (STL or MTL, one seed) gives checkpoints ``k`` with training
loss ``x_k`` (on the fixed training subset) and a generalization measure ``G_k``
(validation loss or error).  The curve ``G(x)`` is built as follows:

1. **Monotonize**: walk the checkpoints in training order and keep only those whose
   training loss is a new running minimum (the first checkpoint is always kept).
2. **Interpolate** ``G`` (and the epoch) linearly in ``log x`` on a common grid ``Lambda``
   of ``n_grid`` log-spaced loss levels covering the overlap of the loss ranges that
   *all* curves of the task reached (both modes, every seed), ordered from high to low
   loss (training order).

**Design.** STL and MTL runs of one seed share the encoder and head initialization and the
batch order, so the comparison is *paired* by seed: with ``n >= 2`` seeds that have both an STL
and an MTL run, the per-seed difference curves ``d_s(lambda) = G_MTL,s(lambda) − G_STL,s(lambda)``
are tested with the sign-flip max-|t| test of :mod:`mtlens.analysis.inference` (runs of other
seeds are left out).  Otherwise, with ``>= 2`` runs per mode, the curves are compared *unpaired*
(label permutation, Welch t); with fewer, nothing is tested.

    gap(lambda) = mean_s d_s(lambda)  (paired)  or  mean G_MTL − mean G_STL  (unpaired)

(negative in loss/error = MTL generalizes better at equal training loss).

**Band and onset.** At level ``alpha`` the simultaneous band ``gap ± c_alpha * se`` holds over all
grid levels at once.  The **onset** is the first level from which the band excludes 0 with the
sign of the last level and keeps excluding it to the end of the common range (the paper's
claim is a gap that appears early and persists); it is reported with the mean epoch at which
the MTL and the STL runs reached that level.  ``p_any`` tests "a gap at some level",
``p_persistent`` "a gap that persists to the end" (an onset exists iff ``p_persistent <= alpha``).
With ``min_p > alpha`` (e.g. 3 paired seeds: ``min_p = 2/8``) no onset can be reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from mtlens.analysis.inference import MaxTTest, bh_adjust, bh_level, paired_max_t, unpaired_max_t

DEFAULT_ALPHA = 0.05
"""Level of the band and the onset unless the caller controls a family (the report uses its BH level)."""
GAP_DIRECTIONS: dict[float | None, str] = {1.0: "MTL worse", -1.0: "MTL better"}
"""What the sign of a persistent gap says (none: ``None``)."""


@dataclass(frozen=True)
class GapResult:
    """The gap analysis of one task.

    ``curves``: one row per (mode, grid level) with ``mode, train_loss, mean, std, n, epoch`` over the
    runs used; ``levels``: the grid ``(L,)``; ``test``: the max-|t| test (``None`` when not testable);
    ``estimate``: the gap per level; ``alpha``: the level of :attr:`gap`'s band and :attr:`onset`.
    """

    task: str
    measure: str
    curves: pd.DataFrame
    levels: np.ndarray
    estimate: np.ndarray
    test: MaxTTest | None
    alpha: float = DEFAULT_ALPHA

    @property
    def design(self) -> str:
        """``paired``, ``unpaired`` or ``none`` (too few runs to test)."""
        return self.test.design if self.test is not None else "none"

    def at_alpha(self, alpha: float) -> GapResult:
        """The same result with band and onset at level ``alpha``."""
        return replace(self, alpha=alpha)

    @cached_property
    def gap(self) -> pd.DataFrame:
        """One row per level: ``train_loss, gap, se, t, p_adjusted, band_low, band_high, excludes_zero,
        min_detectable`` (band and detectable gap at :attr:`alpha`; NaN without a test)."""
        columns: dict[str, np.ndarray] = {"train_loss": self.levels, "gap": self.estimate}
        if self.test is None:
            nan = np.full(len(self.levels), np.nan)
            columns |= dict.fromkeys(("se", "t", "p_adjusted", "band_low", "band_high", "min_detectable"), nan)
            return pd.DataFrame(columns | {"excludes_zero": np.zeros(len(self.levels), dtype=bool)})
        low, high = self.test.band(self.alpha)
        return pd.DataFrame(
            columns
            | {
                "se": self.test.se,
                "t": self.test.t,
                "p_adjusted": self.test.adjusted_p,
                "band_low": low,
                "band_high": high,
                "excludes_zero": self.test.significant(self.alpha),
                "min_detectable": self.test.min_detectable(self.alpha),
            }
        )

    @property
    def onset(self) -> dict[str, float] | None:
        """``None`` or ``train_loss, gap, sign, epoch_mtl, epoch_stl`` of the persistent gap's first level."""
        i = self.test.persistent_from(self.alpha) if self.test is not None else None
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
        """One row of the report's gap table: design, seeds, p-values, onset and final gap with its band."""
        test = self.test
        onset = self.onset or {}
        last = self.gap.iloc[-1]
        modes, runs = self.curves["mode"].to_numpy(), self.curves["n"].to_numpy()
        n_mtl, n_stl = (int(runs[modes == m][0]) for m in ("mtl", "stl"))
        return {
            "task": self.task,
            "measure": self.measure,
            "design": self.design,
            "n_mtl": n_mtl,
            "n_stl": n_stl,
            "final_gap": float(last["gap"]),
            "final_band_low": float(last["band_low"]),
            "final_band_high": float(last["band_high"]),
            "final_effect_size": float(test.effect_size()[-1]) if test else np.nan,
            "min_detectable_final": float(last["min_detectable"]),
            "p_any": test.p_any if test else np.nan,
            "p_persistent": test.p_persistent if test else np.nan,
            "min_p": test.min_p if test else np.nan,
            "band_level": self.alpha,
            "onset_train_loss": onset.get("train_loss"),
            "onset_epoch_mtl": onset.get("epoch_mtl"),
            "onset_epoch_stl": onset.get("epoch_stl"),
            "direction": GAP_DIRECTIONS.get(onset.get("sign"), "no persistent gap"),
        }


def monotone_curve(train_loss: np.ndarray, measure: np.ndarray, epoch: np.ndarray) -> tuple[np.ndarray, ...]:
    """Keep the checkpoints (in training order) whose training loss is a new running minimum."""
    keep = np.zeros(len(train_loss), dtype=bool)
    best = np.inf
    for i, x in enumerate(train_loss):
        if np.isfinite(x) and x < best:
            keep[i], best = True, x
    return train_loss[keep], measure[keep], epoch[keep]


def interpolate_at(levels: np.ndarray, train_loss: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Linear interpolation in ``log(train_loss)`` of a monotonized curve; NaN outside its range."""
    order = np.argsort(train_loss)
    log_x, y = np.log(train_loss[order]), values[order]
    out = np.interp(np.log(levels), log_x, y)
    out[(levels < train_loss.min()) | (levels > train_loss.max())] = np.nan
    return out


def generalization_gap(
    runs: pd.DataFrame,
    task: str,
    measure: str = "val/loss",
    n_grid: int = 200,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> GapResult | None:
    """Gap analysis of ``task`` from tidy trajectory rows of STL and MTL runs.

    ``runs`` holds rows (columns of ``mtlens.store.ROW_COLUMNS``) of any number of runs;
    rows of ``task`` with quantities ``train/loss`` and ``measure`` are used, grouped by
    ``mode`` and ``run_id``.  ``seed`` seeds the Monte Carlo patterns (only used beyond 14 seeds).
    Returns ``None`` when a mode is missing or the curves' training-loss ranges do not overlap.
    """
    rows = runs[(runs["task"] == task) & runs["quantity"].isin(["train/loss", measure])]
    wide = rows.pivot_table(index=["mode", "run_id", "seed", "step", "epoch"], columns="quantity", values="value")
    return gap_from_checkpoints(wide.reset_index(), task, measure, n_grid, alpha, seed)


def gap_from_checkpoints(
    checkpoints: pd.DataFrame,
    task: str,
    measure: str = "val/loss",
    n_grid: int = 200,
    alpha: float = DEFAULT_ALPHA,
    seed: int = 0,
) -> GapResult | None:
    """:func:`generalization_gap` from the task's checkpoints in wide form: one row per (run, step)
    with columns ``mode, run_id, seed, step, epoch``, ``train/loss`` and ``measure`` (other columns
    are ignored), e.g. a pivot of the trajectory rows made once for many tasks.  A column that is NaN
    throughout counts as missing, and rows where both are NaN as absent, as in the pivot of
    :func:`generalization_gap`."""
    if not {measure, "train/loss"} <= set(checkpoints):
        return None
    # numpy columns, not DataFrame selections: this runs once per (setting, method, task, measure)
    measured = ~np.isnan(np.column_stack([checkpoints[c].to_numpy(float) for c in (measure, "train/loss")]))
    kept = measured.any(axis=1)
    if not measured.any(axis=0).all() or not kept.any():
        return None
    column = {c: checkpoints[c].to_numpy()[kept] for c in ("mode", "run_id", "seed", "step")}
    # one curve per run, in (mode, seed, run_id) order, its checkpoints in step order
    mode_code, modes = pd.factorize(column["mode"], sort=True)
    run_code, seeds = pd.factorize(column["run_id"], sort=True)[0], column["seed"]
    order = np.lexsort((column["step"], run_code, seeds, mode_code))
    run_code = run_code[order]
    starts = np.flatnonzero(np.r_[True, run_code[1:] != run_code[:-1]])
    x, g, e = (checkpoints[c].to_numpy(float)[kept][order] for c in ("train/loss", measure, "epoch"))
    curves: dict[str, dict[int, list[tuple[np.ndarray, ...]]]] = {}
    for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        mode, seed_of_run = modes[mode_code[order[a]]], int(seeds[order[a]])
        curves.setdefault(mode, {}).setdefault(seed_of_run, []).append(monotone_curve(x[a:b], g[a:b], e[a:b]))
    if set(curves) != {"stl", "mtl"}:
        return None
    common = sorted(
        s for s in set(curves["stl"]) & set(curves["mtl"]) if len(curves["stl"][s]) == 1 and len(curves["mtl"][s]) == 1
    )
    paired = len(common) >= 2
    used = {
        mode: [c for s, cs in sorted(by_seed.items()) if not paired or s in common for c in cs]
        for mode, by_seed in curves.items()
    }
    low = max(c[0].min() for cs in used.values() for c in cs)
    high = min(c[0].max() for cs in used.values() for c in cs)
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        return None
    levels = np.geomspace(high, low, n_grid)  # training order: from high loss to low loss
    values, curves_of = {}, {}
    for mode in ("stl", "mtl"):
        values[mode] = np.stack([interpolate_at(levels, c[0], c[1]) for c in used[mode]])
        epochs = np.stack([interpolate_at(levels, c[0], c[2]) for c in used[mode]])
        n = len(used[mode])
        std = values[mode].std(axis=0, ddof=1) if n > 1 else np.full(n_grid, np.nan)
        curves_of[mode] = (levels, values[mode].mean(axis=0), std, np.full(n_grid, n), epochs.mean(axis=0))
    if not all(np.isfinite(v).all() for v in values.values()):
        test = None  # a measure missing at some level cannot be tested
    elif paired:
        test = paired_max_t(values["mtl"] - values["stl"], seed=seed)
    elif len(used["mtl"]) >= 2 and len(used["stl"]) >= 2:
        test = unpaired_max_t(values["mtl"], values["stl"], seed=seed)
    else:
        test = None
    estimate = values["mtl"].mean(axis=0) - values["stl"].mean(axis=0)
    return GapResult(
        task=task,
        measure=measure,
        curves=pd.DataFrame(
            {
                "mode": np.repeat(["stl", "mtl"], n_grid),
                **{
                    name: np.concatenate([curves_of["stl"][i], curves_of["mtl"][i]])
                    for i, name in enumerate(("train_loss", "mean", "std", "n", "epoch"))
                },
            }
        ),
        levels=levels,
        estimate=estimate,
        test=test,
        alpha=alpha,
    )


def gap_family(results: list[GapResult], alpha: float = DEFAULT_ALPHA) -> tuple[list[GapResult], pd.DataFrame]:
    """Multiplicity control over a family of gap tests (e.g. every task x measure x method of a report).

    The persistent-gap p-values are Benjamini–Hochberg adjusted at FDR ``alpha``; every result's band
    and onset are then drawn at the per-test level ``alpha_used`` at which BH rejects
    (:func:`mtlens.analysis.inference.bh_level`), so an onset is shown iff its persistent gap is a BH
    discovery.  Returns the results at that level and one :meth:`GapResult.summary` row per result
    with ``p_any_adjusted`` and ``p_persistent_adjusted`` (BH within the family) added.
    """
    p_persistent = np.array([r.test.p_persistent if r.test else np.nan for r in results])
    p_any = np.array([r.test.p_any if r.test else np.nan for r in results])
    level = bh_level(p_persistent, alpha)
    results = [r.at_alpha(level) for r in results]
    table = pd.DataFrame.from_records([r.summary() for r in results])
    if len(table):
        table.insert(table.columns.get_loc("p_any") + 1, "p_any_adjusted", bh_adjust(p_any))
        table.insert(table.columns.get_loc("p_persistent") + 1, "p_persistent_adjusted", bh_adjust(p_persistent))
    return results, table
