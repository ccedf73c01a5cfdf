"""Seed planning: how many seeds a study needs before it trains them (docs/statistics.md §9).

A study's report tests each of its tables as one Benjamini–Hochberg family of ``m`` comparisons at FDR
``alpha`` (transfer: one row per setting × task × method; gap: × measure; optimization: per setting ×
task × method; the sizes come from the report's own tables, :mod:`mtlens.report.planning`).  When only
one comparison in a family carries an effect, BH rejects it only at ``p <= alpha / m`` (the *lone*
level); when all do, at ``p <= alpha``.  For the paired test of ``n`` seeds (Hall's skewness-corrected
statistic against its least-favourable reference, :mod:`mtlens.analysis.inference`) the standardized
difference ``d_z = delta / sigma_d`` detected with power ``1 − beta`` at level ``a`` is the root of its
simulated power on normal differences,

    d_z(n, a):    P(|T_H(z + d_z)| > c(n, a)) = 1 − beta,    z ~ N(0, 1)^n

(:func:`~mtlens.analysis.inference.detectable_effect`, with ``c`` its critical value), so ``d_z(n, alpha / m)``
is the effect any single verdict needs; when every row has the effect, BH's level is ``alpha R / m`` with ``R``
the rows it rejects, and the effect each row needs lies between ``d_z(n, alpha)`` and ``d_z(n, alpha / m)``
(:func:`detectable_every_row`).  Its p-value is not bound to the seeds (its floor, ``1 / (1 + 2^17)`` plus a
family skewness bound's ``beta`` of 2.5e-4, is the same at any ``n``), so any verdict needs only ``n >= 2``
while the family has fewer than 0.05 / 2.6e-4 = 194 rows; the binding constraint is power, ``d_z(2, a)``
being tens of seed-sd.  A permutation p-value has a floor that falls with the seeds, its family's ``min_p``
(``2 / 2^n`` for ``n`` sign-flipped pairs, ``1 / G!`` for ``G`` permuted clusters), and no verdict is possible
while ``min_p > alpha / m``, whatever the effect.

Multiplied by ``sigma_d``, the standard deviation of the per-seed differences MTL − STL (a pilot's, or a
stored study's: :func:`spread_table`), ``d_z`` becomes a difference in the metric's own units
(:func:`detectable_table`).  Without an MTL run (a pilot of STL seeds only) ``sigma_d`` is taken as
``sqrt(2) · s_STL``, the sd of the difference of two independent runs: pairing by seed (shared
initialization and batch order) correlates the two runs positively and makes the true ``sigma_d``
smaller, so this errs towards more seeds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from mtlens.analysis.inference import detectable_effect, paired_powers
from mtlens.analysis.transfer import TaskInfo, paired_or_unpaired, selection_info

RATIO = "log train-loss ratio"
"""The quantity of :func:`spread_table`'s optimization rows (final ``log(L_MTL / L_STL)`` at equal steps)."""

POWER = 0.8
"""The power every planned effect is detected with (the report's ``min_detectable`` columns use the same)."""


def fewest_sign_flip_seeds(level: float) -> int:
    """The fewest paired seeds whose exact sign-flip p-value can reach ``level``: ``2 / 2^n <= level``."""
    return max(2, math.ceil(math.log2(2 / level) - 1e-12))


def fewest_permuted_seeds(level: float) -> int:
    """The fewest seeds (clusters) whose permutations can give a p-value ``<= level``: ``1 / G! <= level``."""
    g = 2
    while 1 / math.factorial(g) > level:
        g += 1
    return g


def seeds_needed(effect: float, level: float, power: float = POWER, most: int = 200) -> int | None:
    """The fewest seeds at which the paired test at ``level`` detects ``effect`` (``d_z``) with
    ``power``; ``None`` beyond ``most``.  Bisection over ``n`` (the detectable effect falls with ``n``;
    each ``n`` costs a simulated reference, :func:`~mtlens.analysis.inference.hall_reference`)."""
    if not effect > 0 or detectable_effect(most, level, power) > effect:
        return None
    low, high = 1, most  # detectable_effect(1) = inf > effect >= detectable_effect(most)
    while high - low > 1:
        middle = (low + high) // 2
        if detectable_effect(middle, level, power) <= effect:
            high = middle
        else:
            low = middle
    return high


