"""Stores written by earlier versions of mtlens (``tests/fixtures/compat_store`` and the older
``compat_store_0f0155c``, see ``tests/fixtures/make_compat_store*.py``) load, report, and resume without
retraining a finished run."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtlens import RunStore
from mtlens.cli import main
from mtlens.orchestration import SerialExecutor
from mtlens.orchestration.study import mark_failed, study_configs
from mtlens.training import trainer
from mtlens.training.config import same_run_config
from mtlens.training.handle import DamagedRunWarning

FIXTURES = Path(__file__).parent / "fixtures"
COMMAND = json.loads((FIXTURES / "compat_store.json").read_text())


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "compat_store", tmp_path / "store"))


def _study_argv(tmp_path: Path, store: Path) -> list[str]:
    config = tmp_path / "config.yaml"
    base = {k: v for k, v in COMMAND["base"].items() if k != "setting"}
    config.write_text(yaml.safe_dump(base))
    return [
        "study",
        COMMAND["base"]["setting"],
        "--config",
        str(config),
        "--methods",
        ",".join(COMMAND["methods"]),
        "--seed-list",
        *map(str, COMMAND["seeds"]),
        "--store",
        str(store),
        "--quiet",
    ]


def test_old_store_loads_and_lists_its_runs_and_states(old_store):
    runs = RunStore(old_store).runs().set_index("run_id")
    assert set(runs.index) == set(COMMAND["run_ids"])
    states = {run_id: runs.loc[run_id, "state"] for run_id in runs.index}
    assert {s for r, s in states.items() if COMMAND["run_ids"][r] == "stl"} == {"finished"}
    (mtl,) = [r for r, mode in COMMAND["run_ids"].items() if mode == "mtl"]
    # Its status says running, but no process holds its lock: it was interrupted.
    assert states[mtl] == "interrupted" and runs.loc[mtl, "last_step"] == COMMAND["interrupt_step"]
    assert RunStore(old_store).status(mtl)["state"] == "running"


def test_old_store_reports(old_store, tmp_path):
    """The report of the old store (with its unfinished run) is written; the unfinished run is left out."""
    assert main(["report", "--store", str(old_store), "--out", str(tmp_path / "report")]) == 0
    assert "Overview" in (tmp_path / "report" / "report.html").read_text()
    (mtl,) = [r for r, mode in COMMAND["run_ids"].items() if mode == "mtl"]
    assert pd.read_csv(tmp_path / "report" / "tables" / "left_out_runs.csv")["run_id"].tolist() == [mtl]


def test_same_study_on_old_store_retrains_nothing_finished_and_completes_the_interrupted_run(old_store, tmp_path):
    store = RunStore(old_store)
    finished = [r for r, mode in COMMAND["run_ids"].items() if mode == "stl"]
    (interrupted,) = [r for r, mode in COMMAND["run_ids"].items() if mode == "mtl"]
    before = {r: (store.run_dir(r) / "trajectory.parquet").read_bytes() for r in finished}
    old_rows = {r: store.trajectory(r) for r in finished}

    assert main([*_study_argv(tmp_path, old_store), "--report", str(tmp_path / "report")]) == 0

    runs = store.runs()
    assert set(runs["run_id"]) == set(COMMAND["run_ids"])  # the current code computes the same run ids
    assert set(runs["state"]) == {"finished"}
    for run_id in finished:  # untouched: same bytes, not even rewritten
        assert (store.run_dir(run_id) / "trajectory.parquet").read_bytes() == before[run_id]
        assert not store.checkpoint_path(run_id).exists()
        pd.testing.assert_frame_equal(store.trajectory(run_id), old_rows[run_id])
    # The resumed run continues from the old checkpoint to exactly the trajectory the old code
    # produced without interruption (probe rows included).
    uninterrupted = pd.read_parquet(FIXTURES / "compat_mtl_uninterrupted.parquet")
    resumed = store.trajectory(interrupted)
    assert resumed["quantity"].str.startswith("probe/").any()
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert "Did MTL help each task?" in (tmp_path / "report" / "report.html").read_text()


MULTIMNIST_V1_RUN_IDS = {
    "multimnist-mtl-all-sum-s0-d2435f1b58",
    "multimnist-stl-left-sum-s0-75c1c2acda",
    "multimnist-stl-right-sum-s0-a84222e39b",
}
"""The run ids that the code of multimnist version 1 gave the study of the test below (``mtlens study multimnist
--seeds 1 --epochs 1 --batch-size 32 --set probes=[] --option n_train=64 --option n_val=32 --option n_test=32``,
run with that code)."""


def test_multimnist_runs_of_version_1_keep_their_ids_and_report_apart_from_new_runs(tmp_path, monkeypatch, capsys):
    """multimnist version 2 composes its test images from held-out digits: the same study gets new run ids (its
    results differ), while a store's version-1 runs (configs without ``setting_version``) keep theirs, load and
    report, each version compared only with itself."""
    import mtlens.settings.multimnist as multimnist

    store = tmp_path / "store"
    argv = ["study", "multimnist", "--seeds", "1", "--epochs", "1", "--batch-size", "32", "--set", "probes=[]"]
    argv += ["--option", "n_train=64", "--option", "n_val=32", "--option", "n_test=32", "--store", str(store)]
    with monkeypatch.context() as patch:  # what the code of version 1 wrote (its run ids, its configs)
        patch.setattr(multimnist, "VERSION", 1)
        assert main([*argv, "--quiet"]) == 0
    runs = RunStore(store).runs()
    assert set(runs["run_id"]) == MULTIMNIST_V1_RUN_IDS and "setting_version" not in runs
    assert main([*argv, "--quiet"]) == 0  # version 2: three new runs beside the old ones, none retrained
    runs = RunStore(store).runs().set_index("run_id")
    new = set(runs.index) - MULTIMNIST_V1_RUN_IDS
    assert len(new) == 3 and set(runs["state"]) == {"finished"}
    assert runs.loc[sorted(new), "setting_version"].tolist() == [2, 2, 2]
    assert runs.loc[sorted(MULTIMNIST_V1_RUN_IDS), "setting_version"].isna().all()
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "report")]) == 0
    transfer = pd.read_csv(tmp_path / "report" / "tables" / "transfer.csv")
    assert sorted(transfer["setting"].unique()) == ["multimnist [defaults]", "multimnist [setting_version=2.0]"]
    assert len(transfer) == 4  # per version: tasks left and right, each MTL run against its own version's STL


OLDER = json.loads((FIXTURES / "compat_store_0f0155c.json").read_text())
"""``compat_store_0f0155c`` (``tests/fixtures/make_compat_store_0f0155c.py``): configs without any key added
since (probes, ``mixed_precision``, ``save_selected_models``...), checkpoints without method diagnostics."""


def test_an_older_store_resumes_its_interrupted_run_from_its_checkpoint_after_a_failure_is_recorded(
    tmp_path, monkeypatch
):
    """The stored configs lack keys added since, all at values outside the run id: the study resumes the
    interrupted run from its old checkpoint (nothing before it retrained) to the trajectory the old code trained
    without interruption, and recording the run as failed works too (both compared the configs as whole dicts
    and raised, which aborted the whole study)."""
    store = RunStore(shutil.copytree(FIXTURES / "compat_store_0f0155c", tmp_path / "store"))
    finished = [r for r, mode in OLDER["run_ids"].items() if mode == "stl"]
    (interrupted,) = [r for r, mode in OLDER["run_ids"].items() if mode == "mtl"]
    assert "mixed_precision" not in store.config(interrupted) and "probes" not in store.config(interrupted)
    before = {r: (store.run_dir(r) / "trajectory.parquet").read_bytes() for r in finished}
    config_bytes = (store.run_dir(interrupted) / "config.json").read_bytes()
    old_parts = pd.concat([store.read_part(interrupted, step) for step in store.part_steps(interrupted)])
    base = {**OLDER["base"], "probes": []}
    (config,) = [c for c in study_configs(base, OLDER["seeds"], OLDER["methods"]) if c.run_id == interrupted]

    mark_failed(store, config, "the process training it raised")
    assert (
        store.status(interrupted)["state"] == "failed" and store.status(interrupted)["step"] == OLDER["interrupt_step"]
    )

    resumed_from = []
    start = trainer.TrainingRun.start
    monkeypatch.setattr(trainer.TrainingRun, "start", lambda self: resumed_from.append(start(self)) or resumed_from[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)
        results = SerialExecutor().run(study_configs(base, OLDER["seeds"], OLDER["methods"]), store, progress=False)
    assert set(results["run_id"]) == set(OLDER["run_ids"]) and set(results["state"]) == {"finished"}
    assert resumed_from == [OLDER["interrupt_step"]]  # the finished runs are not trained again at all
    for run_id in finished:
        assert (store.run_dir(run_id) / "trajectory.parquet").read_bytes() == before[run_id]
    assert (store.run_dir(interrupted) / "config.json").read_bytes() == config_bytes  # kept as it was written
    resumed = store.trajectory(interrupted)
    order = ["step", "task", "quantity"]
    kept = resumed[resumed["step"] <= OLDER["interrupt_step"]].sort_values(order, ignore_index=True)
    pd.testing.assert_frame_equal(kept, old_parts.sort_values(order, ignore_index=True), check_like=True)
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(FIXTURES / "compat_0f0155c_mtl_uninterrupted.parquet"))


def test_a_stored_config_that_differs_in_what_defines_the_run_is_still_refused(tmp_path):
    store = RunStore(shutil.copytree(FIXTURES / "compat_store_0f0155c", tmp_path / "store"))
    (interrupted,) = [r for r, mode in OLDER["run_ids"].items() if mode == "mtl"]
    base = {**OLDER["base"], "probes": []}
    (config,) = [c for c in study_configs(base, OLDER["seeds"], OLDER["methods"]) if c.run_id == interrupted]
    requested = config.to_dict()
    assert same_run_config(store.config(interrupted), requested)
    assert same_run_config({**store.config(interrupted), "device": "cuda", "threads": 3}, requested)
    for changed in (
        {"lr": 0.004},
        {"mixed_precision": "bf16"},
        {"save_selected_models": True},
        {"probes": ["coherence"]},
    ):
        assert not same_run_config(store.config(interrupted), {**requested, **changed}), changed
        with pytest.raises(ValueError, match="different config"):
            store.write_config(interrupted, {**requested, **changed}, same=same_run_config)
