"""Which tasks should train together: measured pairwise transfer, affinities, and groupings measured.

Input: the manifest of the grouping experiment (:mod:`mtlens.experiments.grouping`; one row per run
with ``run_id, seed, role, group``: ``role`` is ``stl`` (one task), ``group`` (a subset of tasks in
one network) or ``all`` (every task, with the affinity probes); ``group`` is the run's tasks joined
by ``+``) and the trajectory rows of its runs.  Every value of a task in a run is read at the run's
validation-selected checkpoint (:func:`~mtlens.analysis.transfer.selected_checkpoints`).

* :func:`pairwise_transfer` -- the transfer table (:func:`~mtlens.analysis.transfer.transfer_tests`:
  paired by seed, Hall's skewness-corrected test and interval, Benjamini–Hochberg over every ordered pair,
  verdict) of task ``j`` trained with task ``i`` (the pair run) against ``j`` alone; ``source = i``, ``target = j``,
  ``relative_pct > 0``: ``i`` helps ``j``.
* :func:`affinity_table` -- one row per ordered pair ``(source i, target j)``, the predictors averaged
  over seeds: ``tag`` (mean of ``probe/lookahead_affinity`` ``"i>j"`` over the probe steps of the
  all-task run), ``cosine`` (mean ``probe/conflict_cosine`` of the pair, symmetric) and ``early_gap``
  (``100 (L_STL - L_pair) / L_STL`` of task ``j``'s validation loss at the first evaluation at or after
  ``early_fraction`` of training, same seed), and the measured ``transfer_pct``.
* :func:`predictor_correlations` -- each predictor's Pearson and Spearman correlation with the measured
  transfer over the ordered pairs by the Mantel test (:func:`mantel_test`: the tasks relabelled in the
  transfer matrix; pairs share their tasks' runs on both sides, so no clustering of the pairs holds what
  they share), with delete-one-task jackknife intervals.
* :func:`higher_order_table` -- Standley et al.'s higher-order approximation: each trained grouping's Δm
  predicted from the measured pairs alone (:func:`higher_order_prediction`) next to its measured Δm.
* :func:`grouping_results` -- on a subset of tasks whose every group was trained, the grouping each
  predictor chooses with at most ``budget`` networks (:func:`~mtlens.analysis.partitions.best_grouping`),
  the exhaustive best over the trained groupings (chosen on *validation* Δm, reported on test), each
  cross-fitted over two halves of the seeds (:func:`cross_fit`: a half reads the grouping chosen from the
  other half's runs, the predictors' from their affinities on that half, :func:`predictor_sources`), and
  all-together, each with its per-seed test
  ``Δm`` (the mean over tasks of the relative difference to the same-seed STL run, in %, as the transfer
  table's ``relative_pct``) and paired tests, one Benjamini–Hochberg family of the distinct comparisons.

Rules where data are missing or degenerate, each stated in the table's ``note`` column:

* **Zero reference.**  The relative difference of task ``j`` divides by ``|mean over seeds of M_STL_j|``;
  where that mean is 0 (an STL run with no test error on every seed) it is undefined, so ``j`` is left
  out of every Δm read from that split (test, or validation for choosing the exhaustive best) and the
  Δm is the mean over the other tasks; with no task left, no Δm.  (The transfer table's
  ``relative_pct`` is NaN there too.)
* **Fewer than 2 seeds.**  A paired test needs at least 2 seeds with every value: a row with fewer is
  *not tested* (its interval and p-value NaN, its Δm the one seed's value), and left out of the skewness
  bound and the Benjamini–Hochberg family.
* **Missing affinities.**  A predictor chooses a grouping only from an affinity for every ordered pair
  of the tasks it groups (:func:`missing_pairs`); one missing or non-finite value (an untrained or
  unfinished pair or all-task run, a zero reference) and it chooses *nothing*: its row is ``not chosen``
  and names the missing pairs, rather than counting them as 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mtlens.analysis.correlation import CORRELATION_COLUMNS, correlation_claim, family_inference, fisher_interval
from mtlens.analysis.inference import bh_adjust
from mtlens.analysis.partitions import Affinity, Grouping, best_grouping, set_partitions

__all__ = [
    "BEST_CHOICE",
    "PREDICTORS",
    "AffinitySource",
    "affinity_table",
    "best_grouping",
    "cross_fit",
    "cross_fitted_best",
    "group_label",
    "grouping_results",
    "grouping_table",
    "grouping_text",
    "higher_order_prediction",
    "higher_order_results",
    "higher_order_table",
    "mantel_test",
    "missing_pairs",
    "pairwise_transfer",
    "predictor_affinities",
    "predictor_correlations",
    "predictor_sources",
    "seed_halves",
    "task_permutations",
]
from mtlens.analysis.transfer import (
    TaskInfo,
    difference_test,
    family_bound,
    selected_checkpoints,
    selection_info,
    transfer_tests,
)
from mtlens.quantities import CONFLICT_COSINE, DIRECTED_PAIR, LOOKAHEAD_AFFINITY, TASK_GROUP, TASK_PAIR

SEPARATOR = TASK_GROUP
"""Joins the tasks of a group in its label (``"even+ink"``)."""

PREDICTORS = ("tag", "cosine", "early_gap")
"""Affinity columns of :func:`affinity_table` that predict the measured pairwise transfer."""


def group_label(tasks: Sequence[str]) -> str:
    return SEPARATOR.join(tasks)


def grouping_text(grouping: Grouping) -> str:
    """A grouping as the tables show it: its groups' labels joined by `` | `` (``"a+b | c"``)."""
    return " | ".join(group_label(g) for g in grouping)