def every_row_power(effect: float, n: int, alpha: float, comparisons: int, min_p: float = 0.0) -> float:
    """Per-row power of Benjamini–Hochberg at FDR ``alpha`` over ``comparisons`` independent paired tests
    of ``n`` seeds when every row has the effect ``d_z = effect``.  BH rejects row ``i`` iff ``p_i <= alpha
    (1 + K) / m`` with ``K`` the other rows it rejects; with ``K ~ Binomial(m − 1, pi)`` the power ``pi`` is
    the largest fixed point of ``pi = sum_k P(K = k) · paired_power(effect, n, alpha (1 + k) / m)`` (iterated
    down from 1, as BH's step-up takes the largest set).  A level below ``min_p`` (the test's floor) has
    power 0.  Checked against simulated BH in tests/test_planning.py."""
    m = int(comparisons)
    k = np.arange(m)
    levels = alpha * (1 + k) / m
    powers = np.where(levels >= min_p, paired_powers(effect, n, levels), 0.0)
    log_choose = special.gammaln(m) - special.gammaln(k + 1) - special.gammaln(m - k)
    pi = 1.0
    for _ in range(1000):
        with np.errstate(divide="ignore", invalid="ignore"):  # Binomial(m − 1, pi) pmf; 0 · log 0 = 0
            log_pmf = log_choose + special.xlogy(k, pi) + special.xlog1py(m - 1 - k, -pi)
        new = float(np.dot(np.exp(log_pmf), powers))
        if abs(new - pi) < 1e-12:
            break
        pi = new
    return pi


@functools.lru_cache(maxsize=1024)
def detectable_every_row(n: int, alpha: float, comparisons: int, power: float = POWER, min_p: float = 0.0) -> float:
    """The ``d_z`` that Benjamini–Hochberg over ``comparisons`` rows, every one with that effect, finds in
    each row with ``power`` (:func:`every_row_power`; between ``d_z(n, alpha)``, reached only if every other
    row were rejected for sure, and ``d_z(n, alpha / m)``, the lone effect); ``inf`` if ``min_p > alpha``."""
    if min_p > alpha or n < 2:
        return np.inf
    low = detectable_effect(n, alpha, power)
    if every_row_power(low, n, alpha, comparisons, min_p) >= power:
        return low
    high = 2 * low
    while every_row_power(high, n, alpha, comparisons, min_p) < power:
        high *= 2
    return float(optimize.brentq(lambda d: every_row_power(d, n, alpha, comparisons, min_p) - power, low, high))


def detectable_correlation(n: float, level: float, power: float = POWER, groups: float = 1) -> float:
    """The |r| a two-sided test of zero correlation at ``level`` detects with ``power`` from ``n`` independent
    bivariate-normal pairs centred within ``groups`` groups (the report centres within (setting, task)), by
    Fisher's z: centring within ``k`` groups is a partial correlation given ``k − 1`` group indicators, so
    ``atanh(r̂) ~ N(atanh(r), 1 / (n − k − 2))`` (``1 / (n − 3)`` for one group; Fisher 1924), and
    ``|r| = tanh((z_{1 − level/2} + z_power) / sqrt(n − k − 2))``, the far tail neglected; ``inf`` for
    ``n − k − 2 <= 0``."""
    free = n - groups - 2
    if not free > 0:
        return np.inf
    return float(np.tanh((stats.norm.isf(level / 2) + stats.norm.ppf(power)) / math.sqrt(free)))


