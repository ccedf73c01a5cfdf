"""Rerunning an experiment with other options: its stored manifest keeps the earlier runs of the same design."""

from __future__ import annotations

import shutil

import pandas as pd

import mtlens.experiments.base as experiments_base
import mtlens.experiments.loss_scale as loss_scale
from mtlens.experiments import experiment_plan, run_experiment
from mtlens.report.study_report import analysed_runs
from mtlens.store import RunState, RunStore
from mtlens.training.config import same_run_config


def _finish_untrained(configs, store: RunStore, progress: bool = True, executor: object = None) -> pd.DataFrame:
    """Stand-in for training (``run_configs``; the experiments here pass no executor): each run stored finished
    (config, empty trajectory, status), as the trainer ends it."""
    for config in configs:
        store.write_config(config.run_id, config.to_dict())
        store.finalize(config.run_id, RunState.FINISHED, 0)
    return pd.DataFrame({"run_id": [c.run_id for c in configs], "state": "finished", "message": ""})


def test_a_rerun_with_other_scales_keeps_the_earlier_scales_of_the_same_design(tiny, store, monkeypatch, capsys):
    """The loss-scale experiment rerun with other scales overwrote its manifest: the earlier scales' finished
    runs dropped out of its table.  They are kept now, and only they: runs of another learning rate (or number
    of epochs) are another design.  A kept run that is not complete stays in the manifest but is not analysed."""
    monkeypatch.setattr(experiments_base, "run_configs", _finish_untrained)
    monkeypatch.setattr(loss_scale, "setting_invariance", lambda *args: pd.DataFrame())
    base = {k: v for k, v in tiny.items() if k != "probes"}
    table = experiments_base.manifest_table_name("loss-scale", "digits_pair")

    def rerun(seeds: list[int], scales: list[float], **options) -> pd.DataFrame:
        run_experiment(experiment_plan("loss-scale", base, seeds, scales=scales, **options), store, progress=False)
        return store.table(table)

    first = rerun([0], [1.0])
    assert sorted(first["scale"]) == [1.0, 1.0] and "earlier" not in capsys.readouterr().out
    second = rerun([0, 1], [10.0])
    assert sorted(zip(second["seed"], second["scale"])) == [(0, 1.0)] * 2 + [(0, 10.0)] * 2 + [(1, 10.0)] * 2
    assert "also shows 2 run(s) of earlier invocations" in capsys.readouterr().out
    assert second["run_id"].is_unique and set(first["run_id"]) <= set(second["run_id"])

    kept_design = (second["scale"] == 10.0) & (second["optimizer"] == "sgd") & (second["seed"] == 0)
    unfinished = second.loc[kept_design, "run_id"].item()
    store.set_status(unfinished, RunState.RUNNING, 3)  # e.g. killed while being trained again
    third = rerun([0], [100.0], lrs={"adam": 0.01})  # adam at another lr: another design
    kept = third[third["scale"] != 100.0]
    assert set(kept["optimizer"]) == {"sgd"} and sorted(kept["scale"]) == [1.0, 10.0, 10.0]
    assert unfinished in set(kept["run_id"])  # of the kept design: its row stays, whatever its state
    analysed, left_out = analysed_runs(store.runs())
    assert unfinished in set(left_out["run_id"]) and unfinished not in set(analysed["run_id"])  # but it is not shown


def test_a_rerun_keeps_an_earlier_run_that_is_damaged_for_now(tiny, store, monkeypatch):
    """A rerun dropped from the manifest, for good, an earlier run whose status was damaged at the time, although
    a later open rebuilds it from its trajectory's end record: kept now, it is in the table once it is healed.
    Only a row whose run directory is gone is dropped."""
    monkeypatch.setattr(experiments_base, "run_configs", _finish_untrained)
    monkeypatch.setattr(loss_scale, "setting_invariance", lambda *args: pd.DataFrame())
    base = {k: v for k, v in tiny.items() if k != "probes"}
    table = experiments_base.manifest_table_name("loss-scale", "digits_pair")
    first = experiment_plan("loss-scale", base, [0], scales=[1.0])
    run_experiment(first, store, progress=False)
    damaged, gone = first.manifest["run_id"]
    (store.run_dir(damaged) / "status.json").write_text("{")
    shutil.rmtree(store.run_dir(gone))
    run_experiment(experiment_plan("loss-scale", base, [0], scales=[10.0]), store, progress=False)
    assert damaged in set(store.table(table)["run_id"]) and gone not in set(store.table(table)["run_id"])
    (store.run_dir(damaged) / "status.json").unlink()
    assert store.restore_status(damaged) == "" and store.is_done(damaged)
    run_experiment(experiment_plan("loss-scale", base, [0], scales=[100.0]), store, progress=False)
    assert sorted(store.table(table)["scale"]) == [1.0, 10.0, 10.0, 100.0, 100.0]