def _selected(manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """Selected checkpoints of the manifest's runs with their ``role`` and ``group``, and ``test``/``val``:
    the task's selection metric on test and validation at that checkpoint, and ``sign`` (-1 where
    lower is better)."""
    selected = selected_checkpoints(rows, task_info)
    if selected.empty:
        return selected
    selected = selected.merge(manifest[["run_id", "role", "group"]].drop_duplicates("run_id"), on="run_id")
    metrics = {
        (s, t): selection_info(task_info, s, t) for s, t in selected[["setting", "task"]].drop_duplicates().to_numpy()
    }
    name = [metrics[(s, t)]["selection_metric"] for s, t in zip(selected["setting"], selected["task"])]
    selected["metric"] = name
    selected["sign"] = [
        -1.0 if metrics[(s, t)]["lower_is_better"].get(m, False) else 1.0
        for s, t, m in zip(selected["setting"], selected["task"], name)
    ]
    selected["test"] = [selected.at[i, f"test/{m}"] for i, m in zip(selected.index, name)]
    val = rows.assign(metric=rows["quantity"].str.removeprefix("val/"))[rows["quantity"].str.startswith("val/")]
    val = val.drop_duplicates(["run_id", "task", "step", "metric"], keep="last")
    return selected.merge(
        val[["run_id", "task", "step", "metric", "value"]].rename(columns={"value": "val"}),
        on=["run_id", "task", "step", "metric"],
        how="left",
    )


def pairwise_transfer(
    manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo, alpha: float = 0.05
) -> pd.DataFrame:
    """The transfer table of every ordered pair (module docstring), with ``source`` and ``target``."""
    selected = _selected(manifest, rows, task_info)
    if selected.empty:
        return pd.DataFrame()
    groups = selected["group"].str.split(SEPARATOR, regex=False)
    pairs = selected[(selected["role"] == "group") & (groups.str.len() == 2)].copy()
    partner = [next(t for t in g if t != task) for g, task in zip(groups[pairs.index], pairs["task"])]
    pairs["method"] = [f"with {p}" for p in partner]
    stl = selected[selected["role"] == "stl"]
    table = transfer_tests(pd.concat([stl, pairs], ignore_index=True), task_info, alpha=alpha)
    if table.empty:
        return table
    table.insert(0, "source", table.pop("method").str.removeprefix("with "))
    table.insert(1, "target", table.pop("task"))
    return table


def _run_means(rows: pd.DataFrame, quantity: str, runs: Sequence[str]) -> pd.DataFrame:
    """Per (task key, run) the mean of ``quantity`` over its steps, then per task key the mean over runs."""
    picked = rows[(rows["quantity"] == quantity) & rows["run_id"].isin(runs)]
    per_run = picked.groupby(["task", "run_id"])["value"].mean()
    return per_run.groupby(level="task").mean().rename("value").reset_index()


def _early_gap(manifest: pd.DataFrame, rows: pd.DataFrame, fraction: float) -> pd.DataFrame:
    val = rows[rows["quantity"] == "val/loss"]
    last = val.groupby("run_id")["step"].max()
    runs = manifest.drop_duplicates("run_id").set_index("run_id")
    stl = {
        (runs.loc[r, "group"], int(runs.loc[r, "seed"])): frame.set_index("step")["value"]
        for r, frame in val[val["run_id"].isin(runs.index[runs["role"] == "stl"])].groupby("run_id")
    }
    records = []
    for run, frame in val.groupby("run_id"):
        if run not in runs.index or runs.loc[run, "role"] != "group":
            continue
        tasks = runs.loc[run, "group"].split(SEPARATOR)
        if len(tasks) != 2:
            continue
        seed = int(runs.loc[run, "seed"])
        for target in tasks:
            curve = frame[frame["task"] == target].set_index("step")["value"]
            reference = stl.get((target, seed))
            steps = curve.index[curve.index >= fraction * last[run]]
            if reference is None or not len(steps) or steps.min() not in reference.index:
                continue
            step = steps.min()
            if not reference[step]:  # a zero STL loss: the relative gap is undefined, the pair has no value
                continue
            value = 100.0 * (reference[step] - curve[step]) / reference[step]
            records.append({"source": next(t for t in tasks if t != target), "target": target, "early_gap": value})
    frame = pd.DataFrame.from_records(records, columns=["source", "target", "early_gap"])
    return frame.groupby(["source", "target"], as_index=False)["early_gap"].mean()


def affinity_table(
    manifest: pd.DataFrame, rows: pd.DataFrame, transfer: pd.DataFrame, early_fraction: float = 0.1
) -> pd.DataFrame:
    """One row per ordered pair of :func:`pairwise_transfer`, then per further pair the all-task run's probes
    recorded (a pair whose pair run did not finish still has its ``tag`` and ``cosine``): ``source, target,
    tag, cosine, early_gap, transfer_pct`` (module docstring); NaN where a predictor was not recorded."""
    if transfer.empty:
        return pd.DataFrame(columns=["source", "target", *PREDICTORS, "transfer_pct"])
    table = transfer[["source", "target", "relative_pct"]].rename(columns={"relative_pct": "transfer_pct"})
    all_runs = manifest.loc[manifest["role"] == "all", "run_id"].unique()
    tag = _run_means(rows, LOOKAHEAD_AFFINITY, all_runs)
    tag[["source", "target"]] = (
        tag["task"].str.split(DIRECTED_PAIR, n=1, expand=True, regex=False) if len(tag) else None
    )
    cosine = _run_means(rows, CONFLICT_COSINE, all_runs)
    if len(cosine):
        cosine[["source", "target"]] = cosine["task"].str.split(TASK_PAIR, n=1, expand=True, regex=False)
        cosine = pd.concat([cosine, cosine.rename(columns={"source": "target", "target": "source"})])
    probed = [frame[["source", "target"]] for frame in (tag, cosine) if len(frame)]
    if probed:
        pairs = pd.concat(probed).drop_duplicates()
        extra = pairs[~pd.MultiIndex.from_frame(pairs).isin(pd.MultiIndex.from_frame(table[["source", "target"]]))]
        table = pd.concat([table, extra.assign(transfer_pct=np.nan)], ignore_index=True)
    for name, frame in (("tag", tag), ("cosine", cosine)):
        if len(frame):
            table = table.merge(frame[["source", "target", "value"]].rename(columns={"value": name}), how="left")
        else:
            table[name] = np.nan
    table = table.merge(_early_gap(manifest, rows, early_fraction), on=["source", "target"], how="left")
    return table[["source", "target", *PREDICTORS, "transfer_pct"]]


def predictor_affinities(affinities: pd.DataFrame) -> dict[str, dict[tuple[str, str], float]]:
    """Each predictor's (and the measured ``transfer_pct``'s) ``{(source, target): value}`` from
    :func:`affinity_table`, the pairs with a finite value; every predictor is present (an empty dict when none
    was recorded), so a grouping table can say it chose nothing (:func:`missing_pairs`)."""
    out: dict[str, dict[tuple[str, str], float]] = {}
    for name in (*PREDICTORS, "transfer_pct"):
        values = affinities[name].to_numpy(float) if name in affinities else np.full(len(affinities), np.nan)
        out[name] = {
            (s, t): float(v) for s, t, v in zip(affinities["source"], affinities["target"], values) if np.isfinite(v)
        }
    return out


AffinitySource = Callable[[Sequence[int]], Affinity]
"""A predictor's affinities read from the runs of the given seeds only (:func:`predictor_sources`): what
:func:`grouping_table` calls on each half of the seeds to cross-fit the predictor's choice (:func:`cross_fit`)."""


def _affinities_on(
    manifest: pd.DataFrame,
    rows: pd.DataFrame,
    task_info: TaskInfo,
    early_fraction: float,
    cache: dict[tuple[int, ...], dict[str, dict[tuple[str, str], float]]],
    seeds: Sequence[int],
) -> dict[str, dict[tuple[str, str], float]]:
    """:func:`predictor_affinities` of the runs of ``seeds`` (the manifest's rows with those seeds), cached."""
    key = tuple(sorted(int(s) for s in seeds))
    if key not in cache:
        runs = manifest[manifest["seed"].isin(key)]
        picked = rows[rows["run_id"].isin(runs["run_id"])]
        transfer = pairwise_transfer(runs, picked, task_info)
        cache[key] = predictor_affinities(affinity_table(runs, picked, transfer, early_fraction))
    return cache[key]


def _pick(on: Callable[[Sequence[int]], Mapping[str, Affinity]], name: str, seeds: Sequence[int]) -> Affinity:
    return on(seeds)[name]


def predictor_sources(
    manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo, early_fraction: float = 0.1
) -> dict[str, AffinitySource]:
    """Each predictor's (:data:`PREDICTORS` and ``transfer_pct``) :data:`AffinitySource`: for a set of seeds, its
    ``{(source, target): value}`` (:func:`predictor_affinities`) from :func:`affinity_table` over the manifest's runs
    of those seeds alone (their pair, STL and all-task runs), computed once per set of seeds."""
    cache: dict[tuple[int, ...], dict[str, dict[tuple[str, str], float]]] = {}
    on = partial(_affinities_on, manifest, rows, task_info, early_fraction, cache)
    return {name: partial(_pick, on, name) for name in (*PREDICTORS, "transfer_pct")}


def missing_pairs(affinity: Affinity, tasks: Sequence[str]) -> list[tuple[str, str]]:
    """The ordered pairs ``(i, j)``, ``i != j``, of ``tasks`` without a finite value in ``affinity``: a
    predictor with any chooses no grouping of ``tasks`` (module docstring)."""
    return [
        (i, j)
        for i in tasks
        for j in tasks
        if i != j and not ((i, j) in affinity and math.isfinite(float(affinity[(i, j)])))
    ]


def _not_chosen(name: str, missing: Sequence[tuple[str, str]], tasks: Sequence[str]) -> str:
    shown = ", ".join(f"{i} -> {j}" for i, j in missing[:4]) + (", ..." if len(missing) > 4 else "")
    total = len(tasks) * (len(tasks) - 1)
    return f"not chosen: no {name} affinity for {len(missing)} of {total} ordered pairs ({shown})"


def task_permutations(k: int, n_perm: int = 9999, seed: int = 0) -> np.ndarray:
    """Relabellings of ``k`` tasks, ``(P, k)``, the identity first: all ``k!`` when at most ``n_perm``, else
    the identity and ``n_perm`` random ones (seeded)."""
    if math.factorial(k) <= n_perm:
        return np.array(list(itertools.permutations(range(k))), dtype=np.intp)
    rng = np.random.default_rng(seed)
    return np.vstack([np.arange(k), *(rng.permutation(k) for _ in range(n_perm))]).astype(np.intp)


def _matrix_correlations(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pearson r of ``a`` with ``t`` (``(k, k)`` or ``(P, k, k)``, broadcast) over the off-diagonal cells where
    both are finite, ``(P,)``."""
    mask = np.isfinite(a) & np.isfinite(t) & ~np.eye(a.shape[-1], dtype=bool)
    n = mask.sum(axis=(1, 2))
    a0, t0 = np.where(mask, a, 0.0), np.where(mask, t, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mt = a0.sum(axis=(1, 2)) / n, t0.sum(axis=(1, 2)) / n
        da, dt = np.where(mask, a - ma[:, None, None], 0.0), np.where(mask, t - mt[:, None, None], 0.0)
        return (da * dt).sum(axis=(1, 2)) / np.sqrt((da**2).sum(axis=(1, 2)) * (dt**2).sum(axis=(1, 2)))


def _rank_correlations(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spearman rho of ``a`` with ``t`` (as :func:`_matrix_correlations`): Pearson r of the ranks (ties
    averaged) of the cells where both are finite, ranked among those cells only, so that it is Spearman's rho of
    exactly the pairs it uses (a cell of ``a`` whose ``t`` is missing, e.g. a pair run that failed, takes no
    rank), in every relabelling."""
    mask = np.isfinite(a) & np.isfinite(t) & ~np.eye(a.shape[-1], dtype=bool)
    a, t = np.broadcast_to(a, mask.shape), np.broadcast_to(t, mask.shape)

    def ranks(x: np.ndarray) -> np.ndarray:
        cells = np.where(mask, x, np.nan).reshape(len(mask), -1)
        return np.asarray(stats.rankdata(cells, axis=1, nan_policy="omit")).reshape(mask.shape)

    return _matrix_correlations(ranks(a), ranks(t))


def mantel_test(
    frame: pd.DataFrame, x: str, y: str, alpha: float = 0.05, n_perm: int = 9999, seed: int = 0
) -> dict[str, float]:
    """Correlation over ordered task pairs (``frame``: ``source, target, x, y``) by the Mantel test (Mantel 1967): two
    pairwise matrices ``A[i, j] = x`` and ``T[i, j] = y`` over the ``k`` tasks, ``r`` over the off-diagonal cells
    where both are finite (Spearman: ``r`` of those cells' ranks, :func:`_rank_correlations`). Pairs share their
    tasks' runs on both sides (the pair run of ``{i, j}`` gives ``i → j`` and ``j → i``, the STL run of ``j`` every
    ``· → j``, the all-task run every TAG affinity), so no partition of the pairs into clusters holds everything
    they share; the Mantel null relabels the *tasks*, ``T[pi(i), pi(j)]``, which keeps every task's row and column
    effects and the pairing of ``i → j`` with ``j → i`` (H0: the association does not depend on which task is
    which). **p-value** (two-sided): the share of :func:`task_permutations` with ``|r*| >= |r|``, exact over all
    ``k!`` when at most ``n_perm``; ``min_p = 1 / #relabellings`` (``k = 4`` tasks: 1/24 = 0.042). **Interval**
    (``1 − alpha``): the delete-one-task jackknife of ``atanh(r)`` (every pair with the task left out,
    :func:`_task_jackknife`), ``tanh(z ± t_{k−1} se_J)`` (:func:`~mtlens.analysis.correlation.fisher_interval` over
    ``G = k`` tasks); NaN with fewer than 4 tasks. Returns ``n`` (cells), ``n_groups`` (tasks) and the columns of
    :func:`~mtlens.analysis.correlation.correlate` (``{kind}_se_z``: ``se_J``)."""
    tasks = sorted(set(frame["source"]) | set(frame["target"]))
    k = len(tasks)
    position = {task: i for i, task in enumerate(tasks)}
    rows, cols = frame["source"].map(position).to_numpy(), frame["target"].map(position).to_numpy()
    a, t = np.full((k, k), np.nan), np.full((k, k), np.nan)
    a[rows, cols], t[rows, cols] = frame[x].to_numpy(float), frame[y].to_numpy(float)
    both = np.isfinite(a) & np.isfinite(t)
    out: dict[str, float] = {"n": int(both.sum()), "n_groups": k}
    names = {"pearson": "pearson_r", "spearman": "spearman_rho"}
    if out["n"] < 3 or np.ptp(a[both]) == 0 or np.ptp(t[both]) == 0:
        empty = [f"{kind}_{key}" for kind in names for key in ("p", "low", "high", "se_z")]
        return out | dict.fromkeys([*names.values(), *empty, "min_p"], np.nan)
    perms = task_permutations(k, n_perm, seed)
    for kind, correlate in (("pearson", _matrix_correlations), ("spearman", _rank_correlations)):
        r = correlate(a, t[perms[:, :, None], perms[:, None, :]])
        out[names[kind]], out[f"{kind}_p"] = float(r[0]), float(np.mean(np.abs(r) >= abs(r[0]) * (1 - 1e-9)))
        out[f"{kind}_se_z"] = se = _task_jackknife(a, t, correlate)
        out[f"{kind}_low"], out[f"{kind}_high"] = (float(end) for end in fisher_interval(r[0], se, k, 1 - alpha))
    out["min_p"] = 1.0 / len(perms)
    return out


def _task_jackknife(a: np.ndarray, t: np.ndarray, correlate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """The delete-one-task jackknife standard error ``se_J = sqrt((k − 1) / k · Σ (z_(i) − mean z)^2)`` of
    ``z = atanh r``, :func:`mantel_test`'s correlation ``correlate`` (:func:`_matrix_correlations` or
    :func:`_rank_correlations`, ranks recomputed without the task) of the ``(k, k)`` matrices ``a`` and ``t``
    (``z_(i)``: with task ``i``'s row and column left out); NaN with fewer than 4 tasks or where a leave-out
    correlation is undefined (a variable constant without task ``i``)."""
    k = a.shape[0]
    if k < 4:
        return np.nan
    leave_out = []
    for task in range(k):
        others = np.delete(np.arange(k), task)
        leave_out.append(correlate(a[np.ix_(others, others)], t[np.ix_(others, others)][None])[0])
    z = np.arctanh(np.clip(leave_out, -1 + 1e-12, 1 - 1e-12))
    if not np.isfinite(z).all():
        return np.nan
    return float(np.sqrt((k - 1) / k * np.sum((z - z.mean()) ** 2)))


def predictor_correlations(
    affinities: pd.DataFrame, alpha: float = 0.05, n_perm: int = 9999, seed: int = 0
) -> pd.DataFrame:
    """Each predictor's :func:`mantel_test` against ``transfer_pct`` over the ordered pairs, one row per
    predictor with at least 3 pairs (``x, y, n, n_groups``, the correlations with their intervals and p-values,
    ``min_p``), one family at FDR ``alpha`` by the report's one rule for correlation tables
    (:func:`~mtlens.analysis.correlation.family_inference`, as
    :func:`~mtlens.analysis.correlation.correlation_table`): ``*_p_adjusted`` Benjamini–Hochberg over the
    predictors (discrete-aware), the delete-one-task jackknife intervals at BH's level over the table,
    ``pearson_confidence``/``spearman_confidence`` ``= 1 − R · alpha / m`` (Benjamini & Yekutieli 2005; ``R``
    rejections among ``m`` attainable predictors, ``1 − alpha / m`` when ``R = 0``), ``conclusive``
    (``min_p <= alpha``), and what each row shows, ``pearson_claim`` and ``spearman_claim``
    (:func:`~mtlens.analysis.correlation.correlation_claim`: ``"shown"`` only where the adjusted Mantel p-value
    and that interval agree)."""
    records: list[dict[str, object]] = []
    for predictor in PREDICTORS:
        if predictor in affinities and affinities[predictor].notna().sum() >= 3:
            result = mantel_test(affinities, predictor, "transfer_pct", alpha, n_perm, seed)
            if result["n"] >= 3:
                records.append({"x": predictor, "y": "transfer_pct", **result})
    if not records:
        return pd.DataFrame()
    table = family_inference(pd.DataFrame.from_records(records), alpha)
    for kind in ("pearson", "spearman"):
        table[f"{kind}_claim"] = [correlation_claim(row, alpha, kind) for row in table.to_dict("records")]
    return table[MANTEL_COLUMNS]


MANTEL_COLUMNS = [
    *(c for c in CORRELATION_COLUMNS if c not in ("n_centres", "n_strata")),
    "pearson_claim",
    "spearman_claim",
]
""":func:`predictor_correlations`' columns, in the order of :func:`~mtlens.analysis.correlation.correlation_table`'s
(the jackknife standard errors behind the intervals not shown)."""


def _per_seed(values: pd.DataFrame, column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``column`` (``test`` or ``val``) of :func:`_selected`'s rows per seed (the index): of every run by
    ``(group, task)`` and of the STL runs by ``task`` (a repeated run: the mean)."""
    runs = values.groupby(["seed", "group", "task"])[column].mean().unstack(["group", "task"])
    stl = values[values["role"] == "stl"].groupby(["seed", "task"])[column].mean().unstack("task")
    return runs, stl.reindex(runs.index)


def _zero_reference(per_seed: tuple[pd.DataFrame, pd.DataFrame], tasks: Sequence[str]) -> list[str]:
    """The ``tasks`` whose mean STL value over seeds (:func:`_per_seed`'s table) is 0: their relative
    difference is undefined and :func:`_delta_m` leaves them out (module docstring)."""
    stl = per_seed[1]
    return [t for t in tasks if t in stl and stl[t].notna().any() and stl[t].mean() == 0]


def _delta_m(
    per_seed: tuple[pd.DataFrame, pd.DataFrame],
    sign: Mapping[str, float],
    grouping: Grouping,
    leave_out: Sequence[str] = (),
) -> pd.Series:
    """Per seed: the mean over the grouping's tasks not in ``leave_out`` (:func:`_zero_reference`) of
    ``100 sign (M_group - M_STL) / |mean M_STL|``, from :func:`_per_seed`'s tables; seeds missing any value
    are left out (empty when every task is left out).  The reference is the same-seed STL run, so every
    difference the tests take between two groupings is paired by seed."""
    runs, stl = per_seed
    missing = pd.Series(np.nan, index=runs.index)
    parts = []
    for group in grouping:
        label = group_label(group)
        for task in group:
            if task in leave_out:
                continue
            mine = runs[(label, task)] if (label, task) in runs else missing
            ref = stl[task] if task in stl else missing
            parts.append(100.0 * sign.get(task, np.nan) * (mine - ref) / abs(ref.mean()))
    if not parts:
        return pd.Series(dtype=float)
    return pd.concat(parts, axis=1).dropna().mean(axis=1)


def higher_order_prediction(values: pd.DataFrame, grouping: Grouping, column: str = "test") -> pd.Series:
    """Standley et al.'s (ICML 2020, §3.3) higher-order approximation of a grouping's Δm from the measured
    pairs: task ``j`` in a group ``G`` of two or more tasks is predicted to reach the mean over ``i in G \\ j``
    of its metric in the pair run ``{i, j}``, ``M_hat_j = mean_i mean_seeds M_j({i, j})``; a task alone, its
    STL metric.  Returned per task: ``100 sign (M_hat_j - mean M_STL_j) / |mean M_STL_j|``; the grouping's
    predicted Δm is their mean (as :func:`_delta_m`'s over seed means).  ``values``: :func:`grouping_table`'s
    input; NaN for a task whose pair runs are missing and for a task whose mean STL metric is 0 (its
    relative difference is undefined, module docstring)."""
    means = values.groupby(["group", "task"])[column].mean()
    stl = values[values["role"] == "stl"].groupby("task")[column].mean()
    sign = values[values["role"] == "stl"].groupby("task")["sign"].first()
    pair_label = {frozenset(g.split(SEPARATOR)): g for g in values["group"].unique() if g.count(SEPARATOR) == 1}
    out = {}
    for group in grouping:
        for task in group:
            if task not in stl or stl[task] == 0:
                out[task] = np.nan
                continue
            if len(group) == 1:
                predicted = stl[task]
            else:
                labels = [pair_label.get(frozenset((other, task))) for other in group if other != task]
                found = [means.get((label, task), np.nan) if label else np.nan for label in labels]
                predicted = float(np.mean(found))
            out[task] = 100.0 * sign[task] * (predicted - stl[task]) / abs(stl[task])
    return pd.Series(out, dtype=float)


def higher_order_results(
    manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo, subset: Sequence[str], budget: int
) -> pd.DataFrame:
    """:func:`higher_order_table` from the grouping experiment's manifest and rows (module docstring)."""
    return higher_order_table(_selected(manifest, rows, task_info), subset, budget)


def higher_order_table(values: pd.DataFrame, subset: Sequence[str], budget: int) -> pd.DataFrame:
    """Every trained grouping of ``subset`` into at most ``budget`` networks with a group of three or more tasks
    (where the approximation is not the measurement itself): ``grouping, predicted_delta_m`` (Standley's
    higher-order approximation, :func:`higher_order_prediction`), ``measured_delta_m`` (mean over seeds of the
    per-seed Δm), their difference ``error``, ``n_seeds`` and ``note``; sorted by predicted Δm, best first.
    Both Δm leave out the tasks with a zero STL reference (module docstring; the note names them); the
    predicted Δm is NaN where a task's pair runs are missing."""
    if values.empty:
        return pd.DataFrame()
    values = values[values["task"].isin(subset)]
    sign = values[values["role"] == "stl"].groupby("task")["sign"].first().to_dict()
    per_seed = _per_seed(values, "test")
    zero = _zero_reference(per_seed, subset)
    records = []
    for grouping in set_partitions(list(subset), budget):
        if max(len(g) for g in grouping) < 3 or not _trained(values, grouping):
            continue
        measured = _delta_m(per_seed, sign, grouping, zero)
        by_task = higher_order_prediction(values, grouping).drop(zero, errors="ignore")
        records.append(
            {
                "grouping": grouping_text(grouping),
                "predicted_delta_m": float(by_task.mean(skipna=False)) if len(by_task) else np.nan,
                "measured_delta_m": float(measured.mean()) if len(measured) else np.nan,
                "n_seeds": len(measured),
                "note": _zero_note(zero),
            }
        )
    columns = ["grouping", "predicted_delta_m", "measured_delta_m", "n_seeds", "note"]
    table = pd.DataFrame.from_records(records, columns=columns)
    table.insert(3, "error", table["predicted_delta_m"] - table["measured_delta_m"])
    return table.sort_values("predicted_delta_m", ascending=False, kind="stable").reset_index(drop=True)


def _zero_note(zero: Sequence[str], split: str = "test") -> str:
    if not zero:
        return ""
    return f"Δm leaves out {', '.join(zero)} (mean STL {split} metric 0 over seeds: relative difference undefined)"


def _trained(values: pd.DataFrame, grouping: Grouping) -> bool:
    labels = set(values["group"])
    return all(len(g) == 1 or group_label(g) in labels for g in grouping)


def grouping_results(
    manifest: pd.DataFrame,
    rows: pd.DataFrame,
    task_info: TaskInfo,
    subset: Sequence[str],
    budget: int,
    predictors: Mapping[str, AffinitySource],
    alpha: float = 0.05,
    exhaustive: bool = True,
) -> pd.DataFrame:
    """Per choice (each predictor's grouping of ``subset`` into at most ``budget`` groups from its affinities on
    each half of the seeds, ``predictors``: :func:`predictor_sources`; the exhaustive best over the trained
    groupings by validation Δm; both cross-fitted over two halves of the seeds; all together):
    ``choice, grouping, n_seeds, delta_m`` with its interval ``delta_m_low/high`` and ``p_vs_stl``, and
    the paired differences to all-together and to the exhaustive best (``vs_all``, ``vs_best`` with
    intervals and p-values); ``p_adjusted`` columns are Benjamini–Hochberg over the table's distinct
    comparisons; ``note``: why a row is not tested or not chosen, how the best was chosen, which
    comparison is of a grouping with itself, and the tasks its Δm leaves out (module docstring: fewer
    than 2 seeds, a predictor with missing affinities, a zero STL reference).
    ``exhaustive=False`` leaves out the exhaustive best (where not every grouping was trained)."""
    return grouping_table(_selected(manifest, rows, task_info), subset, budget, predictors, alpha, exhaustive)


MIN_SEEDS = 2
"""Seeds with every value a paired test of :func:`grouping_table` needs; a row with fewer is not tested."""

BEST_CHOICE = "exhaustive best (cross-fitted)"
"""The ``choice`` of :func:`grouping_table`'s exhaustive best (:func:`cross_fitted_best`)."""


def seed_halves(seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """The two folds of :func:`cross_fitted_best`: the first ``ceil(n / 2)`` of the sorted ``seeds`` and the rest
    (fixed before any value is read)."""
    ordered = sorted(seeds)
    middle = (len(ordered) + 1) // 2
    return ordered[:middle], ordered[middle:]


def _best_on(groupings: Sequence[Grouping], scores: pd.DataFrame, seeds: Sequence[int]) -> Grouping | None:
    """The grouping with the largest mean over ``seeds`` of its per-seed validation Δm (``scores``: seeds ×
    positions in ``groupings``; seeds without a value are skipped; the first on ties); ``None`` where no grouping
    has a value on any of ``seeds``."""
    means = scores.reindex(seeds).mean()
    return None if means.isna().all() else groupings[int(means.idxmax())]


def _seed_list(seeds: Sequence[int]) -> str:
    return ", ".join(str(s) for s in seeds)


Folds = list[tuple[list[int], Grouping | None]]
""":func:`cross_fit`'s result: each half of the seeds with the grouping chosen on the other half (``None``: none)."""


def cross_fit(seeds: Sequence[int], choose: Callable[[Sequence[int]], Grouping | None]) -> Folds:
    """Cross-fitting of a choice over two halves of ``seeds`` (:func:`seed_halves`): each half with the grouping
    ``choose`` makes from the *other* half's runs alone.

    Why: a grouping chosen from a seed's runs (their validation Δm, their pair runs' transfer or early loss) and read
    on the same seed's test values is the one whose test values on that seed are favourably noisy, because both read
    the same trained models (selection bias, Cawley & Talbot 2010, JMLR 11; 'winner's curse').  With the choice made
    on the other half, the grouping a seed reads is fixed without that seed's runs, so its test Δm is an unbiased
    value of the chosen grouping (sample splitting with the roles swapped, as in cross-fitting, Chernozhukov et al.
    2018, Econometrics J. 21).  The two halves' values are not independent (each half's choice depends on the other
    half's values), so the level of the paired test over all seeds is measured, not assumed: docs/grouping.md and
    tests/test_grouping_calibration.py.  It estimates what choosing on half the seeds gives."""
    halves = seed_halves(seeds)
    return [(half, choose(other)) for half, other in zip(halves, reversed(halves))]


def _fold_values(folds: Folds, read: Callable[[Grouping], pd.Series]) -> pd.Series:
    """Each half's per-seed test Δm (``read``) of the grouping chosen on the other half, seeds without a value and
    halves without a grouping left out."""
    parts = [read(g).reindex(half).dropna() for half, g in folds if g is not None]
    return pd.concat(parts).sort_index() if parts else pd.Series(dtype=float)


def _fold_text(folds: Folds) -> str:
    """The halves' groupings (:func:`grouping_text`): one where they agree, else each with its seeds."""
    texts = [grouping_text(g) if g is not None else "none" for _, g in folds]
    if texts[0] == texts[1]:
        return texts[0]
    return "; ".join(f"{t} on seeds {_seed_list(half)}" for t, (half, _) in zip(texts, folds))


def _fold_note(folds: Folds, by: str, overall: Grouping) -> str:
    """How a cross-fitted row's grouping was chosen (``by``: on what), and the grouping chosen on every seed."""
    (first, _), (second, _) = folds
    return (
        f"chosen by {by} on the other half of the seeds (cross-fitted: seeds {_seed_list(first)} read the grouping "
        f"chosen on seeds {_seed_list(second)} and the reverse), so no seed's test Δm is read from the runs that chose "
        f"it; chosen by {by} on every seed: {grouping_text(overall)}"
    )


def _read_nothing(folds: Folds, why: str) -> list[str]:
    """A note for each half of ``folds`` that reads nothing (its other half chose no grouping: ``why``)."""
    return [f"seeds {_seed_list(half)} read nothing: {why} on the other half" for half, g in folds if g is None]


def _too_few(n: int) -> str:
    return f"not chosen: {n} seed (cross-fitting chooses on one half of the seeds and reads the other: it needs 2)"


def cross_fitted_best(
    val_scores: Mapping[Grouping, pd.Series], test_scores: Mapping[Grouping, pd.Series], seeds: Sequence[int]
) -> tuple[pd.Series, str, str]:
    """The exhaustive best's per-seed test Δm, cross-fitted (:func:`cross_fit` over the two halves of ``seeds``,
    :func:`seed_halves`): each half reads the test Δm of the grouping with the largest mean *validation* Δm on the
    *other* half (``val_scores``, ``test_scores``: per grouping, its per-seed Δm), the seeds of that half without a
    validation Δm skipped; a half whose other half has none reads nothing (note).  ``seeds``: every seed of the
    table, the same halves as every other row's (:func:`grouping_table`), so two rows with the same grouping text
    read the same seeds.

    Returns ``(values, grouping, note)``: the per-seed test Δm (seeds without a value left out), the grouping's
    text (both halves' groupings, with their seeds, where they differ; ``""`` when nothing was chosen) and the
    note saying how it was chosen, naming the grouping on every seed's validation.  Fewer than 2 seeds, or no
    grouping with a validation Δm: nothing chosen."""
    groupings = list(val_scores)
    val = pd.concat([val_scores[g] for g in groupings], axis=1, keys=range(len(groupings))) if groupings else None
    overall = None if val is None else _best_on(groupings, val, seeds)
    if overall is None:
        return pd.Series(dtype=float), "", "not chosen: no trained grouping has a validation Δm"
    if len(seeds) < MIN_SEEDS:
        return pd.Series(dtype=float), "", _too_few(len(seeds))
    folds = cross_fit(seeds, partial(_best_on, groupings, val))
    values = _fold_values(folds, test_scores.__getitem__)
    notes = [_fold_note(folds, "validation Δm", overall), *_read_nothing(folds, "no validation Δm")]
    return values, _fold_text(folds), "; ".join(notes)


def _predicted(affinity: Affinity, subset: Sequence[str], budget: int) -> Grouping | None:
    """The grouping of ``subset`` a predictor's ``affinity`` chooses (:func:`best_grouping`), ``None`` where a pair
    has no finite value (:func:`missing_pairs`)."""
    return None if missing_pairs(affinity, subset) else best_grouping(subset, affinity, budget)[0]


def _source_choice(source: AffinitySource, subset: Sequence[str], budget: int, seeds: Sequence[int]) -> Grouping | None:
    return _predicted(source(seeds), subset, budget)


Side = tuple[str, tuple[int, ...]]
"""One side of a comparison in :func:`grouping_table`: a grouping's text and the seeds its per-seed Δm is read on
(together they fix the per-seed series, so one key is one test)."""


def _difference(test: Mapping[str, float], flip: bool) -> dict[str, float]:
    """A :func:`~mtlens.analysis.transfer.difference_test` result of ``x − y`` as the test of ``y − x`` where
    ``flip`` (the paired test is equivariant: the same p-value, the interval negated)."""
    if not flip:
        return dict(test)
    return dict(test) | {"delta": -test["delta"], "delta_low": -test["delta_high"], "delta_high": -test["delta_low"]}


def grouping_table(
    values: pd.DataFrame,
    subset: Sequence[str],
    budget: int,
    predictors: Mapping[str, AffinitySource],
    alpha: float = 0.05,
    exhaustive: bool = True,
) -> pd.DataFrame:
    """:func:`grouping_results` from the selected values of each (run, task): ``seed, role, group, task``,
    ``sign`` (-1 where lower is better) and the selection metric on ``test`` and ``val``.

    Every interval and p-value is the paired test of :func:`~mtlens.analysis.transfer.difference_test`
    under the table's one skewness bound (:func:`~mtlens.analysis.transfer.family_bound`) over the
    per-seed Δm (against 0 for ``p_vs_stl``; of the per-seed differences to the reference's Δm on the
    same seeds for ``vs_all`` and ``vs_best``), where at least :data:`MIN_SEEDS` seeds have every value;
    a comparison with fewer is not tested (NaN interval and p-value, the reason in ``note``; its point
    value is the one seed's).  Every row's grouping is chosen by one path, cross-fitted over the same two halves of
    the table's seeds (:func:`seed_halves` of every seed in ``values``; :func:`cross_fit`: each half reads the
    grouping chosen from the other half's runs; chosen and read on the same seeds, the choice picked favourable test
    noise and biased the row's test Δm upward): a predictor's (``predictors``: name -> :data:`AffinitySource`) from
    its affinities on the other half (:func:`best_grouping`), the exhaustive best (:data:`BEST_CHOICE`) among the
    trained groupings by mean validation Δm on the other half's seeds that have one (:func:`cross_fitted_best`); the
    note says so and names the grouping chosen on every seed.  A predictor with a missing or non-finite affinity
    between two tasks of ``subset`` on every seed (:func:`missing_pairs`) chooses no grouping (``not chosen``,
    ``n_seeds`` 0), nor does any choice with fewer than 2 seeds; a half whose other half lacks a pair (or a
    validation Δm) reads nothing (note).

    **One family of distinct comparisons.**  A comparison is the pair of per-seed series it compares (a row's
    grouping, or the cross-fitted best's per-seed groupings, against STL, all-together or the best), keyed by each
    side's grouping text and the seeds it reads (:data:`Side`); the Benjamini–Hochberg family (discrete-aware,
    :func:`~mtlens.analysis.inference.bh_adjust`) and the skewness bound hold each distinct comparison once: two
    rows with the same grouping (two predictors choosing it) and ``x`` vs ``y`` next to ``y`` vs ``x`` (the best
    against all-together, all-together against the best) are one test, shown with the same adjusted p-value (the
    reverse with the difference and interval negated).  A comparison of a grouping with itself (all-together against
    itself, a grouping that is the best, a grouping of single tasks against STL) is no test: its difference is 0,
    its interval and p-values NaN, and the note says so.  Coverage, level and power on simulated stores are in
    tests/test_grouping_calibration.py and docs/grouping.md."""
    if values.empty:
        return pd.DataFrame()
    values = values[values["task"].isin(subset)]
    together = (tuple(subset),)
    if not _trained(values, together):
        return pd.DataFrame()
    trained = [g for g in set_partitions(list(subset), budget) if _trained(values, g)] if exhaustive else []
    sign = values[values["role"] == "stl"].groupby("task")["sign"].first().to_dict()
    test_values, val_values = _per_seed(values, "test"), _per_seed(values, "val")
    zero, zero_val = _zero_reference(test_values, subset), _zero_reference(val_values, subset)
    read = partial(_delta_m, test_values, sign, leave_out=zero)
    seeds = sorted(int(s) for s in values["seed"].unique())
    # Each row: (choice, the text of what it measures, its per-seed test Δm; None where not chosen or measured)
    rows: list[tuple[str, str, pd.Series | None]] = []
    row_notes: list[list[str]] = []
    for name, source in predictors.items():
        choice = f"{name} (predicted)"
        overall = _predicted(source(seeds), subset, budget)
        if overall is None or len(seeds) < MIN_SEEDS:
            missing = missing_pairs(source(seeds), subset)
            row_notes.append([_not_chosen(name, missing, subset) if missing else _too_few(len(seeds))])
            rows.append((choice, "", None))
            continue
        folds = cross_fit(seeds, partial(_source_choice, source, subset, budget))
        row_notes.append([_fold_note(folds, f"the {name} affinities", overall)])
        row_notes[-1] += _read_nothing(folds, f"no {name} affinity for every pair")
        row_notes[-1] += [_zero_note(zero)] if zero else []
        text = _fold_text(folds)
        if all(_trained(values, g) for _, g in folds if g is not None):
            rows.append((choice, text, _fold_values(folds, read)))
        else:
            row_notes[-1].append("not measured: a group of this grouping has no finished run (rerun the study)")
            rows.append((choice, text, None))
    references: dict[str, tuple[str, pd.Series]] = {}
    if trained:
        val_scores = {g: _delta_m(val_values, sign, g, zero_val) for g in trained}
        test_scores = {g: _delta_m(test_values, sign, g, zero) for g in trained}
        best, best_text, how = cross_fitted_best(val_scores, test_scores, seeds)
        row_notes.append([how, *([_zero_note(zero_val, "validation")] if zero_val and best_text else [])])
        row_notes[-1] += [_zero_note(zero)] if zero and best_text else []
        rows.append((BEST_CHOICE, best_text, best if best_text else None))
        if best_text:
            references["best"] = (best_text, best)
    together_delta = _delta_m(test_values, sign, together, zero)
    row_notes.append([_zero_note(zero)] if zero else [])
    rows.append(("all together", grouping_text(together), together_delta))
    references = {"all": (grouping_text(together), together_delta)} | references
    stl_text = grouping_text(tuple((t,) for t in subset))  # a grouping of single tasks is the STL runs
    names = {"all": "all together", "best": "the exhaustive best"}
    records: list[dict[str, Any]] = []
    # A side of a comparison is what its per-seed series is read from: the grouping's text and the seeds read
    comparisons: dict[frozenset[Side], tuple[Side, np.ndarray, np.ndarray]] = {}  # distinct: (first side, x, y)
    cells: list[tuple[int, str, frozenset[Side], bool]] = []  # (row, column, comparison, reversed)
    for row, (choice, text, delta) in enumerate(rows):
        records.append({"choice": choice, "grouping": text, "n_seeds": 0 if delta is None else len(delta)})
        if delta is None:
            continue
        sides = {"delta_m": (stl_text, pd.Series(0.0, index=delta.index), "STL")}
        sides |= {f"vs_{name}": (ref_text, ref, names[name]) for name, (ref_text, ref) in references.items()}
        for column, (ref_text, ref, ref_name) in sides.items():
            if ref_text == text:
                p_name = "p_vs_stl" if column == "delta_m" else f"p_{column}"
                records[row] |= {column: 0.0 if len(delta) else np.nan}
                records[row] |= dict.fromkeys([f"{column}_low", f"{column}_high", p_name, f"{p_name}_adjusted"], np.nan)
                row_notes[row].append(f"{column}: the same runs as {ref_name}, not a test")
                continue
            common = delta.index.intersection(ref.index)
            side = (text, tuple(delta.index))
            key = frozenset((side, (ref_text, tuple(ref.index))))
            comparisons.setdefault(key, (side, delta[common].to_numpy(), ref[common].to_numpy()))
            cells.append((row, column, key, comparisons[key][0] != side))
    tested = {key: len(x) >= MIN_SEEDS for key, (_, x, _) in comparisons.items()}
    bound = family_bound([(x, y, True) for key, (_, x, y) in comparisons.items() if tested[key]])
    results = {}
    for key, (_, x, y) in comparisons.items():
        point = float(np.mean(x - y)) if len(x) else np.nan
        results[key] = (
            difference_test(x, y, True, alpha, bound)
            if tested[key]
            else {"delta": point, "delta_low": np.nan, "delta_high": np.nan, "p_value": np.nan, "min_p": np.nan}
        )
    keys = list(results)
    adjusted = dict(
        zip(
            keys,
            bh_adjust(
                np.array([results[k]["p_value"] for k in keys], float),
                np.array([results[k]["min_p"] for k in keys], float),
                alpha,
            ),
        )
    )
    for row, column, key, flip in cells:
        test = _difference(results[key], flip)
        p_name = "p_vs_stl" if column == "delta_m" else f"p_{column}"
        records[row] |= {
            column: test["delta"],
            f"{column}_low": test["delta_low"],
            f"{column}_high": test["delta_high"],
            p_name: test["p_value"],
            f"{p_name}_adjusted": adjusted[key],
        }
        if not tested[key]:
            n = len(comparisons[key][1])
            row_notes[row].append(
                f"{column} not tested: {n} seed(s) with every value (a paired test needs {MIN_SEEDS})"
            )
    table = pd.DataFrame.from_records(records)
    compared = [
        (c, p) for c, p in (("delta_m", "p_vs_stl"), ("vs_all", "p_vs_all"), ("vs_best", "p_vs_best")) if p in table
    ]
    columns = ["choice", "grouping", "n_seeds"]
    columns += [name for c, p in compared for name in (c, f"{c}_low", f"{c}_high", p)]
    table = table.reindex(columns=columns + [f"{p}_adjusted" for _, p in compared])
    table["note"] = ["; ".join(n) for n in row_notes]
    return table
