"""The generalization gap on synthetic trajectories with a known answer."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from gap_curves import ar1, ar1_study, unpaired_runs
from mtlens.analysis.gap import (
    GapResult,
    bound_of_gaps,
    fixed_sequence_p,
    gap_family,
    gap_from_checkpoints,
    generalization_gap,
    interpolate_at,
    monotone_curve,
    unit_gap_means,
)
from mtlens.analysis.inference import (
    N_REFERENCE,
    paired_band_test,
    paired_max_t,
    scalar_test,
    unpaired_band_test,
    unpaired_max_t,
)
from unpaired_reference import unpaired_p


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
    # 8 pairs: the band's test ("a gap exists") reaches its smallest p-value, the sign flips' 2 / 2^8;
    # persistence is the end level's one-level paired test, not bounded by 2 / 2^8 (far under it here).
    assert result.test.min_p == pytest.approx(2 / 256) and result.test.p_any == pytest.approx(2 / 256)
    assert result.p_persistent < 1e-4 and result.min_p_persistent == pytest.approx(1 / (1 + N_REFERENCE))


def test_no_onset_without_a_gap_and_negative_sign_for_positive_transfer():
    null = generalization_gap(_study(offset_below=0.0, threshold=0.5), "t")
    assert null.onset is None and null.p_persistent > 0.05
    result = generalization_gap(_study(offset_below=-0.3, threshold=1.0), "t")
    assert result.onset["sign"] == -1.0 and 0.9 < result.onset["train_loss"] <= 1.0 * 1.01


def _hall_of(d: np.ndarray) -> np.ndarray:
    """Hall's T_H per column from its formula, with scipy's mean, sd and (biased) skewness."""
    n = len(d)
    s, g = d.mean(axis=0) / d.std(axis=0, ddof=1), stats.skew(d, axis=0) * ((n - 1) / n) ** 1.5
    return np.sqrt(n) * (s + g * s**2 / 3 + g**2 * s**3 / 27 + g / (6 * n))


def test_paired_statistics_match_scipy_and_a_brute_force_max_t():
    """Replaces the old check of the unpaired standard error: the gap is now tested on the per-seed
    differences, so t per level is scipy's one-sample t of the differences, and each adjusted p of the band
    is the larger of the share of the 2^n sign patterns whose max-|T_H| over all levels reaches that level's
    |T_H| (Hall's statistic from its formula) and the least-favourable reference's tail."""
    result = generalization_gap(_study(offset_below=0.0, threshold=0.5, noise=0.1, seeds=6), "t", n_grid=30)
    curves = {}
    rows = _study(offset_below=0.0, threshold=0.5, noise=0.1, seeds=6)
    for (mode, seed), frame in rows.groupby(["mode", "seed"]):
        wide = frame.pivot_table(index="step", columns="quantity", values="value")
        x, g, _ = monotone_curve(wide["train/loss"].to_numpy(), wide["val/loss"].to_numpy(), wide.index.to_numpy(float))
        curves[(mode, seed)] = interpolate_at(result.levels, x, g)
    d = np.stack([curves[("mtl", s)] - curves[("stl", s)] for s in range(6)])
    assert np.allclose(result.estimate, d.mean(axis=0))
    assert np.allclose(result.test.t, stats.ttest_1samp(d, 0.0).statistic)
    maxima = np.array(
        [np.abs(_hall_of(d * np.array(signs)[:, None])).max() for signs in itertools.product([1, -1], repeat=6)]
    )
    hall = _hall_of(d)
    assert np.allclose(result.test.level_statistic, hall)
    flips = np.array([np.mean(maxima >= abs(h) * (1 - 1e-9)) for h in hall])
    reference = result.test.curve_reference
    simulated = np.array([(1 + np.sum(reference >= abs(h) * (1 - 1e-9))) / (1 + len(reference)) for h in hall])
    assert np.allclose(result.test.adjusted_p, np.maximum(flips, simulated))
    assert (result.test.adjusted_p > flips).any()  # the references count
    # The band excludes zero exactly where the adjusted p-value is at most alpha.
    frame = result.at_alpha(0.2).gap
    assert ((frame["band_low"] > 0) | (frame["band_high"] < 0)).equals(frame["p_adjusted"] <= 0.2)
    # its t column is the statistic the band tests (Hall's T_H), beyond c_alpha exactly where p_adjusted <= alpha
    assert np.allclose(frame["t"], hall)
    assert (frame["t"].abs() > result.test.critical_value(0.2)).equals(frame["p_adjusted"] <= 0.2)
    # Per level, the unadjusted p-value is the report's one-level paired test (inference.scalar_test: Hall's
    # skewness-corrected t) of that level's differences alone, at every level; p_persistent is the end's.
    alone = [scalar_test(paired_max_t(d[:, j]), 0.05)["p_value"] for j in range(d.shape[1])]
    assert np.allclose(result.level_p, alone, rtol=1e-10, atol=0) and result.p_persistent == pytest.approx(alone[-1])
    # the end's interval, effect size and detectable gap are the one-level test's (not the band's)
    summary = result.summary()
    end = scalar_test(paired_max_t(d[:, -1]), 0.05)
    low, high = end["low"], end["high"]
    assert summary["final_band_low"] == pytest.approx(low) and summary["final_band_high"] == pytest.approx(high)
    assert summary["skewness"] == pytest.approx(stats.skew(d[:, -1]))  # of the end's per-seed differences
    assert summary["min_p"] == pytest.approx(1 / (1 + N_REFERENCE)) and summary["p_persistent"] == pytest.approx(
        alone[-1]
    )


def test_unpaired_design_when_seeds_do_not_match_uses_the_two_sample_tests():
    rows = _study(offset_below=0.5, threshold=0.5, seeds=6, paired=False)
    result = generalization_gap(rows, "t", n_grid=20)
    assert result.design == "unpaired" and result.test.n == (6, 6)
    # Exact over all C(12, 6) = 924 relabellings; the observed one and its mirror image give the smallest p.
    assert result.test.exact and result.test.min_p == pytest.approx(2 / 924)
    assert result.onset is not None and result.onset["sign"] == 1.0
    # per level: the larger of Hall's two-sample test's p and the exact label-permutation p of Welch's t
    # (brute force over the 924 relabellings), from the end back to the first level that fails
    values = {}
    for (mode, _run), frame in rows.groupby(["mode", "run_id"]):
        wide = frame.pivot_table(index="step", columns="quantity", values="value")
        x, g, _ = monotone_curve(wide["train/loss"].to_numpy(), wide["val/loss"].to_numpy(), wide.index.to_numpy(float))
        values.setdefault(mode, []).append(interpolate_at(result.levels, x, g))
    mtl, stl = np.stack(values["mtl"]), np.stack(values["stl"])
    both = np.vstack([mtl, stl])
    for j in (-1, result.persistent_from(0.05)):
        welch = stats.ttest_ind(mtl[:, j], stl[:, j], equal_var=False)
        relabelled = [
            stats.ttest_ind(both[list(c), j], np.delete(both[:, j], list(c)), equal_var=False).statistic
            for c in itertools.combinations(range(12), 6)
        ]
        permutation = np.mean(np.abs(relabelled) >= abs(welch.statistic) * (1 - 1e-9))
        assert result.level_p[j] == pytest.approx(max(unpaired_p(mtl[:, j], stl[:, j])[0], permutation))
    assert result.p_persistent == result.level_p[-1] and result.min_p_persistent == pytest.approx(2 / 924)


def _unpaired_end_p(mtl: np.ndarray, stl: np.ndarray) -> float:
    """Brute force: ``max(p_Hall, p_perm)`` of one level (Hall's two-sample statistic, the label permutation
    of Welch's t), every relabelling enumerated."""
    both, n1 = np.r_[mtl, stl], len(mtl)
    welch = stats.ttest_ind(mtl, stl, equal_var=False).statistic
    p_welch = float(unpaired_p(mtl, stl)[0])
    chosen = np.array(list(itertools.combinations(range(len(both)), n1)))
    rest = np.array([np.setdiff1d(np.arange(len(both)), c) for c in chosen])
    relabelled = stats.ttest_ind(both[chosen], both[rest], axis=1, equal_var=False).statistic
    return max(p_welch, float(np.mean(np.abs(relabelled) >= abs(welch) * (1 - 1e-9))))


def _welch_excludes_zero(result: GapResult) -> bool:
    """Whether Welch's interval of the end alone excludes 0."""
    welch = scalar_test(result.final_test, result.alpha)
    return welch["low"] > 0 or welch["high"] < 0


def test_unpaired_final_interval_and_detectable_gap_follow_p_persistent():
    """Unpaired, ``p_persistent = max(p_Welch, p_perm)``; its interval is the set of shifts that test keeps,
    so it excludes 0 exactly where ``p_persistent <= alpha``, and each end is where the brute-force test of
    the shifted values turns from keeping to rejecting.  3 vs 3 runs (permutation floor 0.1): a large gap
    that Welch's interval alone excluded 0 for is unbounded, and no gap is detectable."""
    rng = np.random.default_rng(41)
    x = np.geomspace(2.0, 0.1, 20)
    agree = 0
    for n_mtl, n_stl, shift in [(3, 3, 0.3)] + [(4, 6, s) for s in (0.0, 0.02, 0.04, 0.08)] * 3:
        values = {
            mode: 0.3 + extra + x + 0.02 * (rng.standard_normal((n, 1)) + 0.3 * ar1(rng, n, 20))
            for mode, n, extra in (("mtl", n_mtl, shift), ("stl", n_stl, 0.0))
        }
        result = gap_from_checkpoints(unpaired_runs(values, x, 2.0), "t", stability=False)
        row, (mtl, stl) = result.summary(), result.end_values
        assert result.design == "unpaired" and row["p_persistent"] == pytest.approx(_unpaired_end_p(mtl, stl))
        excludes = row["final_band_low"] > 0 or row["final_band_high"] < 0
        assert excludes == (row["p_persistent"] <= 0.05)
        agree += excludes
        if n_mtl == 3:
            assert _welch_excludes_zero(result) and not excludes  # the old interval claimed what no test showed
            assert np.isinf(row["final_band_low"]) and np.isinf(row["min_detectable_final"])
            continue
        for end in (row["final_band_low"], row["final_band_high"]):
            inward = end + 1e-6 * np.sign(row["final_gap"] - end)
            outward = end - 1e-6 * np.sign(row["final_gap"] - end)
            assert _unpaired_end_p(mtl - inward, stl) > 0.05 >= _unpaired_end_p(mtl - outward, stl)
    assert 0 < agree < 12  # some data sets show the gap, some do not


def test_three_seeds_give_no_band_but_an_onset_by_the_t_test_when_the_gap_is_large():
    """The simultaneous band's p-values are at least its sign flips': 3 pairs give no p below 2 / 2^3 = 0.25,
    so it never excludes 0.  The onset's per-level t tests (df 2) are not bounded below: a gap 500x the seed
    noise is found, from where it was constructed."""
    result = generalization_gap(_study(offset_below=5.0, threshold=1.5, seeds=3), "t")
    assert result.test.min_p == pytest.approx(0.25) and result.test.p_any >= 0.25
    assert (result.gap["band_low"] <= 0).all() and (result.gap["band_high"] >= 0).all()
    assert np.isinf(result.gap["min_detectable"]).all()
    assert result.onset is not None and result.onset["sign"] == 1.0 and 1.4 < result.onset["train_loss"] <= 1.5 * 1.01


def test_single_seed_has_no_test_and_no_onset():
    result = generalization_gap(_study(offset_below=0.5, threshold=0.5, seeds=1), "t")
    assert result.design == "none" and result.onset is None and result.gap["band_low"].isna().all()


def test_monotonize_is_the_isotonic_fit_with_tied_checkpoints_pooled_and_interpolation_is_exact_on_knots():
    x, g, e = monotone_curve(np.array([2.0, 1.0, 1.5, 0.5, 0.7, 0.2]), np.arange(6.0), np.arange(6.0) / 2)
    # PAVA: (1, 1.5) and (0.5, 0.7) violate the order and are pooled to their means
    assert x == pytest.approx([2.0, 1.25, 0.6, 0.2]) and g == pytest.approx([0.0, 1.5, 3.5, 5.0])
    assert e == pytest.approx([0.0, 0.75, 1.75, 2.5])
    at = interpolate_at(np.array([1.25, 0.6, 3.0, np.sqrt(1.25 * 0.6)]), x, g)
    assert at[0] == 1.5 and at[1] == 3.5 and np.isnan(at[2])
    assert at[3] == pytest.approx(2.5)  # halfway between the two knots in log space
    # against scikit-learn's independent PAVA on noisy curves: the fitted loss at every checkpoint
    rng = np.random.default_rng(3)
    for _ in range(20):
        loss = np.geomspace(2, 0.1, 50) * np.exp(0.2 * rng.standard_normal(50))
        knots, values, _ = monotone_curve(loss, np.arange(50.0), np.arange(50.0))
        fitted = IsotonicRegression(increasing=False).fit_transform(np.arange(50.0), loss)
        assert np.all(np.diff(knots) < 0) and np.unique(fitted).size == len(knots)
        assert np.sort(np.unique(fitted))[::-1] == pytest.approx(knots)
        # each knot's measure is the mean checkpoint index of its block
        assert values == pytest.approx([np.arange(50.0)[fitted == k].mean() for k in np.sort(np.unique(fitted))[::-1]])


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
    assert result.test.p_any <= 0.05
    # the bump is no part of a persistent gap (the end level alone is noise: rejected with probability alpha)
    bump_levels = (result.levels < 1.0) & (result.levels > 0.5)
    assert not result.gap["persistent"][bump_levels].any() and result.p_persistent == result.level_p[-1]


def test_gap_family_selects_curves_by_benjamini_hochberg_and_tests_onsets_at_the_adjusted_level():
    real = generalization_gap(_study(offset_below=0.5, threshold=0.5), "t")
    nulls = [generalization_gap(_study(offset_below=0.0, threshold=0.5, noise=n), "t") for n in (0.01, 0.02, 0.05)]
    results, table = gap_family([real, *nulls], alpha=0.05)
    p = table["p_persistent"].to_numpy()
    assert np.allclose(table["p_persistent_adjusted"], stats.false_discovery_control(p))
    # the end level's own p-value, under the family's skewness bound (Berger & Boos: one bound for all curves)
    bound = bound_of_gaps([real, *nulls])
    assert np.allclose(p, [r.with_bound(bound).level_p[-1] for r in (real, *nulls)])
    assert np.allclose(p, [r.level_p[-1] for r in results]) and (table["skewness_bound"] == bound.value).all()
    selected = int((table["p_persistent_adjusted"] <= 0.05).sum())
    level = table["band_level"].iloc[0]
    assert selected >= 1 and level == pytest.approx(selected * 0.05 / 4)  # Benjamini & Bogomolov's R q / m
    assert all(r.alpha == level for r in results)
    assert (table["onset_train_loss"].notna() == (table["p_persistent_adjusted"] <= 0.05)).all()
    assert table["onset_train_loss"].notna().iloc[0]
    # within a selected curve the onset is the fixed sequence at that level
    onset = results[0].persistent_from(level)
    assert results[0].onset["train_loss"] == results[0].levels[onset]
    assert (results[0].gap["persistent"].to_numpy() == (np.arange(len(results[0].levels)) >= onset)).all()


def test_gap_family_leaves_curves_that_cannot_reach_alpha_out_of_the_bh_family():
    """Discrete-aware BH (Tarone 1990; inference.attainable): 3 paired seeds give no sign-flip p below
    2 / 2^3 = 0.25, so for "a gap exists" (p_any) those curves do not count in ``m`` and the 8-seed curve's
    adjusted p is as if it were alone.  The persistence p-value's floor is not bound to the seeds, so
    every curve stays in that family: its adjusted p is plain BH over all three."""
    real = generalization_gap(_study(offset_below=0.5, threshold=0.5), "t")
    few = [generalization_gap(_study(offset_below=0.0, threshold=0.5, seeds=3, noise=n), "t") for n in (0.01, 0.02)]
    assert all(r.test.min_p > 0.05 and r.min_p_persistent == pytest.approx(1 / (1 + N_REFERENCE)) for r in few)
    results, table = gap_family([real, *few], alpha=0.05)
    _, alone = gap_family([real], alpha=0.05)
    assert table["p_any_adjusted"].iloc[0] == pytest.approx(alone["p_any_adjusted"].iloc[0])
    assert (table["p_any_adjusted"].iloc[1:] == 1.0).all()
    p = np.array([r.p_persistent for r in results])
    assert np.allclose(table["p_persistent_adjusted"], stats.false_discovery_control(p))
    assert (table["onset_train_loss"].notna() == (table["p_persistent_adjusted"] <= 0.05)).all()


def _reference_onset(d: np.ndarray, alpha: float) -> int | None:
    """An independently written fixed-sequence test on the true per-seed difference curves ``d`` (n, L):
    the report's one-level paired test (``inference.scalar_test``) of each level's differences on their own,
    tested from the last level back until the first failure or sign change."""
    observed = d.mean(axis=0)
    p = np.array([scalar_test(paired_max_t(d[:, j]), alpha)["p_value"] for j in range(d.shape[1])])
    onset = None
    for j in range(d.shape[1] - 1, -1, -1):
        if p[j] > alpha or np.sign(observed[j]) != np.sign(observed[-1]):
            break
        onset = j
    return onset


def test_fixed_sequence_p_values_match_the_stepwise_procedure():
    rng = np.random.default_rng(5)
    for _ in range(200):
        p, estimate = rng.uniform(0, 0.2, 12), rng.choice([-1.0, 1.0], 12, p=[0.1, 0.9]) * rng.uniform(1, 2, 12)
        adjusted = fixed_sequence_p(p, estimate)
        for alpha in (0.01, 0.05, 0.1):
            expected = set()
            for j in range(11, -1, -1):
                if p[j] > alpha or np.sign(estimate[j]) != np.sign(estimate[-1]):
                    break
                expected.add(j)
            assert set(np.flatnonzero(adjusted <= alpha)) == expected
    assert (fixed_sequence_p(np.zeros(3), np.array([1.0, 1.0, 0.0])) == 1).all()  # no sign at the end: no claim


@pytest.mark.parametrize(("seeds", "d_z", "trials"), [(6, 1.5, 120), (8, 1.0, 120), (12, 0.8, 40)])
def test_onset_power_matches_an_independent_fixed_sequence_reference(seeds, d_z, trials):
    """AR(1) per-seed curves with a true onset early in training (checkpoint 3 of 30), effect ``d_z``
    in units of the per-level sd of the paired differences, recorded training loss slightly noisy (so
    the pipeline monotonizes, pools and interpolates): the pipeline finds the onset at least 0.9x as
    often as the reference fixed-sequence test on the true per-checkpoint differences (same data)."""
    rng = np.random.default_rng(seeds)
    found = reference = 0
    for _ in range(trials):
        wide, d = ar1_study(rng, seeds, d_z * 0.05 * np.sqrt(2), 3, loss_noise=(0.01, 0.01))
        result = gap_from_checkpoints(wide, "t", stability=False)
        found += result.onset is not None
        reference += _reference_onset(d, 0.05) is not None
    assert 0.2 < reference / trials < 0.95  # the setting discriminates: neither blind nor saturated
    assert found >= 0.9 * reference


def test_onset_and_gap_exists_keep_their_level_when_mtl_training_loss_is_noisier():
    """No gap; MTL's recorded training loss is 8x noisier than STL's (relative sd 0.08 vs 0.01): running
    minima would pick MTL checkpoints whose loss was low by chance (biasing G at equal loss upward);
    the isotonic fit keeps both tests at their level (400 data sets, 8 pairs, 30 checkpoints)."""
    rng = np.random.default_rng(11)
    trials, onsets, exists = 400, 0, 0
    for _ in range(trials):
        wide, _ = ar1_study(rng, 8, 0.0, 0, loss_noise=(0.01, 0.08))
        result = gap_from_checkpoints(wide, "t", stability=False)
        onsets += result.onset is not None
        exists += result.test.p_any <= 0.05
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)  # level + 2 simulation standard errors
    assert onsets / trials <= bound and exists / trials <= bound


def _band_rates(rng: np.random.Generator, trials: int, seeds: int, shift: float, d_z: float) -> tuple[float, float]:
    """Share of data sets in which the sign-flip max-|t| test and the band's test find "a gap at some level" at
    5%: per-seed AR(1) difference curves over 30 levels (sd 0.05 each side), a mean-zero per-seed shift
    ``shift · sd · (Exp(1) − 1)`` common to every level (``sd`` the seeds' sd of MTL's measure in ar1_study,
    calibration.skewed_shifts' rule) and ``d_z`` sds of the differences from level 3 on."""
    flips = band = 0
    for _ in range(trials):
        d = 0.05 * (ar1(rng, seeds, 30) - ar1(rng, seeds, 30)) + d_z * 0.05 * np.sqrt(2) * (np.arange(30) >= 3)
        d += shift * np.hypot(0.1, 0.05) * (rng.exponential(size=(seeds, 1)) - 1)
        flips += paired_max_t(d).p_any <= 0.05
        band += paired_band_test(d, draws=199).p_any <= 0.05
    return flips / trials, band / trials


def test_gap_exists_keeps_its_level_under_skewed_shifts_common_to_every_level():
    """No gap, 8 seeds, skewed mean-zero per-seed shifts common to all 30 levels (the skewed null of mtlens
    calibrate): the sign flips of max-|t| are liberal there (their null is symmetry), the band's test (Hall's
    T_H against the larger of the sign flips and least-favourable simulated curves) keeps 5% + 2 SE."""
    trials = 800
    flips, band = _band_rates(np.random.default_rng(5), trials, 8, 1.0, 0.0)
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)
    assert flips > bound  # the null discriminates: the old test fails it
    assert band <= bound


