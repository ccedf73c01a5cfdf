"""Null calibration: every inference of the report on A/A splits of STL runs (docs/statistics.md).

STL runs of ``2h`` or more seeds per task carry no MTL effect at all.  A split draws two disjoint
groups of ``h`` seeds; the first is relabelled as the "MTL" side (method ``aa``) and compared with
the second exactly as the report compares MTL with STL:

- *paired*: the ``i``-th seed of the first group is given the ``i``-th seed of the second group, so
  the report's same-seed pairing applies (the pairs do not share an initialization, which only
  makes their differences noisier);
- *unpaired*: the first group gets seeds no STL run has, so the report's unpaired tests apply;
- *unpaired unbalanced*: as unpaired, a quarter of the seeds (at least 2) against all the others
  (the unpaired tests must hold their level with 3 vs 9 runs);
- *paired skewed*: the paired split with mean-zero, right-skewed shifts added to the "MTL" side's
  gap curves, test metrics, log-ratios and probe differences (:func:`skewed_curves`,
  :func:`skewed_shifts`): the null "MTL does not
  change the mean" without the symmetry that an exchangeable A/A pair has by construction, so this
  check can fail where the paired tests' assumption does.

Per split, task and (gap) measure or (transfer) metric the tests are: ``gap exists``
(``p_any``), ``persistent gap`` (``p_persistent``, the end level's own p-value: the fixed sequence
reports an onset iff it is ``<= alpha``) and
``transfer``; per paired split and task also ``optimization effect`` (the report's
:func:`~mtlens.analysis.optimization.optimization_tests`, per log-ratio summary) and, where the runs
recorded probes, ``probe difference`` (the report's :func:`~mtlens.analysis.correlation.difference_tests`,
per difference column of :func:`~mtlens.analysis.correlation.unit_table`); and, on the paired units of the
first splits, whose factor ``log_ratio_mean`` is randomly permuted (so it is independent of
everything), ``correlation`` (Pearson and Spearman against ``transfer_pct`` and ``gap_mean``).
``BH verdict``: per split and report table (the gap table's ``p_any`` and onsets, the transfer
verdicts, each optimization summary, the probe differences), whether the table claims anything at
all after Benjamini–Hochberg (its smallest adjusted p-value ``<= alpha``).  Every
rejection is a false positive; :func:`false_positive_rates` gives each test's rate with its
Clopper–Pearson interval.  Splits share seeds, so comparisons of different splits are not
independent and the interval is somewhat optimistic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.correlation import (
    CONFLICTS,
    FACTORS,
    MEAN_FACTORS,
    UNIT_CENTRE,
    UNIT_CLUSTER,
    UNIT_SLOTS,
    cluster_permutations,
    correlate,
    correlation_table,
    difference_tests,
    unit_table,
)
from mtlens.analysis.gap import gap_family, generalization_gap
from mtlens.analysis.inference import clopper_pearson
from mtlens.analysis.optimization import optimization_effect, optimization_tests
from mtlens.analysis.transfer import TaskInfo, selected_checkpoints, transfer_tests
from mtlens.quantities import FISHER_TRACE

GAP_MEASURES = ("val/loss", "val/error")
TRANSFER_METRICS = (None, "loss")
"""Transfer is tested on each task's selection metric (``None``) and on the test loss."""
SKEW = 4.0
"""The ``paired skewed`` null's shift, in the seeds' sd of the value (:func:`skewed_shifts`).  Added to the
difference of two independent runs (variance ``2 sd²``) a shift ``k · sd · (E − 1)`` gives differences of
skewness ``2 k³ / (2 + k²)^1.5``: 0.38 at ``k = 1`` (the default before 2026-12-06, where Student's t holds 5%
too, so the check could not fail for a test without the skewness correction), **1.68 at 4**, near the family's
bound 2, where Student's t gives 8.5–8.8% at 6–8 pairs and Hall's paired test 4.6–5.0% (100,000 normal +
shifted-exponential data sets, docs/statistics.md §8)."""
UNPAIRED_OFFSET = 1_000_000
"""Added to the "MTL" group's seeds in the unpaired design, so that no seed matches an STL run."""
OPTIMIZATION_SUMMARIES = ("log_ratio_early", "log_ratio_final")
"""The per-seed log-ratios :func:`~mtlens.analysis.optimization.optimization_tests` tests."""
TESTS = (
    "gap exists",
    "persistent gap (onset)",
    "transfer",
    "optimization effect",
    "probe difference",
    "correlation",
    "BH verdict",
)
"""Every test of :func:`calibrate`, in the order of :func:`false_positive_rates`."""

