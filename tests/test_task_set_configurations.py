"""A grouping store's MTL runs of different task sets are different configurations: the transfer
table has one row per (task set, task), each paired by seed with the STL runs of that task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.transfer import transfer_table
from mtlens.render import by_configuration
from mtlens.report.study_report import overview_section, run_counts

SEEDS = (0, 1, 2, 3)
TASK_SETS = ("a,b", "a,c", "a,b,c")
INFO = {("s", t): {"selection_metric": "error", "lower_is_better": {"error": True}} for t in "abc"}


def _error(tasks: str, task: str, seed: int) -> float:
    """A distinct test error per (run's task set, task, seed), so any pooling or mispairing shows."""
    return 0.1 * (1 + "abc".index(task)) + 0.01 * len(tasks) + 0.001 * seed**2 * len(tasks)


def _store() -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = [("stl", t) for t in "abc"] + [("mtl", ts) for ts in TASK_SETS]
    index, rows = [], []
    for mode, tasks in runs:
        for seed in SEEDS:
            run_id = f"{mode}-{tasks.replace(',', '')}-{seed}"
            key = {"run_id": run_id, "setting": "s", "mode": mode, "method": "sum", "seed": seed}
            index.append(key | {"tasks": tasks})
            for task in tasks.split(","):
                for quantity, value in (("val/error", 0.0), ("test/error", _error(tasks, task, seed))):
                    rows.append(key | {"task": task, "step": 1, "epoch": 1.0, "quantity": quantity, "value": value})
    return pd.DataFrame(index), pd.DataFrame(rows)


def test_each_task_set_is_its_own_configuration_paired_by_seed():
    index, rows = _store()
    configured, info = by_configuration(index, rows, INFO)
    table = transfer_table(configured, info).set_index(["setting", "task"])
    expected = {(f"s [tasks={ts.replace(',', '+')}]", t) for ts in TASK_SETS for t in ts.split(",")}
    assert set(table.index) == expected  # one row per (task set, task): 2 + 2 + 3
    for (setting, task), row in table.iterrows():
        tasks = setting.removeprefix("s [tasks=").removesuffix("]").replace("+", ",")
        d = [_error(tasks, task, s) - _error(task, task, s) for s in SEEDS]
        assert row["design"] == "paired" and row["n_mtl"] == row["n_stl"] == len(SEEDS)
        assert row["delta"] == pytest.approx(np.mean(d))
        assert row["mtl_mean"] == pytest.approx(np.mean([_error(tasks, task, s) for s in SEEDS]))
        assert row["stl_mean"] == pytest.approx(np.mean([_error(task, task, s) for s in SEEDS]))


def test_one_task_set_keeps_the_plain_setting_and_the_rows():
    index, rows = _store()
    keep = index["tasks"].isin(["a", "b", "a,b"])
    index, rows = index[keep], rows[rows["run_id"].isin(index.loc[keep, "run_id"])]
    configured, info = by_configuration(index, rows, INFO)
    assert configured is rows and info is INFO


def test_stl_of_a_task_in_no_task_set_keeps_the_plain_setting():
    index, rows = _store()
    keep = index["tasks"] != "a,b,c"
    index, rows = index[keep], rows[rows["run_id"].isin(index.loc[keep, "run_id"])]
    index = pd.concat([index, index[index["tasks"] == "a"].assign(tasks="d", run_id=lambda f: f["run_id"] + "d")])
    rows = pd.concat([rows, rows[rows["run_id"].str.startswith("stl-a-")].assign(run_id=lambda f: f["run_id"] + "d")])
    configured, _ = by_configuration(index, rows, INFO)
    settings = configured.groupby("run_id")["setting"].agg(frozenset)
    assert settings["stl-a-0d"] == {"s"}
    assert settings["stl-a-0"] == {"s [tasks=a+b]", "s [tasks=a+c]"}  # repeated once per task set
    assert settings["stl-b-0"] == {"s [tasks=a+b]"} and settings["mtl-ac-0"] == {"s [tasks=a+c]"}


def test_run_counts_count_a_repeated_stl_run_under_every_task_set(tmp_path):
    index, rows = _store()
    index = index.assign(state="finished")
    configured, _ = by_configuration(index, rows, INFO)
    counts = run_counts(index, configured).set_index(["setting", "mode"])["runs"]
    n = len(SEEDS)
    # By hand: task a is in all three task sets, b in a+b and a+b+c, c in a+c and a+b+c; each MTL set has n runs.
    expected = {
        ("s [tasks=a+b]", "stl"): 2 * n,
        ("s [tasks=a+c]", "stl"): 2 * n,
        ("s [tasks=a+b+c]", "stl"): 3 * n,
        ("s [tasks=a+b]", "mtl"): n,
        ("s [tasks=a+c]", "mtl"): n,
        ("s [tasks=a+b+c]", "mtl"): n,
    }
    assert counts.to_dict() == expected
    body = overview_section(index, configured, tmp_path).body
    assert f"{len(index)} runs in all: an STL run compared with the MTL runs of several task sets" in body


def test_probes_of_the_all_task_run_do_not_make_it_another_configuration():
    """Audit B 2026-12-06: the grouping plan gives the all-task run the affinity probes and its STL runs none;
    the index's ``probes`` column made that run a configuration without STL runs, so the all-task comparison had
    no row in any table.  Probes change no trajectory bit, so they are not part of the configuration."""
    index, rows = _store()
    all_tasks = index["tasks"] == "a,b,c"
    index = index.assign(probes=np.where(all_tasks, '["tag", "conflict"]', "[]"), probe_sample_size=64)
    configured, info = by_configuration(index, rows, INFO)
    table = transfer_table(configured, info).set_index(["setting", "task"])
    assert {("s [tasks=a+b+c]", t) for t in "abc"} <= set(table.index)
    assert all(table.loc[("s [tasks=a+b+c]", t), "n_stl"] == len(SEEDS) for t in "abc")
