"""Seed planning (issue 23.5): the families the report makes, the seeds they need, the effects they detect,
checked against simulation, against a hand computation from a stored study, and through the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlens.analysis.inference import BOUND_MISS, N_REFERENCE, detectable_effect, hall_p_value, hall_statistic
from mtlens.analysis.planning import (
    RATIO,
    detectable_correlation,
    detectable_every_row,
    detectable_table,
    difference_spread,
    family_plan,
    fewest_permuted_seeds,
    fewest_sign_flip_seeds,
    seeds_needed,
    spread_table,
)
from mtlens.analysis.transfer import transfer_tests
from mtlens.cli import main
from mtlens.render.tables import number
from mtlens.report.planning import family_sizes, seed_planning_section
from mtlens.report.study_plan import effect_sentences, planned_families, planned_rows, stored_spread
from mtlens.report.study_report import ReportData, report_data, report_families, selected_runs
from report_stores import INFO, planted_store

TASK_INFO = {("planted", task): INFO for task in ("a", "b")}


def test_floors_of_the_permutation_tests():
    assert fewest_sign_flip_seeds(0.05) == 6  # 2/2^6 = 0.031
    assert fewest_sign_flip_seeds(0.05 / 4) == 8  # the demo's 4 gap curves: 2/2^7 = 0.0156 > 0.0125
    assert fewest_permuted_seeds(0.05) == 4  # 1/4! = 0.042; 1/3! = 0.17
    assert 2 / 2 ** fewest_sign_flip_seeds(0.001) <= 0.001 < 2 / 2 ** (fewest_sign_flip_seeds(0.001) - 1)


def test_the_planned_effect_is_found_with_the_planned_power():
    """6 comparisons at FDR 0.05 with 8 seeds: a lone effect of d_z_lone is found at level 0.05/6 in 80 ± 3%,
    and an effect in every row of size d_z_all is found by BH over the 6 in 80 ± 3% per row."""
    plan = family_plan(pd.DataFrame({"family": ["t"], "n_seeds": [8], "comparisons": [6], "min_p": [0.0]})).iloc[0]
    assert plan["lone_level"] == pytest.approx(0.05 / 6) and bool(plan["can_reach"])
    rng = np.random.default_rng(0)
    d = rng.normal(plan["d_z_lone"], 1.0, (20_000, 8))
    # the report's paired test (Hall's statistic, least-favourable reference: inference.pointwise_p)
    mean, sd = d.mean(axis=1), d.std(axis=1, ddof=1)
    p = hall_p_value(hall_statistic(mean, sd, stats.skew(d, axis=1) * (7 / 8) ** 1.5, 8), 8)
    power = np.mean(p <= 0.05 / 6)
    assert 0.77 <= power <= 0.83
    every = rng.normal(plan["d_z_all"], 1.0, (4_000 * 6, 8))
    mean, sd = every.mean(axis=1), every.std(axis=1, ddof=1)
    p = hall_p_value(hall_statistic(mean, sd, stats.skew(every, axis=1) * (7 / 8) ** 1.5, 8), 8).reshape(4_000, 6)
    rejected = stats.false_discovery_control(p, axis=1) <= 0.05
    assert 0.77 <= rejected.mean() <= 0.83  # every row has the effect: BH rejects about at level alpha
    assert plan["d_z_all"] < plan["d_z_lone"]


def test_a_family_that_cannot_reach_its_level_detects_nothing():
    plan = family_plan(pd.DataFrame({"family": ["gap"], "n_seeds": [6], "comparisons": [4], "min_p": [2 / 2**6]}))
    assert not plan["can_reach"].iloc[0] and math.isinf(plan["d_z_lone"].iloc[0])
    # 0.031 <= 0.05: with every row's effect BH can reject, once at least 2 of the 4 rows are rejected
    assert detectable_effect(6, 0.05) < plan["d_z_all"].iloc[0] < np.inf


def test_seeds_needed_is_the_first_number_of_seeds_that_suffices():
    n = seeds_needed(1.0, 0.05 / 6)
    assert n is not None and detectable_effect(n, 0.05 / 6) <= 1.0 < detectable_effect(n - 1, 0.05 / 6)
    assert seeds_needed(1e-3, 0.05, most=50) is None
    assert seeds_needed(0.0, 0.05) is None


def test_planned_families_are_the_reports_own():
    """2 tasks x 3 methods: 6 transfer rows and 6 optimization rows, 12 gap curves (2 measures), each tested for
    a persistent gap (the end level's t test: any verdict from 2 seeds) and for a gap somewhere (the band's
    sign-flip max-|t| test, whose floor 2/2^n reaches 0.05/12 only from 9 seeds): the synthetic study's report
    tables, counted at each number of seeds."""
    plan = planned_families("planted", TASK_INFO, ["sum", "pcgrad", "cagrad"], [6, 8, 12])
    by = plan.set_index(["family", "n_seeds"])
    assert by.loc[("transfer", 8), "comparisons"] == 6 and by.loc[("optimization", 8), "comparisons"] == 6
    assert by.loc[("gap", 8), "comparisons"] == 12 and by.loc[("gap band", 8), "comparisons"] == 12
    floor = 1 / (1 + N_REFERENCE) + BOUND_MISS  # the family-bound p-value's, the same at any number of seeds
    assert by.loc[("transfer", 6), "min_p"] == pytest.approx(floor) == by.loc[("transfer", 12), "min_p"]
    assert by.loc[("gap band", 6), "min_p"] == pytest.approx(2 / 2**6)
    fewest = plan.drop_duplicates("family").set_index("family")["fewest_seeds"]
    assert fewest["transfer"] == 2 and fewest["optimization"] == 2
    assert fewest["gap band"] == fewest_sign_flip_seeds(0.05 / 12) == 9
    assert fewest["gap"] == 2
    assert by.loc[("transfer", 8), "d_z_lone"] == pytest.approx(detectable_effect(8, 0.05 / 6))
    assert not by.loc[("gap band", 8), "can_reach"] and by.loc[("gap band", 12), "can_reach"]


def test_seeds_for_an_effect_are_never_fewer_than_any_verdict_needs():
    """``plan --effect`` without a spread: a huge lone effect (d_z 6) needs few seeds by the one-level test, but
    the gap band's sign flips reach 0.05 / 12 only from 9 seeds (2 / 2^8 = 0.0078 > 0.0042), so 8 would give
    0% power: the count is never below the family's ``fewest_seeds``, and the band's sentence says it is a
    lower bound."""
    plan = planned_families("planted", TASK_INFO, ["sum", "pcgrad", "cagrad"], [4, 6, 8])
    said = {sentence.split(":")[0]: sentence for sentence in effect_sentences(plan, 6.0, 0.05)}
    assert seeds_needed(6.0, 0.05 / 12) < 9
    assert said["gap band"].startswith("gap band: a lone effect of d_z = 6 needs at least 9 seeds (no verdict below 9")
    assert said["transfer"] == f"transfer: a lone effect of d_z = 6 needs {seeds_needed(6.0, 0.05 / 6)} seeds."


def test_family_sizes_of_a_stored_study_match_its_report(tmp_path: Path):
    store = planted_store(tmp_path / "store", seeds=range(4), methods=("sum", "pcgrad"))
    data = report_data(store, selected_runs(store), 0.05)
    sizes = family_sizes(report_families(data)).set_index("family")["comparisons"]
    gaps = len(data.gap.table)
    assert sizes.to_dict() == {"transfer": len(data.transfer), "gap": gaps, "gap band": gaps, "optimization": 4}
    planned = planned_families("planted", TASK_INFO, ["sum", "pcgrad"], [4])
    assert planned.set_index("family")["comparisons"].to_dict() == sizes.to_dict()


def test_probe_and_correlation_families_of_a_stored_study_match_its_report(tmp_path: Path):
    """With probes, the report adds a probe-difference family (tasks x methods x 4 factors) and a correlation
    family (4 factors x 2 targets + 2 conflicts x 2 targets): the plan of the same design and probes counts
    the same rows, and its correlation floor 1/G! gives the fewest seeds (1/5! > 0.05/12 >= 1/6!)."""
    store = planted_store(tmp_path / "store", seeds=range(5), methods=("sum", "pcgrad"), probes=True)
    data = report_data(store, selected_runs(store), 0.05)
    sizes = family_sizes(report_families(data)).set_index("family")
    assert sizes.loc["probe differences", "comparisons"] == 2 * 2 * 4 == len(data.probe_differences)
    assert sizes.loc["correlations", "comparisons"] == 12 and sizes.loc["correlations", "clusters"] == 5
    assert sizes.loc["correlations", "units"] == 2 * 2 * 5
    assert sizes.loc["correlations", "centres"] == 2 and sizes.loc["correlations", "strata"] == 1
    assert sizes.loc["correlations", "min_p"] == pytest.approx(1 / math.factorial(5))
    probes = ["coherence", "fisher", "sharpness_sam", "conflict"]
    planned = planned_families("planted", TASK_INFO, ["sum", "pcgrad"], [5, 8], probes=probes)
    at5 = planned[planned["n_seeds"] == 5].set_index("family")
    assert at5["comparisons"].to_dict() == sizes["comparisons"].to_dict()
    assert at5.loc["correlations", "min_p"] == pytest.approx(1 / math.factorial(5))
    assert at5.loc["correlations", "units"] == 20 and at5.loc["correlations", "clusters"] == 5
    assert planned.drop_duplicates("family").set_index("family").loc["correlations", "fewest_seeds"] == 6
    assert not at5.loc["correlations", "can_reach"] and math.isinf(at5.loc["correlations", "r_lone_units"])
    at8 = planned[planned["n_seeds"] == 8].set_index("family").loc["correlations"]
    assert at8["units"] == 32 and at8["r_lone_units"] == pytest.approx(detectable_correlation(32, 0.05 / 12, 0.8, 2))
    assert at8["r_lone_clusters"] == pytest.approx(detectable_correlation(8, 0.05 / 12))
    assert np.isnan(at8["d_z_lone"]) and np.isnan(at5.loc["transfer", "r_lone_units"])


def test_the_detectable_correlation_is_detected_with_its_power():
    """Pearson's test (scipy's exact t test of r) at level 0.05/12 on 32 independent normal pairs whose
    correlation is detectable_correlation(32, 0.05/12) rejects in 80 ± 3% of 4,000 data sets (Fisher's z is an
    approximation), and a correlation at the clusters' size (8) is larger."""
    r = detectable_correlation(32, 0.05 / 12)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4_000, 32))
    y = r * x + math.sqrt(1 - r**2) * rng.standard_normal((4_000, 32))
    p = stats.pearsonr(x, y, axis=1).pvalue
    assert 0.77 <= np.mean(p <= 0.05 / 12) <= 0.83
    assert r < detectable_correlation(8, 0.05 / 12) < 1 and math.isinf(detectable_correlation(3, 0.05))