Effect = dict[tuple[str, str], float]
"""A positive control's known effect: ``(task, quantity) -> size`` added to the "MTL" side (:func:`spike_in`,
:func:`calibrate`); a quantity is a trajectory quantity (``val/loss``), a log-ratio summary
(``log_ratio_final``) or a probe difference (``coherence_diff``)."""


def effect_of(effect: Effect, quantity: str, tasks: pd.Series) -> np.ndarray:
    """Per row of ``tasks``, the size ``effect[(task, quantity)]`` (0 where the pair has none)."""
    sizes = {task: v for (task, q), v in effect.items() if q == quantity}
    return tasks.map(sizes).fillna(0.0).to_numpy(float)


def _quantities(effect: Effect) -> set[str]:
    """The quantities ``effect`` spikes (in any task)."""
    return {q for _, q in effect}


CONTROLLED_TESTS = ("persistent gap (onset)", "transfer", "optimization effect", "probe difference")
"""The tests whose median minimum detectable difference the positive control spikes in."""
PROBE_OF_DIFFERENCE = {"fisher_early_diff": FISHER_TRACE, **MEAN_FACTORS}
"""Probe difference column of the unit table -> the probe quantity it is the MTL − STL mean of."""


def aa_splits(
    seeds: Sequence[int], n_splits: int, seed: int = 0, first_size: int | None = None
) -> list[tuple[list[int], list[int]]]:
    """Up to ``n_splits`` distinct splits of ``seeds`` into two disjoint groups of ``len(seeds) // 2``, or
    (``first_size``) an unbalanced split: ``first_size`` seeds against all the others."""
    seeds = sorted(int(s) for s in seeds)
    half = len(seeds) // 2
    if half < 2:
        raise ValueError(f"A/A splits need at least 4 seeds, got {len(seeds)}")
    sizes = (half, half) if first_size is None else (first_size, len(seeds) - first_size)
    rng = np.random.default_rng(seed)
    splits, seen = [], set()
    for _ in range(50 * n_splits):
        order = rng.permutation(seeds)
        first, second = sorted(order[: sizes[0]].tolist()), sorted(order[sizes[0] : sum(sizes)].tolist())
        key = (tuple(first), tuple(second))
        if key not in seen:
            seen.add(key)
            splits.append((first, second))
        if len(splits) == n_splits:
            break
    return splits


def aa_rows(stl_rows: pd.DataFrame, first: Sequence[int], second: Sequence[int], paired: bool) -> pd.DataFrame:
    """The rows of the two groups, the first relabelled ``mode=mtl, method=aa`` with seeds matching the
    second group's (paired) or matching none (unpaired)."""
    new_seed = dict(zip(first, second)) if paired else {s: s + UNPAIRED_OFFSET for s in first}
    mtl = stl_rows[stl_rows["seed"].isin(first)].copy()
    mtl["mode"], mtl["method"] = "mtl", "aa"
    mtl["seed"] = mtl["seed"].map(new_seed)
    return pd.concat([stl_rows[stl_rows["seed"].isin(second)], mtl], ignore_index=True)


def _verdict(family: str, adjusted: pd.Series, min_p: pd.Series, design: str) -> list[dict]:
    """One ``BH verdict`` comparison of a report table: its smallest Benjamini–Hochberg adjusted p-value
    (the table claims something, e.g. a transfer verdict or a gap onset, iff it is ``<= alpha``)."""
    if not np.isfinite(adjusted.to_numpy(float)).any():
        return []
    return [
        {
            "test": "BH verdict",
            "task": "*",
            "measure": family,
            "design": design,
            "p_value": float(np.nanmin(adjusted.to_numpy(float))),
            "min_p": float(np.nanmin(min_p.to_numpy(float))),
        }
    ]


