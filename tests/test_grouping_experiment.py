"""The grouping experiment: its plan (which runs it trains), and the analysis and report section end to end
on a tiny three-task setting."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import altair
import jsonschema
import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.grouping import (
    BEST_CHOICE,
    affinity_table,
    best_grouping,
    grouping_results,
    pairwise_transfer,
    predictor_correlations,
    predictor_sources,
)
from mtlens.errors import ConfigError
from mtlens.experiments import experiment_plan, run_experiment
from mtlens.experiments.grouping import grouping_analysis
from mtlens.render.tables import confidence
from mtlens.settings import SETTINGS, Setting, load_setting, register_setting
from mtlens.settings.digit_attributes import TASK_NAMES
from mtlens.store import RunStore

VEGA_LITE = jsonschema.Draft7Validator(
    json.loads((Path(altair.__file__).parent / "vegalite" / "v6" / "schema" / "vega-lite-schema.json").read_text())
)

BASE = {"setting": "digit_attributes", "setting_options": {"n_train": 64, "n_labelled": 64, "n_val": 32, "n_test": 32}}


def test_plan_trains_every_task_alone_every_pair_every_subset_group_and_all_tasks_per_seed():
    plan = experiment_plan("grouping", BASE, [0, 1], budget=2, subset_size=4)
    manifest = plan.manifest
    subset = list(TASK_NAMES[:4])
    pairs = {"+".join(p) for p in combinations(TASK_NAMES, 2)}
    larger = {"+".join(g) for size in (3, 4) for g in combinations(subset, size)}
    for seed in (0, 1):
        runs = manifest[manifest["seed"] == seed]
        assert sorted(runs.loc[runs["role"] == "stl", "group"]) == sorted(TASK_NAMES)
        assert set(runs.loc[runs["role"] == "group", "group"]) == pairs | larger
        assert list(runs.loc[runs["role"] == "all", "group"]) == ["+".join(TASK_NAMES)]
        assert len(runs) == 8 + 28 + 5 + 1 == runs["run_id"].nunique()
    configs = {c.run_id: c for c in plan.configs}
    for row in manifest.itertuples():
        config = configs[row.run_id]
        assert "+".join(config.tasks) == row.group and config.seed == row.seed and config.method == "sum"
        assert list(config.probes) == (["tag", "conflict"] if row.role == "all" else [])
    assert set(manifest["budget"]) == {2} and set(manifest["subset"]) == {"+".join(subset)}
    # The same STL and pair runs for another budget: a second budget trains nothing new.
    again = experiment_plan("grouping", BASE, [0, 1], budget=3, subset_size=4)
    assert set(again.manifest["run_id"]) == set(manifest["run_id"])


@pytest.mark.parametrize(
    ("options", "message"),
    [({"subset": ["even", "nope"]}, "subset: need at least 2 distinct tasks"), ({"budget": 0}, "budget")],
)
def test_bad_options_fail_before_training(options, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        experiment_plan("grouping", BASE, [0], **options)


def test_one_seed_is_refused_before_training():
    """Every test of the grouping experiment pairs runs by seed: one seed could test nothing."""
    with pytest.raises(ConfigError, match=r"seeds: the grouping experiment needs at least 2 distinct seeds .*\[0\]"):
        experiment_plan("grouping", BASE, [0])


def _attributes(name: str, keep: tuple[str, ...]) -> None:
    @register_setting(name)
    def attributes() -> Setting:
        full = load_setting("digit_attributes", n_train=96, n_labelled=96, n_val=48, n_test=96)
        return Setting(
            name, tuple(full.task(t) for t in keep), {t: full.data[t] for t in keep}, full.encoder, full.feature_dim
        )


@pytest.fixture
def three_tasks(request):
    _attributes("three_attributes", ("even", "ge5", "noise"))
    request.addfinalizer(lambda: SETTINGS.unregister("three_attributes"))


@pytest.fixture
def four_tasks(request):
    _attributes("four_attributes", ("even", "ge5", "ink", "noise"))
    request.addfinalizer(lambda: SETTINGS.unregister("four_attributes"))


def test_each_predictors_grouping_of_every_task_is_trained_after_the_plan(
    tmp_path, four_tasks, run_configs_calls, capsys
):
    base = {"setting": "four_attributes", "epochs": 2, "batch_size": 48, "train_eval_size": 32}
    base["probe_sample_size"] = 32
    plan = experiment_plan("grouping", base, [0, 1], budget=2, subset_size=2)
    store = RunStore(tmp_path / "store")
    calls = run_configs_calls
    results = run_experiment(plan, store, progress=True)
    manifest = store.table(plan.table_name)
    chosen = manifest[manifest["role"] == "chosen"]
    # The chosen groupings' runs are trained like the plan's (its progress setting) and are in the results
    # (what `mtlens study` sums up and sets its exit status from).
    assert len(chosen) and [progress for _, progress in calls] == [True, True]
    assert calls[1][0] == chosen["run_id"].tolist() == results["run_id"].tolist()[len(plan.configs) :]
    assert set(results["state"]) == {"finished"}
    rows = store.trajectories(plan.manifest["run_id"].tolist())
    task_info = store.task_info()
    tasks = ["even", "ge5", "ink", "noise"]
    # Each predictor's grouping chosen on every seed is trained on every seed, and the grouping chosen on a half of
    # the seeds on the other half only (the report's cross-fitted row reads it there and nowhere else).
    expected, predictors = set(), predictor_sources(plan.manifest, rows, task_info)
    for source in predictors.values():
        for chosen_on, read_on in (([0, 1], [0, 1]), ([0], [1]), ([1], [0])):
            grouping, _ = best_grouping(tasks, source(chosen_on), 2)
            expected |= {("+".join(g), seed) for g in grouping if len(g) > 1 for seed in read_on}
    expected -= set(zip(plan.manifest["group"], plan.manifest["seed"]))
    assert set(zip(chosen["group"], chosen["seed"])) == expected and len(chosen) == len(expected)
    assert all(store.done_state(r) == "finished" for r in manifest["run_id"])
    rows = store.trajectories(manifest["run_id"].tolist())
    predictors = predictor_sources(manifest, rows, task_info)
    every = grouping_results(manifest, rows, task_info, tasks, 2, predictors, exhaustive=False).set_index("choice")
    assert list(every.index) == [*(f"{name} (predicted)" for name in predictors), "all together"]
    assert every["n_seeds"].eq(2).all() and every["delta_m"].notna().all()
    how = "affinities on the other half of the seeds (cross-fitted"
    assert every.drop("all together")["note"].str.contains(how, regex=False).all()
    # A pair run that diverged leaves the pair without a measured transfer and an early gap: those two
    # predictors choose nothing (a missing pair is not an affinity of 0), the analysis says so, and only the
    # complete predictors' groupings are (re)trained.
    pair = plan.manifest.loc[plan.manifest["group"] == "ge5+ink", "run_id"].tolist()
    for run_id in pair:
        store.set_status(run_id, "diverged", 1, "non-finite loss at step 1")
    trained: list[str] = []
    store.write_table(plan.table_name, plan.manifest)  # as run_experiment does before the analysis step
    grouping_analysis(plan, store, load_setting("four_attributes"), lambda configs: trained.extend(configs))
    err = capsys.readouterr().err
    for name in ("transfer_pct", "early_gap"):
        assert f"grouping: no {name} affinity for 2 ordered pair(s) (ge5 -> ink, ink -> ge5): it chooses no" in err
    assert "no tag affinity" not in err and "no cosine affinity" not in err
    chosen = store.table(plan.table_name).query("role == 'chosen'")
    assert set(chosen.get("chosen_by", [])) <= {"tag", "cosine"}
    assert {c.run_id for c in trained} == set(chosen["run_id"])
    finished = manifest[~manifest["run_id"].isin(pair)]
    rows = store.trajectories(finished["run_id"].tolist())
    found = predictor_sources(finished, rows, task_info)
    every = grouping_results(finished, rows, task_info, tasks, 2, found, exhaustive=False).set_index("choice")
    for name in ("transfer_pct", "early_gap"):
        row = every.loc[f"{name} (predicted)"]
        assert row["grouping"] == "" and row["n_seeds"] == 0
        assert row["note"] == f"not chosen: no {name} affinity for 2 of 12 ordered pairs (ge5 -> ink, ink -> ge5)"


def test_grouping_experiment_end_to_end_on_three_tasks(tmp_path, three_tasks):
    base = {"setting": "three_attributes", "epochs": 3, "batch_size": 32, "train_eval_size": 64}
    base["probe_sample_size"] = 32
    plan = experiment_plan("grouping", base, [0, 1, 2], budget=2)
    store = RunStore(tmp_path / "store")
    results = run_experiment(plan, store, progress=False)
    assert set(results["state"]) == {"finished"}
    manifest = store.table(plan.table_name)
    rows = store.trajectories(manifest["run_id"].tolist())
    task_info = store.task_info()
    transfer = pairwise_transfer(manifest, rows, task_info)
    assert len(transfer) == 6 and set(zip(transfer["source"], transfer["target"])) == {
        (i, j) for i in ("even", "ge5", "noise") for j in ("even", "ge5", "noise") if i != j
    }
    assert (transfer["design"] == "paired").all() and transfer["n_mtl"].eq(3).all()
    assert {"p_adjusted", "verdict", "delta_low", "delta_high"} <= set(transfer.columns)
    affinities = affinity_table(manifest, rows, transfer)
    assert affinities[["tag", "cosine", "early_gap", "transfer_pct"]].notna().all().all()
    without_all = affinity_table(manifest[manifest["role"] != "all"], rows, transfer)  # all-task run unfinished
    assert without_all[["tag", "cosine"]].isna().all().all() and without_all["early_gap"].notna().all()
    # cosine is symmetric, tag is not
    cos = affinities.set_index(["source", "target"])["cosine"]
    assert cos[("even", "ge5")] == pytest.approx(cos[("ge5", "even")])
    correlations = predictor_correlations(affinities, n_perm=99)
    assert set(correlations["x"]) == {"tag", "cosine", "early_gap"}
    predictors = {"tag": predictor_sources(manifest, rows, task_info)["tag"]}
    table = grouping_results(manifest, rows, task_info, ["even", "ge5", "noise"], 2, predictors)
    assert list(table["choice"]) == ["tag (predicted)", BEST_CHOICE, "all together"]
    assert table["n_seeds"].eq(3).all() and table["delta_m_low"].le(table["delta_m"]).all()
    together = table.set_index("choice").loc["all together"]
    assert together["vs_all"] == pytest.approx(0.0)
    # The all-together Delta m equals the mean of the transfer table's relative differences of the all-task run.
    from mtlens.analysis.transfer import selected_checkpoints

    selected = selected_checkpoints(rows, task_info).merge(manifest[["run_id", "role"]], on="run_id")
    stl = selected[selected["role"] == "stl"].set_index(["task", "seed"])["test/error"]
    mtl = selected[selected["role"] == "all"].set_index(["task", "seed"])["test/error"]
    by_task = -100 * (mtl - stl).groupby("task").mean() / stl.groupby("task").mean()
    assert together["delta_m"] == pytest.approx(by_task.mean())
    # The report section renders from the store.
    from mtlens.report.study_report import write_report

    write_report(store, tmp_path / "report")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Which tasks to train together? (three_attributes)" in html
    transfer = pd.read_csv(tmp_path / "report" / "tables" / "grouping_transfer_three_attributes.csv")
    assert transfer.shape[0] == 6
    # The Mantel table's intervals are at BH's level over its predictors, named in its columns and caption
    mantel = pd.read_csv(tmp_path / "report" / "tables" / "grouping_correlations_three_attributes.csv")
    level = mantel["pearson_confidence"].iloc[0]
    assert (mantel["pearson_confidence"] == level).all() and f"intervals (Pearson {confidence(1 - level)}," in html
    # --alpha reaches the section: its pairwise intervals at alpha 0.2 are the 80% intervals, inside the 95% ones
    # (strictly where the seeds' differences vary; where every seed's difference is the same the exact sign-flip
    # test's interval is a point or, at 3 seeds whose 2/2^3 exceeds both levels, unbounded at both)
    write_report(store, tmp_path / "report-20", alpha=0.2)
    narrow = pd.read_csv(tmp_path / "report-20" / "tables" / "grouping_transfer_three_attributes.csv")
    varied = np.isfinite(transfer["delta_low"]) & (transfer["delta_high"] > transfer["delta_low"])
    assert varied.any() and (narrow["delta_low"] > transfer["delta_low"]).eq(varied).all()
    assert (narrow["delta_high"] < transfer["delta_high"]).eq(varied).all()
    assert "at FDR 0.2" in (tmp_path / "report-20" / "report.html").read_text()
    figures = sorted((tmp_path / "report" / "figures").glob("grouping_*.vl.json"))
    assert [f.name.split("_")[1] for f in figures] == ["affinity", "scatter", "transfer"]
    for figure in figures:  # every figure is a valid Vega-Lite v6 spec
        assert not list(VEGA_LITE.iter_errors(json.loads(figure.read_text()))), figure.name
    # Seeds 1 and 2 failed: one seed is left to every grouping.  The report is written (it crashed on the
    # paired test of one seed), each row of the grouping table is not tested and says why.
    for row in manifest[manifest["seed"] > 0].itertuples():
        store.set_status(row.run_id, "failed", 0, "out of memory (simulated)")
    write_report(store, tmp_path / "report-1")
    results = pd.read_csv(tmp_path / "report-1" / "tables" / "grouping_results_three_attributes.csv")
    assert len(results) == 6 and results[["p_vs_stl", "p_vs_all", "delta_m_low", "delta_m_high"]].isna().all().all()
    # every choice is made on one half of the seeds and read on the other: not with one seed
    chosen = (results["choice"] == BEST_CHOICE) | results["choice"].str.endswith("(predicted)")
    assert chosen.sum() == 5 and results.loc[chosen, "note"].str.startswith("not chosen: 1 seed").all()
    assert results.loc[~chosen, "n_seeds"].eq(1).all() and results.loc[chosen, "n_seeds"].eq(0).all()
    measured = results.loc[~chosen, "note"]
    assert measured.str.contains("delta_m not tested: 1 seed(s) with every value", regex=False).all()
    assert "not tested" in (tmp_path / "report-1" / "report.html").read_text()
