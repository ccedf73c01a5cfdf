"""No wrong number with exit 0: reports analyse finished runs only (naming the others), and a study
waits for runs another process trains and exits non-zero when runs did not finish."""

from __future__ import annotations

import shutil
import sys
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kills import fork
from mtlens import RunStore
from mtlens.analysis.transfer import transfer_table
from mtlens.cli import main
from mtlens.orchestration.executors import Job, SerialExecutor, WorkerLost
from mtlens.states import RunState
from mtlens.store.run_store import part_name
from mtlens.training import trainer
from mtlens.training.config import new_run_config

STUDY = [
    "study",
    "digits_pair",
    "--seeds",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "32",
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
    "--quiet",
]
"""A 1-seed study: STL a, STL b and MTL sum, 8 steps each, rows every epoch (steps 0, 4, 8)."""


class Interrupt(BaseException):
    """Stands for a kill of the study process."""


@pytest.fixture(scope="module")
def killed_study(tmp_path_factory):
    """The study's store with its MTL run killed after its step-4 checkpoint, and the finished study's store."""
    finished = tmp_path_factory.mktemp("finished") / "store"
    assert main([*STUDY, "--store", str(finished)]) == 0
    killed = tmp_path_factory.mktemp("killed") / "store"
    original = trainer.TrainingRun._checkpoint

    def checkpoint_then_kill(self, step):
        original(self, step)
        if self.config.mode == "mtl" and step == 4:
            raise Interrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.TrainingRun, "_checkpoint", checkpoint_then_kill)
        with pytest.raises(Interrupt):
            main([*STUDY, "--store", str(killed)])
    return RunStore(killed), RunStore(finished)


def _mtl_id(store: RunStore) -> str:
    index = store.runs()
    return index.loc[index["mode"] == "mtl", "run_id"].item()


def test_report_leaves_out_and_names_an_unfinished_run(killed_study, tmp_path, capsys):
    killed, finished = killed_study
    mtl = _mtl_id(killed)
    assert killed.runs().set_index("run_id")["state"].to_dict()[mtl] == "interrupted"
    capsys.readouterr()
    assert main(["report", "--store", str(killed.root), "--out", str(tmp_path / "report")]) == 0
    assert f"{mtl} (interrupted)" in capsys.readouterr().err
    tables = tmp_path / "report" / "tables"
    assert pd.read_csv(tables / "left_out_runs.csv")["run_id"].tolist() == [mtl]
    assert not (tables / "transfer.csv").exists()  # no finished MTL run to compare
    assert mtl in (tmp_path / "report" / "report.html").read_text()

    # Asked explicitly, the report analyses its rows so far -- and says so.
    assert main(["report", "--store", str(killed.root), "--out", str(tmp_path / "with"), "--include-unfinished"]) == 0
    assert f"{mtl} (interrupted)" in capsys.readouterr().err
    transfer = pd.read_csv(tmp_path / "with" / "tables" / "transfer.csv")
    assert (transfer["n_mtl"] == 1).all()
    assert pd.read_csv(tmp_path / "with" / "tables" / "unfinished_runs.csv")["run_id"].tolist() == [mtl]
    # ... which are not the finished run's (the numbers a report without the filter would have shown).
    assert killed.trajectory(mtl)["step"].max() < finished.trajectory(mtl)["step"].max()


def _swap_values(path, a: str, b: str) -> None:
    """Rewrite the row part ``path`` validly (good page checksums, the same size: the same values in another
    order) with the values of quantities ``a`` and ``b`` swapped."""
    table = pq.read_table(path)
    keys = list(zip(table.column("task").to_pylist(), table.column("quantity").to_pylist()))
    values = dict(zip(keys, table.column("value").to_pylist()))
    swapped = [values[task, {a: b, b: a}.get(q, q)] for task, q in keys]
    table = table.set_column(table.schema.get_field_index("value"), "value", pa.array(swapped, pa.float64()))
    size = path.stat().st_size
    pq.write_table(table, path, write_page_checksum=True)
    assert path.stat().st_size == size


def test_unfinished_rows_that_do_not_match_their_recorded_digest_are_left_out_and_named(killed_study, tmp_path, capsys):
    """A row part of an interrupted run rewritten validly (same size, good page checksums) was named by
    ``runs --check`` but analysed by ``report --include-unfinished`` and exported (exit 0): the parts of a run in
    progress were read on their page checksums alone, never against the digests their status records."""
    killed, _ = killed_study
    store = RunStore(shutil.copytree(killed.root, tmp_path / "store"))
    mtl = _mtl_id(store)
    path = store.run_dir(mtl) / part_name(4)
    assert part_name(4) in store.status(mtl)["digests"]  # the checkpoint at step 4 vouches for it
    _swap_values(path, "test/error", "test/accuracy")
    assert store.runs().set_index("run_id")["state"].to_dict()[mtl] == "interrupted"  # sizes: the cheap check
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", "--store", str(store.root), "--out", str(out), "--include-unfinished"]) == 0
    assert f"{mtl} (damaged)" in capsys.readouterr().err
    assert str(path) in pd.read_csv(out / "tables" / "left_out_runs.csv").set_index("run_id")["message"][mtl]
    assert not (out / "tables" / "transfer.csv").exists()  # the MTL run's swapped values were not analysed
    logdir = tmp_path / "tb"
    assert main(["export", "--to", "tensorboard", "--store", str(store.root), "--logdir", str(logdir)]) == 1
    assert f"{mtl} not exported" in capsys.readouterr().err and not (logdir / mtl).exists()