def family_plan(families: pd.DataFrame, alpha: float = 0.05, power: float = POWER) -> pd.DataFrame:
    """Per row of ``families`` (``family, n_seeds, comparisons, min_p``: a family of ``comparisons`` tests
    whose smallest attainable p-value at ``n_seeds`` is ``min_p``; for a family of correlations also
    ``units``, ``clusters``, ``centres`` and ``strata``, the units and clusters of one comparison, its centring
    groups and the strata its clusters are permuted within) adds ``lone_level`` (``alpha /
    comparisons``), ``can_reach`` (``min_p <= lone_level``: a lone verdict is possible at all) and:

    - a family of differences: ``d_z_lone`` (the paired test's detectable ``d_z`` at ``power`` and
      ``lone_level`` when one comparison has the effect; ``inf`` where ``can_reach`` is False) and ``d_z_all``
      (when every comparison has it: :func:`detectable_every_row`);
    - a family of correlations: ``r_lone_units`` and ``r_lone_clusters``, the |r| a lone correlation needs
      (:func:`detectable_correlation` at ``lone_level``) if its units were independent (centred within
      ``centres`` groups) and if a cluster's units moved as one (then centring within a stratum's tasks
      centres the stratum's clusters: ``strata`` groups); the truth lies between, as the units of one seed
      share its runs (``inf`` where ``can_reach`` is False).  The permutation test is approximated by
      Fisher's z."""
    out = families.copy()
    for column in ("units", "clusters", "centres", "strata"):
        out[column] = out[column].astype(float) if column in out else np.nan
    out["lone_level"] = alpha / out["comparisons"].astype(float)
    out["can_reach"] = out["min_p"].astype(float) <= out["lone_level"]
    correlation = out["clusters"].notna().to_numpy()
    out["d_z_lone"] = [
        np.nan if r else detectable_effect(int(n), level, power) if reach else np.inf
        for n, level, reach, r in zip(out["n_seeds"], out["lone_level"], out["can_reach"], correlation, strict=True)
    ]
    out["d_z_all"] = [
        np.nan if r else detectable_every_row(int(n), alpha, int(m), power, p)
        for n, m, p, r in zip(out["n_seeds"], out["comparisons"], out["min_p"].astype(float), correlation, strict=True)
    ]
    for column, groups in (("units", "centres"), ("clusters", "strata")):
        out[f"r_lone_{column}"] = [
            detectable_correlation(size, level, power, k) if reach else np.inf
            for size, level, reach, k in zip(
                out[column], out["lone_level"], out["can_reach"], out[groups].fillna(1), strict=True
            )
        ]
        out.loc[~correlation, f"r_lone_{column}"] = np.nan
    return out


def difference_spread(mtl: np.ndarray, stl: np.ndarray, paired: bool) -> tuple[float, str]:
    """``(sigma_d, source)``: the sd (ddof 1) of the per-seed differences ``mtl − stl`` when ``paired``
    (``source`` "paired"); else ``sqrt(s_MTL^2 + s_STL^2)`` ("unpaired"), or ``sqrt(2) · s_STL`` without MTL
    values ("STL spread"): the sd of a difference of independent runs (module docstring).  NaN with fewer
    than 2 values; exactly 0 where the values do not vary beyond rounding (:func:`_sd`)."""
    if paired:
        mtl, stl = np.asarray(mtl, float), np.asarray(stl, float)
        return _sd(mtl - stl, np.abs(np.r_[mtl, stl]).max(initial=0.0)), "paired"
    if len(mtl) == 0:
        return math.sqrt(2) * _sd(stl), "STL spread"
    return math.hypot(_sd(mtl), _sd(stl)), "unpaired"


