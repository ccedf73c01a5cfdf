"""End to end: the CLI study on a tiny setting, the store listing and the HTML report."""

from __future__ import annotations

import re

import pandas as pd

from mtlens import RunStore
from mtlens.cli import main


def test_study_runs_reports_and_lists(tmp_path, capsys):
    store, out = tmp_path / "store", tmp_path / "report"
    argv = [
        "study",
        "digits_pair",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--eval-every-steps",
        "4",
        "--option",
        "n_train=256",
        "--option",
        "n_val=64",
        "--option",
        "n_test=64",
        "--set",
        "probes=[conflict,alignment]",
        "--set",
        "probe_sample_size=64",
        "--store",
        str(store),
        "--report",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    runs = RunStore(store).runs()
    assert len(runs) == 6 and set(runs["state"]) == {"finished"}
    assert sorted(runs["mode"].value_counts().items()) == [("mtl", 2), ("stl", 4)]

    html = (out / "report.html").read_text()
    for title in (
        "Overview",
        "Did MTL help each task?",
        "When did the gap open?",
        "How did optimization differ?",
        "What did the probes see?",
    ):
        assert title in html
    assert 'id="fig-probes_digits_pair_sum"' in html and 'id="fig-conflict_digits_pair_sum"' in html
    # A gap figure for every task, embedded as an interactive Vega-Lite spec and also written as one.
    for task in ("a", "b"):
        assert f'id="fig-gap_digits_pair_sum_{task}"' in html
        assert (out / "figures" / f"gap_digits_pair_sum_{task}.vl.json").stat().st_size > 1000
    assert len(re.findall(r'class="vl-spec">\{"\$schema"', html)) >= 3
    transfer = pd.read_csv(out / "tables" / "transfer.csv")
    assert set(transfer["task"]) == {"a", "b"} and (transfer["n_stl"] == 2).all() and (transfer["n_mtl"] == 2).all()
    # Seeds 0 and 1 ran in both modes: paired tests on 1 degree of freedom (a floor on p not bound to the
    # seeds, but no power);
    # the gap's sign-flip band cannot go below 2/4, and the report says so; its onsets' t tests have 1 df.
    assert (transfer["design"] == "paired").all() and (transfer["min_p"] < 1e-3).all() and (transfer["df"] == 1).all()
    assert (transfer["verdict"] == "no evidence").all() and {"p_adjusted", "delta_low", "effect_size"} <= set(transfer)
    gap = pd.read_csv(out / "tables" / "gap_onset.csv")
    assert len(gap) == 4 and (gap["design"] == "paired").all() and gap["onset_train_loss"].isna().all()
    assert (gap["direction"] == "no persistent gap").all() and {"p_any_adjusted", "p_persistent_adjusted"} <= set(gap)
    assert "too few seeds for the simultaneous band (p_any) to reach" in html and (gap["min_p_any"] >= 0.5).all()

    # Rerunning the study trains nothing new (every run is complete) and lists the same runs.
    before = {r: RunStore(store).checkpoint_path(r).stat().st_mtime_ns for r in runs["run_id"]}
    assert main(argv) == 0
    assert before == {r: RunStore(store).checkpoint_path(r).stat().st_mtime_ns for r in runs["run_id"]}
    capsys.readouterr()
    assert main(["runs", "--store", str(store)]) == 0
    listing = capsys.readouterr().out
    assert all(run_id in listing for run_id in runs["run_id"])


def test_report_on_empty_store_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert "no runs in" in capsys.readouterr().err


def test_a_finished_run_without_rows_reports_without_a_traceback(cli_workdir, capsys):
    """A finished run whose trajectory is empty (a recorded loop that logged nothing): the report is written
    and says no setting has STL and MTL runs (a pandas merge of an empty selection-metric table raised)."""
    assert main(["report", "--store", "filled", "--out", "rep"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert "No setting has both STL and MTL runs yet" in (cli_workdir / "rep" / "report.html").read_text()


def test_report_compares_runs_only_within_their_training_configuration(tmp_path):
    """Two learning rates in one store: each MTL run is paired with the STL runs of its own lr, and
    runs of different lrs are never pooled as seeds (n = 1 per group, not 2)."""
    store, out = tmp_path / "store", tmp_path / "report"
    common = [
        "study",
        "digits_pair",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--option",
        "n_train=128",
        "--option",
        "n_val=48",
        "--option",
        "n_test=48",
        "--set",
        "probes=[]",
        "--set",
        "train_eval_size=64",
        "--store",
        str(store),
        "--quiet",
    ]
    assert main([*common, "--lr", "0.001"]) == 0
    assert main([*common, "--lr", "0.01"]) == 0
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    transfer = pd.read_csv(out / "tables" / "transfer.csv")
    assert sorted(zip(transfer["setting"], transfer["task"])) == [
        ("digits_pair [lr=0.001]", "a"),
        ("digits_pair [lr=0.001]", "b"),
        ("digits_pair [lr=0.01]", "a"),
        ("digits_pair [lr=0.01]", "b"),
    ]
    assert (transfer["n_stl"] == 1).all() and (transfer["n_mtl"] == 1).all()
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert sorted(runs["runs"]) == [1, 1, 2, 2]  # per configuration: 2 STL runs, 1 MTL run
    assert "never pooled as seeds" in (out / "report.html").read_text()
    assert (out / "figures" / "gap_digits_pair-lr-0.01-_sum_a.vl.json").exists()