def test_the_detectable_correlation_counts_the_centring_groups():
    """32 units in 8 groups whose means differ in both variables (the report centres within (setting, task)):
    the exact test of the correlation of the centred values (the partial correlation given the groups: t with
    n − k − 1 df) rejects at level 0.05/12 in 80 ± 3% of 4,000 data sets whose within-group correlation is
    detectable_correlation(32, 0.05/12, groups=8); the |r| that ignores the 7 degrees of freedom the centring
    takes is found less often."""
    n, k, level = 32, 8, 0.05 / 12
    rng = np.random.default_rng(5)
    group = np.repeat(np.arange(k), n // k)

    def power(r: float) -> float:
        x = rng.standard_normal((4_000, n))
        y = r * x + math.sqrt(1 - r**2) * rng.standard_normal((4_000, n))
        offsets = 3 * rng.standard_normal((4_000, k))
        x, y = x + offsets[:, group], y + offsets[:, group]
        centre = lambda v: v - np.stack([v[:, group == g].mean(axis=1) for g in range(k)], axis=1)[:, group]  # noqa: E731
        cx, cy = centre(x), centre(y)
        rho = (cx * cy).sum(axis=1) / np.sqrt((cx**2).sum(axis=1) * (cy**2).sum(axis=1))
        t = rho * np.sqrt((n - k - 1) / (1 - rho**2))
        return float(np.mean(2 * stats.t.sf(np.abs(t), n - k - 1) <= level))

    assert 0.77 <= power(detectable_correlation(n, level, groups=k)) <= 0.83
    assert power(detectable_correlation(n, level)) < 0.74
    assert detectable_correlation(n, level, groups=k) > detectable_correlation(n, level)
    assert math.isinf(detectable_correlation(10, level, groups=8))


def test_plan_from_a_store_equals_a_hand_computation(tmp_path: Path):
    """The sd of the per-seed differences of task a's test error at its selected checkpoint, computed here
    from the stored rows (the checkpoint of least validation error, earliest on ties), and what it detects."""
    store = planted_store(tmp_path / "store", seeds=range(6), methods=("sum",))
    data = report_data(store, selected_runs(store), 0.05)
    spread = stored_spread(data).set_index(["task", "quantity"])
    rows = store.trajectories(store.run_ids())
    values = {}
    for _, frame in rows[rows["task"] == "a"].groupby("run_id"):
        val = frame[frame["quantity"] == "val/error"].sort_values(["value", "step"])
        step = val["step"].iloc[0]
        test = frame[(frame["quantity"] == "test/error") & (frame["step"] == step)]["value"].iloc[-1]
        values[(frame["mode"].iloc[0], int(frame["seed"].iloc[0]))] = test
    d = np.array([values[("mtl", s)] - values[("stl", s)] for s in range(6)])
    row = spread.loc[("a", "test/error")]
    assert row["sd"] == pytest.approx(d.std(ddof=1), rel=1e-12) and row["n_seeds"] == 6 and row["source"] == "paired"
    table = detectable_table(spread.reset_index(), comparisons=2, seeds=[6, 12], effect=0.01).set_index(
        ["task", "quantity"]
    )
    assert table.loc[("a", "test/error"), "detectable_n12"] == pytest.approx(
        d.std(ddof=1) * detectable_effect(12, 0.05 / 2)
    )
    assert table.loc[("a", "test/error"), "seeds_for_effect"] == seeds_needed(0.01 / d.std(ddof=1), 0.05 / 2)
    effect = data.optimization[data.optimization["task"] == "b"]["log_ratio_final"].to_numpy()
    assert spread.loc[("b", RATIO), "sd"] == pytest.approx(effect.std(ddof=1))


def test_a_pilot_of_stl_seeds_uses_the_stl_spread(tmp_path: Path):
    sd, source = difference_spread(np.array([]), np.array([0.1, 0.2, 0.4]), paired=False)
    assert source == "STL spread" and sd == pytest.approx(math.sqrt(2) * np.std([0.1, 0.2, 0.4], ddof=1))
    store = planted_store(tmp_path / "store", seeds=range(5), methods=())
    data = report_data(store, selected_runs(store), 0.05)
    spread = stored_spread(data).set_index("task")
    stl = data.selected[data.selected["task"] == "a"]["test/error"].to_numpy()
    assert len(stl) == 5 and spread.loc["a", "method"] == "" and spread.loc["a", "source"] == "STL spread"
    assert spread.loc["a", "sd"] == pytest.approx(math.sqrt(2) * stl.std(ddof=1))


def test_plan_command_prints_the_plan_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["plan", "digits_pair", "--methods", "sum,pcgrad", "--seeds", "6", "12", "--sd", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "transfer: 4 comparisons" in out and "gap: 8 comparisons" in out and "any verdict needs 9 seeds" in out
    assert "error points" not in out and "detectable_n12" in out
    # the default probes: 2 tasks x 2 methods x 4 factors; 4 factors x 2 targets + 2 conflicts x 2 targets
    assert "probe differences: 16 comparisons" in out and "correlations: 12 comparisons" in out
    assert "r_lone_clusters" in out
    assert main(["plan", "digits_pair", "--seeds", "6", "--set", "probes=[]"]) == 0
    out = capsys.readouterr().out
    assert "probes none" in out and "correlations" not in out and "probe differences" not in out
    store = planted_store(tmp_path / "store", seeds=range(4), methods=("sum",))
    assert main(["plan", "planted", "--store", str(store.root), "--seeds", "8", "--effect", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "MTL methods sum" in out and "error points at 8 seeds" in out and "1.0 error points needs" in out
    before = sorted(tmp_path.rglob("*"))
    for argv, flag in (
        (["plan", "digits_pair", "--alpha", "2"], "--alpha"),
        (["plan", "digits_pair", "--sd", "0.01", "--store", str(store.root)], "--sd"),
        (["plan", "digits_pair", "--store", str(store.root)], "--store"),
        (["plan", "digits_pair", "--methods", "sum,nosuch"], "nosuch"),
        (["plan", "digits_pair", "--set", "probes=[fishr]"], "fishr"),
        (["plan", "planted", "--store", str(store.root), "--set", "probes=fisher"], "probes"),
        (["plan", "nosuch"], "nosuch"),
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and flag in err, (argv, err)
    assert sorted(tmp_path.rglob("*")) == before


def test_an_unpaired_comparison_is_planned_with_the_unpaired_tests_power(tmp_path: Path):
    """3 MTL runs on other seeds than 9 STL runs: the report tests them unpaired (Hall's two-sample test), so
    what "these runs detect with 80% power" is that test's ``min_detectable_lone``, not the paired ``d_z`` of
    9 seeds times the sd of a difference of independent runs (3–8× smaller: what 9 *paired* seeds would do)."""
    rng = np.random.default_rng(1)
    info = {("syn", "a"): {"selection_metric": "loss", "lower_is_better": {"loss": True}}}
    rows = [("stl", s) for s in range(9)] + [("mtl", 10 + s) for s in range(3)]
    selected = pd.DataFrame(
        [
            {"setting": "syn", "task": "a", "mode": mode, "method": "sum", "seed": seed}
            | {"test/loss": 1 + 0.1 * rng.standard_normal()}
            for mode, seed in rows
        ]
    )
    transfer = transfer_tests(selected, info).iloc[0]
    assert transfer["design"] == "unpaired" and transfer["lone_level"] == 0.05
    sizes = pd.DataFrame([{"family": "transfer", "comparisons": 1, "min_p": transfer["min_p"], "clusters": np.nan}])
    section = seed_planning_section(spread_table(selected, info), sizes, tmp_path, 0.05)
    row = pd.read_csv(tmp_path / "tables" / "seed_planning.csv").iloc[0]
    assert row["source"] == "unpaired" and (row["n_mtl"], row["n_seeds"]) == (3, 9)
    assert row["detectable_now"] == pytest.approx(transfer["min_detectable_lone"], rel=1e-9)
    assert row["detectable_now"] > 2 * row["sd"] * detectable_effect(9, 0.05)
    assert "With 3 MTL and 9 STL runs (unpaired), a lone difference in test/loss" in section.body
    assert "paired seeds." in section.body


@pytest.mark.parametrize("mtl_seeds", [range(6), range(10, 13)], ids=["paired", "unpaired"])
def test_a_metric_that_never_varies_is_said_so_and_the_report_finishes(tmp_path: Path, mtl_seeds):
    """Test error 0 in every run (an easy task): the section says the differences do not vary; it neither
    crashed (no seeds_for_half anywhere) nor, unpaired, looped forever on the two-sample power of groups
    without spread."""
    info = {("syn", "a"): {"selection_metric": "error", "lower_is_better": {"error": True}}}
    runs = [("stl", s) for s in range(6)] + [("mtl", s) for s in mtl_seeds]
    selected = pd.DataFrame(
        [{"setting": "syn", "task": "a", "mode": m, "method": "sum", "seed": s, "test/error": 0.0} for m, s in runs]
    )
    sizes = pd.DataFrame([{"family": "transfer", "comparisons": 1, "min_p": 0.000258, "clusters": np.nan}])
    section = seed_planning_section(spread_table(selected, info), sizes, tmp_path, 0.05)
    assert "syn, task a, MTL sum, test/error: the differences do not vary, so no detectable difference" in section.body
    assert "found with 80% power from" not in section.body  # no "0 error points"
    # differences equal up to float rounding (0.1 + x - x) are no spread either
    noise = selected.assign(**{"test/error": np.where(selected["mode"] == "mtl", 0.1 + 0.3 - 0.3, 0.1)})
    table = detectable_table(spread_table(noise, info), 1, 0.05, [6], effect=0.25)
    assert table["sd"].iloc[0] == 0 and table[["detectable_n6", "seeds_for_effect"]].isna().all(axis=None)


def test_the_planned_lone_level_counts_only_the_tested_rows(tmp_path: Path):
    """Tasks a and b have 6 paired seeds, task c one run per mode (not tested, not in BH's family): the
    section's detectable difference for task a is at 0.05 / 2, as the transfer table's lone_level and
    min_detectable_lone, not at 0.05 / 3."""
    rng = np.random.default_rng(2)
    info = {("syn", t): {"selection_metric": "loss", "lower_is_better": {"loss": True}} for t in "abc"}
    runs = [(t, m, s) for t in "ab" for m in ("stl", "mtl") for s in range(6)] + [("c", "stl", 0), ("c", "mtl", 0)]
    selected = pd.DataFrame(
        [
            {"setting": "syn", "task": t, "mode": m, "method": "sum", "seed": s, "test/loss": rng.normal(1, 0.1)}
            for t, m, s in runs
        ]
    )
    transfer = transfer_tests(selected, info).set_index("task")
    sizes = family_sizes({"transfer": transfer.reset_index()})
    assert sizes.set_index("family").loc["transfer", "comparisons"] == 2 == 0.05 / transfer.loc["a", "lone_level"]
    seed_planning_section(spread_table(selected, info), sizes, tmp_path, 0.05)
    row = pd.read_csv(tmp_path / "tables" / "seed_planning.csv").set_index("task").loc["a"]
    assert row["detectable_now"] == pytest.approx(row["sd"] * detectable_effect(6, 0.05 / 2), rel=1e-9)
    # the plan's fixed skewness bound 2 against the table's family bound: close, and far from 0.05 / 3
    assert row["detectable_now"] == pytest.approx(transfer.loc["a", "min_detectable_lone"], rel=0.02)
    assert row["sd"] * detectable_effect(6, 0.05 / 3) > 1.05 * row["detectable_now"]


def test_a_family_is_the_rows_bh_counts_so_a_shown_band_is_never_said_impossible(tmp_path: Path):
    """Method A has 8 seeds, method B 4 (added later): B's band curves (floor 2 / 2^4) cannot reach 0.05 and are
    not in BH's family, so the band family is A's 2 curves (floor 2 / 2^8 = 0.0078 <= 0.025), as in the gap
    table, where A's gap is shown; counted with B's curves and B's floor, the section said none could be."""
    info = {("syn", "a"): {"selection_metric": "error", "lower_is_better": {"error": True}}}
    rows = planned_rows("syn", info, ["A", "B"], 8, seed=3)
    rows = rows[~((rows["method"] == "B") & (rows["seed"] >= 4))]
    gap = (rows["method"] == "A") & rows["quantity"].isin(["val/loss", "val/error"]) & (rows["step"] > 0)
    data = ReportData(rows.assign(value=rows["value"] + 0.3 * gap), info, 0.05)
    assert (data.gap.table.set_index("method").loc["A", "p_any_adjusted"] <= 0.05).all()
    sizes = family_sizes(report_families(data), 0.05).set_index("family")
    assert (sizes.loc["gap band", "comparisons"], sizes.loc["gap band", "min_p"]) == (2, pytest.approx(2 / 2**8))
    section = seed_planning_section(stored_spread(data), sizes.reset_index(), tmp_path, 0.05)
    assert "none can be shown" not in section.body
    assert family_sizes(report_families(data)).set_index("family").loc["gap band", "comparisons"] == 4


def test_spreads_that_cannot_be_estimated_or_are_rounding_are_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """A one-seed pilot: the plan says the spread cannot be estimated (it printed "no difference at 8 seeds" and
    "needs more than 200 seeds"); MTL equal to STL up to rounding has no spread (relative to the values, not to
    their differences of 1e-17); a task of STL runs alone that do not vary has no MTL − STL differences."""
    store = planted_store(tmp_path / "store", seeds=[0], methods=("sum",))
    assert main(["plan", "planted", "--store", str(store.root), "--seeds", "8", "--effect", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "too few runs to estimate the seed spread" in out and "no difference at" not in out
    assert "more than 200 seeds" not in out
    rounded = [0.1, 0.1 + 0.2 - 0.2, 0.1, 0.1 + 0.2 - 0.2, 0.1, 0.1]
    assert difference_spread(np.array(rounded), np.full(6, 0.1), True) == (0.0, "paired")
    info = {("syn", "a"): {"selection_metric": "error", "lower_is_better": {"error": True}}}
    stl_only = pd.DataFrame(
        [
            {"setting": "syn", "task": "a", "mode": "stl", "method": "sum", "seed": s, "test/error": 0.0}
            for s in range(5)
        ]
    )
    sizes = pd.DataFrame([{"family": "transfer", "comparisons": 1, "min_p": 0.000258, "clusters": np.nan}])
    section = seed_planning_section(spread_table(stl_only, info), sizes, tmp_path, 0.05)
    assert "syn, task a, test/error: the STL runs do not vary" in section.body


def test_a_study_of_stl_runs_only_plans_one_comparison_per_task(tmp_path: Path):
    """Without MTL runs the report has no transfer family; its plan counts one comparison per task (what
    ``mtlens plan`` counts for one method), not a lone comparison at alpha."""
    info = {("syn", t): {"selection_metric": "error", "lower_is_better": {"error": True}} for t in ("a", "b")}
    rng = np.random.default_rng(3)
    stl_only = pd.DataFrame(
        [
            {"setting": "syn", "task": t, "mode": "stl", "method": "sum", "seed": s, "test/error": rng.uniform()}
            for t in ("a", "b")
            for s in range(6)
        ]
    )
    spread = spread_table(stl_only, info)
    seed_planning_section(spread, family_sizes({}), tmp_path, 0.05)
    table = pd.read_csv(tmp_path / "tables" / "seed_planning.csv").set_index("task")
    assert (table["comparisons"] == 2).all()
    sd = spread.set_index("task")["sd"]
    for task in ("a", "b"):
        assert table.loc[task, "detectable_now"] == pytest.approx(sd[task] * detectable_effect(6, 0.05 / 2))


def test_study_dry_run_prints_the_runs_and_the_plan_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    argv = ["study", "digits_pair", "--seeds", "3", "--methods", "sum,pcgrad", "--store", "runs", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "12 runs (3 seeds; methods sum, pcgrad), 12 to train" in out
    assert "transfer: 4 comparisons" in out and "n_seeds" in out
    assert sorted(tmp_path.rglob("*")) == before


def test_the_report_section_says_what_the_study_seeds_detect(tmp_path: Path):
    store = planted_store(tmp_path / "store", seeds=range(6), methods=("sum",))
    data = report_data(store, selected_runs(store), 0.05)
    section = seed_planning_section(stored_spread(data), family_sizes(report_families(data)), tmp_path, 0.05)
    table = pd.read_csv(tmp_path / "tables" / "seed_planning.csv")
    row = table[(table["task"] == "a") & (table["quantity"] == "test/error")].iloc[0]
    assert row["comparisons"] == 2 and row["n_seeds"] == 6
    assert row["detectable_now"] == pytest.approx(row["sd"] * detectable_effect(6, 0.05 / 2))
    assert row["detectable_n12"] == pytest.approx(row["sd"] * detectable_effect(12, 0.05 / 2))
    assert row["seeds_for_half"] == seeds_needed(detectable_effect(6, 0.05 / 2) / 2, 0.05 / 2)
    assert f"{number(100 * row['detectable_now'], 2)} error points" in section.body
    assert f"Half of any of these would need {row['seeds_for_half']} seeds" in section.body
    # Given the transfer table, a comparison it tests takes its min_detectable_lone (the answers' figure, under
    # the family's skewness bound); the optimization rows keep the plan's bound 2.
    seed_planning_section(
        stored_spread(data), family_sizes(report_families(data)), tmp_path, 0.05, transfer=data.transfer
    )
    tested = pd.read_csv(tmp_path / "tables" / "seed_planning.csv").set_index(["task", "quantity"])
    lone = data.transfer.set_index(["task", "metric"])["min_detectable_lone"]
    for task in ("a", "b"):
        assert tested.loc[(task, "test/error"), "detectable_now"] == pytest.approx(lone[(task, "test/error")])
    assert tested.loc[("a", RATIO), "detectable_now"] == pytest.approx(
        table.set_index(["task", "quantity"]).loc[("a", RATIO), "detectable_now"]
    )
    assert lone[("a", "test/error")] != pytest.approx(row["detectable_now"], rel=1e-4)  # the bounds do differ
    # The gap's families too: 2 tasks x 2 measures = 4 curves; the persistent gap's one-level test reaches
    # 0.05 / 4 at 6 seeds; the band's sign flips (floor 2 / 2^6 = 0.031) cannot, so it says none can be shown.
    d_lone, d_all = detectable_effect(6, 0.05 / 4), detectable_every_row(6, 0.05, 4)
    assert (
        f"The gap family (4 comparisons, Benjamini–Hochberg at FDR 0.05) at 6 seeds: a lone effect is found with "
        f"80% power from d_z = {number(d_lone, 3)} seed-sd of the per-seed differences, an effect in every "
        f"comparison from d_z = {number(d_all, 3)}." in section.body
    )
    assert (
        "The gap band family (4 comparisons, Benjamini–Hochberg at FDR 0.05) at 6 seeds: its smallest possible "
        f"p-value {number(2 / 2**6, 2)} is above {number(0.05 / 4, 2)}" in section.body
    )


def test_the_report_section_says_what_the_correlations_can_show(tmp_path: Path):
    """12 correlations over 2 tasks x 1 method: at 5 seeds the floor 1/5! is above 0.05/12 (nothing can pass);
    at 6 seeds the section gives the |r| a lone correlation needs, from 12 units centred within their 2 tasks
    to 6 clusters of one setting."""
    for n, expected in ((5, "so none can be significant"), (6, "a lone correlation is found with 80% power")):
        store = planted_store(tmp_path / f"store{n}", seeds=range(n), methods=("sum",), probes=True)
        data = report_data(store, selected_runs(store), 0.05)
        sizes = family_sizes(report_families(data))
        section = seed_planning_section(stored_spread(data), sizes, tmp_path / f"out{n}", 0.05)
        assert f"The 12 correlations permute whole seeds ({n} clusters of {2 * n} units)" in section.body
        assert expected in section.body
    low, high = detectable_correlation(12, 0.05 / 12, groups=2), detectable_correlation(6, 0.05 / 12)
    assert f"|r| = {number(low, 2)} (independent units) to {number(high, 2)}" in section.body


def test_dry_run_refuses_an_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["study", "digits_pair", "--experiment", "optimizers", "--store", str(tmp_path / "runs"), "--dry-run"]
    assert main(argv) == 2
    assert "--dry-run" in capsys.readouterr().err and not (tmp_path / "runs").exists()
