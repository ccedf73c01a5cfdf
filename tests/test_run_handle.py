"""The run handle's own guarantees that the contract suite (``tests/contracts``) does not reach directly:
recording a failure after the training code released the run, the row buffer, and digests of every file."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mtlens import RunStore
from mtlens.cli import main
from mtlens.states import RunState
from mtlens.store.run_store import END_RECORD_KEY, part_name
from mtlens.training.handle import MAX_PENDING_STEPS, Checkpoint, DamagedRunWarning, RunHandle, RunIdentity

IDENTITY = RunIdentity("toy-run", "toy", ("a", "b"), "sum", 0)
CONFIG = {"setting": "toy", "tasks": ["a", "b"], "seed": 0}
INFO = {"a": {"selection_metric": "loss", "lower_is_better": {"loss": True}}}


def _handle(store: RunStore) -> RunHandle:
    return RunHandle(store, IDENTITY, CONFIG, INFO)


def _row(value: float) -> dict[tuple[str, str], float]:
    return {("a", "train/loss"): value}


def _checkpointed_run(store: RunStore) -> None:
    """A run with parts at steps 0 and 2, a checkpoint at step 2 and a part at step 3 after it, left open-ended."""
    with _handle(store) as handle:
        assert handle.open() is None
        handle.write_step(0, 0.0, [{"task": "a", "quantity": "train/loss", "value": 1.0}])
        handle.record(2, 0.5, _row(0.5))
        handle.save_checkpoint(Checkpoint(2, {"w": torch.ones(3)}, torch.get_rng_state()))
        handle.record(3, 0.75, _row(0.25))
        handle.flush()


def test_a_failure_recorded_after_the_run_was_released_keeps_it_resumable(tmp_path):
    store = RunStore(tmp_path)
    _checkpointed_run(store)
    before = store.status(IDENTITY.run_id)
    RunHandle(store, IDENTITY, CONFIG).record_failure("RuntimeError: boom")
    status = store.status(IDENTITY.run_id)
    assert (status["state"], status["step"], status["message"]) == (RunState.FAILED, 2, "RuntimeError: boom")
    assert status["parts"] == [0, 2] and status["digests"] == before["digests"]
    assert {part_name(0), part_name(2), "checkpoint.pt", "config.json", "tasks.json"} <= set(status["digests"])
    assert store.check().empty
    with _handle(store) as handle:
        assert handle.open() is None
        checkpoint = handle.resume()
        assert checkpoint is not None and checkpoint.step == 2
        assert handle.part_steps() == [0, 2]  # the part after the checkpoint is discarded


def test_a_failure_is_not_recorded_over_a_run_another_process_trains(tmp_path):
    store = RunStore(tmp_path)
    _checkpointed_run(store)
    with _handle(store) as training:
        assert training.open() is None
        training.mark_running(2)
        RunHandle(store, IDENTITY, CONFIG).record_failure("RuntimeError: boom")
        assert store.status(IDENTITY.run_id)["state"] == RunState.RUNNING


@pytest.mark.parametrize("state", [RunState.FINISHED, RunState.DIVERGED])
@pytest.mark.parametrize("status_damaged", [False, True])
def test_a_failure_is_not_recorded_over_a_complete_run(tmp_path, state, status_damaged):
    """A worker lost twice records every run of its job failed, pack members that already ended too: ``failed``
    over a diverged run made the next open resume its stale checkpoint, and its 3 merged rows were lost.  A
    complete run, or one whose damaged status its end record rebuilds, is left alone and keeps its rows."""
    store = RunStore(tmp_path)
    before = _finished_run(store, state)
    rows = store.trajectory(IDENTITY.run_id)
    status_path = store.run_dir(IDENTITY.run_id) / "status.json"
    if status_damaged:
        status_path.write_text("[]")
    RunHandle(store, IDENTITY, CONFIG).record_failure("worker lost 2 times")
    if status_damaged:
        assert status_path.read_text() == "[]"
        with pytest.warns(DamagedRunWarning, match="rebuilt from the end record"):
            assert _handle(store).open() == state
    else:
        assert store.status(IDENTITY.run_id) == before
        assert _handle(store).open() == state
    assert store.status(IDENTITY.run_id)["state"] == state
    pd.testing.assert_frame_equal(store.trajectory(IDENTITY.run_id), rows)


class Killed(BaseException):
    """Stands for a kill of the process writing the run."""


@pytest.mark.parametrize("killed", ["before the part is written", "after the part is written"])
def test_a_kill_while_a_part_its_status_records_is_rewritten_leaves_a_run_that_verifies(tmp_path, monkeypatch, killed):
    """Rows recorded at a checkpoint's step after the checkpoint rewrite a part its status records.  The status is
    written first, with the new digest and the old one as replaced; killed before the part is written the run
    resumes with the rows the checkpoint saw, after it with the new ones, and its files verify either way (before,
    a kill after the rewrite left the run ``damaged``: the status kept the old digest)."""
    store = RunStore(tmp_path)
    with _handle(store) as handle:
        assert handle.open() is None
        handle.record(2, 0.5, _row(0.5))
        handle.save_checkpoint(Checkpoint(2, {"w": torch.ones(3)}, torch.get_rng_state()))
        handle.record(2, 0.5, {("a", "test/loss"): 0.25})
        write_part = RunStore.write_part

        def kill(self, *args, **kwargs):
            if killed == "after the part is written":
                write_part(self, *args, **kwargs)
            raise Killed

        monkeypatch.setattr(RunStore, "write_part", kill)
        with pytest.raises(Killed):
            handle.flush()
    monkeypatch.undo()
    status = store.status(IDENTITY.run_id)
    assert (status["state"], status["step"], status["parts"]) == (RunState.RUNNING, 2, [2])
    assert store.runs()["state"].tolist() == ["interrupted"] and store.check().empty
    expected = {"train/loss": 0.5, **({"test/loss": 0.25} if killed == "after the part is written" else {})}
    assert store.trajectory(IDENTITY.run_id).set_index("quantity")["value"].to_dict() == expected
    with _handle(store) as handle:
        assert handle.open() is None and handle.damaged == {}
        checkpoint = handle.resume()
        assert checkpoint is not None and checkpoint.step == 2
        handle.mark_running(2)  # the next status: the digest of the part there, none replaced
    assert "replaced" not in store.status(IDENTITY.run_id) and store.check().empty


def test_buffered_rows_replace_by_key_are_flushed_when_many_and_merged_at_the_end(tmp_path):
    store = RunStore(tmp_path)
    with _handle(store) as handle:
        assert handle.open() is None
        handle.write_step(0, 0.0, [{"task": "a", "quantity": "train/loss", "value": 1.0}])
        handle.record(0, 0.0, {("a", "val/loss"): 2.0})  # joins the part of step 0
        handle.record(0, 0.0, {("a", "val/loss"): 3.0})  # replaces the value recorded before
        for step in range(1, MAX_PENDING_STEPS):
            handle.record(step, step / 10, _row(float(step)))
        assert handle.part_steps() == list(range(MAX_PENDING_STEPS))  # 64 steps pending: all written
        handle.record(MAX_PENDING_STEPS, 6.4, _row(-1.0))  # buffered, merged straight into the trajectory
        assert handle.finish(RunState.FINISHED, MAX_PENDING_STEPS) == RunState.FINISHED
    rows = store.trajectory(IDENTITY.run_id)
    assert len(rows) == MAX_PENDING_STEPS + 2 and not rows.duplicated(["step", "task", "quantity"]).any()
    step0 = rows[rows["step"] == 0].set_index("quantity")["value"].to_dict()
    assert step0 == {"train/loss": 1.0, "val/loss": 3.0}
    assert rows[rows["step"] == MAX_PENDING_STEPS]["value"].tolist() == [-1.0]
    status = store.status(IDENTITY.run_id)
    assert set(status["digests"]) == {"config.json", "tasks.json", "trajectory.parquet"}  # no part is left
    assert store.check().empty


def _finished_run(store: RunStore, state: str = RunState.FINISHED) -> dict:
    """A run of rows at steps 0-3 ended ``state`` (with a status extra and a selected model); its status."""
    with _handle(store) as handle:
        assert handle.open() is None
        handle.status_extra = {"threads": 1}
        handle.save_selected("a", 2, {"w": torch.ones(2)})
        for step in range(4):
            handle.record(step, step / 4, _row(1.0 / (step + 1)))
        handle.save_checkpoint(Checkpoint(3, {"w": torch.ones(3)}, torch.get_rng_state()))
        if state == RunState.DIVERGED:
            handle.diverge(3, {"a": float("nan")})
        else:
            handle.finish(state, 3, "done")
    return store.status(IDENTITY.run_id)


def _rewrite_a_value(path) -> None:
    """A valid rewrite of the trajectory with one value changed, by a tool that keeps the footer's key-value
    metadata (the end record) and writes good page checksums."""
    table = pq.read_table(path)
    values = table.column("value").to_pylist()
    table = table.set_column(table.schema.get_field_index("value"), "value", pa.array([values[0] + 1] + values[1:]))
    record = pq.read_metadata(path).metadata[END_RECORD_KEY.encode()]
    with pq.ParquetWriter(path, table.schema, write_page_checksum=True) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({END_RECORD_KEY: record.decode()})


@pytest.mark.parametrize("state", [RunState.FINISHED, RunState.DIVERGED])
def test_a_complete_run_whose_status_is_damaged_is_rebuilt_from_its_trajectory_not_retrained(tmp_path, state):
    """A complete run whose status.json was damaged was named damaged and retrained although its rows were
    intact.  The trajectory's end record (a digest of its own rows) rebuilds the status: the run stays
    complete with its state, step, message, extras and the digests of its other files."""
    store = RunStore(tmp_path)
    before = _finished_run(store, state)
    rows = store.trajectory(IDENTITY.run_id)
    path = store.run_dir(IDENTITY.run_id) / "status.json"
    path.write_text('{"state": "finis')
    assert store.runs()["state"].tolist() == ["damaged"] and "status.json" in store.runs()["message"].iloc[0]
    with pytest.warns(DamagedRunWarning, match=f"{path} is damaged .*rebuilt from the end record"):
        assert _handle(store).open() == state  # complete: nothing to train
    after = store.status(IDENTITY.run_id)
    assert {k: v for k, v in after.items() if k != "updated"} == {k: v for k, v in before.items() if k != "updated"}
    pd.testing.assert_frame_equal(store.trajectory(IDENTITY.run_id), rows)
    assert store.runs()["state"].tolist() == [str(state)] and store.check().empty


def test_a_complete_run_whose_status_is_missing_is_damaged_and_rebuilt_not_retrained(tmp_path, capsys):
    """A finished run whose status.json was deleted read ``interrupted``, passed ``runs --check`` and was
    retrained: a missing status was taken for one not written yet.  A run with a merged trajectory always had
    one, so it is named missing (the run ``damaged``, ``--check`` exits 1) and rebuilt from the end record."""
    store = RunStore(tmp_path)
    before = _finished_run(store)
    rows = store.trajectory(IDENTITY.run_id)
    path = store.run_dir(IDENTITY.run_id) / "status.json"
    path.unlink()
    index = store.runs()
    assert index["state"].tolist() == ["damaged"] and "status.json (missing" in index["message"].iloc[0]
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert "status.json" in capsys.readouterr().out
    with pytest.warns(DamagedRunWarning, match=f"{path} is damaged \\(missing.*rebuilt from the end record"):
        assert _handle(store).open() == RunState.FINISHED  # complete: nothing to train
    after = store.status(IDENTITY.run_id)
    assert {k: v for k, v in after.items() if k != "updated"} == {k: v for k, v in before.items() if k != "updated"}
    pd.testing.assert_frame_equal(store.trajectory(IDENTITY.run_id), rows)
    assert store.runs()["state"].tolist() == ["finished"] and store.check().empty


def test_a_rebuilt_status_keeps_the_task_info_the_complete_run_was_trained_with(tmp_path):
    """Reopened with another selection metric, a complete run whose status was rebuilt from its end record had
    tasks.json rewritten from the request: its selection metric changed silently and the rebuilt status's digest
    no longer matched, so the run read ``damaged`` again."""
    store = RunStore(tmp_path)
    _finished_run(store)
    run_dir = store.run_dir(IDENTITY.run_id)
    tasks = (run_dir / "tasks.json").read_text()
    (run_dir / "status.json").write_text("{")
    other = {"a": {"selection_metric": "error", "lower_is_better": {"error": True, "loss": True}}}
    with pytest.warns(DamagedRunWarning, match="rebuilt from the end record"):
        assert RunHandle(store, IDENTITY, CONFIG, other).open() == RunState.FINISHED
    assert (run_dir / "tasks.json").read_text() == tasks
    assert store.runs()["state"].tolist() == ["finished"] and store.check().empty


def test_runs_check_says_a_rerun_rebuilds_a_damaged_status_from_the_end_record(tmp_path, capsys):
    """``runs --check`` told a user whose status.json was damaged to rerun "to retrain damaged runs"; a rerun
    rebuilds such a status from the trajectory's end record instead, and the message says so."""
    store = RunStore(tmp_path)
    _finished_run(store)
    (store.run_dir(IDENTITY.run_id) / "status.json").write_text("{")
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert "rebuilds a damaged status.json from its trajectory's end record" in capsys.readouterr().err
    with pytest.warns(DamagedRunWarning, match="rebuilt from the end record"):
        assert _handle(store).open() == RunState.FINISHED
    assert main(["runs", "--store", str(store.root), "--check"]) == 0


