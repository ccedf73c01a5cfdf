"""The permutation machinery of mtlens.analysis.inference against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mtlens.analysis.inference import bh_level, clopper_pearson, paired_max_t, unpaired_max_t


def test_monte_carlo_sign_flips_beyond_14_seeds_agree_with_scipy():
    d = np.random.default_rng(0).normal(0.4, 1.0, size=20)  # 2^20 patterns: random ones are drawn
    test = paired_max_t(d, seed=1)
    assert not test.exact and test.n_patterns == 10_000 and test.min_p == pytest.approx(1e-4)
    reference = stats.permutation_test(
        (d,),
        lambda x, axis: np.abs(stats.ttest_1samp(x, 0, axis=axis).statistic),
        permutation_type="samples",
        alternative="greater",
        n_resamples=20_000,
        rng=2,
    )
    assert test.p_any == pytest.approx(reference.pvalue, abs=0.015)


def test_critical_value_and_band_agree_with_the_adjusted_p_values():
    rng = np.random.default_rng(3)
    test = unpaired_max_t(rng.normal(0.8, 1, (5, 30)).cumsum(axis=1), rng.normal(0, 1, (6, 30)).cumsum(axis=1))
    for alpha in (0.01, 0.05, 0.2):
        c = test.critical_value(alpha)
        assert np.mean(test.null_max >= c * (1 - 1e-9)) > alpha  # c itself is not significant
        assert np.mean(test.null_max > c * (1 + 1e-9)) <= alpha  # anything above it is
        low, high = test.band(alpha)
        assert np.array_equal((low > 0) | (high < 0), test.adjusted_p <= alpha)


def test_bh_level_is_the_largest_rejected_threshold():
    p = np.array([0.001, 0.2, 0.011, 0.03, np.nan, 0.6])
    m = 5  # NaN is not part of the family
    rejected = stats.false_discovery_control(p[np.isfinite(p)]) <= 0.05
    assert rejected.sum() == 3 and bh_level(p, 0.05) == pytest.approx(3 * 0.05 / m)
    assert bh_level(np.array([0.5, 0.9]), 0.05) == pytest.approx(0.025)  # nothing rejected: alpha / m


def test_clopper_pearson_matches_the_beta_quantiles():
    low, high = clopper_pearson(3, 100)
    assert low == pytest.approx(stats.beta.ppf(0.025, 3, 98)) and high == pytest.approx(stats.beta.ppf(0.975, 4, 97))
