"""Which trajectory factors explain transfer and the gap?  The unit table and its correlations.

**Units.** One row per (setting, task, seed, method) of an MTL run, compared with the STL
run of the same task and the **same seed** (columns ``*_diff`` are MTL − STL):

- ``transfer_pct``: ``100 * sigma * (M_MTL - M_STL) / |M_STL|`` of the test selection metric at
  each run's validation-selected checkpoint (``sigma = -1`` if lower is better), so ``> 0`` is
  positive transfer.  The reference is the same-seed STL run; where that run is missing, the
  mean over the STL seeds (``transfer_reference`` says which).
- ``gap_mean``: the mean over one common grid of training-loss levels per (setting, task) (the range
  every STL and MTL run of the task covers) of ``G_MTL - G_STL`` (``G`` = ``gap_measure``, default
  validation loss), both curves monotonized and interpolated in ``log`` training loss
  (:func:`mtlens.analysis.gap.unit_gap_means`); negative = MTL generalizes better at equal training loss.
- ``log_ratio_mean``, ``log_ratio_early``: the optimization effect ``log(L_MTL/L_STL)`` of the
  training loss at equal steps (:mod:`mtlens.analysis.optimization`).
- ``fisher_early_diff``: MTL − STL of the mean ``probe/fisher_trace`` over the probe steps with
  ``epoch <= early_epoch`` (the first probe step if none is that early).
- ``coherence_diff``, ``m_coherence_diff``, ``sharpness_diff``, ``sharpness_sam_diff``: MTL − STL of
  the mean of ``probe/grad_coherence``, ``probe/m_coherence``, ``probe/sharpness`` (adaptive
  worst-case) and ``probe/sharpness_sam`` (first-order estimate) over all probe steps of
  training (the two runs are probed at the same steps, so this compares equal training time).
- ``conflict_cosine``: the MTL run's mean ``probe/conflict_cosine`` over training and over the
  task pairs that contain the task; ``conflict_fraction``: the run's mean ``probe/conflict_fraction``.

A column is NaN where its rows are missing (e.g. no probes were recorded) or a value it averages is not finite
(a probe's NaN at some steps would otherwise leave a mean over other steps than the paired run's).  As in
:mod:`mtlens.analysis.optimization`, runs are paired by (setting, task, seed): one training
configuration per setting.

**Correlations.** :func:`correlate` gives Pearson's r and Spearman's rho of the two variables
centred within (setting, task), a studentized cluster-permutation p-value (DiCiccio & Romano
2017) and a leave-one-cluster-out jackknife interval on Fisher's z scale with ``t_{G−1}``
quantiles (Cameron, Gelbach & Miller 2008).  The clusters are (setting, seed): one MTL run gives
every task's unit and one STL run is the reference of every method's unit, so only the seed holds
everything a run shares; permutations move a whole seed's values onto another seed of the same
setting, unit (task, method) onto unit (task, method).  A ``numpy`` Generator seeded with ``seed``
makes random permutations reproducible.  ``n`` is the number of units with both values finite.
The pairs of a table form one family (discrete-aware Benjamini–Hochberg), and its intervals are
at BH's level over the table (Benjamini & Yekutieli 2005).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from mtlens.analysis.gap import unit_gap_means
from mtlens.analysis.inference import (
    bh_adjust,
    bh_level,
    bound_of_samples,
    grouped_bounds,
    paired_max_t,
    sample_skewness,
    scalar_test,
)
from mtlens.analysis.optimization import optimization_effect
from mtlens.analysis.transfer import TaskInfo, selected_checkpoints, selection_info
from mtlens.quantities import (
    CONFLICT_COSINE,
    CONFLICT_FRACTION,
    FISHER_TRACE,
    GRAD_COHERENCE,
    M_COHERENCE,
    RUN_ROW,
    SHARPNESS,
    SHARPNESS_SAM,
    TASK_PAIR,
)

UNIT_KEYS = ["setting", "task", "seed", "method"]
MEAN_FACTORS = {
    "coherence_diff": GRAD_COHERENCE,
    "m_coherence_diff": M_COHERENCE,
    "sharpness_diff": SHARPNESS,
    "sharpness_sam_diff": SHARPNESS_SAM,
}
FACTORS = ("fisher_early_diff", "coherence_diff", "m_coherence_diff", "sharpness_diff", "sharpness_sam_diff")
CONFLICTS = ("conflict_cosine", "conflict_fraction")
DEFAULT_PAIRS = tuple((f, target) for f in FACTORS for target in ("transfer_pct", "gap_mean")) + tuple(
    (c, target) for c in CONFLICTS for target in ("log_ratio_mean", "gap_mean")
)
"""(x, y) column pairs of :func:`correlation_table`: each factor against transfer and the gap,
gradient conflict against the optimization effect and the gap."""


def _transfer(selected: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    records = []
    for (setting, task), frame in selected.groupby(["setting", "task"]):
        info = selection_info(task_info, setting, task)
        column = f"test/{info['selection_metric']}"
        if column not in frame:
            continue
        sign = -1.0 if info["lower_is_better"].get(info["selection_metric"], False) else 1.0
        stl = frame[frame["mode"] == "stl"].set_index("seed")[column].dropna()
        for row in frame[frame["mode"] == "mtl"].itertuples():
            same_seed = row.seed in stl.index
            reference = float(stl.loc[row.seed]) if same_seed else (float(stl.mean()) if len(stl) else np.nan)
            value = float(frame.loc[row.Index, column])
            records.append(
                {
                    "setting": setting,
                    "task": task,
                    "seed": int(row.seed),
                    "method": row.method,
                    "transfer_pct": 100.0 * sign * (value - reference) / abs(reference) if reference else np.nan,
                    "transfer_reference": "same seed" if same_seed else "stl mean",
                }
            )
    return pd.DataFrame.from_records(records, columns=UNIT_KEYS + ["transfer_pct", "transfer_reference"])


def _finite_mean(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys`` and the mean ``value`` of each group of ``frame``, NaN where any of the group's values is not
    finite: a probe that returned NaN at some steps (e.g. the coherence of a zero gradient) has no mean over
    the run's training, and the mean of its other steps would be over another part of training than the
    paired run's (pandas' mean skips NaN)."""
    values = frame["value"].where(np.isfinite(frame["value"].astype(float)))
    groups = [frame[k] for k in keys]
    means = values.groupby(groups, sort=True).mean().where(~values.isna().groupby(groups, sort=True).any())
    return means.rename("value").reset_index()