def test_gap_exists_keeps_most_of_the_sign_flips_power():
    """A gap of d_z 1 from level 3 of 30, 8 seeds, normal differences: the band's test finds it at least 0.75x
    as often as the sign-flip max-|t| test (docs/statistics.md §3)."""
    flips, band = _band_rates(np.random.default_rng(6), 200, 8, 0.0, 1.0)
    assert 0.5 < flips < 0.95 and band >= 0.75 * flips


def _unpaired_band_rates(
    rng: np.random.Generator, trials: int, sizes: tuple[int, int], ratio: float, gap: float, levels: str = "ar1"
):
    """Share of data sets in which the label permutation of max |Welch t| and the unpaired band's test find
    "a gap at some level" at 5%: runs ``0.05 r (z + 0.5 e)`` over 30 levels (seed effect ``z`` and AR(1) noise
    ``e``, or with ``levels="iid"`` no seed effect and independent noise per level; ``r = ratio`` for the MTL
    runs, 1 for STL) and ``gap`` from level 3 on (benchmarks/gap_band_size.py)."""

    def runs(n: int, r: float) -> np.ndarray:
        if levels == "iid":
            return 0.05 * r * 0.5 * rng.standard_normal((n, 30))
        return 0.05 * r * (rng.standard_normal((n, 1)) + 0.5 * ar1(rng, n, 30))

    permutation = band = 0
    for _ in range(trials):
        mtl, stl = (runs(n, r) for n, r in zip(sizes, (ratio, 1)))
        mtl += gap * (np.arange(30) >= 3)
        permutation += unpaired_max_t(mtl, stl).p_any <= 0.05
        band += unpaired_band_test(mtl, stl, draws=499).p_any <= 0.05
    return permutation / trials, band / trials


