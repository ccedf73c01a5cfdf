"""The run handle's own guarantees that the contract suite (``tests/contracts``) does not reach directly:
recording a failure after the training code released the run, the row buffer, and digests of every file."""

from __future__ import annotations

import torch

from mtlens import RunStore
from mtlens.states import RunState
from mtlens.store.run_store import part_name
from mtlens.training.handle import MAX_PENDING_STEPS, Checkpoint, RunHandle, RunIdentity

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