def _probe_means(rows: pd.DataFrame, early_epoch: float) -> pd.DataFrame:
    """Per run and task: the mean of each per-task factor probe (Fisher: the probe steps with ``epoch <=
    early_epoch``, or the first probe step if none is that early), NaN where a value it averages is not
    finite (:func:`_finite_mean`)."""
    keys = ["setting", "mode", "method", "seed", "task", "quantity"]
    probes = rows[rows["quantity"].isin(list(MEAN_FACTORS.values()) + [FISHER_TRACE])]
    fisher = probes["quantity"] == FISHER_TRACE
    early = probes["epoch"] <= early_epoch
    first = probes["step"] == probes.groupby(keys, sort=False)["step"].transform("min")
    has_early = probes.assign(early=early).groupby(keys, sort=False)["early"].transform("any").fillna(False)
    used = ~fisher | early | (~has_early & first)
    means = _finite_mean(probes[used], keys)
    names = {v: k for k, v in MEAN_FACTORS.items()} | {FISHER_TRACE: "fisher_early_diff"}
    means = means.assign(seed=means["seed"].astype(int), factor=means.pop("quantity").map(names))
    return means[["setting", "mode", "method", "seed", "task", "factor", "value"]]


def _factor_diffs(rows: pd.DataFrame, early_epoch: float) -> pd.DataFrame:
    means = _probe_means(rows, early_epoch)
    stl = means[means["mode"] == "stl"].drop(columns=["mode", "method"]).rename(columns={"value": "stl"})
    mtl = means[means["mode"] == "mtl"].drop(columns="mode")
    merged = mtl.merge(stl, on=["setting", "seed", "task", "factor"])
    merged["diff"] = merged["value"] - merged["stl"]
    wide = merged.pivot_table(index=UNIT_KEYS, columns="factor", values="diff").reset_index()
    wide.columns.name = None
    return wide