def test_unpaired_gap_exists_keeps_its_level_when_the_groups_differ_in_spread():
    """No gap, 3 MTL runs with 3x the spread of 9 STL runs, 3 with 5x the spread of 12 at independent levels and
    3 with 10x the spread of 30: the label permutation is liberal (it tests exchangeable runs; 24–34% in
    benchmarks/gap_band_size.py), the band's test (Bonferroni's bound of Hsu's t) keeps 5% + 2 SE; and it is not
    blind: with equal spreads at 6 vs 6 it finds a gap of 3.6 run sds at least 70% of the time (84.5% measured;
    the permutation's 1.8-sd gap power of 78% is 15% for it, the price of holding the level)."""
    trials = 400
    permutation, band = _unpaired_band_rates(np.random.default_rng(8), trials, (3, 9), 3.0, 0.0)
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)
    assert permutation > 2 * bound and band <= bound
    # levels that do not move together, 3 runs with 5x the spread of 12: a Gaussian copula of the dominant
    # group's own covariance (rank 2) gave 15%
    permutation, band = _unpaired_band_rates(np.random.default_rng(10), trials, (3, 12), 5.0, 0.0, "iid")
    assert permutation > 2 * bound and band <= bound
    # the same correlation in both groups, 3 runs with 10x the spread of 30: a Gaussian copula of the pooled
    # correlation gave 11.5% (with 2 df per level the separate denominators make the maximum heavier)
    permutation, band = _unpaired_band_rates(np.random.default_rng(12), trials, (3, 30), 10.0, 0.0)
    assert permutation > 2 * bound and band <= bound
    permutation, band = _unpaired_band_rates(np.random.default_rng(9), 200, (6, 6), 1.0, 0.2)
    assert permutation > 0.95 and band >= 0.7