@pytest.mark.parametrize(
    "damage, why",
    [
        ("rows rewritten", "differ from the digest its end record holds"),
        ("no end record", "holds no end record"),
        ("config edited", ""),
    ],
)
def test_a_damaged_status_is_not_rebuilt_from_rows_that_do_not_verify(tmp_path, damage, why):
    """Rows rewritten validly (page checksums good, the end record kept), or a trajectory written before end records
    existed: nothing independent vouches for the rows, so the run is retrained, the status named.  A config edited
    beside the lost status is caught by the digest the end record restores, and rewritten."""
    store = RunStore(tmp_path)
    _finished_run(store)
    run_dir = store.run_dir(IDENTITY.run_id)
    (run_dir / "status.json").write_text("[]")
    trajectory = run_dir / "trajectory.parquet"
    if damage == "rows rewritten":
        _rewrite_a_value(trajectory)
    elif damage == "no end record":
        pq.write_table(pq.read_table(trajectory).replace_schema_metadata(None), trajectory, write_page_checksum=True)
    else:
        (run_dir / "config.json").write_text((run_dir / "config.json").read_text().replace('"toy"', '"toz"'))
    with pytest.warns(DamagedRunWarning, match=r"status\.json is damaged") as caught:
        opened = _handle(store).open()
    if damage == "config edited":  # rebuilt; the config's restored digest names the edit, and it is rewritten
        assert opened == RunState.FINISHED
        assert any("config.json" in str(w.message) for w in caught)
        assert store.config(IDENTITY.run_id) == CONFIG and store.check().empty
    else:
        assert opened is None  # retrained from scratch
        message = str(caught[0].message)
        assert "cannot be rebuilt" in message and str(trajectory) in message and why in message
        assert store.trajectory(IDENTITY.run_id).empty