def _split_comparisons(
    rows: pd.DataFrame, selected: pd.DataFrame, task_info: TaskInfo, design: str, alpha: float, gap: bool = True
) -> list[dict]:
    """The gap (``gap``) and transfer comparisons of one A/A split; ``design`` labels them (its first
    word is the test's design, the rest a variant such as ``unbalanced`` or ``skewed``)."""
    records, results = [], []
    curves = rows[rows["quantity"].isin(("train/loss", *GAP_MEASURES))] if gap else rows.iloc[:0]
    for task, task_rows in curves.groupby("task"):
        for measure in GAP_MEASURES:
            result = generalization_gap(task_rows, task, measure, alpha=alpha, stability=False)
            if result is None or result.test is None:
                continue
            results.append(result)
            # the simultaneous band's detectable gap at the end: the size the positive control spikes in for
            # both tests (the end level's own t test would detect a smaller one)
            detectable = float(result.gap["min_detectable"].iloc[-1])
            records += [
                {
                    "test": "gap exists",
                    "task": task,
                    "measure": measure,
                    "design": result.design,
                    "p_value": result.test.p_any,
                    "min_p": result.test.min_p,
                    "min_detectable": detectable,
                },
                {
                    "test": "persistent gap (onset)",
                    "task": task,
                    "measure": measure,
                    "design": result.design,
                    "p_value": result.p_persistent,
                    "min_p": result.min_p_persistent,
                    "min_detectable": detectable,
                },
            ]
    if results:
        _, gaps = gap_family(results, alpha)  # the report's gap table: onsets at BH's rejection level
        records += _verdict("gap table: p_any_adjusted", gaps["p_any_adjusted"], gaps["min_p_any"], design)
        records += _verdict("gap table: onset", gaps["p_persistent_adjusted"], gaps["min_p"], design)
    for metric in TRANSFER_METRICS:
        table = transfer_tests(selected, task_info, metric, alpha)
        records += [
            {
                "test": "transfer",
                "task": r.task,
                "measure": r.metric,
                "design": r.design,
                "p_value": r.p_value,
                "min_p": r.min_p,
                "min_detectable": r.min_detectable,
            }
            for r in table.itertuples()
        ]
        if metric is None and len(table):  # the report's transfer table is at the selection metric
            records += _verdict("transfer table: verdict", table["p_adjusted"], table["min_p"], design)
    return [r | {"design": design} for r in records if r["design"] in (design, design.split()[0])]


def skewed_shifts(
    values: pd.Series, groups: pd.Series, seeds: pd.Series, skew: float, seed: int | Sequence[int]
) -> np.ndarray:
    """Mean-zero, right-skewed shifts for the "MTL" side of a paired A/A split: per group (task or
    (task, summary)) and seed, ``skew · sd · (E − 1)`` with ``E ~ Exponential(1)`` (skewness 2) and ``sd``
    the group's standard deviation of ``values`` over the seeds.  Added to one side they make the paired
    differences skewed while their mean stays 0: the null "MTL does not change the mean" without the
    symmetry that an exchangeable A/A pair has by construction (issue 23.6).  ``seed``: an int or the
    entropy of one independent stream (``numpy.random.SeedSequence``), e.g. ``(seed, split, column)``."""
    rng = np.random.default_rng(seed)
    sd = values.groupby(groups).transform("std").fillna(0.0).to_numpy(float)
    keys = pd.Series(list(zip(groups, seeds)), index=values.index)
    draws = {key: rng.exponential() - 1.0 for key in pd.unique(keys)}
    return skew * sd * keys.map(draws).to_numpy(float)