def test_unpaired_onsets_keep_their_level_with_3_against_9_runs():
    """No gap, seeds that do not match (unpaired), 3 "MTL" runs against 9 STL runs of equal spread: per level
    the larger of Welch's and the label permutation's p-value keeps the false onsets at the level (200 data
    sets; on real runs Welch's t alone gave 8.5% here, benchmarks/gap_heldout.py)."""
    rng = np.random.default_rng(31)
    x = np.geomspace(2.0, 0.1, 30)
    trials, onsets = 200, 0
    for _ in range(trials):
        values = {
            mode: 0.3 + x + 0.05 * (rng.standard_normal((n, 1)) + 0.5 * ar1(rng, n, 30))
            for mode, n in (("mtl", 3), ("stl", 9))
        }
        result = gap_from_checkpoints(unpaired_runs(values, x, 3.0), "t", stability=False)
        assert result.design == "unpaired" and result.test.n == (3, 9)
        onsets += result.onset is not None
    assert onsets / trials <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)


def test_whether_an_onset_is_found_does_not_depend_on_the_grid():
    """Runs with 400 checkpoints; n_grid 50 ... 1000 (capped at the checkpoints): the persistence verdict
    is made at the end level, which every grid shares, so P(onset) is the same on every grid and no
    data set changes its verdict."""
    rng = np.random.default_rng(2)
    verdicts = []
    for _ in range(25):
        wide, _ = ar1_study(rng, 8, 0.045, 40, k=400, loss_noise=(0.01, 0.01))
        row = []
        for n_grid in (50, 100, 200, 400, 1000):
            result = gap_from_checkpoints(wide, "t", n_grid=n_grid, stability=False)
            assert len(result.levels) == min(n_grid, 400) or len(result.levels) < 400
            row.append(result.onset is not None)
        verdicts.append(row)
    share = np.mean(verdicts, axis=0)
    assert 0.1 < share[0] < 0.9 and share.max() - share.min() <= 0.05
    assert all(len(set(row)) == 1 for row in verdicts)


