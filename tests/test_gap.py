"""The generalization gap on synthetic trajectories with a known answer."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlens.analysis.gap import gap_family, generalization_gap, interpolate_at, monotone_curve


def _trajectory(
    run_id: str, mode: str, train_loss: np.ndarray, measure: np.ndarray, task: str = "t", seed: int = 0
) -> pd.DataFrame:
    steps = np.arange(len(train_loss))
    base = {"run_id": run_id, "setting": "synthetic", "mode": mode, "method": "sum", "seed": seed, "task": task}
    frames = [
        pd.DataFrame({**base, "step": steps, "epoch": steps / 10.0, "quantity": q, "value": v})
        for q, v in (("train/loss", train_loss), ("val/loss", measure))
    ]
    return pd.concat(frames, ignore_index=True)


def _study(
    offset_below: float, threshold: float, seeds: int = 8, noise: float = 0.01, paired: bool = True
) -> pd.DataFrame:
    """STL: G = x + eps.  MTL: G = x + eps + offset_below * [x < threshold]; x from 2 down to 0.1.

    Each run's eps is a seed-level offset plus a small smooth wiggle along training, so the per-seed
    difference curves vary a little along the loss axis, as real ones do.  Unpaired: MTL seeds are
    shifted so that no seed matches an STL run."""
    rng = np.random.default_rng(0)
    x = np.geomspace(2.0, 0.1, 400)
    wiggle = lambda: noise * (rng.standard_normal() + 0.3 * np.sin(6 * np.log(x) + rng.uniform(0, 6)))  # noqa: E731
    frames = []
    for seed in range(seeds):
        frames.append(_trajectory(f"stl{seed}", "stl", x, x + wiggle(), seed=seed))
        jump = offset_below * (x < threshold)
        frames.append(_trajectory(f"mtl{seed}", "mtl", x, x + jump + wiggle(), seed=seed if paired else seed + 100))
    return pd.concat(frames, ignore_index=True)


def test_gap_has_the_known_value_and_opens_where_constructed():
    result = generalization_gap(_study(offset_below=0.5, threshold=0.5), "t")
    assert result.design == "paired" and result.test.n == 8
    gap = result.gap.set_index("train_loss")["gap"]
    above, below = gap[gap.index > 0.6], gap[gap.index < 0.4]
    assert np.abs(above).max() < 0.05
    assert np.allclose(below, 0.5, atol=0.05)
    assert result.onset is not None
    # The jump lies between two trajectory knots (spacing ratio 0.05 ** (1/399) < 1.01), so the
    # onset is within one knot of the constructed threshold.
    assert 0.45 < result.onset["train_loss"] <= 0.5 * 1.01 and result.onset["sign"] == 1.0
    # Epochs are interpolated too: x = 2 * (0.05)^(step/399), step = epoch * 10.
    expected_step = 399 * np.log(result.onset["train_loss"] / 2.0) / np.log(0.05)
    assert result.onset["epoch_mtl"] == pytest.approx(expected_step / 10.0, rel=1e-3)
    # 8 pairs: the exact sign-flip test reaches its smallest p-value 2 / 2^8 for both questions.
    assert result.test.min_p == pytest.approx(2 / 256)
    assert result.test.p_persistent == pytest.approx(2 / 256) and result.test.p_any == pytest.approx(2 / 256)


def test_no_onset_without_a_gap_and_negative_sign_for_positive_transfer():
    null = generalization_gap(_study(offset_below=0.0, threshold=0.5), "t")
    assert null.onset is None and null.test.p_persistent > 0.05
    result = generalization_gap(_study(offset_below=-0.3, threshold=1.0), "t")
    assert result.onset["sign"] == -1.0 and 0.9 < result.onset["train_loss"] <= 1.0 * 1.01


def test_paired_statistics_match_scipy_and_a_brute_force_max_t():
    """Replaces the old check of the unpaired standard error: the gap is now tested on the per-seed
    differences, so t per level is scipy's one-sample t of the differences and each adjusted p is the
    share of the 2^n sign patterns whose max-|t| over all levels reaches that level's |t|."""
    result = generalization_gap(_study(offset_below=0.0, threshold=0.5, noise=0.1, seeds=6), "t", n_grid=30)
    curves = {}
    rows = _study(offset_below=0.0, threshold=0.5, noise=0.1, seeds=6)
    from mtlens.analysis.gap import interpolate_at, monotone_curve

    for (mode, seed), frame in rows.groupby(["mode", "seed"]):
        wide = frame.pivot_table(index="step", columns="quantity", values="value")
        x, g, _ = monotone_curve(wide["train/loss"].to_numpy(), wide["val/loss"].to_numpy(), wide.index.to_numpy(float))
        curves[(mode, seed)] = interpolate_at(result.levels, x, g)
    d = np.stack([curves[("mtl", s)] - curves[("stl", s)] for s in range(6)])
    assert np.allclose(result.estimate, d.mean(axis=0))
    assert np.allclose(result.test.t, stats.ttest_1samp(d, 0.0).statistic)
    maxima = [
        np.abs(stats.ttest_1samp(d * np.array(signs)[:, None], 0.0).statistic).max()
        for signs in itertools.product([1, -1], repeat=6)
    ]
    expected = [np.mean(np.array(maxima) >= abs(t) * (1 - 1e-9)) for t in result.test.t]
    assert np.allclose(result.test.adjusted_p, expected)
    # The band excludes zero exactly where the adjusted p-value is at most alpha.
    frame = result.at_alpha(0.2).gap
    assert ((frame["band_low"] > 0) | (frame["band_high"] < 0)).equals(frame["p_adjusted"] <= 0.2)


