"""The generalization gap on synthetic trajectories with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.gap import generalization_gap, interpolate_at, monotone_curve


def _trajectory(run_id: str, mode: str, train_loss: np.ndarray, measure: np.ndarray, task: str = "t") -> pd.DataFrame:
    steps = np.arange(len(train_loss))
    base = {"run_id": run_id, "setting": "synthetic", "mode": mode, "method": "sum", "seed": 0, "task": task}
    frames = [pd.DataFrame({**base, "step": steps, "epoch": steps / 10.0, "quantity": q, "value": v})
              for q, v in (("train/loss", train_loss), ("val/loss", measure))]
    return pd.concat(frames, ignore_index=True)


def _study(offset_below: float, threshold: float, seeds: int = 4, noise: float = 0.01) -> pd.DataFrame:
    """STL: G = x + eps.  MTL: G = x + eps + offset_below * [x < threshold]; x from 2 down to 0.1."""
    rng = np.random.default_rng(0)
    x = np.geomspace(2.0, 0.1, 400)
    frames = []
    for seed in range(seeds):
        frames.append(_trajectory(f"stl{seed}", "stl", x, x + noise * rng.standard_normal()))
        jump = offset_below * (x < threshold)
        frames.append(_trajectory(f"mtl{seed}", "mtl", x, x + jump + noise * rng.standard_normal()))
    return pd.concat(frames, ignore_index=True)


def test_gap_has_the_known_value_and_opens_where_constructed():
    result = generalization_gap(_study(offset_below=0.5, threshold=0.5), "t")
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


def test_no_onset_without_a_gap_and_negative_sign_for_positive_transfer():
    assert generalization_gap(_study(offset_below=0.0, threshold=0.5), "t").onset is None
    result = generalization_gap(_study(offset_below=-0.3, threshold=1.0), "t")
    assert result.onset["sign"] == -1.0 and 0.9 < result.onset["train_loss"] <= 1.0 * 1.01


def test_noise_is_the_standard_error_of_the_difference():
    result = generalization_gap(_study(offset_below=0.0, threshold=0.5, noise=0.1), "t")
    curves = result.curves.set_index(["mode", "train_loss"])
    level = result.gap["train_loss"].iloc[50]
    s_m, s_s = curves.loc[("mtl", level), "std"], curves.loc[("stl", level), "std"]
    assert result.gap["noise"].iloc[50] == pytest.approx(np.sqrt(s_m**2 / 4 + s_s**2 / 4))
    assert not result.gap["exceeds"].any()


def test_single_seed_has_no_noise_and_no_onset():
    result = generalization_gap(_study(offset_below=0.5, threshold=0.5, seeds=1), "t")
    assert result.onset is None and result.gap["noise"].isna().all()


def test_monotonize_keeps_running_minima_and_interpolation_is_exact_on_knots():
    x, g, e = monotone_curve(np.array([2.0, 1.0, 1.5, 0.5, 0.7, 0.2]), np.arange(6.0), np.arange(6.0))
    assert list(x) == [2.0, 1.0, 0.5, 0.2] and list(g) == [0.0, 1.0, 3.0, 5.0]
    at = interpolate_at(np.array([1.0, 0.5, 3.0, np.sqrt(0.5)]), x, g)
    assert at[0] == 1.0 and at[1] == 3.0 and np.isnan(at[2])
    assert at[3] == pytest.approx(2.0)  # halfway between 1 and 0.5 in log space


def test_missing_mode_or_no_overlap_gives_none():
    only_stl = _study(0.0, 0.5)
    assert generalization_gap(only_stl[only_stl["mode"] == "stl"], "t") is None
    far = pd.concat([_trajectory("s", "stl", np.geomspace(10, 5, 20), np.ones(20)),
                     _trajectory("m", "mtl", np.geomspace(1, 0.5, 20), np.ones(20))])
    assert generalization_gap(far, "t") is None


def test_a_one_level_blip_is_not_an_onset_but_a_sustained_gap_is():
    from mtlens.analysis.gap import first_sustained

    assert first_sustained(np.array([0, 1, 0, 0, -1, -1, -1, 1, 1, 1]), 3) == 4
    assert first_sustained(np.array([0, 1, -1, 1, -1, 1]), 2) is None
    assert first_sustained(np.array([1, 1]), 2) == 0
