"""Permutation inference for MTL − STL differences: paired sign flips, unpaired label permutations,
a max-|t| statistic over many levels at once, Benjamini–Hochberg, power (docs/statistics.md).

**Data.** A difference is measured at ``L`` levels (the training-loss grid of the gap, ``L = 1``
for a scalar such as test error).  *Paired* design (STL and MTL of one seed share the encoder
and head initialization and the batch order): ``D`` of shape ``(n, L)`` holds the per-seed
differences ``d_s = MTL_s − STL_s``.  *Unpaired* design (seeds do not match): ``X`` ``(n_M, L)``
and ``Y`` ``(n_S, L)`` hold the MTL and the STL values.

**Statistic.** Per level ``j`` a t statistic: paired ``t_j = mean_j(d) / (s_j(d) / sqrt(n))``
(``s`` the sample standard deviation, ddof 1); unpaired Welch's
``t_j = (mean_j(X) − mean_j(Y)) / sqrt(s_j(X)^2 / n_M + s_j(Y)^2 / n_S)``.  ``t_j = 0`` where the
numerator and the standard error are both 0 (e.g. the first checkpoint of paired runs, which share
their initialization), ``±inf`` where only the standard error is.  The test statistic is
``M = max_j |t_j|``.

**Null distribution.** Under H0 ("MTL changes nothing"), paired: each seed's difference curve is
symmetric about 0, so flipping the sign of whole rows of ``D`` leaves its distribution unchanged;
unpaired: the MTL/STL labels are exchangeable.  ``M*`` is computed for every sign pattern in
``{±1}^n`` (every relabelling with ``n_M`` MTL runs) when there are at most :data:`MAX_EXACT` of
them (exact test), else for the identity and ``n_random`` random ones (Monte Carlo; ``p`` then
counts the identity, so it stays valid).  Rows (whole curves) move together, so the
autocorrelation along the levels is kept.

**Outputs.** Single-step adjusted p-values (Westfall & Young), which control the family-wise
error over the ``L`` levels:

    p_j = #{patterns with M* >= |t_j|} / #patterns

``p_any = min_j p_j`` tests "a difference exists at some level"; the critical value
``c_alpha`` is the largest value of ``M*`` with ``P(M* >= c) > alpha``, and level ``j`` is
significant iff ``|t_j| > c_alpha`` iff ``p_j <= alpha``; the simultaneous band is
``estimate_j ± c_alpha * se_j``.  ``min_p`` is the smallest p-value the patterns allow (2 / 2^n
for an exact paired test: the identity and the global flip give the same ``M*``); when
``min_p > alpha`` the band can never exclude 0.  The gap's band tests (:func:`paired_band_test`,
:func:`unpaired_band_test`) take each tail as the larger of the permutations' and a least-favourable
reference's (skewed per-seed shifts; Bonferroni's bound of Hsu's t for unequal spreads), because the
permutations' null (symmetry, exchangeable runs) is narrower than "no difference in the mean".

**Per-level tests** (one level: transfer, optimization effect, probe differences; every level of a
fixed-sequence test): :attr:`MaxTTest.pointwise_p`, not bound to ``2 / 2^n`` (the sign-flip p-value is at
least ``2 / 2^n``: 0.031 with 6 seeds, so a BH family of four tests could never reject). Paired: Hall's (1992)
skewness-corrected statistic ``T_H`` (:func:`hall_statistic`) with a least-favourable p-value, the largest of
its tail probabilities under the members of the null family its tails are heaviest at (:func:`hall_p_value`,
:func:`paired_reference`, simulated references).  Its null is a *family*: mean-zero differences
``sqrt(1 − w^2) Z + w X``, normal run noise ``Z`` plus a skewed part ``X`` (a standardized shifted gamma), of
``|skewness| <= 2`` (the normal, the shifted gammas and their sums with normal noise, the shape real runs'
differences have), where it keeps ``alpha`` at 3–16 seeds (measured, docs/statistics.md §2; Student's t gave
up to 11% at skewness 2).  A family
of tests (a report table's rows of one setting, :func:`grouped_bounds`) narrows the bound from its own rows:
:func:`family_skewness_bound`, a ``1 − beta`` upper confidence limit of the rows' common |skewness|, with
Berger & Boos's (1994) p-value (the least-favourable p over the narrower family, plus ``beta``;
:class:`SkewnessBound`, :meth:`MaxTTest.with_bound`).  No test of a mean holds for every skewed null (Bahadur &
Savage 1956); :func:`symmetry_diagnostic` checks the study's own differences.  Unpaired: the two-sample analogue,
Hall's correction of Welch's statistic by the skewness of the difference of the means
(:func:`welch_hall_statistic`; Hall 1992; Cressie & Whitford 1986), with the p-value least favourable over
mean-zero groups that are each normal or shifted gamma of skewness ``±SKEWNESS_BOUND``, at the observed sizes
and every variance ratio (a grid of the first group's share of the variance, ends included:
:data:`VARIANCE_SHARES`; the worst case, as Hsu's (1938) ``df = min(n_1, n_2) − 1`` is for normal groups).
Welch's t with Hsu's df, which it replaces, gave up to 8.8% on such groups (6 vs 6 runs, sd ratio 3).  The
interval is the set of differences the test does not reject (:meth:`MaxTTest.interval`), the effect size
Hedges' bias-corrected ``g = J(nu) · estimate / sd`` (``nu = n − 1`` paired, ``n_1 + n_2 − 2`` unpaired), and
the difference detected with power ``1 − beta`` (:meth:`MaxTTest.min_detectable`) is the simulated power root
of Hall's test (paired, :func:`hall_detectable_effect`; unpaired, :func:`welch_hall_detectable_effect` at the
observed variance ratio).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from scipy import optimize, special, stats

Item = TypeVar("Item")
Moments = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(mean, sd, g)`` of samples along their last axis (:func:`moments_of_rows`)."""

MAX_EXACT = 1 << 14
"""Largest number of sign patterns (or relabellings) that is enumerated exactly (2^14: 14 seeds)."""

N_RANDOM = 9_999
"""Random patterns of the Monte Carlo test beyond :data:`MAX_EXACT` (p resolution 1e-4)."""

_TIE = 1e-9
"""Relative tolerance under which a permuted statistic counts as equal to the observed one."""

SKEWNESS_BOUND = 2.0
"""Largest |skewness| of the mean-zero paired differences at which the one-level paired test keeps its
level without looking at the data (``Exp(1) − 1`` for 2): the fixed bound, and the cap of the family
bound of :func:`family_skewness_bound`."""

N_REFERENCE = 1 << 17
"""Simulated samples per reference distribution of :func:`hall_reference` (p resolution 7.6e-6)."""

BOUND_STEP = 0.25
"""Grid of the family skewness bound (:func:`family_skewness_bound`): ``0, 0.25, …, SKEWNESS_BOUND``."""

BOUND_MISS = 2.5e-4
"""``beta`` of the Berger–Boos p-value (:func:`family_skewness_bound`): the family's skewness bound is a
``1 − beta`` upper confidence limit, and every p-value tested against it is raised by ``beta``.  Small
enough that a Benjamini–Hochberg family of up to ``0.05 / beta = 200`` rows keeps its first threshold
``alpha / m`` above it."""

N_CURVE_REFERENCE = 1_999
"""Simulated curve sets per skewness behind :func:`skewed_curve_maxima`: the band's p-value floor is
``1 / 2,000 = 5e-4``, above the sign flips' ``2 / 2^n`` only from 12 seeds on."""


N_BOUND_DRAWS = 1 << 16
"""Simulated families behind the confidence limit of :func:`family_skewness_bound` (16 below its
``beta``-quantile)."""


@dataclass(frozen=True)
class SkewnessBound:
    """The skewness bound a paired test holds its level under, and what it cost.

    ``value``: the largest |skewness| of the mean-zero differences (shifted gammas and their sums with normal
    noise) the test's reference covers (:func:`hall_reference`); ``miss``: the Berger–Boos ``beta`` added to
    every p-value (0 for the fixed bound, which does not come from the data); ``pooled``: the family's pooled
    skewness ``|G|`` (:func:`family_skewness_bound`; NaN for the fixed bound); ``rows``: how many rows it
    pooled."""

    value: float = SKEWNESS_BOUND
    miss: float = 0.0
    pooled: float = math.nan
    rows: int = 0


FIXED_BOUND = SkewnessBound()
"""The bound that needs no data: :data:`SKEWNESS_BOUND`, nothing added to the p-values."""