def _table_comparisons(
    effect_table: pd.DataFrame, units: pd.DataFrame | None, alpha: float, shift: Effect
) -> list[dict]:
    """The report's optimization table (:func:`optimization_tests` of the :func:`optimization_effect`
    table ``effect_table``) and probe-difference table (:func:`difference_tests` of the unit table
    ``units``, if given) of a paired split: one comparison per (task, log-ratio summary) and per (task,
    probe difference).  ``shift[(task, column)]`` is first added to every seed's value of that column for
    that task, which is
    exactly what multiplying the "MTL" runs' training loss by ``exp(shift)`` at every step (log-ratios)
    or adding ``shift`` to their probe values (probe differences) does: the positive control."""
    records = []
    if len(effect_table):
        table = optimization_tests(
            effect_table.assign(
                **{
                    c: effect_table[c] + effect_of(shift, c, effect_table["task"])
                    for c in _quantities(shift) & set(OPTIMIZATION_SUMMARIES)
                }
            ),
            alpha,
        )
        records += [
            {
                "test": "optimization effect",
                "task": row["task"],
                "measure": column,
                "p_value": row[f"{column}_p"],
                "min_p": row["min_p"],
                "min_detectable": row[f"{column}_min_detectable"],
            }
            for _, row in table.iterrows()
            for column in OPTIMIZATION_SUMMARIES
            if np.isfinite(row.get(f"{column}_p", np.nan))
        ]
        for column in OPTIMIZATION_SUMMARIES:
            if f"{column}_p_adjusted" in table:
                records += _verdict(
                    f"optimization table: {column}_p_adjusted", table[f"{column}_p_adjusted"], table["min_p"], "paired"
                )
    if units is not None:
        table = difference_tests(
            units.assign(
                **{
                    c: units[c] + effect_of(shift, c, units["task"])
                    for c in _quantities(shift) & set(PROBE_OF_DIFFERENCE)
                }
            ),
            alpha=alpha,
        )
        records += [
            {
                "test": "probe difference",
                "task": r.task,
                "measure": r.difference,
                "p_value": r.p_value,
                "min_p": r.min_p,
                "min_detectable": r.min_detectable,
            }
            for r in table.itertuples()
        ]
        if len(table):
            records += _verdict("probe differences table: p_adjusted", table["p_adjusted"], table["min_p"], "paired")
    return [r | {"design": "paired"} for r in records]


def _correlation_comparisons(
    units: pd.DataFrame, n_permutations: int, rng: np.random.Generator, alpha: float
) -> list[dict]:
    """Per permutation: for each target and coefficient, the factor ``log_ratio_mean`` permuted afresh
    and correlated with the target (:func:`correlate`; a fresh permutation per comparison, so that the
    comparisons counted are independent given the split: Pearson and Spearman of one permuted factor, or
    one factor against two related targets, would reject together and make the Clopper–Pearson
    interval of the rate too narrow), and the report's correlation table (:func:`correlation_table`, whose
    pairs are one BH family) of the units with all factor columns permuted together.  Both with the
    report's (setting, seed) clusters, centring and slots; 999 permutations per p-value keep this cheap.

    The factor is permuted by **whole seeds** within the setting, unit (task, method) of one seed onto unit
    (task, method) of another (:func:`whole_seed_permutation`), so it keeps what its units share: the task means
    and whatever one seed's units have in common.  Permuted unit by unit it had neither, and a test that
    ignores both (no clusters, no centring) held 5% on it while giving 63% on a null with shared runs and task
    means (audit, 2026-12-06): the check could not fail where the design's dependence is the danger."""
    labels = {
        name: units[list(columns)].astype(str).agg("/".join, axis=1).to_numpy()
        for name, columns in (("groups", UNIT_CLUSTER), ("centre", UNIT_CENTRE), ("slots", UNIT_SLOTS))
    }
    factors = [c for c in (*FACTORS, *CONFLICTS) if c in units]
    records = []
    for _ in range(n_permutations):
        for target in ("transfer_pct", "gap_mean"):
            for kind in ("pearson", "spearman"):
                factor = units["log_ratio_mean"].to_numpy(float)[whole_seed_permutation(units, labels, rng)]
                seed = int(rng.integers(1 << 31))
                result = correlate(factor, units[target], seed=seed, n_perm=999, strata=units["setting"], **labels)
                records.append(
                    {
                        "test": "correlation",
                        "task": "*",
                        "measure": f"{kind} permuted factor ~ {target}",
                        "design": "cluster permutation",
                        "p_value": result[f"{kind}_p"],
                        "min_p": result["min_p"],
                    }
                )
        moved = units[factors].to_numpy()[whole_seed_permutation(units, labels, rng)]
        permuted = units.assign(**dict(zip(factors, moved.T)))
        table = correlation_table(permuted, seed=int(rng.integers(1 << 31)), alpha=alpha, n_perm=999)
        for kind in ("pearson", "spearman"):
            records += _verdict(
                f"correlation table: {kind}_p_adjusted",
                table[f"{kind}_p_adjusted"],
                table["min_p"],
                "cluster permutation",
            )
    return records