def _sd(values: np.ndarray, scale: float | None = None) -> float:
    """The sd (ddof 1) of ``values``; 0 where they do not vary beyond rounding, ``max − min <= 1e-9 · scale``
    (``scale`` the magnitude of the values they come from, for differences of runs that agree up to rounding;
    default ``max |values|``), as the one-level test treats no spread (its test is then the exact permutation
    test, and no detectable difference can be stated); NaN with fewer than 2 values."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return np.nan
    scale = np.abs(values).max() if scale is None else scale
    return 0.0 if np.ptp(values) <= 1e-9 * scale else float(values.std(ddof=1))


def spread_table(selected: pd.DataFrame, task_info: TaskInfo, effect: pd.DataFrame | None = None) -> pd.DataFrame:
    """The seed spread of each comparison a stored study (or pilot) allows: one row per ``setting, task,
    method`` (``method`` empty for a task with STL runs only) and ``quantity`` with ``n_seeds`` (the pairs, or
    unpaired the STL runs), ``source`` and ``sd`` (:func:`difference_spread`); unpaired also ``n_mtl``, ``se``
    (Welch's ``sqrt(s_MTL^2 / n_MTL + s_STL^2 / n_STL)``) and ``share`` (MTL's share of ``se^2``), what the
    unpaired test's own power needs (:func:`~mtlens.analysis.inference.welch_hall_detectable_effect`; NaN
    otherwise).

    ``selected``: :func:`~mtlens.analysis.transfer.selected_checkpoints` rows; the quantity is the task's
    test selection metric, read and paired exactly as the transfer table reads it
    (:func:`~mtlens.analysis.transfer.paired_or_unpaired`).  ``effect``: per-seed rows of
    :func:`~mtlens.analysis.optimization.optimization_effect`, whose ``log_ratio_final`` (already a per-seed
    MTL − STL difference) gives the quantity ``log train-loss ratio``."""
    records = []
    for (setting, task), frame in selected.groupby(["setting", "task"], sort=True):
        column = f"test/{selection_info(task_info, setting, task)['selection_metric']}"
        if column not in frame:
            continue
        stl_rows = frame[frame["mode"] == "stl"]
        groups = list(frame[frame["mode"] == "mtl"].groupby("method", sort=True)) or [("", stl_rows.iloc[:0])]
        for method, mtl_rows in groups:
            mtl, stl, paired = paired_or_unpaired(pd.concat([stl_rows, mtl_rows]), column)
            sd, source = difference_spread(mtl, stl, paired)
            n = len(mtl) if paired else len(stl)
            records.append(
                {"setting": setting, "task": task, "method": method, "quantity": column}
                | {"n_seeds": n, "source": source, "sd": sd}
                | (_unpaired_spread(mtl, stl) if source == "unpaired" else {})
            )
    if effect is not None and len(effect):
        for (setting, task, method), frame in effect.groupby(["setting", "task", "method"], sort=True):
            values = frame["log_ratio_final"].to_numpy(float)
            values = values[np.isfinite(values)]
            records.append(
                {"setting": setting, "task": task, "method": method, "quantity": RATIO}
                | {"n_seeds": len(values), "source": "paired", "sd": difference_spread(values, 0 * values, True)[0]}
            )
    columns = ["setting", "task", "method", "quantity", "n_seeds", "source", "sd", "n_mtl", "se", "share"]
    return pd.DataFrame.from_records(records, columns=columns)


def _unpaired_spread(mtl: np.ndarray, stl: np.ndarray) -> dict[str, float]:
    """``n_mtl, se, share`` of :func:`spread_table` for unpaired groups (NaN ``se`` with fewer than 2 runs
    in a group)."""
    if len(mtl) < 2 or len(stl) < 2:
        return {"n_mtl": len(mtl), "se": np.nan, "share": np.nan}
    parts = _sd(mtl) ** 2 / len(mtl), _sd(stl) ** 2 / len(stl)
    se2 = float(sum(parts))
    return {"n_mtl": len(mtl), "se": math.sqrt(se2), "share": float(parts[0] / se2) if se2 > 0 else np.nan}


def detectable_table(
    spread: pd.DataFrame,
    comparisons: int,
    alpha: float = 0.05,
    seeds: Sequence[int] = (6, 8, 12),
    effect: float | None = None,
    power: float = POWER,
) -> pd.DataFrame:
    """``spread`` (:func:`spread_table`) with, per number of seeds ``n`` in ``seeds``, ``detectable_n<n>``:
    the difference in the quantity's units a lone effect needs to be found with ``power`` in a family of
    ``comparisons`` at FDR ``alpha`` (``sd · d_z(n, alpha / comparisons)``), and with ``effect`` (in the
    same units) ``seeds_for_effect``: the fewest seeds that detect it (:func:`seeds_needed`; NaN beyond 200).
    Both NaN where ``sd`` is 0: differences that do not vary are tested exactly (a floor of ``2 / 2^n``), and
    no power can be planned from them."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    out = spread.copy()
    lone = alpha / comparisons
    for n in seeds:
        sd = out["sd"].astype(float)
        out[f"detectable_n{n}"] = sd.where(sd > 0) * detectable_effect(int(n), lone, power)
    if effect is not None:
        needed = [seeds_needed(abs(effect) / sd, lone, power) if sd > 0 else None for sd in out["sd"].astype(float)]
        out["seeds_for_effect"] = pd.array([np.nan if n is None else n for n in needed], dtype="Int64")
    return out
