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

A column is NaN where its rows are missing (e.g. no probes were recorded).  As in
:mod:`mtlens.analysis.optimization`, runs are paired by (setting, task, seed): one training
configuration per setting.

**Correlations.** :func:`correlate` gives Pearson's r and Spearman's rho (``scipy.stats``)
with percentile bootstrap confidence intervals and permutation p-values, both built on the
same *clusters* of units (default: the (setting, task, seed) cells, so the methods that share
one STL reference run stay together): the bootstrap resamples clusters with replacement,
recomputes both coefficients on each resample, and takes the ``(1 - confidence)/2`` and
``(1 + confidence)/2`` percentiles; the p-value permutes whole clusters.  A ``numpy`` Generator
seeded with ``seed`` makes both reproducible.  ``n`` is the number of units with both values
finite.  The pairs of a table form one family (Benjamini–Hochberg).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from mtlens.analysis.gap import unit_gap_means
from mtlens.analysis.inference import bh_adjust, paired_max_t
from mtlens.analysis.optimization import optimization_effect
from mtlens.analysis.transfer import TaskInfo, selected_checkpoints, selection_info
from mtlens.quantities import (
    CONFLICT_COSINE,
    CONFLICT_FRACTION,
    FISHER_TRACE,
    GRAD_COHERENCE,
    M_COHERENCE,
    SHARPNESS,
    SHARPNESS_SAM,
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


def _probe_means(rows: pd.DataFrame, early_epoch: float) -> pd.DataFrame:
    """Per run and task: the mean of each per-task factor probe (Fisher: the probe steps with ``epoch <=
    early_epoch``, or the first probe step if none is that early)."""
    keys = ["setting", "mode", "method", "seed", "task", "quantity"]
    probes = rows[rows["quantity"].isin(list(MEAN_FACTORS.values()) + [FISHER_TRACE])]
    fisher = probes["quantity"] == FISHER_TRACE
    early = probes["epoch"] <= early_epoch
    first = probes["step"] == probes.groupby(keys, sort=False)["step"].transform("min")
    has_early = probes.assign(early=early).groupby(keys, sort=False)["early"].transform("any").fillna(False)
    used = ~fisher | early | (~has_early & first)
    means = probes[used].groupby(keys, sort=True)["value"].mean().reset_index()
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
    """Per MTL unit: mean conflict cosine over its pairs; per MTL run: mean conflict fraction."""
    mtl = rows[rows["mode"] == "mtl"]
    cosine = mtl[mtl["quantity"] == CONFLICT_COSINE]
    # the mean cosine of each pair, once for each of its two tasks (in pair order)
    pairs = cosine.groupby(["setting", "method", "seed", "task"], as_index=False)["value"].mean()
    per_task = pairs.assign(task=pairs["task"].astype(str).str.split("|"), seed=pairs["seed"].astype(int))
    per_task = per_task.explode("task")[UNIT_KEYS + ["value"]]
    per_task = per_task.groupby(UNIT_KEYS, as_index=False)["value"].mean().rename(columns={"value": "conflict_cosine"})
    fraction = (
        mtl[mtl["quantity"] == CONFLICT_FRACTION]
        .groupby(["setting", "seed", "method"], as_index=False)["value"]
        .mean()
        .rename(columns={"value": "conflict_fraction"})
    )
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
    computed here unless the caller has them already.
    """
    if selected is None:
        selected = selected_checkpoints(rows, task_info)
    if optimization is None:
        optimization = optimization_effect(rows, early_fraction)
    transfer = _transfer(selected, task_info)
    mtl_units = rows[rows["mode"] == "mtl"][UNIT_KEYS].drop_duplicates()
    mtl_units = mtl_units[~mtl_units["task"].astype(str).str.contains("|", regex=False) & (mtl_units["task"] != "*")]
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


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of ``x, y`` (shape ``(n,)`` or ``(B, n)``) with integer weights ``w`` (``(B, n)``):
    row ``b`` equals the plain Pearson r of the sample holding point ``i`` ``w[b, i]`` times.
    NaN where a variable is constant."""
    total = w.sum(axis=1, keepdims=True)
    dx = x - (w * x).sum(axis=1, keepdims=True) / total
    dy = y - (w * y).sum(axis=1, keepdims=True) / total
    var_x, var_y = (w * dx * dx).sum(axis=1), (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (w * dx * dy).sum(axis=1) / np.sqrt(var_x * var_y)
    constant = (var_x <= 1e-20 * (w * x * x).sum(axis=1)) | (var_y <= 1e-20 * (w * y * y).sum(axis=1))
    return np.where(constant, np.nan, r)


def _permuted_pearson(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pearson r of ``x[index[b]]`` and ``y`` for every row ``b`` of ``index`` (``(B, n)``, each row a
    permutation of the points): a permutation keeps the mean and the variance of ``x``, so
    ``r_b = sum_i (x - mean x)[index[b, i]] (y - mean y)_i / sqrt(S_xx S_yy)``, one matrix-vector
    product (equal to :func:`_weighted_pearson` with unit weights, without its ``(B, n)`` temporaries).
    NaN where a variable is constant."""
    dx, dy = x - x.mean(), y - y.mean()
    var_x, var_y = (dx * dx).sum(), (dy * dy).sum()
    if var_x <= 1e-20 * (x * x).sum() or var_y <= 1e-20 * (y * y).sum():
        return np.full(len(index), np.nan)
    return dx[index] @ dy / np.sqrt(var_x * var_y)


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (``scipy.stats.rankdata``, ties averaged) of every point in each weighted
    sample ``w[b]`` (``(B, n)``): the weight of the smaller values plus ``(tied weight + 1) / 2``."""
    _, inverse = np.unique(x, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # the points grouped by value, every value present
    per_value = np.add.reduceat(w[:, order], np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0]), axis=1)
    below = np.cumsum(per_value, axis=1) - per_value
    return (below + (per_value + 1) / 2)[:, inverse]


def cluster_permutations(cluster_of: np.ndarray, n_perm: int, seed: int) -> tuple[np.ndarray, bool]:
    """``(index, exact)``: rows of unit indices (observed order first) that move whole clusters onto
    clusters of the same size, unit ``k`` of one cluster onto unit ``k`` of the other (units in table
    order).  Every such permutation when there are at most ``n_perm`` of them, else the identity and
    ``n_perm`` random ones."""
    members = [np.flatnonzero(cluster_of == c) for c in range(int(cluster_of.max()) + 1)]
    strata: dict[int, list[int]] = {}
    for c, units in enumerate(members):
        strata.setdefault(len(units), []).append(c)
    blocks = [np.stack([members[c] for c in clusters]) for clusters in strata.values()]  # (k, size) each
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
    index = np.empty((len(sources[0]), len(cluster_of)), dtype=int)
    for block, source in zip(blocks, sources):
        index[:, block.ravel()] = block[source].reshape(len(source), -1)
    return index, exact


@functools.lru_cache(maxsize=1)
def _cluster_resamples(cluster_key: bytes, n_boot: int, n_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(weights, index)`` of :func:`correlate` for the points' clusters ``cluster_key`` (the ``intp``
    bytes of each point's cluster number): ``weights`` ``(n_boot, n)``, how often each point is in each
    cluster-bootstrap resample (a generator seeded with ``seed``), and the :func:`cluster_permutations`
    (``None`` with one cluster).  Cached for the last clusters: the pairs of a correlation table mostly
    share their units, and the permutations of a thousand units take a second to build."""
    cluster_of = np.frombuffer(cluster_key, dtype=np.intp)
    n_groups = int(cluster_of.max()) + 1
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, (n_boot, n_groups))
    cluster_counts = np.zeros((n_boot, n_groups))
    np.add.at(cluster_counts, (np.arange(n_boot)[:, None], drawn), 1)
    index = cluster_permutations(cluster_of, n_perm, seed)[0] if n_groups > 1 else None
    return cluster_counts[:, cluster_of], index


def correlate(
    x: ArrayLike,
    y: ArrayLike,
    groups: Sequence[Any] | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    n_perm: int = 9999,
) -> dict[str, float]:
    """Pearson and Spearman correlation of ``x`` and ``y`` with cluster-bootstrap percentile CIs and
    cluster-permutation p-values.

    Pairs with a non-finite value are dropped first.  ``groups`` labels each point's cluster
    (default: every point its own).  **Interval**: each bootstrap replicate draws as many clusters
    as there are, with replacement, and keeps all their points (computed at once for all replicates as
    Pearson r of the weighted sample, weights = how often each point was drawn; Spearman: the
    same on the resample's average ranks).  **p-value** (two-sided): the share of cluster
    permutations (:func:`cluster_permutations`: the ``x`` values of whole clusters moved onto other
    clusters of the same size, the ``y`` values kept) whose ``|r|`` is at least the observed one, so
    units that share a cluster (an STL run) are never counted as independent evidence; exact when
    the clusters allow at most ``n_perm`` permutations.  ``min_p`` is the smallest p these
    permutations allow (``1 / #permutations``; ``NaN`` p and ``min_p`` with one cluster).
    Returns ``n, n_groups, pearson_r, pearson_p, pearson_low, pearson_high, spearman_rho,
    spearman_p, spearman_low, spearman_high, min_p`` (NaN where undefined: fewer than 3 points or a
    constant variable).
    """
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    labels = np.arange(len(xs)) if groups is None else np.asarray(groups)
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys, labels = xs[finite], ys[finite], labels[finite]
    _, cluster_of = np.unique(labels, return_inverse=True)
    n_groups = int(cluster_of.max()) + 1 if len(xs) else 0
    out = {"n": len(xs), "n_groups": n_groups}
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
    )
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return out | dict.fromkeys(keys, np.nan)
    pearson, spearman = stats.pearsonr(xs, ys), stats.spearmanr(xs, ys)
    weights, index = _cluster_resamples(cluster_of.astype(np.intp).tobytes(), n_boot, n_perm, seed)
    boot = np.stack(
        [
            _weighted_pearson(xs, ys, weights),
            _weighted_pearson(_weighted_ranks(xs, weights), _weighted_ranks(ys, weights), weights),
        ],
        axis=1,
    )
    tails = 100 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    (p_low, p_high), (s_low, s_high) = (np.nanpercentile(boot[:, i], tails) for i in range(2))
    if index is not None:
        permuted = [_permuted_pearson(xs, ys, index), _permuted_pearson(stats.rankdata(xs), stats.rankdata(ys), index)]
        p_values = [float(np.mean(np.abs(r) >= abs(r[0]) * (1 - 1e-9))) for r in permuted]
        min_p = 1.0 / len(index)
    else:
        p_values, min_p = [np.nan, np.nan], np.nan
    return out | {
        "pearson_r": float(pearson.statistic),
        "pearson_p": p_values[0],
        "pearson_low": float(p_low),
        "pearson_high": float(p_high),
        "spearman_rho": float(spearman.statistic),
        "spearman_p": p_values[1],
        "spearman_low": float(s_low),
        "spearman_high": float(s_high),
        "min_p": min_p,
    }


def correlation_table(
    units: pd.DataFrame,
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
    cluster: Sequence[str] = ("setting", "task", "seed"),
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    alpha: float = 0.05,
    n_perm: int = 9999,
) -> pd.DataFrame:
    """One row per (x, y) pair with at least 3 finite units: :func:`correlate` over all units,
    bootstrapping (``n_boot`` resamples) and permuting (``n_perm``) the clusters named by ``cluster``
    (columns of ``units``).

    The pairs form one family: ``pearson_p_adjusted`` and ``spearman_p_adjusted`` are
    Benjamini–Hochberg over the table; ``conclusive`` is False where ``min_p > alpha`` (too few
    clusters for any p-value to reach ``alpha``).
    """
    groups = units[list(cluster)].astype(str).agg("/".join, axis=1).to_numpy() if len(units) else None
    records = []
    for x, y in pairs:
        if x not in units or y not in units:
            continue
        result = correlate(units[x], units[y], groups, n_boot, confidence, seed, n_perm)
        if result["n"] >= 3:
            records.append({"x": x, "y": y, **result})
    columns = [
        "x",
        "y",
        "n",
        "n_groups",
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
        "min_p",
        "conclusive",
    ]
    table = pd.DataFrame.from_records(
        records, columns=[c for c in columns if "adjusted" not in c and c != "conclusive"]
    )
    table["pearson_p_adjusted"] = bh_adjust(table["pearson_p"].to_numpy(float))
    table["spearman_p_adjusted"] = bh_adjust(table["spearman_p"].to_numpy(float))
    table["conclusive"] = table["min_p"].to_numpy(float) <= alpha
    return table[columns]


def difference_tests(units: pd.DataFrame, columns: Sequence[str] = FACTORS, alpha: float = 0.05) -> pd.DataFrame:
    """Per (setting, task, method) and per-seed difference column of ``units`` (e.g. the probe
    differences ``*_diff``, each MTL_s − STL_s of one seed): ``n_seeds, mean, low, high`` (``1 − alpha``
    permutation interval), ``p_value`` (exact sign-flip t test), ``min_p``, ``min_detectable`` (the
    difference detected with 80% power at level ``alpha``) and ``p_adjusted`` (Benjamini–Hochberg over
    all rows: one family).  Columns with fewer than 2 finite seeds are left out."""
    records = []
    for key, frame in units.groupby(["setting", "task", "method"]):
        for column in columns:
            values = frame[column].to_numpy(float) if column in frame else np.array([])
            values = values[np.isfinite(values)]
            if len(values) < 2:
                continue
            test = paired_max_t(values)
            low, high = test.band(alpha)
            records.append(
                dict(zip(["setting", "task", "method"], key))
                | {
                    "difference": column,
                    "n_seeds": len(values),
                    "mean": values.mean(),
                    "low": low[0],
                    "high": high[0],
                    "p_value": test.p_any,
                    "min_p": test.min_p,
                    "min_detectable": float(test.min_detectable(alpha)[0]),
                }
            )
    columns = ["setting", "task", "method", "difference", "n_seeds", "mean", "low", "high", "p_value", "min_p"]
    table = pd.DataFrame.from_records(records, columns=[*columns, "min_detectable"])
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", bh_adjust(table["p_value"].to_numpy(float)))
    return table