def _conflicts(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per MTL unit: mean conflict cosine over its pairs; per MTL run: mean conflict fraction (NaN where a
    value is not finite, :func:`_finite_mean`)."""
    mtl = rows[rows["mode"] == "mtl"]
    cosine = mtl[mtl["quantity"] == CONFLICT_COSINE]
    # the mean cosine of each pair, once for each of its two tasks (in pair order)
    pairs = _finite_mean(cosine, ["setting", "method", "seed", "task"])
    per_task = pairs.assign(
        task=pairs["task"].astype(str).str.split(TASK_PAIR, regex=False), seed=pairs["seed"].astype(int)
    )
    per_task = per_task.explode("task")[UNIT_KEYS + ["value"]]
    per_task = _finite_mean(per_task, UNIT_KEYS).rename(columns={"value": "conflict_cosine"})
    fraction = _finite_mean(mtl[mtl["quantity"] == CONFLICT_FRACTION], ["setting", "seed", "method"])
    fraction = fraction.rename(columns={"value": "conflict_fraction"})
    return per_task, fraction


def unit_table(
    rows: pd.DataFrame,
    task_info: TaskInfo,
    gap_measure: str = "val/loss",
    early_epoch: float = 1.0,
    early_fraction: float = 0.25,
    n_grid: int = 100,
    selected: pd.DataFrame | None = None,
    optimization: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (setting, task, seed, method) of an MTL run; see the module docstring.

    ``rows`` are tidy trajectory rows of STL and MTL runs (``mtlens.store.ROW_COLUMNS``).
    ``selected`` (:func:`~mtlens.analysis.transfer.selected_checkpoints` of ``rows``) and ``optimization``
    (:func:`~mtlens.analysis.optimization.optimization_effect` of ``rows`` at ``early_fraction``) are
    computed here unless the caller has them already.  Only (run, task)s that pair as the transfer table pairs
    them enter (:func:`uniquely_paired_rows`): a seed with two MTL runs of one method, or two STL runs of one
    task, gives that task no unit (before, two configurations were averaged into one unit or listed twice).
    """
    rows = rows[uniquely_paired_rows(rows)]
    if selected is None:
        selected = selected_checkpoints(rows, task_info)
    selected = selected[_has_pair(selected, rows[["run_id", "task"]].drop_duplicates())]
    if optimization is None:
        optimization = optimization_effect(rows, early_fraction)
    transfer = _transfer(selected, task_info)
    mtl_units = rows[rows["mode"] == "mtl"][UNIT_KEYS].drop_duplicates()
    mtl_units = mtl_units[
        ~mtl_units["task"].astype(str).str.contains(TASK_PAIR, regex=False) & (mtl_units["task"] != RUN_ROW)
    ]
    mtl_units["seed"] = mtl_units["seed"].astype(int)
    units = mtl_units.merge(transfer, on=UNIT_KEYS, how="left")
    optimization = optimization[UNIT_KEYS + ["log_ratio_early", "log_ratio_mean"]]
    per_task_conflict, fraction = _conflicts(rows)
    for part in (
        unit_gap_means(rows, gap_measure, n_grid),
        optimization,
        _factor_diffs(rows, early_epoch),
        per_task_conflict,
    ):
        units = units.merge(part, on=UNIT_KEYS, how="left")
    units = units.merge(fraction, on=["setting", "seed", "method"], how="left")
    for column in ("gap_mean", *FACTORS, *CONFLICTS):
        if column not in units:
            units[column] = np.nan
    return units.sort_values(UNIT_KEYS).reset_index(drop=True)


def uniquely_paired_rows(rows: pd.DataFrame) -> np.ndarray:
    """Which of ``rows`` (trajectory rows) belong to a (run, task) that may pair: an STL run's task when it is
    the only STL run of its (setting, task, seed); an MTL run's task when the run is the only MTL run of that
    (setting, task, method, seed) and the seed's STL run of the task is not doubled either.  The rule of
    :func:`~mtlens.analysis.transfer.paired_or_unpaired` and :func:`~mtlens.analysis.optimization.loss_ratio_curves`
    per unit: two runs of one method and seed (e.g. other ``method_options`` of a sweep) are not one unit, and a
    seed with two STL runs of a task gives that task no unit (not one against the other seeds' STL mean).  An
    MTL run's run-level and task-pair rows are kept where any of its tasks is."""
    runs = rows[["run_id", "setting", "mode", "method", "seed", "task"]].drop_duplicates()
    runs = runs[(runs["task"] != RUN_ROW) & ~runs["task"].astype(str).str.contains(TASK_PAIR, regex=False)]
    is_mtl = runs["mode"] == "mtl"
    stl_key = runs["setting"].astype(str) + "/" + runs["task"].astype(str) + "/" + runs["seed"].astype(str)
    unit_key = runs["mode"].astype(str) + "/" + stl_key + "/" + runs["method"].astype(str).where(is_mtl, "")
    doubled = runs.groupby(unit_key)["run_id"].transform("nunique") > 1
    doubled_stl = set(stl_key[~is_mtl & doubled])
    kept = runs[~doubled & ~(is_mtl & stl_key.isin(doubled_stl))]
    special = (rows["task"] == RUN_ROW) | rows["task"].astype(str).str.contains(TASK_PAIR, regex=False)
    return _has_pair(rows, kept) | (special & rows["run_id"].isin(kept["run_id"])).to_numpy()


def _has_pair(frame: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Whether each row's ``(run_id, task)`` is one of ``pairs``' rows."""
    wanted = pd.MultiIndex.from_frame(pairs[["run_id", "task"]])
    return pd.MultiIndex.from_frame(frame[["run_id", "task"]]).isin(wanted)


def _centred(values: np.ndarray, centre_of: np.ndarray) -> np.ndarray:
    """``values`` minus the mean of its centring group (``centre_of``: a group number per point)."""
    sums = np.bincount(centre_of, values)
    counts = np.bincount(centre_of)
    return values - (sums / np.maximum(counts, 1))[centre_of]


def _standardized(
    x: np.ndarray, y: np.ndarray, centre_of: np.ndarray, ranks: bool, stratum_of: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)``: ``x`` and ``y`` centred within their centring groups (Spearman: the average ranks of
    the centred values, centred again), each scaled to mean square 1 **within each stratum** (setting;
    ranks too are taken within it), so that Pearson's r is ``mean(u * v)``: the unit-weighted average of the
    strata's own correlations.  Scaled over all strata at once, a setting on a larger scale (another metric
    or data set) carried nearly all of r and of its jackknife, whose ``t_{G−1}`` then counted the other
    settings' clusters as evidence (95% intervals missed 6.7% at 2 settings × 3 seeds with a 10× scale
    ratio; audit, 2026-12-06).  A stratum where a variable is constant contributes 0; NaN arrays where it is
    constant everywhere."""
    stratum_of = np.zeros(len(x), np.intp) if stratum_of is None else stratum_of
    out = []
    for values in (x, y):
        scaled = np.zeros_like(values, dtype=float)
        centred = _centred(values, centre_of)
        for stratum in np.unique(stratum_of):
            at = stratum_of == stratum
            part = _centred(stats.rankdata(centred[at]), centre_of[at]) if ranks else centred[at]
            scale = np.sqrt(np.mean(part**2))
            if scale > 1e-10 * max(np.sqrt(np.mean(values[at] ** 2)), 1e-300):
                scaled[at] = part / scale
        out.append(scaled if np.any(scaled != 0) else np.full_like(values, np.nan, dtype=float))
    return out[0], out[1]


def _studentized(u: np.ndarray, v: np.ndarray, index: np.ndarray, cluster_of: np.ndarray) -> np.ndarray:
    """The cluster-robust studentized correlation ``S = sum_c A_c / sqrt(sum_c A_c^2)``,
    ``A_c = sum_{i in c} u[index[b, i]] v_i``, for every permutation ``b`` of ``index`` (``(B, n)``):
    the numerator is ``n`` times Pearson's r of the (centred, scaled) data, the denominator the
    standard error of that sum when clusters are independent and the correlation is 0 (DiCiccio &
    Romano 2017, with cluster sums in place of single points).  Returns ``(B,)``."""
    products = u[index] * v  # (B, n)
    sums = np.zeros((len(index), int(cluster_of.max()) + 1))
    np.add.at(sums.T, cluster_of, products.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.sum(axis=1) / np.sqrt((sums**2).sum(axis=1))


def _jackknife_se(
    x: np.ndarray, y: np.ndarray, cluster_of: np.ndarray, centre_of: np.ndarray, ranks: bool, stratum_of: np.ndarray
) -> float:
    """Leave-one-cluster-out jackknife standard error of the (centred) correlation on Fisher's z scale:
    ``se_J^2 = (G−1)/G · sum_g (z_(−g) − mean z_(−g))^2`` over the ``G`` clusters, ``z_(−g) = atanh r_(−g)``
    recomputed (centring and ranks included) without cluster ``g``.  The jackknife variance is the CR3
    cluster-robust variance of Cameron, Gelbach & Miller (2008) / MacKinnon et al. (2023); NaN with fewer
    than 3 clusters or a constant variable in a jackknife sample."""
    n_groups = int(cluster_of.max()) + 1
    if n_groups < 3:
        return np.nan
    leave_out = []
    for g in range(n_groups):
        keep = cluster_of != g
        _, centre_kept = np.unique(centre_of[keep], return_inverse=True)
        uk, vk = _standardized(x[keep], y[keep], centre_kept, ranks, stratum_of[keep])
        leave_out.append(np.mean(uk * vk))
    z = np.arctanh(np.clip(np.array(leave_out), -1 + 1e-12, 1 - 1e-12))
    if not np.isfinite(z).all():
        return np.nan
    return float(np.sqrt((n_groups - 1) / n_groups * np.sum((z - z.mean()) ** 2)))


def fisher_interval(r: ArrayLike, se: ArrayLike, n_groups: ArrayLike, confidence: ArrayLike) -> tuple[Any, Any]:
    """``(low, high)``: ``tanh(atanh r ± t_{G−1, (1+confidence)/2} · se)``, the jackknife interval of a
    correlation ``r`` with standard error ``se`` on Fisher's z scale over ``G = n_groups`` clusters (the
    ``t_{G−1}`` reference of Cameron, Gelbach & Miller 2008 for few clusters); elementwise, NaN where
    ``|r| >= 1``, ``se`` is NaN or ``G < 3``."""
    r, se, g = (np.asarray(a, float) for a in (r, se, n_groups))
    with np.errstate(invalid="ignore", divide="ignore"):
        half = stats.t.ppf((1 + np.asarray(confidence, float)) / 2, g - 1) * se
        valid = (np.abs(r) < 1) & (g >= 3)
        centre = np.arctanh(np.where(valid, r, np.nan))
        return np.tanh(centre - half), np.tanh(centre + half)


def cluster_permutations(
    cluster_of: np.ndarray,
    n_perm: int,
    seed: int,
    stratum_of: np.ndarray | None = None,
    slot_of: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    """``(index, exact)``: rows of unit indices (observed order first) that move whole clusters onto
    exchangeable clusters: the same stratum (``stratum_of``, constant within a cluster, e.g. the
    setting) and the same slots (``slot_of``, unique within a cluster, e.g. the (task, method) of a
    unit; default: the unit's position in its cluster, so clusters of the same size), unit of slot
    ``k`` of one cluster onto the unit of slot ``k`` of the other.  Every such permutation when there
    are at most ``n_perm`` of them, else the identity and ``n_perm`` random ones."""
    n = len(cluster_of)
    stratum_of = np.zeros(n, int) if stratum_of is None else np.asarray(stratum_of)
    if slot_of is None:
        order = np.argsort(cluster_of, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(cluster_of[order])) + 1]
        position = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        slot_of = np.empty(n, int)
        slot_of[order] = position
    members = []
    signatures: dict[tuple, list[int]] = {}
    for c in range(int(cluster_of.max()) + 1):
        units = np.flatnonzero(cluster_of == c)
        units = units[np.argsort(slot_of[units], kind="stable")]
        members.append(units)
        key = (int(stratum_of[units[0]]), tuple(int(k) for k in slot_of[units]))
        signatures.setdefault(key, []).append(c)
    blocks = [np.stack([members[c] for c in clusters]) for clusters in signatures.values()]  # (k, size) each
    exact = math.prod(math.factorial(len(b)) for b in blocks) <= n_perm
    if exact:
        orders = [np.array(list(itertools.permutations(range(len(b))))) for b in blocks]
        grid = np.stack(np.meshgrid(*[np.arange(len(o)) for o in orders], indexing="ij"), -1).reshape(-1, len(blocks))
        sources = [o[grid[:, i]] for i, o in enumerate(orders)]
    else:
        rng = np.random.default_rng(seed)
        sources = [
            np.vstack([np.arange(len(b)), rng.permuted(np.tile(np.arange(len(b)), (n_perm, 1)), axis=1)])
            for b in blocks
        ]
    index = np.empty((len(sources[0]), n), dtype=int)
    for block, source in zip(blocks, sources):
        index[:, block.ravel()] = block[source].reshape(len(source), -1)
    return index, exact


@functools.lru_cache(maxsize=2)
def _cached_permutations(key: bytes, n: int, n_perm: int, seed: int) -> np.ndarray:
    """:func:`cluster_permutations` of the ``intp`` arrays (cluster, stratum, slot) packed in ``key``
    (slots all ``-1``: the default positions).  Cached: the pairs of a correlation table mostly share
    their units, and the permutations of a thousand units take a second to build."""
    cluster_of, stratum_of, slot_of = np.frombuffer(key, dtype=np.intp).reshape(3, n)
    return cluster_permutations(cluster_of, n_perm, seed, stratum_of, None if (slot_of < 0).all() else slot_of)[0]


def _codes(labels: ArrayLike | None, n: int, default: np.ndarray) -> np.ndarray:
    """Integer codes (0, 1, ...) of ``labels`` (``default`` without)."""
    if labels is None:
        return default
    return np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].astype(np.intp).reshape(n)


def correlate(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
    seed: int = 0,
    n_perm: int = 9999,
    centre: ArrayLike | None = None,
    strata: ArrayLike | None = None,
    slots: ArrayLike | None = None,
) -> dict[str, float]:
    """Pearson and Spearman correlation of ``x`` and ``y`` within centring groups, with a
    cluster-jackknife interval and a studentized cluster-permutation p-value.

    Pairs with a non-finite value are dropped first.  Labels per point: ``groups`` its cluster (all
    that one run shares; default every point its own), ``centre`` its centring group (default one
    group: plain Pearson r and Spearman rho), ``strata`` the stratum its cluster is permuted within,
    ``slots`` its place in its cluster (clusters are exchangeable only with the same slots).

    **Estimate**: r of ``x`` and ``y`` each centred within its ``centre`` group (the report centres
    within (setting, task), so that tasks whose means differ in both variables do not make a
    correlation); Spearman: r of the ranks of the centred values.  **p-value** (two-sided; H0: zero
    correlation, not independence): the share of :func:`cluster_permutations` whose studentized
    statistic :func:`_studentized` is at least as large in absolute value as the observed one
    (DiCiccio & Romano 2017: studentizing makes the permutation test valid for uncorrelated but
    dependent data, e.g. a spread that grows with ``x``); exact when the clusters allow at most
    ``n_perm`` permutations.  ``min_p`` is the smallest p these permutations allow
    (``1 / #permutations``; NaN p and ``min_p`` with one cluster).  **Interval**:
    :func:`fisher_interval` of :func:`_jackknife_se` at ``confidence``.
    Returns ``n, n_groups, n_centres, n_strata`` (points, clusters, centring groups and strata among the
    finite pairs), ``pearson_r, pearson_p, pearson_low, pearson_high, spearman_rho, spearman_p,
    spearman_low, spearman_high, min_p``, ``pearson_se_z, spearman_se_z`` (the jackknife standard errors of
    the intervals, :func:`_jackknife_se`; NaN where undefined: fewer than 3 points or a constant variable).
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    n = len(xs)
    pick = lambda labels: None if labels is None else np.asarray(labels)[finite]  # noqa: E731
    cluster_of = _codes(pick(groups), n, np.arange(n, dtype=np.intp))
    centre_of = _codes(pick(centre), n, np.zeros(n, np.intp))
    n_groups = int(cluster_of.max()) + 1 if n else 0
    strata_of = _codes(pick(strata), n, np.zeros(n, np.intp))
    out = {"n": n, "n_groups": n_groups, "n_centres": len(np.unique(centre_of)), "n_strata": len(np.unique(strata_of))}
    keys = (
        "pearson_r",
        "pearson_p",
        "pearson_low",
        "pearson_high",
        "spearman_rho",
        "spearman_p",
        "spearman_low",
        "spearman_high",
        "min_p",
        "pearson_se_z",
        "spearman_se_z",
    )
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out | dict.fromkeys(keys, np.nan)
    index = None
    if n_groups > 1:
        packed = np.stack([cluster_of, strata_of, _codes(pick(slots), n, np.full(n, -1))])
        index = _cached_permutations(packed.astype(np.intp).tobytes(), n, n_perm, seed)
    results: dict[str, float] = {}
    for kind, ranks in (("pearson", False), ("spearman", True)):
        u, v = _standardized(xs, ys, centre_of, ranks, strata_of)
        name = "pearson_r" if kind == "pearson" else "spearman_rho"
        results[name] = float(np.mean(u * v)) if np.isfinite(u).all() and np.isfinite(v).all() else np.nan
        if index is not None and np.isfinite(results[name]):
            statistic = np.abs(_studentized(u, v, index, cluster_of))
            results[f"{kind}_p"] = float(np.mean(statistic >= statistic[0] * (1 - 1e-9)))
        else:
            results[f"{kind}_p"] = np.nan
        se = _jackknife_se(xs, ys, cluster_of, centre_of, ranks, strata_of)
        low, high = fisher_interval(results[name], se, n_groups, confidence)
        results[f"{kind}_se_z"], results[f"{kind}_low"], results[f"{kind}_high"] = se, float(low), float(high)
    # no test where no coefficient could be computed (a factor constant within every centring group): no floor,
    # so the pair is not counted in a family's size (report.planning.family_sizes), as BH does not count it
    tested = index is not None and (np.isfinite(results["pearson_r"]) or np.isfinite(results["spearman_rho"]))
    results["min_p"] = 1.0 / len(index) if tested and index is not None else np.nan
    return out | {k: results[k] for k in keys}


UNIT_CLUSTER = ("setting", "seed")
"""Columns of the unit table that label a unit's cluster: an MTL run (setting, method, seed) gives
every task's unit, and an STL run (setting, task, seed) is the reference of every method's unit, so
only (setting, seed) holds everything a run shares."""
UNIT_CENTRE = ("setting", "task")
"""Columns within which both variables are centred (task-level means are not evidence of a correlation)."""
UNIT_SLOTS = ("task", "method")
"""A unit's place in its (setting, seed) cluster: a permutation moves seed ``s``'s values of (task, method)
onto seed ``s'``'s unit of the same (task, method), within the setting."""


def correlation_table(
    units: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
    cluster: Sequence[str] = UNIT_CLUSTER,
    seed: int = 0,
    alpha: float = 0.05,
    n_perm: int = 9999,
    centre: Sequence[str] = UNIT_CENTRE,
    slots: Sequence[str] = UNIT_SLOTS,
) -> pd.DataFrame:
    """One row per (x, y) pair with at least 3 finite units: :func:`correlate` over all units, with
    the clusters named by ``cluster``, centred within ``centre`` and permuted (``n_perm``) within the
    setting, units matched by ``slots`` (columns of ``units``; ``centre`` and ``slots`` are not used
    where ``units`` lacks one of their columns, e.g. a table of task pairs clustered by target task).

    The pairs form one family: ``pearson_p_adjusted`` and ``spearman_p_adjusted`` are
    Benjamini–Hochberg over the table at FDR ``alpha``, discrete-aware (pairs with ``min_p > alpha``
    left out of the family: :func:`~mtlens.analysis.inference.bh_adjust`); ``conclusive`` is False
    where ``min_p > alpha`` (too few clusters for any p-value to reach ``alpha``).  The intervals are
    the false-coverage-rate adjusted intervals of Benjamini & Yekutieli (2005) for the pairs BH selects:
    :func:`fisher_interval` at confidence ``1 − R · alpha / m`` (``pearson_confidence``,
    ``spearman_confidence``; :func:`~mtlens.analysis.inference.bh_level`: ``R`` rejections among the ``m``
    attainable pairs, ``1 − alpha / m`` when ``R = 0``), the level at which BH tests each pair, so that an
    interval excludes 0 at the level its p-value is read at and the table's intervals miss their
    correlations at a rate of at most ``alpha`` among the selected pairs.  The jackknife standard errors
    behind them are not shown.
    """

    def labels(columns: Sequence[str]) -> np.ndarray | None:
        """One label per unit from ``columns`` (None where the table lacks one: no centring / default slots)."""
        if not len(units) or not set(columns) <= set(units.columns):
            return None
        parts = [units[column].astype(str) for column in columns]
        return functools.reduce(lambda left, right: left + "/" + right, parts).to_numpy()

    groups, centres, slot_labels = labels(cluster), labels(centre), labels(slots)
    strata = units["setting"].astype(str).to_numpy() if "setting" in units else None
    records = []
    for x, y in pairs:
        if x not in units or y not in units:
            continue
        result = correlate(units[x], units[y], groups, 1 - alpha, seed, n_perm, centres, strata, slot_labels)
        if result["n"] >= 3:
            records.append({"x": x, "y": y, **result})
    computed = [c for c in CORRELATION_COLUMNS if not c.endswith(("adjusted", "confidence")) and c != "conclusive"]
    table = pd.DataFrame.from_records(records, columns=[*computed, "pearson_se_z", "spearman_se_z"])
    return family_inference(table, alpha)[CORRELATION_COLUMNS]


CORRELATION_COLUMNS = [
    "x",
    "y",
    "n",
    "n_groups",
    "n_centres",
    "n_strata",
    "pearson_r",
    "pearson_p",
    "pearson_p_adjusted",
    "pearson_low",
    "pearson_high",
    "spearman_rho",
    "spearman_p",
    "spearman_p_adjusted",
    "spearman_low",
    "spearman_high",
    "pearson_confidence",
    "spearman_confidence",
    "min_p",
    "conclusive",
]
""":func:`correlation_table`'s columns (the jackknife standard errors behind the intervals not shown)."""


def family_inference(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """What makes the rows of a correlation table one family at FDR ``alpha`` (the one rule of every correlation
    table of the report: :func:`correlation_table`, the grouping experiment's Mantel table): from each row's
    ``pearson_r``/``spearman_rho``, ``{kind}_p``, ``{kind}_se_z`` (jackknife standard error on Fisher's z scale),
    ``n_groups`` and ``min_p``, a copy with ``{kind}_p_adjusted`` (Benjamini–Hochberg over the rows, discrete-aware:
    :func:`~mtlens.analysis.inference.bh_adjust`), ``{kind}_confidence = 1 − R · alpha / m``
    (:func:`~mtlens.analysis.inference.bh_level`: ``R`` rejections among the ``m`` attainable rows, ``1 − alpha / m``
    when ``R = 0``; the false-coverage-rate adjusted level of Benjamini & Yekutieli 2005), ``{kind}_low`` and
    ``{kind}_high`` (:func:`fisher_interval` at that confidence) and ``conclusive`` (``min_p <= alpha``)."""
    table = table.copy()
    min_p = table["min_p"].to_numpy(float)
    for kind, estimate in (("pearson", "pearson_r"), ("spearman", "spearman_rho")):
        p = table[f"{kind}_p"].to_numpy(float)
        table[f"{kind}_p_adjusted"] = bh_adjust(p, min_p, alpha)
        table[f"{kind}_confidence"] = 1 - bh_level(p, alpha, min_p)
        table[f"{kind}_low"], table[f"{kind}_high"] = fisher_interval(
            table[estimate], table[f"{kind}_se_z"], table["n_groups"], table[f"{kind}_confidence"]
        )
    table["conclusive"] = min_p <= alpha
    return table


CorrelationClaim = Literal["shown", "test only", "interval only", "too few clusters", "not shown"]
"""What a correlation row lets the report say (:func:`correlation_claim`)."""


def correlation_claim(row: Mapping[str, Any], alpha: float, kind: str = "pearson") -> CorrelationClaim:
    """What one row of a correlation table (:func:`correlation_table`, or any table with the columns
    ``{kind}_p_adjusted``, ``{kind}_low``, ``{kind}_high`` and ``conclusive`` or ``min_p``) shows at FDR
    ``alpha``.  The p-value (cluster permutation) and the interval (cluster jackknife) come from different
    methods and can disagree, so a correlation is ``"shown"`` only where both say so: adjusted p ≤ ``alpha``
    **and** the interval (in :func:`correlation_table`, at BH's level over the table) excludes 0 (a
    conservative rule: its size is at most the permutation test's; measured rates: docs/statistics.md §6).
    ``"test only"``: the test rejects but the interval reaches 0; ``"interval only"``: the interval
    excludes 0 but the test does not reject; ``"too few clusters"``: no p-value can reach ``alpha``
    (``conclusive`` false, or ``min_p > alpha``), so neither the test nor the interval is read;
    ``"not shown"``: neither rejects (or a value is missing)."""

    def value(name: str) -> float:
        try:
            number = float(row.get(name, math.nan))
        except (TypeError, ValueError):
            return math.nan
        return number

    if "conclusive" in row and pd.notna(row["conclusive"]):
        conclusive = bool(row["conclusive"])
    else:
        min_p = value("min_p")
        conclusive = not (min_p > alpha)
    if not conclusive:
        return "too few clusters"
    p, low, high = value(f"{kind}_p_adjusted"), value(f"{kind}_low"), value(f"{kind}_high")
    rejects = p <= alpha
    excludes = low > 0 or high < 0
    if rejects and excludes:
        return "shown"
    if rejects:
        return "test only"
    if excludes:
        return "interval only"
    return "not shown"


def difference_tests(units: pd.DataFrame, columns: Sequence[str] = FACTORS, alpha: float = 0.05) -> pd.DataFrame:
    """Per (setting, task, method) and per-seed difference column of ``units`` (e.g. the probe
    differences ``*_diff``, each MTL_s − STL_s of one seed): ``n_seeds, mean, low, high`` (``1 − alpha``
    interval), ``p_value`` (the paired test, :func:`~mtlens.analysis.inference.scalar_test`, under the
    skewness bound of the setting's rows, :func:`~mtlens.analysis.inference.grouped_bounds`), ``min_p``
    (0), ``min_detectable`` (the difference detected with 80% power at level ``alpha``),
    ``effect_size`` (Hedges' g_z), ``skewness`` (of the per-seed differences), ``skewness_bound`` (the
    setting's) and ``p_adjusted``
    (Benjamini–Hochberg over all rows at FDR ``alpha``: one family).  Columns with fewer than 2 finite
    seeds are left out."""
    rows = []
    for key, frame in units.groupby(["setting", "task", "method"]):
        for column in columns:
            values = frame[column].to_numpy(float) if column in frame else np.array([])
            values = values[np.isfinite(values)]
            if len(values) >= 2:
                rows.append((dict(zip(["setting", "task", "method"], key)), column, values))
    bounds = grouped_bounds(bound_of_samples, [v for *_, v in rows], [key["setting"] for key, *_ in rows])
    records = []
    for (key, column, values), bound in zip(rows, bounds, strict=True):
        summary = scalar_test(paired_max_t(values).with_bound(bound), alpha)
        records.append(
            key
            | {
                "difference": column,
                "n_seeds": len(values),
                "mean": values.mean(),
                "low": summary["low"],
                "high": summary["high"],
                "p_value": summary["p_value"],
                "min_p": summary["min_p"],
                "min_detectable": summary["min_detectable"],
                "effect_size": summary["effect_size"],
                "skewness": sample_skewness(values),
                "skewness_bound": bound.value,
            }
        )
    columns = ["setting", "task", "method", "difference", "n_seeds", "mean", "low", "high", "p_value", "min_p"]
    extra = ["min_detectable", "effect_size", "skewness", "skewness_bound"]
    table = pd.DataFrame.from_records(records, columns=[*columns, *extra])
    adjusted = bh_adjust(table["p_value"].to_numpy(float), table["min_p"].to_numpy(float), alpha)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", adjusted)
    return table