def test_report_never_analyses_a_diverged_run(killed_study, tmp_path, capsys):
    _, finished = killed_study
    store = RunStore(shutil.copytree(finished.root, tmp_path / "store"))
    mtl = _mtl_id(store)
    store.set_status(mtl, "diverged", 5, "non-finite loss at step 5")  # its rows stay, as after a divergence
    for extra in ([], ["--include-unfinished"]):
        out = tmp_path / f"report{len(extra)}"
        assert main(["report", "--store", str(store.root), "--out", str(out), *extra]) == 0
        assert f"{mtl} (diverged)" in capsys.readouterr().err
        assert not (out / "tables" / "transfer.csv").exists()


def test_study_exits_nonzero_naming_runs_that_did_not_finish(tmp_path, monkeypatch, capsys):
    original = trainer.TrainingRun.train

    def failing_mtl(self, progress):
        if self.config.mode == "mtl":
            raise RuntimeError("out of memory")
        return original(self, progress)

    monkeypatch.setattr(trainer.TrainingRun, "train", failing_mtl)
    store = tmp_path / "store"
    assert main([*STUDY, "--store", str(store), "--report", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err
    mtl = _mtl_id(RunStore(store))
    assert f"{mtl} (failed)" in err and "did not finish" in err
    assert pd.read_csv(tmp_path / "report" / "tables" / "left_out_runs.csv")["run_id"].tolist() == [mtl]
    # Rerun into the same report folder: the failed run trains, and the earlier report's list of left-out runs,
    # which this report does not write, is gone (not left to name a run the new report analysed).
    monkeypatch.setattr(trainer.TrainingRun, "train", original)
    assert main([*STUDY, "--store", str(store), "--report", str(tmp_path / "report")]) == 0
    assert not (tmp_path / "report" / "tables" / "left_out_runs.csv").exists()
    assert (tmp_path / "report" / "tables" / "transfer.csv").exists()
    assert "removed 1 file(s) of an earlier report" in capsys.readouterr().err


LONGER = [*STUDY[: STUDY.index("--epochs") + 1], "4", *STUDY[STUDY.index("--epochs") + 2 :]]
"""The study at 4 epochs (a flag and ``--set`` of one key are refused together)."""


def test_two_concurrent_identical_studies_wait_for_each_other(tmp_path):
    store, report, log = RunStore(tmp_path / "store"), tmp_path / "report", tmp_path / "other.log"
    other = fork(lambda: sys.exit(main([*LONGER, "--store", str(store.root)])), stderr=log)  # the other process
    deadline = time.time() + 180
    while time.time() < deadline and not store.run_ids():  # the other study is training its first run
        time.sleep(0.02)
    assert other.is_alive() and store.run_ids()
    # This study reaches the run the other one holds and must wait for it, not report it half-trained.
    assert main([*LONGER, "--store", str(store.root), "--report", str(report)]) == 0
    other.join(timeout=300)
    assert other.exitcode == 0, log.read_text()
    index = store.runs()
    assert (index["state"] == "finished").all() and len(index) == 3
    assert not (report / "tables" / "left_out_runs.csv").exists()
    reported = pd.read_csv(report / "tables" / "transfer.csv")
    assert (reported[["n_stl", "n_mtl"]] == 1).all().all()
    # The report holds the finished runs' numbers (not those of a run the other study was still training).
    final = transfer_table(store.trajectories(), store.task_info())
    pd.testing.assert_frame_equal(reported[final.columns], final.reset_index(drop=True), check_dtype=False)


def test_a_job_lost_twice_reports_a_pack_member_that_had_ended_as_it_ended(tiny, store):
    """A job whose worker is lost twice marks its runs failed; a pack member that had finished was reported (and,
    before record_failure left complete runs alone, stored) ``failed``, so the study counted a finished run failed."""
    ended, unstarted = (new_run_config({**tiny, "seed": seed}) for seed in (0, 1))
    store.write_config(ended.run_id, ended.to_dict())
    store.finalize(ended.run_id, RunState.FINISHED, 3)
    outcomes = SerialExecutor()._lost(Job([ended, unstarted], lost=1), WorkerLost("worker died"), store)
    states = {o["run_id"]: o["state"] for o in outcomes}
    assert states == {ended.run_id: RunState.FINISHED, unstarted.run_id: RunState.FAILED}
    assert store.done_state(ended.run_id) == RunState.FINISHED
    assert store.status(unstarted.run_id)["state"] == RunState.FAILED