def test_the_family_bound_and_the_persistence_verdicts_do_not_depend_on_the_grid():
    """Families of 6 curves (one with a gap) with 400 checkpoints each: the family's skewness bound takes each
    curve's skewness at BOUND_LEVELS fixed levels of its range, so n_grid 50 and 1000 give the same bound and
    the same p_persistent for every curve (averaged over the grid's own levels, the bound moved between
    grids in 2 of 6 families, and with it the p-values)."""
    rng = np.random.default_rng(12)
    for _ in range(6):
        studies = [ar1_study(rng, 8, effect, 40, k=400, loss_noise=(0.01, 0.01))[0] for effect in (0.04, 0, 0, 0, 0, 0)]
        tables = [
            gap_family([gap_from_checkpoints(w, "t", n_grid=n_grid, stability=False) for w in studies])[1]
            for n_grid in (50, 1000)
        ]
        assert tables[0]["skewness_bound"].tolist() == tables[1]["skewness_bound"].tolist()
        assert np.allclose(tables[0]["p_persistent"], tables[1]["p_persistent"], rtol=1e-12, atol=0)


def test_grid_is_no_finer_than_the_checkpoints_and_the_run_that_ends_it_is_named():
    rng = np.random.default_rng(4)
    wide, _ = ar1_study(rng, 8, 0.1, 3, k=30)
    result = gap_from_checkpoints(wide, "t")
    assert len(result.levels) == 30  # n_grid 200, but no run has more than 30 checkpoints
    # one STL seed stops early, at loss 0.5: it sets the end, and the table says so
    slow = wide[~((wide["run_id"] == "stl3") & (wide["train/loss"] < 0.5))]
    result = gap_from_checkpoints(slow, "t")
    summary = result.summary()
    assert summary["end_limited_by"] == "stl seed 3" and summary["end_train_loss"] == pytest.approx(
        slow.loc[slow["run_id"] == "stl3", "train/loss"].min()
    )
    assert len(result.levels) <= 30 and summary["n_levels"] == len(result.levels)
    # leave-one-seed-out: one p_persistent per seed, each the paired t test of the other 7 pairs
    assert len(result.loo_p_persistent) == 8 and ((result.loo_p_persistent > 0) & (result.loo_p_persistent < 1)).all()
    assert summary["loo_p_persistent_max"] == pytest.approx(result.loo_p_persistent.max())
    # leaving out the slow seed moves the end to the lowest loss the other runs reached
    without = gap_from_checkpoints(slow[slow["seed"] != 3], "t")
    assert result.loo_p_persistent[3] == pytest.approx(without.p_persistent)
    assert without.levels[-1] < result.levels[-1]