def test_a_rerun_keeps_the_runs_of_a_store_written_before_a_config_key_existed(tiny, store, monkeypatch):
    """Configs stored before ``mixed_precision`` and ``save_selected_models`` existed were compared with the
    plan's as raw JSON, so an old store's runs were never kept on a rerun, although the trainer takes them as the
    same run (:func:`~mtlens.training.config.same_run_config`) and their run ids are unchanged."""
    old_keys = ("mixed_precision", "save_selected_models")

    def finish_as_before(configs, store: RunStore, progress: bool = True, executor: object = None) -> pd.DataFrame:
        for config in configs:
            stored = {k: v for k, v in config.to_dict().items() if k not in old_keys}
            assert same_run_config(stored, config.to_dict())
            store.write_config(config.run_id, stored)
            store.finalize(config.run_id, RunState.FINISHED, 0)
        return pd.DataFrame({"run_id": [c.run_id for c in configs], "state": "finished", "message": ""})

    monkeypatch.setattr(loss_scale, "setting_invariance", lambda *args: pd.DataFrame())
    base = {k: v for k, v in tiny.items() if k != "probes"}
    table = experiments_base.manifest_table_name("loss-scale", "digits_pair")
    monkeypatch.setattr(experiments_base, "run_configs", finish_as_before)
    run_experiment(experiment_plan("loss-scale", base, [0], scales=[1.0]), store, progress=False)
    monkeypatch.setattr(experiments_base, "run_configs", _finish_untrained)
    run_experiment(experiment_plan("loss-scale", base, [0], scales=[10.0]), store, progress=False)
    assert sorted(store.table(table)["scale"]) == [1.0, 1.0, 10.0, 10.0]
    run_experiment(
        experiment_plan("loss-scale", {**base, "mixed_precision": "bf16"}, [0], scales=[100.0]), store, progress=False
    )
    assert sorted(store.table(table)["scale"]) == [100.0, 100.0]  # another design: an old run ran without it


def test_a_rerun_with_another_base_config_replaces_the_earlier_runs(tiny, store, monkeypatch):
    """Runs of 2 epochs beside runs of 3 would be averaged in one cell of the table: a rerun with another base
    config (the same labels in the manifest) replaces them."""
    monkeypatch.setattr(experiments_base, "run_configs", _finish_untrained)
    monkeypatch.setattr(loss_scale, "setting_invariance", lambda *args: pd.DataFrame())
    base = {k: v for k, v in tiny.items() if k != "probes"}
    run_experiment(experiment_plan("loss-scale", base, [0], scales=[1.0]), store, progress=False)
    run_experiment(experiment_plan("loss-scale", {**base, "epochs": 3}, [0], scales=[10.0]), store, progress=False)
    assert set(store.table(experiments_base.manifest_table_name("loss-scale", "digits_pair"))["scale"]) == {10.0}


def test_two_invocations_at_once_both_keep_their_runs_in_the_manifest(tiny, store, monkeypatch):
    """Two invocations of one experiment on one store at once (here: the second runs whole while the first is
    about to train): the second merged the stored manifest while the first's runs had no directory yet and
    dropped them, and with one manifest write per invocation the last one won.  The first writes its manifest
    again after training, under the table's lock, and keeps the second's runs, so both seeds are in the table."""
    monkeypatch.setattr(loss_scale, "setting_invariance", lambda *args: pd.DataFrame())
    base = {k: v for k, v in tiny.items() if k != "probes"}
    table = experiments_base.manifest_table_name("loss-scale", "digits_pair")
    second = experiment_plan("loss-scale", base, [1], scales=[1.0])
    calls = []

    def first_trains_after_the_second(
        configs, store: RunStore, progress: bool = True, executor: object = None
    ) -> pd.DataFrame:
        calls.append([c.run_id for c in configs])
        if len(calls) == 1:  # the first invocation, before its runs exist: the second runs meanwhile
            run_experiment(second, store, progress=False)
            assert set(store.table(table)["seed"]) == {1}  # the second's merge could not keep the first's rows
        return _finish_untrained(configs, store, progress)

    monkeypatch.setattr(experiments_base, "run_configs", first_trains_after_the_second)
    first = experiment_plan("loss-scale", base, [0], scales=[1.0])
    run_experiment(first, store, progress=False)
    stored = store.table(table)
    assert set(stored["run_id"]) == set(first.manifest["run_id"]) | set(second.manifest["run_id"])
    assert sorted(stored["seed"]) == [0, 0, 1, 1] and stored["run_id"].is_unique


def test_the_table_lock_makes_a_second_taker_wait(store):
    """The table's lock is an exclusive flock that waits: a second open of it (another process, or here
    another open file of this one) cannot take it while it is held, and can once it is released."""
    import fcntl

    lock = store.root / "tables" / ".experiment-x-y.lock"
    with store.table_lock("experiment-x-y"):
        with open(lock, "a+b") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                taken = True
            except BlockingIOError:
                taken = False
    assert not taken
    with open(lock, "a+b") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free
    assert store.table_names() == []  # the lock file is no table