def test_unpaired_design_when_seeds_do_not_match_uses_welch_t():
    rows = _study(offset_below=0.5, threshold=0.5, seeds=6, paired=False)
    result = generalization_gap(rows, "t", n_grid=20)
    assert result.design == "unpaired" and result.test.n == (6, 6)
    # Exact over all C(12, 6) = 924 relabellings; the observed one and its mirror image give the smallest p.
    assert result.test.exact and result.test.min_p == pytest.approx(2 / 924)
    assert result.onset is not None and result.onset["sign"] == 1.0


def test_three_seeds_cannot_support_an_onset_however_large_the_gap():
    result = generalization_gap(_study(offset_below=5.0, threshold=1.5, seeds=3), "t")
    assert result.test.min_p == pytest.approx(0.25)
    assert result.onset is None
    assert (result.gap["band_low"] <= 0).all() and (result.gap["band_high"] >= 0).all()
    assert np.isinf(result.gap["min_detectable"]).all()


def test_single_seed_has_no_test_and_no_onset():
    result = generalization_gap(_study(offset_below=0.5, threshold=0.5, seeds=1), "t")
    assert result.design == "none" and result.onset is None and result.gap["band_low"].isna().all()


def test_monotonize_keeps_running_minima_and_interpolation_is_exact_on_knots():
    x, g, e = monotone_curve(np.array([2.0, 1.0, 1.5, 0.5, 0.7, 0.2]), np.arange(6.0), np.arange(6.0))
    assert list(x) == [2.0, 1.0, 0.5, 0.2] and list(g) == [0.0, 1.0, 3.0, 5.0]
    at = interpolate_at(np.array([1.0, 0.5, 3.0, np.sqrt(0.5)]), x, g)
    assert at[0] == 1.0 and at[1] == 3.0 and np.isnan(at[2])
    assert at[3] == pytest.approx(2.0)  # halfway between 1 and 0.5 in log space


def test_missing_mode_or_no_overlap_gives_none():
    only_stl = _study(0.0, 0.5)
    assert generalization_gap(only_stl[only_stl["mode"] == "stl"], "t") is None
    far = pd.concat(
        [
            _trajectory("s", "stl", np.geomspace(10, 5, 20), np.ones(20)),
            _trajectory("m", "mtl", np.geomspace(1, 0.5, 20), np.ones(20)),
        ]
    )
    assert generalization_gap(far, "t") is None


def test_a_gap_that_closes_again_is_a_gap_but_not_a_persistent_one():
    x = np.geomspace(2.0, 0.1, 400)
    rng = np.random.default_rng(1)
    bump = 0.5 * ((x < 1.0) & (x > 0.5))
    frames = []
    for seed in range(8):
        frames.append(_trajectory(f"s{seed}", "stl", x, x + 0.01 * rng.standard_normal(400), seed=seed))
        frames.append(_trajectory(f"m{seed}", "mtl", x, x + bump + 0.01 * rng.standard_normal(400), seed=seed))
    result = generalization_gap(pd.concat(frames), "t")
    assert result.test.p_any <= 0.05 and result.test.p_persistent > 0.05 and result.onset is None


def test_gap_family_shows_onsets_only_for_benjamini_hochberg_discoveries():
    real = generalization_gap(_study(offset_below=0.5, threshold=0.5), "t")
    nulls = [generalization_gap(_study(offset_below=0.0, threshold=0.5, noise=n), "t") for n in (0.01, 0.02, 0.05)]
    results, table = gap_family([real, *nulls], alpha=0.05)
    p = table["p_persistent"].to_numpy()
    assert np.allclose(table["p_persistent_adjusted"], stats.false_discovery_control(p))
    level = table["band_level"].iloc[0]
    assert all(r.alpha == level for r in results)
    assert (table["onset_train_loss"].notna() == (table["p_persistent_adjusted"] <= 0.05)).all()
    assert table["onset_train_loss"].notna().iloc[0]