def test_gap_mean_is_not_tied_to_the_optimization_effect():
    """Every MTL unit has the same gap at equal training loss, h(x) = 0.2 log(2 / x) (growing as the loss
    falls), but MTL methods and seeds optimize at different speeds.  Averaged over each pair's own
    range, gap_mean tracks the speed (a slower run averages over an earlier stage); over the common
    grid per (setting, task) it does not: Pearson's test of gap_mean against the speed rejects at most
    6.5% of 200 simulated studies (3 methods x 6 seeds x 2 tasks each)."""
    rng = np.random.default_rng(8)
    steps = np.arange(40)
    common, own, studies = 0, 0, 200
    for _ in range(studies):
        records, speeds, own_means = [], [], []
        for task in ("a", "b"):
            for seed in range(6):
                stl_x = 2.0 * np.exp(-0.08 * steps)
                base = 0.1 * rng.standard_normal()
                stl_g = 0.3 + stl_x + base + 0.01 * rng.standard_normal(40)
                records.append(("stl", "", seed, task, stl_x, stl_g))
                for method in ("m1", "m2", "m3"):
                    speed = rng.uniform(0.5, 1.0)  # MTL's rate relative to STL's
                    x = 2.0 * np.exp(-0.08 * speed * steps)
                    g = 0.3 + x + base + 0.2 * np.log(2.0 / x) + 0.01 * rng.standard_normal(40)
                    records.append(("mtl", method, seed, task, x, g))
                    speeds.append(np.log(speed))
                    levels = np.geomspace(2.0, x.min(), 100)  # the pair's own range (the MTL run ends higher)
                    own_means.append(np.mean(interpolate_at(levels, x, g) - interpolate_at(levels, stl_x, stl_g)))
        columns = zip(*[(mode, method, seed, task, np.r_[x, g]) for mode, method, seed, task, x, g in records])
        mode, method, seed, task, value = (
            np.repeat(c, 80) if i < 4 else np.concatenate(c) for i, c in enumerate(columns)
        )
        rows = pd.DataFrame(
            {
                "setting": "s",
                "mode": mode,
                "method": method,
                "seed": seed,
                "task": task,
                "step": np.tile(steps, 2 * len(records)),
                "quantity": np.tile(np.repeat(["train/loss", "val/loss"], 40), len(records)),
                "value": value,
            }
        )
        units = unit_gap_means(rows)
        assert len(units) == 36
        order = [(t, s, m) for t in ("a", "b") for s in range(6) for m in ("m1", "m2", "m3")]
        gap_mean = units.set_index(["task", "seed", "method"]).loc[order, "gap_mean"].to_numpy()
        common += stats.pearsonr(speeds, gap_mean).pvalue <= 0.05
        own += stats.pearsonr(speeds, own_means).pvalue <= 0.05
    assert common / studies <= 0.065
    assert own / studies > 0.5  # the confound is real in these data