def hall_transform(t: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Hall's (1992) skewness correction of a studentized statistic ``t = estimate / se`` whose estimate has
    the estimated skewness ``gamma`` (its third cumulant over ``se^3``):

        T_H = t + gamma t^2 / 3 + gamma^2 t^3 / 27 + gamma / 6 = ((1 + gamma t / 3)^3 − 1) / gamma + gamma / 6,

    monotone in ``t``, so the test inverts into an interval (:meth:`MaxTTest.interval`).  To first order
    a studentized mean has mean ``−gamma / 2`` and third cumulant ``−2 gamma`` (the covariance of the
    estimate and its variance estimate is the estimate's third cumulant), which is all its ``n^{-1/2}``
    Edgeworth term depends on; ``T_H`` removes that term.  This holds for one mean (``gamma = g / sqrt(n)``,
    :func:`hall_statistic`) and for Welch's difference of two means (``gamma = (m_3(X) / n_1^2 − m_3(Y) /
    n_2^2) / se^3``, :func:`welch_hall_statistic`; Cressie & Whitford 1986).  A non-finite ``gamma`` counts
    as 0; ``t`` where ``t`` is ``±inf``."""
    g = np.where(np.isfinite(gamma), gamma, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        u = g * t / 3
        corrected = t * (1 + u + u * u / 3) + g / 6
    return np.where(np.isfinite(t), corrected, t)


def hall_statistic(estimate: np.ndarray, sd: np.ndarray, skew: np.ndarray, n: int) -> np.ndarray:
    """Hall's (1992) skewness-corrected studentized mean of ``n`` paired differences:
    ``T_H = sqrt(n) · (S + g S^2 / 3 + g^2 S^3 / 27 + g / (6 n))`` with ``S = mean / sd`` (``sd`` with
    ddof 1) and ``g = m_3 / sd^3`` (``m_3`` the mean cubed deviation): :func:`hall_transform` of
    ``t = sqrt(n) S`` and ``gamma = g / sqrt(n)``.  ``g / (6 sqrt(n))`` where mean and sd are 0, ``±inf``
    where only the sd is."""
    s = _t_ratio(np.asarray(estimate, float), np.asarray(sd, float))
    return hall_transform(math.sqrt(n) * s, np.asarray(skew, float) / math.sqrt(n))


def _cube_root_ratio(x: np.ndarray) -> np.ndarray:
    """``h(x) = 3 (cbrt(1 + x) − 1) / x`` (1 at ``x = 0``), so that the inverse of :func:`hall_transform` is
    ``t = u · h(gamma u)``, computed without cancellation: ``cbrt(1 + x) − 1 = expm1(log1p(x) / 3)`` for
    ``x > −1``, accurate to rounding for tiny ``x`` (a skewness of rounding size, e.g. of 2 values or a symmetric
    decimal sample, gave ``1 + x == 1`` and an interval collapsed to a point), the real cube root below."""
    x = np.asarray(x, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        above = 3 * np.expm1(np.log1p(np.maximum(x, -1 + 1e-300)) / 3) / x
        below = 3 * (np.cbrt(1 + x) - 1) / x
    return np.where(x == 0, 1.0, np.where(x > -1, above, below))


def welch_se_and_skewness(first: Moments, second: Moments, sizes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(se, gamma)`` of the difference of the means of two independent groups of ``sizes = (n_1, n_2)``
    values given by their :func:`moments_of_rows` ``(mean, sd, g)``: Welch's ``se = sqrt(sd_1^2 / n_1 +
    sd_2^2 / n_2)`` and the skewness ``gamma = (g_1 sd_1^3 / n_1^2 − g_2 sd_2^3 / n_2^2) / se^3`` (the third
    cumulant of ``mean_1 − mean_2`` is ``m_3(X) / n_1^2 − m_3(Y) / n_2^2``; NaN where ``se = 0``)."""
    (_, sd1, g1), (_, sd2, g2), (n1, n2) = first, second, sizes
    var1, var2 = sd1 * sd1 / n1, sd2 * sd2 / n2
    se = np.sqrt(var1 + var2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return se, (g1 * var1 * sd1 / n1 - g2 * var2 * sd2 / n2) / (se * se * se)


def welch_hall_statistic(first: Moments, second: Moments, sizes: tuple[int, int]) -> np.ndarray:
    """Hall's correction (:func:`hall_transform`) of Welch's statistic of two independent groups of
    ``sizes = (n_1, n_2)`` values given by their :func:`moments_of_rows` ``(mean, sd, g)``, H0: equal means:
    ``t = (mean_1 − mean_2) / se`` with ``se`` and ``gamma`` of :func:`welch_se_and_skewness`."""
    se, gamma = welch_se_and_skewness(first, second, sizes)
    return hall_transform(_t_ratio(first[0] - second[0], se), gamma)


def moments_of_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, sd, g)`` along the last axis, as :func:`hall_statistic` takes them: ``sd`` with ddof 1,
    ``g = m_3 / sd^3`` (0 where ``sd = 0``); the deviations are computed once."""
    mean = x.mean(axis=-1)
    centred = x - mean[..., None]
    sd = np.sqrt((centred**2).sum(axis=-1) / (x.shape[-1] - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean, sd, np.where(sd > 0, (centred**3).mean(axis=-1) / sd**3, 0.0)


def _hall_of_samples(x: np.ndarray) -> np.ndarray:
    """:func:`hall_statistic` of each row of ``x`` (H0: mean 0)."""
    return hall_statistic(*moments_of_rows(x), x.shape[1])


def _mean_zero_draws(rng: np.random.Generator, skewness: float, size: tuple[int, int]) -> np.ndarray:
    """Standardized mean-zero draws: normal for skewness 0, else the shifted gamma of that skewness
    (shape ``k = 4 / skewness^2``, ``(Gamma(k) − k) / sqrt(k)``)."""
    if skewness == 0:
        return rng.standard_normal(size)
    shape = 4 / skewness**2
    return (rng.gamma(shape, size=size) - shape) / math.sqrt(shape)


CONVOLUTION_STEPS = (1.0, 0.98, 0.96, 0.94, 0.92, 0.9, 0.87, 0.84, 0.8)
"""The normal-plus-exponential members of the paired null family that the reference covers, as fractions
``r`` of the largest weight the skewness bound ``b`` allows: ``sqrt(1 − w^2) Z + w (E − 1)`` (``Z`` normal,
``E ~ Exp(1)``: unit variance, skewness ``2 w^3``) at ``w = r (b / 2)^{1/3}``.  This is the shape real
runs' differences have (normal run noise plus a skewed seed effect, docs/statistics.md §2), and its
``|T_H|`` tail is heavier than the shifted gamma's of equal skewness from 6 pairs on: with the normal and
the shifted gamma alone, Hall's test gave up to 5.2% / 5.3% / 5.5% at 5% (6 / 12 / 16 pairs, ``w`` 0.95;
1.46% at 1.25%) on 100,000 samples (2026-12-07).  The largest tail lies at ``r`` 0.9–1 (1 at 3–4 pairs,
about 0.95 at 12–16); the grid is densest there.  ``r = 1`` is the member of skewness ``b`` itself (the
shifted gamma of skewness 2 when ``b = 2``)."""


def _null_member_draws(rng: np.random.Generator, skewness: float, weight: float, size: tuple[int, int]) -> np.ndarray:
    """Standardized mean-zero draws of the paired null family: ``sqrt(1 − w^2) Z + w X`` with ``Z`` normal
    and ``X`` the standardized shifted gamma of ``skewness`` (:func:`_mean_zero_draws`; skewness
    ``w^3 · skewness``); ``weight`` ``w = 1`` is ``X`` itself."""
    skewed = _mean_zero_draws(rng, skewness, size)
    if weight == 1:
        return skewed
    return math.sqrt(1 - weight**2) * rng.standard_normal(size) + weight * skewed


def _reference_table(n: int, skewness: float, weight: float = 1.0) -> np.ndarray:
    """Sorted ``|T_H|`` of :data:`N_REFERENCE` seeded samples of ``n`` mean-zero differences of the member
    ``(skewness, weight)`` of :func:`_null_member_draws`."""
    key = [n, round(skewness / BOUND_STEP)] + ([] if weight == 1 else [round(weight * 10_000)])
    rng = np.random.default_rng([20261206, *key])
    chunks = _chunks(N_REFERENCE, max(1, 2_000_000 // n))
    values = [np.abs(_hall_of_samples(_null_member_draws(rng, skewness, weight, (c, n)))) for c in chunks]
    return np.sort(np.nan_to_num(np.concatenate(values), nan=0.0))


VARIANCE_SHARES = tuple(
    sorted(
        {float(w) for w in 0.5 * (1 - np.cos(np.pi * np.arange(21) / 20))} | {5e-4, 1e-3, 2e-3, 0.998, 0.999, 0.9995}
    )
)
"""The grid of the first group's share ``w = (sigma_1^2 / n_1) / (sigma_1^2 / n_1 + sigma_2^2 / n_2)`` of the
variance of Welch's difference over which the unpaired reference is least favourable
(:func:`welch_reference`): 21 points from 0 to 1, denser towards the ends (``0.5 (1 − cos(pi k / 20))``),
where the tails are heaviest: ``w = 1`` is one group of ``n_1`` values against a constant, the one-sample
test, as Hsu's ``df = min(n_1, n_2) − 1`` is for normal groups; and 0.998, 0.999, 0.9995 (and their mirrors
near 0), between the cosine grid's last two points 0.99384 and 1: at 3 vs 4 runs, both of skewness 2 and sd
ratio 20–30 (``w`` 0.998–0.999), the test gave 5.07–5.17% at 5% (1.4 million draws, about 6 SE over; audit,
2026-12-06); with them the critical value at 5% rises from 6.87 to 6.99 and the size there is 4.94%."""


@functools.lru_cache(maxsize=64)
def welch_reference(sizes: tuple[int, int], skewness: float, shares: tuple[float, ...] = VARIANCE_SHARES) -> np.ndarray:
    """The least-favourable envelope of the unpaired references: per rank ``j``, the largest ``j``-th value
    of the sorted ``|T_H|`` (:func:`welch_hall_statistic`) of :data:`N_REFERENCE` seeded pairs of independent
    groups of ``sizes`` mean-zero values, over one simulated table per group skewness pair
    ``(0, 0), (s, 0), (0, s), (s, s), (s, −s)`` (``s = skewness``; ``|T_H|`` is even under negating both
    groups, so these cover every pair of signs; only ``(0, 0)`` for ``s = 0``) and per variance share ``w`` of
    ``shares`` (:data:`VARIANCE_SHARES`; one share gives the reference at a known variance ratio, which
    ``benchmarks/unpaired_skew.py`` plugs the observed one into to show why the worst case is needed).
    ``#{E >= x} = max_k #{T_k >= x}`` for the envelope ``E``, so its tail count is
    the largest over the tables (the p-value of :func:`hall_p_value` is their maximum).  Each group is drawn
    once per skewness (:func:`_mean_zero_draws`) and its moments rescaled to ``sd^2 / n = w`` and ``1 − w``
    (common random numbers across the shares)."""
    rng = np.random.default_rng([20261209, *sizes, round(skewness / BOUND_STEP)])
    moments = [
        {s: moments_of_rows(_mean_zero_draws(rng, s, (N_REFERENCE, n))) for s in {0.0, float(skewness)}} for n in sizes
    ]

    def group(i: int, share: float, s: float) -> Moments:
        mean, sd, g = moments[i][abs(s)]
        scale = math.sqrt(share * sizes[i]) * (1.0 if s >= 0 else -1.0)  # a negative scale mirrors the group
        return scale * mean, abs(scale) * sd, math.copysign(1.0, scale) * g

    pairs = [(0.0, 0.0)] if skewness == 0 else [(0.0, 0.0), (skewness, 0.0), (0.0, skewness), (skewness, skewness)]
    pairs += [(skewness, -skewness)] if skewness != 0 else []
    envelope = np.zeros(N_REFERENCE)
    for s1, s2 in pairs:
        for w in shares:
            statistic = np.abs(welch_hall_statistic(group(0, w, s1), group(1, 1.0 - w, s2), sizes))
            np.maximum(envelope, np.sort(np.nan_to_num(statistic, nan=0.0)), out=envelope)
    return envelope


@functools.lru_cache(maxsize=256)
def paired_reference(n: int, skewness: float = SKEWNESS_BOUND) -> np.ndarray:
    """The least-favourable envelope of the paired references (per rank the largest value over the sorted
    tables, so its tail count at any ``x`` is the largest of theirs, as in :func:`welch_reference`), each
    :data:`N_REFERENCE` simulated values of ``|T_H|`` of ``n`` mean-zero differences, over the members of
    the null family at the bound ``b = skewness`` that its tails are largest at: the normal; the shifted
    gamma of skewness ``b`` (the family's edge, largest at 3–4 pairs); and the normal-plus-exponential
    convolutions of :data:`CONVOLUTION_STEPS` (skewness up to ``b``, largest from 6 pairs on).  The family
    it covers is every ``sqrt(1 − w^2) Z + w X``, ``X`` a standardized shifted gamma, of skewness
    ``|w^3 gamma_X| <= b``: among its members of equal skewness the tail is largest at one of the two ends,
    the shifted gamma (``w = 1``) or the exponential sum (``gamma_X = 2``), not between (measured at
    ``gamma_X = 1.5``, bound 1, 4–16 pairs; docs/statistics.md §2).  ``|T_H|`` is even under ``d -> −d``,
    so the left-skewed mirrors need no table."""
    tables = [_reference_table(n, 0.0)]
    if skewness > 0:
        tables.append(_reference_table(n, float(skewness)))
        top = (skewness / 2) ** (1 / 3)
        weights = {round(r * top, 4) for r in CONVOLUTION_STEPS} - {1.0}  # w = 1: the shifted gamma of skewness 2
        tables += [_reference_table(n, 2.0, w) for w in sorted(weights)]
    return np.maximum.reduce(tables)


def hall_reference(n: int | tuple[int, int], skewness: float = SKEWNESS_BOUND) -> np.ndarray:
    """The sorted reference of the one-level test: :data:`N_REFERENCE` values whose tail count at any
    ``x`` is the largest over the simulated ``|T_H|`` of the members of the family the bound ``skewness``
    covers.  Paired (``n`` differences): :func:`paired_reference`.  Unpaired (``n = (n_1, n_2)`` runs): the
    envelope over every pair of group skewnesses in ``{0, ±skewness}`` at every variance share of
    :data:`VARIANCE_SHARES` (:func:`welch_reference`).  Seeded, so p-values are reproducible."""
    if not isinstance(n, int):
        return welch_reference((int(n[0]), int(n[1])), float(skewness))
    return paired_reference(n, float(skewness))


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def hall_p_value(statistic: np.ndarray, n: int | tuple[int, int], bound: SkewnessBound = FIXED_BOUND) -> np.ndarray:
    """Two-sided p-value of Hall's statistic ``statistic`` (:func:`hall_statistic` of ``n`` differences, or
    :func:`welch_hall_statistic` of ``n = (n_1, n_2)`` runs), least favourable over the family the ``bound``
    covers: ``(1 + #{E >= |T_H|}) / (1 + N)`` for the envelope ``E`` of :func:`hall_reference`
    ``(n, bound.value)`` (the largest tail count over its members' tables), plus ``bound.miss`` (Berger & Boos
    1994: the supremum over a ``1 − beta`` confidence set, plus ``beta``), at most 1.  Between the members
    the envelope covers, the size stays at the level within simulation error (measured on the normal, shifted
    gammas and normal-plus-gamma sums of ``|skewness| <= bound.value``, docs/statistics.md §2); unpaired, for
    normal or shifted-gamma groups (and normal-plus-exponential sums, measured) at any variance ratio (up to
    the grid of :data:`VARIANCE_SHARES`)."""
    stat = np.abs(np.asarray(statistic, float))
    table = hall_reference(n, bound.value)
    p = (1 + len(table) - np.searchsorted(table, stat * (1 - _TIE), side="left")) / (1 + len(table))
    return np.where(stat == 0, 1.0, np.minimum(1.0, p + bound.miss))


def hall_critical(n: int | tuple[int, int], alpha: float, bound: SkewnessBound = FIXED_BOUND) -> float:
    """The critical value ``c`` of the one-level test of ``n`` differences or ``n = (n_1, n_2)`` runs:
    ``hall_p_value(T, n, bound) <= alpha`` iff ``|T| > c`` (``inf`` when no p-value can reach ``alpha``)."""
    table = hall_reference(n, bound.value)
    k = math.floor((alpha - bound.miss) * (1 + len(table)) + 1e-9) - 1  # at most k reference values may lie above
    if k < 0:
        return np.inf
    return float(table[len(table) - k - 1]) if k < len(table) else 0.0


def _line_members(skewness: float) -> list[tuple[float, float]]:
    """The members ``(skewness of X, w)`` of :func:`_null_member_draws` of total skewness ``skewness`` on the
    two lines of the paired null family: the shifted gamma (``w = 1``) and the normal-plus-exponential sum
    (``X`` of skewness 2, ``w = (skewness / 2)^{1/3}``); one member at 0 (the normal) and at 2."""
    if skewness in (0.0, 2.0):
        return [(skewness, 1.0)]
    return [(skewness, 1.0), (2.0, round((skewness / 2) ** (1 / 3), 4))]


@functools.lru_cache(maxsize=128)
def _row_skewness_draws(n: int, skewness: float, weight: float = 1.0) -> np.ndarray:
    """``g`` (:func:`moments_of_rows`) of :data:`N_BOUND_DRAWS` seeded samples of ``n`` mean-zero
    differences of the member ``(skewness, weight)`` of :func:`_null_member_draws`."""
    key = [n, round(skewness / BOUND_STEP)] + ([] if weight == 1 else [round(weight * 10_000)])
    rng = np.random.default_rng([20261207, *key])
    return moments_of_rows(_null_member_draws(rng, skewness, weight, (N_BOUND_DRAWS, n)))[2]


@functools.lru_cache(maxsize=1024)
def _pooled_quantile(design: tuple[int, ...], skewness: float) -> float:
    """``q_beta``: the :data:`BOUND_MISS`-quantile of the pooled ``|G|`` of :func:`family_skewness_bound`
    for rows of ``design`` seeds (sorted) that are independent samples of mean-zero differences of
    ``skewness``, the smaller over the members of that skewness on the null family's two lines
    (:func:`_line_members`; :data:`N_BOUND_DRAWS` families drawn from :func:`_row_skewness_draws`, seeded).
    The sums' ``|G|`` reaches lower than the shifted gamma's (their skewness comes from rarer, larger
    values): with the shifted gamma's quantile alone, families of normal-plus-exponential rows got a bound
    below their skewness in up to 1.3% of families (12 seeds × 24 rows, skewness 1.02) against ``beta`` =
    0.025% (2026-12-07)."""
    counts = np.asarray(design, float)
    picks = np.random.default_rng([20261208, len(design)]).integers(0, N_BOUND_DRAWS, size=(len(design), N_BOUND_DRAWS))

    def quantile(member: tuple[float, float]) -> float:
        draws = [_row_skewness_draws(int(c), *member)[i] for c, i in zip(counts, picks)]
        pooled = sum(c * g for c, g in zip(counts, draws)) / counts.sum()
        return float(np.quantile(np.abs(pooled), BOUND_MISS))

    return min(quantile(member) for member in _line_members(skewness))


def skewness_of(differences: np.ndarray) -> float:
    """A row's skewness for :func:`family_skewness_bound`: ``g = m_3 / sd^3`` of the per-seed differences
    (``(n,)``, or ``(n, L)`` averaged over the ``L`` levels, as :func:`hall_statistic` uses it); NaN below 3
    seeds."""
    d = np.asarray(differences, float)
    d = d[:, None] if d.ndim == 1 else d
    if d.shape[0] < 3 or not np.isfinite(d).all():
        return math.nan
    return float(moments_of_rows(d.T)[2].mean())


def family_skewness_bound(skewness: Sequence[float], n: Sequence[int]) -> SkewnessBound:
    """The skewness bound of a family of paired tests, from each row's :func:`skewness_of` ``g_r`` and
    seeds ``n_r`` (rows with ``n_r >= 3`` and finite ``g_r`` count): a ``1 − beta`` upper confidence limit
    (``beta`` = :data:`BOUND_MISS`) of the rows' common |skewness|, used by Berger & Boos's (1994) p-value
    (:func:`hall_p_value`).

    Statistic: the pooled ``|G| = |sum_r n_r g_r / sum_r n_r|``.  The confidence set is
    ``{gamma : |G| >= q_beta(gamma)}`` with ``q_beta(gamma)`` the ``beta``-quantile of ``|G|`` when every row
    is an independent sample of its ``n_r`` mean-zero differences of skewness ``gamma``, the smaller over the
    shifted gamma and the normal-plus-exponential sum of that skewness (:func:`_pooled_quantile`;
    :data:`N_BOUND_DRAWS` simulated families, seeded; ``gamma`` on the :data:`BOUND_STEP` grid, scanned
    down from :data:`SKEWNESS_BOUND`), and the bound is its largest grid point plus one step (a true
    skewness between grid points is covered), at most :data:`SKEWNESS_BOUND`.  A row averaged over ``L``
    levels (a gap curve) varies less than one level, which only widens the set.  The assumption the
    bound adds to the test's: the rows' differences share one |skewness| (a lone skewed row in a
    symmetric family is tested at the family's bound; :func:`symmetry_diagnostic` shows the spread).
    Rows that share runs (one STL run in every method's row) make ``|G|`` vary more than independent
    rows would; the simulated sizes stay at or below ``alpha`` (docs/statistics.md §2).  Without
    any counted row: :data:`FIXED_BOUND`."""
    g, counts = np.asarray(skewness, float), np.asarray(n, int)
    keep = np.isfinite(g) & (counts >= 3)
    g, counts = g[keep], counts[keep]
    if not len(g):
        return FIXED_BOUND
    pooled = abs(float(counts @ g / counts.sum()))
    design = tuple(sorted(int(c) for c in counts))
    grid = np.arange(round(SKEWNESS_BOUND / BOUND_STEP), -1, -1) * BOUND_STEP
    top = next((float(gamma) for gamma in grid if pooled >= _pooled_quantile(design, float(gamma))), 0.0)
    return SkewnessBound(min(SKEWNESS_BOUND, top + BOUND_STEP), BOUND_MISS, pooled, len(g))


def grouped_bounds(
    bound_of: Callable[[list[Item]], SkewnessBound], items: Sequence[Item], groups: Sequence[Hashable]
) -> list[SkewnessBound]:
    """Each of ``items``' skewness bound, computed by ``bound_of`` (:func:`bound_of_samples`,
    :func:`mtlens.analysis.gap.bound_of_gaps`) over the items of its group.  The report's tables take one
    bound per setting: a setting's rows share one data set, model and training, and the skewness of their
    differences need not carry over to another setting, so the common-skewness assumption of
    :func:`family_skewness_bound` is made only within a setting."""
    members: dict[Hashable, list[Item]] = {}
    for group, item in zip(groups, items, strict=True):
        members.setdefault(group, []).append(item)
    bounds = {group: bound_of(rows) for group, rows in members.items()}
    return [bounds[group] for group in groups]


def bound_of_samples(samples: Sequence[np.ndarray]) -> SkewnessBound:
    """:func:`family_skewness_bound` of a family given as each row's per-seed differences (``(n,)`` or
    ``(n, L)``; :func:`skewness_of`)."""
    return family_skewness_bound([skewness_of(d) for d in samples], [len(d) for d in samples])


_POWER_DRAWS = 1 << 14
"""Seeded normal samples behind :func:`hall_detectable_effect` (power SE 0.3% at 80%)."""


@functools.lru_cache(maxsize=16)
def _power_moments(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, sd, g)`` (:func:`moments_of_rows`) of the :data:`_POWER_DRAWS` seeded standard normal samples
    of ``n`` that every simulated power of :func:`paired_power` and :func:`hall_detectable_effect` shares
    (common random numbers)."""
    return moments_of_rows(np.random.default_rng(7 + n).standard_normal((_POWER_DRAWS, n)))


def _shifted_hall(n: int, effect: float) -> np.ndarray:
    """:func:`hall_statistic` of the samples of :func:`_power_moments` shifted by ``effect``: a shift moves
    the mean and leaves ``sd`` and ``g`` as they are, so the moments are computed once per ``n``."""
    mean, sd, g = _power_moments(n)
    return hall_statistic(mean + effect, sd, g, n)


def paired_powers(effect: float, n: int, alphas: np.ndarray, bound: SkewnessBound = FIXED_BOUND) -> np.ndarray:
    """The power of the paired one-level test (:attr:`MaxTTest.pointwise_p`) of ``n`` seeds under ``bound``
    at each level of ``alphas`` against normal differences with standardized mean ``effect`` (``d_z``): the
    share of the samples of :func:`_power_moments` with ``|T_H| > hall_critical`` (the replacement of the
    paired t test's noncentral-t power; ``0`` below 2 seeds).  The statistic is computed once for every level."""
    levels = np.atleast_1d(np.asarray(alphas, float))
    if n < 2:
        return np.zeros(len(levels))
    statistic = np.sort(np.abs(_shifted_hall(n, effect)))
    critical = np.array([hall_critical(n, float(a), bound) for a in levels])
    above = len(statistic) - np.searchsorted(statistic, np.where(np.isfinite(critical), critical, 0.0), side="right")
    return np.where(np.isfinite(critical), above / len(statistic), 0.0)


def paired_power(effect: float, n: int, alpha: float, bound: SkewnessBound = FIXED_BOUND) -> float:
    """:func:`paired_powers` at one level ``alpha``."""
    return float(paired_powers(effect, n, np.array([alpha]), bound)[0])


def _power_root(statistic: Callable[[float], np.ndarray], critical: float, power: float, guess: float) -> float:
    """The effect ``d`` at which the simulated power ``mean(|statistic(d)| > critical)`` reaches ``power``:
    ``brentq`` (to ``1e-4``) from a bracket around ``guess`` widened until it holds the root; ``inf`` where
    64 doublings do not reach ``power`` (a statistic that is NaN, e.g. of groups without spread, never does)."""

    def shortfall(d: float) -> float:
        return float(np.mean(np.abs(statistic(d)) > critical)) - power

    low, high = 0.8 * guess, 1.3 * guess
    while shortfall(low) > 0:
        low /= 2
    for _ in range(64):
        if shortfall(high) >= 0:
            return float(optimize.brentq(shortfall, low, high, xtol=1e-4))
        high *= 2
    return np.inf


@functools.lru_cache(maxsize=4096)
def hall_detectable_effect(n: int, critical: float, power: float = 0.8) -> float:
    """The standardized difference ``d = delta / sigma`` that the paired test rejecting
    ``|T_H| > critical`` detects with probability ``power`` on normal differences: the root of the
    simulated power (the samples of :func:`_power_moments`, common to every ``d``; :func:`_power_root`
    from the noncentral-t answer of the same critical value).  ``T_H`` is not noncentral t (its ``g`` is
    estimated too), so this replaces :func:`detectable_noncentrality` for the paired test.  ``inf`` for an
    infinite critical value."""
    if not np.isfinite(critical) or n < 2:
        return np.inf
    guess = detectable_noncentrality(critical, n - 1.0, power) / math.sqrt(n)
    return _power_root(functools.partial(_shifted_hall, n), critical, power, guess)


@functools.lru_cache(maxsize=16)
def _power_groups(sizes: tuple[int, int]) -> tuple[Moments, Moments]:
    """:func:`moments_of_rows` of :data:`_POWER_DRAWS` seeded pairs of independent standard normal groups of
    ``sizes`` that every simulated unpaired power shares (common random numbers)."""
    rng = np.random.default_rng([11, *sizes])
    first, second = (moments_of_rows(rng.standard_normal((_POWER_DRAWS, n))) for n in sizes)
    return first, second


def _shifted_welch_hall(sizes: tuple[int, int], share: float, effect: float) -> np.ndarray:
    """:func:`welch_hall_statistic` of the normal groups of :func:`_power_groups` scaled to variance share
    ``share`` (``sd_1^2 / n_1 = share``, ``sd_2^2 / n_2 = 1 − share``: a standard error of 1), the first group
    shifted by ``effect`` (standard errors)."""
    (mean1, sd1, g1), (mean2, sd2, g2) = _power_groups(sizes)
    a1, a2 = math.sqrt(share * sizes[0]), math.sqrt((1.0 - share) * sizes[1])
    return welch_hall_statistic((a1 * mean1 + effect, a1 * sd1, g1), (a2 * mean2, a2 * sd2, g2), sizes)


@functools.lru_cache(maxsize=4096)
def welch_hall_detectable_effect(sizes: tuple[int, int], share: float, critical: float, power: float = 0.8) -> float:
    """The difference of the means, in units of its standard error ``sqrt(sigma_1^2 / n_1 + sigma_2^2 / n_2)``,
    that the unpaired test of ``sizes = (n_1, n_2)`` runs rejecting ``|T_H| > critical``
    (:func:`welch_hall_statistic`) detects with probability ``power`` on normal groups whose first group has
    the variance share ``share`` (:func:`_shifted_welch_hall`, :func:`_power_root` from the noncentral-t
    answer with Hsu's df).  ``inf`` for an infinite critical value."""
    if not np.isfinite(critical):
        return np.inf
    guess = detectable_noncentrality(critical, min(sizes) - 1.0, power)
    return _power_root(functools.partial(_shifted_welch_hall, sizes, share), critical, power, guess)


def _t_ratio(numerator: np.ndarray, se: np.ndarray) -> np.ndarray:
    """``numerator / se`` with 0/0 -> 0 and x/0 -> ±inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, numerator / se, np.where(numerator == 0, 0.0, np.sign(numerator) * np.inf))


def sign_patterns(n: int, n_random: int = N_RANDOM, seed: int = 0) -> tuple[np.ndarray, bool]:
    """``(patterns, exact)``: all ``2^n`` rows of ``±1`` (identity first) if at most
    :data:`MAX_EXACT`, else the identity and ``n_random`` random rows."""
    if 2**n <= MAX_EXACT:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        return 1.0 - 2.0 * bits, True
    rng = np.random.default_rng(seed)
    return np.vstack([np.ones((1, n)), rng.choice([-1.0, 1.0], size=(n_random, n))]), False


@functools.lru_cache(maxsize=32)
def label_patterns(n_first: int, n_second: int, n_random: int = N_RANDOM, seed: int = 0) -> tuple[np.ndarray, bool]:
    """``(patterns, exact)``: 0/1 rows marking which of the ``n_first + n_second`` runs are labelled
    "first"; the observed labelling (first ``n_first`` runs) is row 0; all ``C(N, n_first)`` when at most
    :data:`MAX_EXACT`, else the observed and ``n_random`` random ones.  Cached and read-only (the tests of
    every level and the inversions of :func:`shift_interval` share them)."""
    total = n_first + n_second
    if math.comb(total, n_first) <= MAX_EXACT:
        combos = np.array(list(itertools.combinations(range(total), n_first)))
        patterns = np.zeros((len(combos), total))
        patterns[np.arange(len(combos))[:, None], combos] = 1.0
        exact = True
    else:
        rng = np.random.default_rng(seed)
        observed = np.r_[np.ones(n_first), np.zeros(n_second)]
        patterns, exact = np.vstack([observed] + [rng.permutation(observed) for _ in range(n_random)]), False
    patterns.setflags(write=False)
    return patterns, exact


@functools.lru_cache(maxsize=4096)
def detectable_noncentrality(critical: float, df: float, power: float = 0.8) -> float:
    """The noncentrality ``lambda`` at which a two-sided test rejecting ``|T| > critical`` has power
    ``power`` when ``T`` is noncentral t with ``df`` degrees of freedom:
    ``P(T > c) + P(T < −c) = power``, ``T ~ nct(df, lambda)`` (``scipy.stats.nct``; ``brentq``).  A
    true difference of ``lambda · sigma / sqrt(n)`` (paired) is detected with exactly that power by
    the t test; the normal approximation ``c + z_power`` it replaces gave 59% / 72% / 75% at 6 / 8 /
    12 seeds.  ``inf`` for an infinite critical value."""
    if not np.isfinite(critical):
        return np.inf

    def shortfall(nc: float) -> float:
        # the lower tail P(T < -c) underflows to NaN in scipy for large nc: it is then 0
        lower = float(stats.nct.cdf(-critical, df, nc))
        return float(stats.nct.sf(critical, df, nc)) + (lower if np.isfinite(lower) else 0.0) - power

    upper = critical + 10.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-10))


def detectable_effect(n: int, alpha: float, power: float = 0.8) -> float:
    """The standardized paired difference ``d_z = delta / sigma`` that the two-sided paired test of
    ``n`` seeds at level ``alpha`` (:attr:`MaxTTest.pointwise_p`: Hall's statistic against the
    least-favourable reference) detects with probability ``power`` on normal differences
    (:func:`hall_detectable_effect` at :func:`hall_critical`; ``inf`` below 2 seeds)."""
    if n < 2:
        return np.inf
    return hall_detectable_effect(n, hall_critical(n, alpha), power)


def hedges_correction(df: float) -> float:
    """Hedges' small-sample factor ``J(nu) = Gamma(nu/2) / (sqrt(nu/2) Gamma((nu−1)/2))`` that makes
    ``J(nu) · mean / sd`` unbiased for normal data (Hedges 1981; ``≈ 1 − 3 / (4 nu − 1)``)."""
    if df <= 1:
        return np.nan
    return float(np.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2))


def sample_skewness(values: np.ndarray) -> float:
    """The sample skewness ``g_1 = m_3 / m_2^{3/2}`` (``scipy.stats.skew``, biased); NaN for fewer than
    3 values or constant ones (to a relative ``1e-9``: rounding is not spread)."""
    v = np.asarray(values, float)
    if len(v) < 3 or np.ptp(v) <= _TIE * np.abs(v).max():
        return np.nan
    return float(stats.skew(v))


def symmetry_diagnostic(
    skewness: np.ndarray, n: np.ndarray, n_sim: int = 4000, seed: int = 0, groups: np.ndarray | None = None
) -> dict[str, float]:
    """A pooled check of the paired tests' symmetry assumption over a family of rows, from each row's
    per-seed differences' sample skewness ``g_i`` (:func:`sample_skewness`) and count ``n_i``.

    Each row's ``z_i = g_i / sqrt(v(n_i))``, with ``v(n) = 6 (n − 2) / ((n + 1)(n + 3))`` the variance
    of ``g_1`` of ``n`` normal values.  Rows of one of ``groups`` (e.g. the methods of one (setting,
    task), whose differences share the task's STL runs: ``MTL_m − STL`` for every method ``m``) are
    not independent, so each group counts once, by its rows' mean ``z̄_G``: the statistic is
    ``Q = sum_G z̄_G^2`` (without ``groups`` every row is its own group).  Its null distribution is
    simulated with one normal sample per group, of the group's smallest ``n`` (``n_sim`` sets,
    generator seeded with ``seed``), because ``g_1`` is far from normal at 6–12 seeds.  Rows of a
    group that share their noise completely have ``z̄_G`` distributed as that one sample's ``z``;
    less shared noise makes ``z̄_G`` less variable, so the check is conservative within groups (it
    flagged 8–12% of normal families whose rows share STL runs when every row counted once).
    Large ``Q``: the differences are more skewed than symmetric noise makes them; the sign-flip band
    (whose null is symmetry) may be liberal, and so may the one-level paired test where the skewness
    exceeds :data:`SKEWNESS_BOUND`.  Returns ``rows, groups, q, p_value, mean_abs_skewness`` (rows with
    finite ``g`` and ``n >= 3``; NaN without any)."""
    g, counts = np.asarray(skewness, float), np.asarray(n, int)
    labels = np.arange(len(g)) if groups is None else np.asarray(groups)
    keep = np.isfinite(g) & (counts >= 3)
    g, counts, labels = g[keep], counts[keep], labels[keep]
    if not len(g):
        return {"rows": 0, "groups": 0, "q": np.nan, "p_value": np.nan, "mean_abs_skewness": np.nan}
    z = g / np.sqrt(6 * (counts - 2) / ((counts + 1) * (counts + 3)))
    _, group_of = np.unique(labels.astype(str), return_inverse=True)
    group_z = np.bincount(group_of, weights=z) / np.bincount(group_of)
    group_n = np.full(len(group_z), counts.max())
    np.minimum.at(group_n, group_of, counts)
    q = float(np.sum(group_z**2))
    rng = np.random.default_rng(seed)
    null = np.zeros(n_sim)
    for size in np.unique(group_n):
        draws = stats.skew(rng.standard_normal((n_sim, int(np.sum(group_n == size)), int(size))), axis=2)
        null += np.sum(draws**2, axis=1) / (6 * (size - 2) / ((size + 1) * (size + 3)))
    p_value = (1 + np.sum(null >= q)) / (1 + n_sim)
    return {
        "rows": len(g),
        "groups": len(group_z),
        "q": q,
        "p_value": float(p_value),
        "mean_abs_skewness": float(np.mean(np.abs(g))),
    }


@dataclass(frozen=True)
class MaxTTest:
    """A max-|t| permutation test of a difference at ``L`` levels (module docstring).

    ``estimate, se, t, df``: shape ``(L,)`` (``df``: of the per-level t test); ``null_max``: the
    sorted permutation distribution of ``M*`` (observed pattern included); ``design``: ``"paired"``
    or ``"unpaired"``; ``n``: seed pairs (paired) or ``(n_M, n_S)`` runs (unpaired); ``sd``: the
    per-level standard deviation of the paired differences (paired) or the pooled one (unpaired),
    the denominator of ``effect_size``; ``skew`` (paired): the per-level ``g = m_3 / sd^3`` of
    :func:`hall_statistic`; ``estimate_skew`` (unpaired): the per-level skewness of the difference of the
    means ``gamma`` of :func:`welch_hall_statistic`; ``variance_share`` (unpaired): the per-level share of
    the first group in the squared standard error, ``(s_1^2 / n_1) / se^2``, at which :meth:`min_detectable`
    computes power (``df`` is Hsu's ``min(n_1, n_2) − 1``, of the Welch t the band uses); ``bound``
    (paired): the skewness bound of its one-level test (:class:`SkewnessBound`; a family's from
    :func:`family_skewness_bound`, via :meth:`with_bound`);
    ``bonferroni_maxima`` (unpaired, the gap's band: :func:`unpaired_band_test`): the sorted reference of
    :func:`hsu_bonferroni_maxima`, the band's second reference (:attr:`curve_reference`);
    ``tied``: per level, whether the values have no spread (paired: ``max d − min d <= 1e-9 · max |d|``, every
    seed's difference the same; unpaired: both groups constant, to the same tolerance), where the one-level
    test is the exact permutation test (:attr:`pointwise_p`); ``curves`` (paired, the gap's band:
    :func:`paired_band_test`): the per-seed difference curves ``(n, L)`` behind the least-favourable reference
    :attr:`curve_reference` (``reference_draws`` simulated sets, seeded by ``reference_seed``, drawn when first
    needed); with them the statistic per level is Hall's ``T_H`` (:attr:`level_statistic`; ``null_max`` then
    holds the sign-flip ``max_j |T_H|``) and every tail probability is the larger of the sign flips' and the
    reference's; likewise, unpaired, with :attr:`bonferroni_maxima` (the statistic stays Welch's ``t``).
    """

    design: str
    n: int | tuple[int, int]
    estimate: np.ndarray
    se: np.ndarray
    sd: np.ndarray
    t: np.ndarray
    null_max: np.ndarray
    exact: bool
    df: np.ndarray
    skew: np.ndarray | None = None
    estimate_skew: np.ndarray | None = None
    variance_share: np.ndarray | None = None
    bound: SkewnessBound = FIXED_BOUND
    tied: np.ndarray | None = None
    curves: np.ndarray | None = None
    bonferroni_maxima: np.ndarray | None = None
    reference_seed: int = 0
    reference_draws: int = N_CURVE_REFERENCE

    def with_bound(self, bound: SkewnessBound) -> MaxTTest:
        """The same test with its one-level paired test under ``bound`` (no change to an unpaired test)."""
        return replace(self, bound=bound) if self.design == "paired" else self

    @property
    def n_patterns(self) -> int:
        return len(self.null_max)

    def _permutation_tail(self, values: np.ndarray) -> np.ndarray:
        """``P(M* >= v)`` for each ``v`` over the patterns (with the relative tie tolerance)."""
        threshold = np.abs(values) * (1 - _TIE)
        count = len(self.null_max) - np.searchsorted(self.null_max, threshold, side="left")
        return count / len(self.null_max)

    def _tail(self, values: np.ndarray) -> np.ndarray:
        """:meth:`_permutation_tail`, or with a :attr:`curve_reference` the larger of it and the reference's
        Monte Carlo tail ``(1 + #{M_ref >= v}) / (1 + N)``."""
        tail, reference = self._permutation_tail(values), self.curve_reference
        if reference is None:
            return tail
        above = len(reference) - np.searchsorted(reference, np.abs(values) * (1 - _TIE), side="left")
        return np.maximum(tail, (1 + above) / (1 + len(reference)))

    @functools.cached_property
    def curve_reference(self) -> np.ndarray | None:
        """The band's least-favourable reference, sorted: paired with :attr:`curves`, the ``max_j |T_H|`` of
        :func:`skewed_curve_maxima` for common shifts of skewness :data:`SKEWNESS_BOUND` (computed once, when
        a tail is first asked for); unpaired, :attr:`bonferroni_maxima`; else ``None``."""
        if self.curves is None:
            return self.bonferroni_maxima
        return skewed_curve_maxima(self.curves, SKEWNESS_BOUND, self.reference_draws, self.reference_seed)

    @property
    def level_statistic(self) -> np.ndarray:
        """Per level, the statistic whose maximum is tested: Hall's ``T_H`` (:attr:`hall`) with
        :attr:`curves`, else ``t``."""
        return self.hall if self.curves is not None else self.t

    @property
    def adjusted_p(self) -> np.ndarray:
        """Per-level p-values adjusted for all ``L`` levels (family-wise)."""
        return self._tail(self.level_statistic)

    @property
    def p_any(self) -> float:
        """p-value of "a difference at some level" (= the smallest adjusted p)."""
        return float(self.adjusted_p.min())

    @property
    def min_p(self) -> float:
        """The smallest p-value the test can give: the share of patterns attaining the largest ``M*``, or with
        a band's reference (:attr:`curves`, :attr:`bonferroni_maxima`) its floor ``1 / (1 + reference_draws)``
        where that is larger."""
        floor = float(self._permutation_tail(self.null_max[-1:])[0])
        if self.curves is None and self.bonferroni_maxima is None:
            return floor
        return max(floor, 1 / (1 + self.reference_draws))

    def critical_value(self, alpha: float) -> float:
        """``c_alpha``: the largest value ``c`` of ``M*`` (or of a reference) with tail probability
        (:meth:`_tail`) above ``alpha``; ``|T_j| > c`` iff ``p_j <= alpha``."""
        values = self.null_max if self.curve_reference is None else np.r_[self.null_max, self.curve_reference]
        return float(values[self._tail(values) > alpha].max())

    def band(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """The simultaneous ``1 − alpha`` band: the differences ``mu`` per level whose statistic stays within
        ``c_alpha`` (:meth:`critical_value`): ``estimate ± c_alpha * se`` for ``t``, Hall's interval at
        ``c_alpha`` (:meth:`_inverted`) for ``T_H``.  It excludes 0 exactly where ``p_j <= alpha``."""
        if self.min_p > alpha:  # no level can be rejected: every difference stays in the band
            return np.full(len(self.se), -np.inf), np.full(len(self.se), np.inf)
        # the tail counts null values within a relative _TIE below a statistic as reaching it, so the values the
        # test keeps reach c / (1 − _TIE): a level whose statistic equals c (the observed pattern is one of the
        # null's) keeps 0 in its band, not 0 ± rounding
        c = np.full(len(self.se), self.critical_value(alpha) / (1 - _TIE))
        if self.curves is not None and self.skew is not None:
            return self._inverted(c)
        return self.estimate - c * self.se, self.estimate + c * self.se

    def significant(self, alpha: float) -> np.ndarray:
        """Per level: the band excludes 0 (``p_j <= alpha``)."""
        return self.adjusted_p <= alpha

    @property
    def _pairs(self) -> int:
        """``n`` of a paired test (the total number of runs of an unpaired one)."""
        return self.n if isinstance(self.n, int) else sum(self.n)

    @property
    def _studentized(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, gamma)`` per level: the standard error Hall's statistic divides the estimate by and the
        estimated skewness of the estimate (:func:`hall_transform`): paired ``(sd / sqrt(n), g / sqrt(n))``
        (:func:`hall_statistic`), unpaired ``(se, estimate_skew)`` (:func:`welch_hall_statistic`)."""
        if self.design == "paired" and self.skew is not None:
            root = math.sqrt(self._pairs)
            return self.sd / root, np.asarray(self.skew, float) / root
        if self.design == "unpaired" and self.estimate_skew is not None:
            return self.se, self.estimate_skew
        raise ValueError("Hall's statistic needs the skewness of the values (paired_max_t, unpaired_max_t)")

    @property
    def hall(self) -> np.ndarray:
        """Per level, Hall's skewness-corrected statistic: :func:`hall_statistic` (paired) or
        :func:`welch_hall_statistic` (unpaired), H0: no difference."""
        scale, gamma = self._studentized
        return hall_transform(_t_ratio(self.estimate, scale), gamma)

    @property
    def pointwise_p(self) -> np.ndarray:
        """Per level, the unadjusted two-sided p-value of the one-level test (module docstring): Hall's
        statistic (:attr:`hall`; paired :func:`hall_statistic`, unpaired :func:`welch_hall_statistic`) against
        the least-favourable reference of :func:`hall_p_value` (paired under :attr:`bound`; smallest value
        ``1 / (1 + N_REFERENCE)``, 7.6e-6, plus the bound's ``miss``).  Not bound to ``2 / 2^n``: the p-value
        of every one-level test of the report; the smallest value where ``|t_j| = inf``, 1 where
        ``T_H = 0``; the exact permutation p-value where the values have no spread (:attr:`tied`)."""
        return np.where(self._tied, self._tied_p, hall_p_value(self.hall, self.n, self.bound))

    @property
    def _tied(self) -> np.ndarray:
        """Per level: paired differences without spread (:attr:`tied`; all ``False`` when not recorded)."""
        return np.zeros(len(self.se), bool) if self.tied is None else self.tied

    @property
    def _tied_floor(self) -> float:
        """The exact permutation p-value of a nonzero difference without spread: paired, ``2 / 2^n`` (only
        the identity and the global flip give ``|t| = inf``); unpaired (both groups constant), the share of
        relabellings that keep both groups constant, ``(1 + [n_1 = n_2]) / C(n_1 + n_2, n_1)``."""
        if isinstance(self.n, int):
            return min(1.0, 2.0 / 2.0**self.n)
        n1, n2 = self.n
        return min(1.0, (1.0 + (n1 == n2)) / math.comb(n1 + n2, n1))

    @property
    def _tied_p(self) -> np.ndarray:
        """Per level, the exact permutation p-value where the differences have no spread (:attr:`tied`):
        :attr:`_tied_floor` for a nonzero difference, 1 for none.  Hall's statistic (paired or unpaired) is
        ``±inf`` there and its reference would give its floor (7.6e-6 at any ``n``), whatever the
        seeds: a continuous reference says nothing about tied, discrete values."""
        return np.where(self.estimate == 0, 1.0, self._tied_floor)

    @property
    def _no_spread(self) -> np.ndarray:
        """Per level: no spread to scale by (paired :attr:`tied`, or an ``sd``/``se`` of 0)."""
        return self._tied | ~(self.sd > 0) | ~(self.se > 0)

    @property
    def pointwise_min_p(self) -> float:
        """The smallest value :attr:`pointwise_p` can take, the same at every level and any number of seeds:
        ``1 / (1 + N_REFERENCE)`` plus the bound's ``miss`` (7.6e-6 under the fixed bound, 2.6e-4 under a
        family's, :func:`hall_p_value`; unpaired tests are under the fixed bound)."""
        return min(1.0, 1 / (1 + N_REFERENCE) + self.bound.miss)

    def critical(self, alpha: float) -> np.ndarray:
        """Per level, the critical value of the one-level test at ``alpha``: ``|T_H| > c`` iff
        ``pointwise_p <= alpha`` (:func:`hall_critical`; paired under :attr:`bound`)."""
        return np.full(len(self.se), hall_critical(self.n, alpha, self.bound))

    def interval(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Per level, the ``1 − alpha`` interval of the one-level test, the differences ``mu`` it does not
        reject: ``|T_H(mu)| <= c``, Hall's statistic of the values shifted by ``mu`` (a shift leaves the
        scale and ``gamma`` of :attr:`_studentized` as they are), inverted through the cubic of
        :func:`hall_transform`: ``t = 3 ((1 + gamma u)^{1/3} − 1) / gamma`` for ``u = ±c − gamma / 6``,
        ``mu = estimate − scale · t`` (asymmetric when ``gamma != 0``).  It excludes 0 exactly where
        ``pointwise_p <= alpha``."""
        ends = self._inverted(self.critical(alpha))
        # no spread: the permutation test rejects every mu but the common difference (p = the floor), or none
        unbounded = self._tied_floor > alpha
        low = np.where(self._tied, -np.inf if unbounded else self.estimate, ends[0])
        return low, np.where(self._tied, np.inf if unbounded else self.estimate, ends[1])

    def _inverted(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per level, the differences ``mu`` with ``|T_H(mu)| <= c`` (:meth:`interval`'s inversion of the cubic of
        :func:`hall_transform` at critical values ``c``, ties not handled): ``(low, high)``."""
        scale, skew = self._studentized
        gamma = np.where(np.isfinite(skew), skew, 0.0)
        ends = []
        for sign in (1.0, -1.0):
            u = sign * c - gamma / 6
            ends.append(self.estimate - scale * u * _cube_root_ratio(gamma * u))
        return ends[0], ends[1]

    @property
    def hedges_df(self) -> int:
        """``nu`` of Hedges' correction: ``n − 1`` paired, ``n_1 + n_2 − 2`` unpaired."""
        return self.n - 1 if isinstance(self.n, int) else sum(self.n) - 2

    def effect_size(self) -> np.ndarray:
        """Hedges' bias-corrected standardized difference ``J(nu) · estimate / sd`` (paired: g_z, the
        corrected Cohen's d_z; unpaired: g with the pooled sd); :func:`hedges_correction`."""
        effect = _t_ratio(self.estimate, self.sd) * hedges_correction(self.hedges_df)
        return np.where(self._no_spread, np.nan, effect)

    def min_detectable(self, alpha: float, power: float = 0.8, simultaneous: bool = False) -> np.ndarray:
        """Per level: the difference that the one-level test at level ``alpha`` detects with probability
        ``power``: paired, ``hall_detectable_effect(n, c, power) · sd`` (simulated power of Hall's test on
        normal differences); unpaired, ``welch_hall_detectable_effect((n_1, n_2), w, c, power) · se`` (simulated
        power of Hall's two-sample test on normal groups at the observed :attr:`variance_share` ``w``).  With
        ``simultaneous``: ``lambda · se`` at the max-|t| ``c_alpha`` of the band (noncentral t with the
        level's ``df``; with a :attr:`curve_reference`, ``hall_detectable_effect(n, c_alpha, power) · sd``;
        ``inf`` when no p-value of the band can reach ``alpha``).  NaN where the differences
        have no spread (a power needs a spread to scale by; the report says they do not vary)."""
        if simultaneous:
            if self.min_p > alpha:
                return np.full_like(self.se, np.inf)
            if self.curves is not None:
                effect = hall_detectable_effect(self._pairs, self.critical_value(alpha), power) * self.sd
                return np.where(self._no_spread, np.nan, effect)
            critical = np.full(len(self.se), self.critical_value(alpha))
            nc = [detectable_noncentrality(float(c), float(d), power) for c, d in zip(critical, self.df)]
            return np.where(self._no_spread, np.nan, np.asarray(nc) * self.se)
        c = float(self.critical(alpha)[0])
        if isinstance(self.n, int):
            effect = hall_detectable_effect(self.n, c, power) * self.sd
        elif self.variance_share is None:
            raise ValueError("the unpaired power needs the groups' variance share (unpaired_max_t)")
        else:
            sizes = (int(self.n[0]), int(self.n[1]))
            shares = [float(w) for w in self.variance_share]
            effect = np.array([welch_hall_detectable_effect(sizes, w, c, power) for w in shares]) * self.se
        return np.where(self._no_spread & np.isfinite(effect), np.nan, effect)


def scalar_test(test: MaxTTest, alpha: float, power: float = 0.8) -> dict[str, float]:
    """The one-level summary every report table gives of a test of ``L = 1`` level: ``low, high`` (the
    ``1 − alpha`` interval, :meth:`MaxTTest.interval`), ``p_value`` (:attr:`MaxTTest.pointwise_p`),
    ``min_p`` (:attr:`MaxTTest.pointwise_min_p`: not bound to ``2 / 2^n``), ``min_detectable`` (at
    ``power``), ``effect_size`` (Hedges) and ``df``."""
    low, high = test.interval(alpha)
    return {
        "low": float(low[0]),
        "high": float(high[0]),
        "p_value": float(test.pointwise_p[0]),
        "min_p": test.pointwise_min_p,
        "min_detectable": float(test.min_detectable(alpha, power)[0]),
        "effect_size": float(test.effect_size()[0]),
        "df": float(test.df[0]),
    }


def _paired_rows(differences: np.ndarray) -> np.ndarray:
    """``differences`` as ``(n, L)`` (a ``(n,)`` vector is one level), checked: ``n >= 2``, finite."""
    d = np.asarray(differences, float)
    d = d[:, None] if d.ndim == 1 else d
    if d.shape[0] < 2 or not np.isfinite(d).all():
        raise ValueError(f"need >= 2 finite rows of differences, got shape {d.shape}")
    return d


def paired_max_t(differences: np.ndarray, n_random: int = N_RANDOM, seed: int = 0) -> MaxTTest:
    """Sign-flip max-|t| test of per-seed differences ``differences`` (``(n, L)`` or ``(n,)``), ``n >= 2``."""
    d = _paired_rows(differences)
    n = d.shape[0]
    patterns, exact = sign_patterns(n, n_random, seed)
    means = patterns @ d / n  # (P, L)
    sum_sq = (d**2).sum(axis=0)
    var = np.maximum(sum_sq - n * means**2, 0.0) / (n - 1)  # sum of squares is invariant under flips
    se = np.sqrt(var / n)
    t_all = _t_ratio(means, se)
    null_max = np.sort(np.abs(t_all).max(axis=1))
    df = np.full(d.shape[1], n - 1.0)
    sd = np.sqrt(var[0])
    skew = moments_of_rows(d.T)[2]
    tied = np.ptp(d, axis=0) <= _TIE * np.abs(d).max(axis=0)
    return MaxTTest("paired", n, means[0], se[0], sd, t_all[0], null_max, exact, df, skew=skew, tied=tied)


def skewed_curve_maxima(
    differences: np.ndarray, skewness: float, draws: int = N_CURVE_REFERENCE, seed: int = 0
) -> np.ndarray:
    """Sorted ``max_j |T_H|`` (:func:`hall_statistic` per level) of ``draws`` simulated sets of ``n`` paired
    difference curves under "a skewed per-seed shift common to every level, plus the observed residual
    curves, mean 0": seed ``s``'s curve is ``D*_s(j) = sd(m) · z_s + e_s · r_s(j)`` with ``m_s`` the mean of
    seed ``s``'s observed curve over the levels, ``r_s = d_s − m_s`` its residual curve, ``z_s`` standardized
    mean-zero draws of ``skewness`` (:func:`_mean_zero_draws`: normal for 0, else a shifted gamma) and ``e_s``
    random signs.  A shift common to every level is the worst case of the skewed null (every level's
    ``T_H`` inherits its skewness); the sign-flipped residuals keep the observed dependence along the
    levels.  ``differences``: ``(n, L)``; seeded by ``seed``."""
    d = _paired_rows(differences)
    n = d.shape[0]
    level_mean = d.mean(axis=1)
    residual, spread = d - level_mean[:, None], float(np.std(level_mean, ddof=1))
    rng = np.random.default_rng([20261206, seed, round(skewness / BOUND_STEP)])
    maxima = []
    for size in _chunks(draws, max(1, 200000 // d.shape[1])):
        shifts = spread * _mean_zero_draws(rng, skewness, (size, n))
        signs = rng.choice([-1.0, 1.0], size=(size, n))
        curves = shifts[:, :, None] + signs[:, :, None] * residual[None]  # (size, n, L)
        moments = moments_of_rows(np.swapaxes(curves, 1, 2))  # two-pass: no cancellation
        maxima.append(np.abs(np.nan_to_num(hall_statistic(*moments, n), nan=0.0)).max(axis=1))
    return np.sort(np.concatenate(maxima))


def paired_band_test(
    differences: np.ndarray, n_random: int = N_RANDOM, seed: int = 0, draws: int = N_CURVE_REFERENCE
) -> MaxTTest:
    """The test of "a difference at some level" and its simultaneous band for paired difference curves
    ``(n, L)``, ``n >= 2``: ``M = max_j |T_H,j|`` (Hall's statistic per level, :func:`hall_statistic`), whose
    adjusted p-value per level is the larger of two tails (:meth:`MaxTTest._tail`): the sign flips of the
    observed curves (exact when each seed's curve is symmetric about 0, normal common shifts included) and the
    simulated curves of :func:`skewed_curve_maxima` with :data:`SKEWNESS_BOUND`-skewed common shifts (the
    least-favourable end of the family the one-level test covers; :attr:`MaxTTest.curve_reference`).  The sign
    flips of max-|t| alone gave 9.0–10.8% at 5% under skewed per-seed shifts common to all levels
    (docs/statistics.md §3).  ``draws``: simulated curve sets per reference (the p-value's floor is
    ``1 / (1 + draws)`` where the sign flips' is lower)."""
    d = _paired_rows(differences)
    n = d.shape[0]
    patterns, _ = sign_patterns(n, n_random, seed)
    maxima, step = [], max(1, 2_000_000 // d.size)
    for start in range(0, len(patterns), step):  # the flipped curves themselves: two-pass moments, no cancellation
        flipped = patterns[start : start + step, :, None] * d[None]  # (chunk, n, L)
        moments = moments_of_rows(np.swapaxes(flipped, 1, 2))
        maxima.append(np.abs(np.nan_to_num(hall_statistic(*moments, n), nan=0.0)).max(axis=1))
    null_max = np.sort(np.concatenate(maxima))
    test = paired_max_t(d, n_random, seed)
    mean, sd, _ = moments_of_rows(d.T)  # the observed T_H as its own row of the null (raw moments cancel)
    return replace(test, estimate=mean, sd=sd, null_max=null_max, curves=d, reference_seed=seed, reference_draws=draws)


def unpaired_max_t(first: np.ndarray, second: np.ndarray, n_random: int = N_RANDOM, seed: int = 0) -> MaxTTest:
    """Label-permutation max-|Welch t| test of ``first − second`` (``(n_1, L)`` and ``(n_2, L)``, each ``n >= 2``)."""
    x, y = (np.asarray(a, float) for a in (first, second))
    x, y = (a[:, None] if a.ndim == 1 else a for a in (x, y))
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"need >= 2 finite rows per group, got {x.shape} and {y.shape}")
    data = np.vstack([x, y])
    patterns, exact = label_patterns(n1, n2, n_random, seed)
    sums, sums_sq = patterns @ data, patterns @ data**2
    total, total_sq = data.sum(axis=0), (data**2).sum(axis=0)
    mean1, mean2 = sums / n1, (total - sums) / n2
    var1 = np.maximum(sums_sq - n1 * mean1**2, 0.0) / (n1 - 1)
    var2 = np.maximum(total_sq - sums_sq - n2 * mean2**2, 0.0) / (n2 - 1)
    se = np.sqrt(var1 / n1 + var2 / n2)
    t_all = _t_ratio(mean1 - mean2, se)
    pooled = np.sqrt(((n1 - 1) * var1[0] + (n2 - 1) * var2[0]) / (n1 + n2 - 2))
    first_moments = moments_of_rows(x.T)
    welch_se, gamma = welch_se_and_skewness(first_moments, moments_of_rows(y.T), (n1, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip(np.where(welch_se > 0, first_moments[1] ** 2 / n1 / welch_se**2, 0.5), 0.0, 1.0)
    hsu = np.full(x.shape[1], min(n1, n2) - 1.0)  # Hsu (1938): the df of the band's Welch t
    null_max = np.sort(np.abs(t_all).max(axis=1))
    tied = np.ptp(x, axis=0) + np.ptp(y, axis=0) <= _TIE * np.abs(data).max(axis=0)  # both groups constant
    return MaxTTest(
        "unpaired",
        (n1, n2),
        mean1[0] - mean2[0],
        se[0],
        pooled,
        t_all[0],
        null_max,
        exact,
        hsu,
        estimate_skew=gamma,
        variance_share=share,
        tied=tied,
    )


def hsu_bonferroni_maxima(first: np.ndarray, second: np.ndarray, draws: int = N_CURVE_REFERENCE) -> np.ndarray:
    """The sorted reference whose tail is Bonferroni's bound over the levels of Hsu's (1938) p-values of Welch's
    ``t``: ``M_k = t_df^{-1}(1 − u_k / (2 L))`` for ``u_k = k / (draws + 1)``, ``k = 1 … draws``, with
    ``df = min(n_1, n_2) − 1`` and ``L`` the levels where the runs vary (Welch's ``se > 0``), so that the tail
    ``(1 + #{M >= |t|}) / (1 + draws)`` is ``min(1, L · 2 t_df(−|t|))`` rounded up to a multiple of
    ``1 / (1 + draws)``.  Hsu's p-value holds for normal groups at any variance ratio (it is the one-sample
    test of the group whose spread dominates), and Bonferroni's bound holds for any dependence along the levels,
    so this reference needs no estimate of the groups' covariance.  Two Gaussian copulas of the levels' Hsu
    p-values that estimated it (from the covariance of the difference of the means, then pooled from both
    groups' standardized runs) were liberal where a group of 3 to 6 runs dominates (up to 48% at 5% with 3
    runs of 10× the spread of 30, 11.5% with the same correlation in both groups: with 2 df per level the
    levels' separate denominators make the maximum heavier than any Gaussian copula's; docs/statistics.md §3)."""
    x, y = (np.asarray(a, float) for a in (first, second))
    x, y = (a[:, None] if a.ndim == 1 else a for a in (x, y))
    se = np.sqrt(x.var(axis=0, ddof=1) / len(x) + y.var(axis=0, ddof=1) / len(y))
    levels = max(1, int((se > 0).sum()))
    u = np.arange(1, draws + 1) / (draws + 1)
    return np.sort(stats.t.isf(u / (2 * levels), min(len(x), len(y)) - 1))


def unpaired_band_test(
    first: np.ndarray, second: np.ndarray, n_random: int = N_RANDOM, seed: int = 0, draws: int = N_CURVE_REFERENCE
) -> MaxTTest:
    """The test of "a difference at some level" and its simultaneous band for unpaired curves ``first``
    ``(n_1, L)`` and ``second`` ``(n_2, L)``, each ``n >= 2``: ``M = max_j |t_j|`` (Welch's t per level),
    whose adjusted p-value per level is the larger of two tails (:meth:`MaxTTest._tail`): the label
    permutations (exact where MTL and STL runs are exchangeable) and Bonferroni's bound over the levels of
    Hsu's p-values (:func:`hsu_bonferroni_maxima`; valid for normal groups of any spreads and any dependence
    along the levels, where the permutations are not).  The label permutation alone gave 27% at 5% with 3 MTL
    runs of 3× the spread of 9 STL runs; the band ``estimate ± c_alpha · se`` excludes 0 exactly where the
    adjusted p ≤ alpha (docs/statistics.md §3).  ``draws``: the resolution of the bound's reference (the
    p-value's floor is ``1 / (1 + draws)`` where the permutations' is lower)."""
    test = unpaired_max_t(first, second, n_random, seed)
    maxima = hsu_bonferroni_maxima(first, second, draws)
    return replace(test, bonferroni_maxima=maxima, reference_draws=draws)


def shift_interval(first: np.ndarray, second: np.ndarray, alpha: float, seed: int = 0) -> tuple[float, float]:
    """The ``1 − alpha`` confidence interval of the shift ``delta = mean(first) − mean(second)`` that inverts
    the label-permutation test of Welch's t (:func:`unpaired_max_t`'s ``p_any`` at one level): the shifts
    ``mu`` it does not reject, ``p_perm(first − mu, second) > alpha``.  ``p_perm`` is 1 at the estimate and
    falls to the patterns' ``min_p`` far from it, so each end is found by doubling a step of the Welch
    standard error outward until the test rejects, then bisection to ``1e-9`` of it.  ``(−inf, inf)`` when
    ``min_p > alpha``: no shift can be rejected (3 vs 3 runs: ``min_p = 0.1``)."""
    x, y = np.asarray(first, float).ravel(), np.asarray(second, float).ravel()
    test = unpaired_max_t(x, y, seed=seed)
    estimate, se = float(test.estimate[0]), float(test.se[0])
    if test.min_p > alpha:
        return -np.inf, np.inf
    step = se if se > 0 else max(abs(estimate), 1.0)

    def rejects(mu: float) -> bool:
        return unpaired_max_t(x - mu, y, seed=seed).p_any <= alpha

    ends = []
    for sign in (-1.0, 1.0):
        inside, outside = 0.0, step
        while not rejects(estimate + sign * outside):
            inside, outside = outside, 2 * outside
        while outside - inside > 1e-9 * step:
            middle = (inside + outside) / 2
            inside, outside = (inside, middle) if rejects(estimate + sign * middle) else (middle, outside)
        ends.append(estimate + sign * inside)
    return ends[0], ends[1]


def attainable(min_p: np.ndarray | None, alpha: float, m: int) -> np.ndarray:
    """Which of ``m`` tests stay in a Benjamini–Hochberg family at FDR ``alpha``: those whose smallest
    attainable p-value ``min_p`` can reach ``alpha`` (Tarone 1990; Gilbert 2005; Döhler, Durand &
    Roquain 2018).  A test with ``min_p > alpha`` is rejected by no procedure at level ``<= alpha``,
    and which tests these are is fixed by the design (the number of seeds or clusters), not by the
    data, so dropping them keeps BH valid and stops them from raising every other test's threshold
    ``k * alpha / m`` (a row with 4 paired seeds, ``min_p = 0.125``, no longer costs a row with 8 its
    discovery).  All ``True`` without ``min_p``; a NaN ``min_p`` counts as attainable."""
    if min_p is None:
        return np.ones(m, bool)
    mp = np.asarray(min_p, float)
    return ~(mp > alpha)


def bh_adjust(p_values: np.ndarray, min_p: np.ndarray | None = None, alpha: float = 0.05) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``) of the finite
    entries; NaN stays NaN (a test that could not be run is not part of the family).  With ``min_p``
    (each test's smallest attainable p-value) the family is discrete-aware (:func:`attainable`): tests
    that can never reach ``alpha`` get adjusted p-value 1 and do not count in ``m``."""
    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    kept = finite & attainable(min_p, alpha, len(p))
    out[finite & ~kept] = 1.0
    if kept.any():
        out[kept] = stats.false_discovery_control(p[kept], method="bh")
    return out


def bh_level(p_values: np.ndarray, alpha: float, min_p: np.ndarray | None = None) -> float:
    """The per-test level at which Benjamini–Hochberg at FDR ``alpha`` rejects: ``k * alpha / m`` with
    ``k`` the number of rejections among the ``m`` finite p-values (of the attainable tests, with
    ``min_p``: :func:`attainable`); ``alpha / m`` when ``k = 0`` (a level at which nothing in the
    family is rejected)."""
    p_all = np.asarray(p_values, float)
    p = np.sort(p_all[np.isfinite(p_all) & attainable(min_p, alpha, len(p_all))])
    m = len(p)
    if m == 0:
        return alpha
    below = np.flatnonzero(p <= alpha * np.arange(1, m + 1) / m)
    return alpha * (below[-1] + 1 if len(below) else 1) / m


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of ``successes / trials`` (``scipy.stats.binomtest(...).proportion_ci``)."""
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(interval.low), float(interval.high)