def whole_seed_permutation(units: pd.DataFrame, labels: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One random permutation of the unit rows that moves whole (setting, seed) clusters onto others of the
    same setting, slot (task, method) onto the same slot (:func:`cluster_permutations`, as the correlation test
    permutes; the identity where no other permutation exists)."""
    if units.empty:
        return np.arange(0)
    codes = {name: pd.factorize(values)[0] for name, values in labels.items()}
    index, _ = cluster_permutations(
        codes["groups"], 1, int(rng.integers(1 << 31)), pd.factorize(units["setting"])[0], codes["slots"]
    )
    return index[-1]


def skewed_curves(rows: pd.DataFrame, skew: float, seed: int | Sequence[int]) -> pd.DataFrame:
    """Trajectory ``rows`` of a paired A/A split with one mean-zero, right-skewed shift per "MTL" run and
    gap measure (:data:`GAP_MEASURES`) added to every value of that run's curve: :func:`skewed_shifts` of
    the runs' last values (per task; ``sd`` is the seeds' sd of the final value).  Every training-loss
    level's paired difference then carries the same skewed term, the null of the gap tests without the
    symmetry of an exchangeable pair.  Each measure draws from its own stream (``(*seed, 1 + k)``)."""
    stream = (seed,) if isinstance(seed, int) else tuple(seed)
    shifted = rows["value"].to_numpy(float).copy()
    for k, measure in enumerate(GAP_MEASURES):
        is_curve = ((rows["quantity"] == measure) & (rows["mode"] == "mtl")).to_numpy()
        curve = rows[is_curve]
        final = curve.sort_values("step").groupby(["task", "seed"])["value"].last().reset_index()
        shift = skewed_shifts(final["value"], final["task"], final["seed"], skew, (*stream, 1 + k))
        by_run = dict(zip(zip(final["task"], final["seed"]), shift))
        shifted[is_curve] += np.array([by_run[key] for key in zip(curve["task"], curve["seed"])], dtype=float)
    return rows.assign(value=shifted)


def _skewed_comparisons(
    rows: pd.DataFrame,
    selected: pd.DataFrame,
    first: Sequence[int],
    second: Sequence[int],
    task_info: TaskInfo,
    effect_table: pd.DataFrame,
    units: pd.DataFrame | None,
    alpha: float,
    skew: float,
    seed: tuple[int, int],
) -> list[dict]:
    """The paired split's gap, transfer, optimization and probe-difference comparisons with mean-zero
    skewed differences (:func:`skewed_curves` and :func:`skewed_shifts` on the "MTL" side of the trajectory
    ``rows`` and the ``selected`` checkpoints of the STL runs), labelled design ``paired skewed``, with the
    BH verdicts of those tables.  ``seed = (seed, split)``; every shifted column draws from its own stream
    ``(seed, split, table, column)``, tags from 1 (``numpy.random.SeedSequence`` ignores trailing zeros, so
    ``(seed, 0, 0, 0)`` would be ``default_rng(seed)``, the splits' own stream).  An int seed per column
    (``seed + split + k``, before) reused draws across columns and splits, so the comparisons shared their
    shifts and 25 splits counted like a few."""
    chosen = aa_rows(selected, first, second, True)
    is_mtl = (chosen["mode"] == "mtl").to_numpy()
    metrics = [c for c in chosen if c.startswith("test/")]
    shifted = chosen.assign(
        **{
            c: chosen[c] + is_mtl * skewed_shifts(chosen[c], chosen["task"], chosen["seed"], skew, (*seed, 1, 1 + k))
            for k, c in enumerate(metrics)
        }
    )
    records = [
        r | {"design": "paired skewed"}
        for r in _split_comparisons(skewed_curves(rows, skew, (*seed, 2)), shifted, task_info, "paired", alpha)
    ]
    effect = effect_table.assign(
        **{
            c: effect_table[c]
            + skewed_shifts(effect_table[c], effect_table["task"], effect_table["seed"], skew, (*seed, 3, 1 + k))
            for k, c in enumerate(OPTIMIZATION_SUMMARIES)
            if c in effect_table
        }
    )
    if units is not None:
        units = units.assign(
            **{
                c: units[c] + skewed_shifts(units[c], units["task"], units["seed"], skew, (*seed, 4, 1 + k))
                for k, c in enumerate(PROBE_OF_DIFFERENCE)
                if c in units
            }
        )
    records += [r | {"design": "paired skewed"} for r in _table_comparisons(effect, units, alpha, {})]
    return records


def spike_in(rows: pd.DataFrame, effect: Effect) -> pd.DataFrame:
    """``rows`` with ``effect[(task, q)]`` added to every value of quantity ``q`` of task ``task`` of the
    MTL-labelled runs: a known effect (e.g. a gap of that size at every training-loss level) on top of real
    seed noise."""
    shift = np.zeros(len(rows))
    for quantity in _quantities(effect):
        shift += effect_of(effect, quantity, rows["task"]) * (rows["quantity"] == quantity).to_numpy()
    return rows.assign(value=rows["value"].to_numpy(float) + shift * (rows["mode"] == "mtl").to_numpy())


PairedTables = dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[pd.DataFrame, pd.DataFrame | None]]
"""Per paired split (its two seed groups): the :func:`optimization_effect` table and the unit table
(``None`` where not needed) of its A/A rows without any effect."""


def calibrate(
    stl_rows: pd.DataFrame,
    task_info: TaskInfo,
    n_splits: int = 25,
    alpha: float = 0.05,
    seed: int = 0,
    correlation_splits: int = 5,
    permutations_per_split: int = 10,
    effect: Effect | None = None,
    tables: PairedTables | None = None,
    skew: float = SKEW,
) -> pd.DataFrame:
    """One row per A/A comparison: ``split, test, task, measure, design, p_value, min_p, min_detectable,
    rejected``.

    ``stl_rows`` are trajectory rows of STL runs of one setting and configuration (every task, at
    least 4 seeds); ``rejected`` is ``p_value <= alpha`` (a false positive).  Paired splits also get the
    optimization-effect tests and, where the runs recorded the probes of the unit table's
    differences (:data:`PROBE_OF_DIFFERENCE`), the probe-difference tests (the seeds of an unpaired
    split match no STL run, so the report has neither there).  The correlation tests run on the first
    ``correlation_splits`` splits, each with ``permutations_per_split`` fresh random permutations of
    the factor.  With ``effect`` (:data:`Effect`, ``(task, quantity) -> size``, e.g. ``{("a", "val/loss"):
    0.05, ("a", "log_ratio_final"): 0.02, ("b", "coherence_diff"): 0.01}``) the MTL-labelled group gets that
    known effect
    and ``rejected`` counts detections (a positive control): quantities are spiked into the rows
    (:func:`spike_in`), log-ratios and probe differences into the report's tables
    (:func:`_table_comparisons`).  Building the unit table is the slow part: ``tables`` (filled here)
    lets a later call on the same ``stl_rows`` and ``task_info``, e.g. the positive control, reuse them.

    Two nulls the balanced, exchangeable splits cannot reach (issue 23.6): design ``unpaired
    unbalanced`` (gap and transfer on the same number of splits of a quarter of the seeds, at least 2,
    against all the others) and ``paired skewed`` (gap, transfer, optimization and probe differences of
    the paired split with :func:`skewed_curves` and :func:`skewed_shifts` of size ``skew`` added to the
    "MTL" side: mean-zero differences that are not symmetric; without ``effect`` only).  Both also count
    their tables' BH verdicts.
    """
    seeds = sorted(int(s) for s in stl_rows["seed"].unique())
    selected = selected_checkpoints(stl_rows, task_info)
    has_probes = bool(stl_rows["quantity"].isin(list(PROBE_OF_DIFFERENCE.values())).any())
    effect = effect or {}
    tables = {} if tables is None else tables
    rng = np.random.default_rng(seed)
    records = []
    unbalanced = aa_splits(seeds, n_splits, seed + 1, first_size=max(2, len(seeds) // 4))
    for i, (first, second) in enumerate(aa_splits(seeds, n_splits, seed)):
        split = []
        if not effect and i < len(unbalanced):
            small, large = unbalanced[i]
            split += _split_comparisons(
                aa_rows(stl_rows, small, large, False),
                aa_rows(selected, small, large, False),
                task_info,
                "unpaired unbalanced",
                alpha,
            )
        for design in ("paired", "unpaired"):
            rows = aa_rows(stl_rows, first, second, design == "paired")
            chosen = aa_rows(selected, first, second, design == "paired")
            if effect:
                rows = spike_in(rows, effect)
                is_mtl = (chosen["mode"] == "mtl").to_numpy()
                spiked = _quantities(effect) & set(chosen.columns)
                chosen = chosen.assign(**{q: chosen[q] + effect_of(effect, q, chosen["task"]) * is_mtl for q in spiked})
            split += _split_comparisons(rows, chosen, task_info, design, alpha)
        correlations = i < correlation_splits and not effect
        key = (tuple(first), tuple(second))
        if key not in tables or (tables[key][1] is None and (has_probes or correlations)):
            null_rows = aa_rows(stl_rows, first, second, paired=True)
            null_effect = optimization_effect(null_rows)
            # the runs' selected checkpoints do not depend on their labels: relabel, do not select again
            null_selected = aa_rows(selected, first, second, paired=True)
            units = (
                unit_table(null_rows, task_info, selected=null_selected, optimization=null_effect)
                if has_probes or correlations
                else None
            )
            tables[key] = (null_effect, units)
        effect_table, units = tables[key]
        split += _table_comparisons(effect_table, units if has_probes else None, alpha, effect)
        if not effect and skew > 0:
            split += _skewed_comparisons(
                aa_rows(stl_rows, first, second, True),
                selected,
                first,
                second,
                task_info,
                effect_table,
                units if has_probes else None,
                alpha,
                skew,
                (seed, i),
            )
        if correlations and units is not None:
            split += _correlation_comparisons(units, permutations_per_split, rng, alpha)
        records += [{"split": i, **r} for r in split]
    table = pd.DataFrame.from_records(
        records, columns=["split", "test", "task", "measure", "design", "p_value", "min_p", "min_detectable"]
    )
    table["rejected"] = table["p_value"] <= alpha
    return table


def false_positive_rates(comparisons: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (test, design): ``comparisons, false_positives, rate, ci_low, ci_high`` (Clopper–Pearson at
    ``confidence``), ``min_p`` (the median smallest-attainable p: above alpha, no rejection is possible)
    and ``min_detectable`` (the median difference detectable with 80% power).  Of a positive control,
    ``false_positives`` and ``rate`` are detections."""
    records = []
    for (test, design), frame in comparisons.groupby(["test", "design"], sort=False):
        k, n = int(frame["rejected"].sum()), len(frame)
        low, high = clopper_pearson(k, n, confidence)
        records.append(
            {
                "test": test,
                "design": design,
                "comparisons": n,
                "false_positives": k,
                "rate": k / n,
                "ci_low": low,
                "ci_high": high,
                "min_p": float(frame["min_p"].median()),
                "min_detectable": float(frame["min_detectable"].median()),
            }
        )
    order = {test: i for i, test in enumerate(TESTS)}
    records.sort(key=lambda r: (order.get(r["test"], len(TESTS)), r["design"]))
    return pd.DataFrame.from_records(records)


def detectable_effects(comparisons: pd.DataFrame) -> Effect:
    """``(task, quantity)`` -> the median minimum detectable difference (80% power) of the paired tests of
    the A/A ``comparisons``: the persistent gap's per gap measure, the transfer test's per test metric, the
    optimization effect's per log-ratio summary and the probe difference's per difference column (finite
    ones only); the effect sizes of the positive control (:func:`calibrate`'s ``effect``).  Per task, so that
    each comparison is spiked with its own detectable difference: one size per quantity, the median over
    tasks, was found in 40% of the comparisons of the noisier `digits_pair` task and in 100% of the other's
    (README's calibrate output before 2026-12-06 19:00 UTC: transfer 54% instead of 80%)."""
    paired = comparisons[(comparisons["design"] == "paired") & comparisons["test"].isin(CONTROLLED_TESTS)]
    sizes = paired.groupby(["task", "measure"])["min_detectable"].median()
    return {(str(t), str(q)): float(v) for (t, q), v in sizes.items() if np.isfinite(v)}