def test_the_family_control_keeps_the_share_of_curves_with_a_false_onset_claim_at_alpha():
    """Benjamini & Bogomolov over many curves: 6 curves per study, 2 with a true persistent gap from
    checkpoint 8 of 15 on (large, so that they are selected and their fixed sequence runs back towards the
    truth) and 4 without; a selected curve is a false discovery when it claims any level where there is no
    gap (a null curve's onset, or a true curve's onset before the gap opens).  Over 100 studies the mean
    share of false discoveries among the curves with an onset stays at most alpha (plus 2 simulation SE),
    while the true curves are found."""
    rng = np.random.default_rng(21)
    shares, found = [], 0
    for _ in range(100):
        results, opens = [], []
        for curve in range(6):
            gap = 0.3 if curve < 2 else 0.0
            wide, _ = ar1_study(rng, 8, gap, 8, k=15, loss_noise=(0.01, 0.01))
            results.append(gap_from_checkpoints(wide, "t", stability=False))
            # levels whose loss is above checkpoint 7's true loss carry no gap (interpolation starts there)
            opens.append(np.geomspace(2.0, 0.1, 15)[7] if gap else -np.inf)
        shown, _ = gap_family(results, alpha=0.05)
        claims = [(r.onset, start) for r, start in zip(shown, opens, strict=True) if r.onset is not None]
        false = sum(onset["train_loss"] > start for onset, start in claims)
        shares.append(false / max(len(claims), 1))
        found += sum(r.onset is not None for r in shown[:2])
    assert np.mean(shares) <= 0.05 + 2 * np.std(shares) / np.sqrt(len(shares))
    assert found / 200 > 0.8
