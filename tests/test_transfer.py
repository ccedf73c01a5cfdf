"""Transfer at the validation-selected checkpoint, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlens.analysis.inference import N_REFERENCE, family_skewness_bound, hall_critical, hall_p_value, skewness_of
from mtlens.analysis.transfer import delta_m, difference_test, family_bound, selected_checkpoints, transfer_table
from unpaired_reference import unpaired_p

INFO = {("s", "t"): {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True}}}


def _run(run_id: str, mode: str, seed: int, val_error: list[float], test_error: list[float]) -> pd.DataFrame:
    records = []
    for step, (v, t) in enumerate(zip(val_error, test_error)):
        for quantity, value in (("val/error", v), ("test/error", t), ("test/loss", 10 * t)):
            records.append(
                {
                    "run_id": run_id,
                    "setting": "s",
                    "mode": mode,
                    "method": "sum",
                    "seed": seed,
                    "task": "t",
                    "step": step,
                    "epoch": float(step),
                    "quantity": quantity,
                    "value": value,
                }
            )
    return pd.DataFrame(records)


def test_selection_uses_best_validation_step_and_reads_test_there():
    rows = _run("r", "stl", 0, [0.5, 0.2, 0.3, 0.2], [0.6, 0.25, 0.1, 0.05])
    selected = selected_checkpoints(rows, INFO)
    assert selected.loc[0, "step"] == 1  # the earliest of the tied best validation errors
    assert selected.loc[0, "test/error"] == 0.25 and selected.loc[0, "test/loss"] == 2.5


def test_transfer_table_matches_hand_computation():
    stl_tests, mtl_tests = [0.30, 0.32, 0.34], [0.20, 0.22, 0.25]
    rows = pd.concat(
        [_run(f"s{i}", "stl", i, [0.9, 0.1], [0.9, e]) for i, e in enumerate(stl_tests)]
        + [_run(f"m{i}", "mtl", i, [0.9, 0.1], [0.9, e]) for i, e in enumerate(mtl_tests)]
    )
    table = transfer_table(rows, INFO)
    row = table.iloc[0]
    assert row["stl_mean"] == pytest.approx(np.mean(stl_tests))
    assert row["mtl_std"] == pytest.approx(np.std(mtl_tests, ddof=1))
    assert row["delta"] == pytest.approx(np.mean(mtl_tests) - np.mean(stl_tests))
    # Lower error is better, so an MTL improvement is a positive relative transfer.
    assert row["relative_pct"] == pytest.approx(100 * (np.mean(stl_tests) - np.mean(mtl_tests)) / np.mean(stl_tests))
    # Seeds 0-2 ran in both modes: paired.  The paired test is Hall's skewness-corrected t with the
    # least-favourable reference (inference.hall_p_value), computed here from its formula with scipy's
    # skewness; its p-value is not bound to the 2/2^3 = 0.25 floor of 3 sign-flipped seeds.
    d = np.array(mtl_tests) - np.array(stl_tests)
    s, g = d.mean() / d.std(ddof=1), stats.skew(d) * (2 / 3) ** 1.5
    hall = np.sqrt(3) * (s + g * s**2 / 3 + g**2 * s**3 / 27 + g / 18)
    assert row["design"] == "paired" and row["df"] == 2
    # A table of one row is a family of one: its skewness bound (Berger & Boos) from that row alone.
    family = family_skewness_bound([skewness_of(d)], [3])
    assert row["skewness_bound"] == family.value == 2.0 and family.miss > 0
    assert row["p_value"] == pytest.approx(hall_p_value(np.array([hall]), 3, family)[0]) and row["p_value"] < 0.05
    for bound in (row["delta_low"], row["delta_high"]):  # the interval: the shifts the test just rejects
        shifted = d - bound
        s, g = shifted.mean() / shifted.std(ddof=1), stats.skew(shifted) * (2 / 3) ** 1.5
        hall_shifted = np.sqrt(3) * (s + g * s**2 / 3 + g**2 * s**3 / 27 + g / 18)
        assert abs(hall_shifted) == pytest.approx(hall_critical(3, 0.05, family))
    assert row["min_p"] == pytest.approx(1 / (1 + N_REFERENCE) + family.miss) and np.isfinite(row["min_detectable"])
    # Hedges' correction of d_z with nu = 2: J = Gamma(1) / (sqrt(1) Gamma(1/2)) = 1 / sqrt(pi)
    assert row["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1) / np.sqrt(np.pi))
    assert row["skewness"] == pytest.approx(stats.skew(d))
    assert row["verdict"] == "MTL better"
    assert delta_m(table)["delta_m_pct"].iloc[0] == pytest.approx(row["relative_pct"])


def _study(stl_tests: list[float], mtl_tests: list[float], mtl_seed_offset: int = 0) -> pd.DataFrame:
    return pd.concat(
        [_run(f"s{i}", "stl", i, [0.9, 0.1], [0.9, e]) for i, e in enumerate(stl_tests)]
        + [_run(f"m{i}", "mtl", i + mtl_seed_offset, [0.9, 0.1], [0.9, e]) for i, e in enumerate(mtl_tests)]
    )


def test_pairing_removes_the_shared_seed_effect_and_supports_a_verdict():
    """Seed effects larger than the MTL effect: unpaired, the effect drowns; paired, it is exact."""
    seed_effect = np.array([0.0, 0.2, 0.4, 0.1, 0.3, 0.5, 0.15])
    stl = 0.3 + seed_effect
    mtl = stl - 0.02 + 0.001 * np.arange(7)  # MTL better by about 0.02 on every seed
    paired = transfer_table(_study(list(stl), list(mtl)), INFO).iloc[0]
    d = mtl - stl
    s, g = d.mean() / d.std(ddof=1), stats.skew(d) * (6 / 7) ** 1.5
    hall = np.sqrt(7) * (s + g * s**2 / 3 + g**2 * s**3 / 27 + g / 42)
    family = family_skewness_bound([skewness_of(d)], [7])
    assert paired["design"] == "paired"
    assert paired["p_value"] == pytest.approx(hall_p_value(np.array([hall]), 7, family)[0])
    assert paired["verdict"] == "MTL better" and paired["delta_high"] < 0 < paired["relative_pct"]
    unpaired = transfer_table(_study(list(stl), list(mtl), mtl_seed_offset=100), INFO).iloc[0]
    assert unpaired["design"] == "unpaired" and unpaired["p_value"] > 0.5 and unpaired["verdict"] == "no evidence"
    # Hall's two-sample statistic against the least-favourable unpaired reference; df: Hsu's min(n_MTL, n_STL) - 1
    assert unpaired["p_value"] == pytest.approx(unpaired_p(mtl, stl)[0]) and unpaired["df"] == 6


def test_p_values_are_adjusted_over_the_table():
    info = {**INFO, ("s", "u"): INFO[("s", "t")]}
    rng = np.random.default_rng(0)
    frames = []
    for task, shift in (("t", -0.1), ("u", 0.0)):
        for seed in range(7):
            base = 0.3 + 0.05 * rng.standard_normal()
            for mode, value in (("stl", base), ("mtl", base + shift + 0.01 * rng.standard_normal())):
                run = _run(f"{mode}{task}{seed}", mode, seed, [0.9, 0.1], [0.9, value])
                frames.append(run.assign(task=task))
    table = transfer_table(pd.concat(frames), info)
    assert np.allclose(table["p_adjusted"], stats.false_discovery_control(table["p_value"]))
    assert list(table["verdict"]) == ["MTL better", "no evidence"]


def test_a_lone_effect_needs_the_difference_detectable_at_alpha_over_the_family_size():
    """``min_detectable_lone`` is what a lone effect among the table's ``m`` rows must reach after BH: the
    difference the row's own test (under the table's skewness bound) detects with 80% power at
    ``alpha / m`` (here m = 3 tasks), larger than its ``min_detectable`` at ``alpha``."""
    info = {("s", task): INFO[("s", "t")] for task in "tuv"}
    rng = np.random.default_rng(3)
    frames, values = [], {}
    for task in "tuv":
        stl, mtl = 0.3 + 0.05 * rng.standard_normal(8), 0.3 + 0.05 * rng.standard_normal(8)
        mtl = stl + 0.02 * rng.standard_normal(8)
        values[task] = (mtl, stl)
        for seed in range(8):
            for mode, value in (("stl", stl[seed]), ("mtl", mtl[seed])):
                frames.append(_run(f"{mode}{task}{seed}", mode, seed, [0.9, 0.1], [0.9, value]).assign(task=task))
    table = transfer_table(pd.concat(frames), info, alpha=0.1).set_index("task")
    bound = family_bound([(mtl, stl, True) for mtl, stl in values.values()])
    for task, (mtl, stl) in values.items():
        at_lone_level = difference_test(mtl, stl, True, 0.1 / 3, bound)["min_detectable"]
        assert table.loc[task, "min_detectable_lone"] == pytest.approx(at_lone_level)
        assert table.loc[task, "min_detectable_lone"] > table.loc[task, "min_detectable"]
        assert table.loc[task, "lone_level"] == pytest.approx(0.1 / 3)


def test_the_lone_level_counts_only_the_rows_in_the_bh_family():
    """A row that cannot be tested (one STL run: design ``none``) is not one of BH's ``m``, so a table of one
    tested row and one untested row has the lone level ``alpha``, not ``alpha / 2``."""
    info = {("s", task): INFO[("s", "t")] for task in "tu"}
    rng = np.random.default_rng(5)
    stl, mtl = 0.3 + 0.05 * rng.standard_normal(6), 0.3 + 0.05 * rng.standard_normal(6)
    frames = [
        _run(f"{mode}t{seed}", mode, seed, [0.9, 0.1], [0.9, value]).assign(task="t")
        for seed in range(6)
        for mode, value in (("stl", stl[seed]), ("mtl", mtl[seed]))
    ]
    frames.append(_run("stlu0", "stl", 0, [0.9, 0.1], [0.9, 0.3]).assign(task="u"))
    frames.append(_run("mtlu0", "mtl", 0, [0.9, 0.1], [0.9, 0.3]).assign(task="u"))
    table = transfer_table(pd.concat(frames), info).set_index("task")
    assert table.loc["u", "design"] == "none" and table.loc["t", "design"] == "paired"
    assert table.loc["t", "lone_level"] == 0.05
    assert table.loc["t", "min_detectable_lone"] == pytest.approx(table.loc["t", "min_detectable"])


def test_higher_is_better_metrics_flip_the_sign():
    info = {("s", "t"): {"selection_metric": "error", "lower_is_better": {"error": False}}}
    rows = pd.concat([_run("s0", "stl", 0, [0.1, 0.9], [0.1, 0.5]), _run("m0", "mtl", 0, [0.1, 0.9], [0.1, 0.6])])
    row = transfer_table(rows, info).iloc[0]
    assert row["relative_pct"] == pytest.approx(20.0) and np.isnan(row["p_value"]) and row["design"] == "none"
