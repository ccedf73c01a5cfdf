"""The recorder: a user's own loop written as mtlens runs (rows, identity, resume, pairing with the trainer)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import mtlens
from mtlens import ConfigError, Recorder, RunLockedError, RunStore, build_model, load_setting
from mtlens.cli import main
from mtlens.seeding import derived_seed
from mtlens.store import ROW_COLUMNS
from mtlens.training.batches import BatchStream
from mtlens.training.evaluate import evaluate_task, train_eval_rows
from mtlens.training.recorder import RecordedRunFinishedError
from mtlens.training.trainer import configure_determinism

OPTIONS = {"n_train": 128, "n_val": 64, "n_test": 64}
EPOCHS, BATCH, TRAIN_EVAL = 2, 32, 64


def record_like_the_trainer(store: RunStore, tasks: list[str], seed: int) -> None:
    """A plain PyTorch loop that keeps the pairing of ``mtlens study``: the trainer's init (seeded
    per encoder and per head), its batch order (:class:`BatchStream`), Adam at the setting's lr, and
    evaluation at step 0 and at every epoch end on the same fixed training subset, val and test."""
    setting = load_setting("digits_pair", **OPTIONS)
    configure_determinism()
    torch.manual_seed(derived_seed(seed, "torch"))
    model = build_model(setting.encoder, setting.feature_dim, setting.select(tasks), seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=setting.defaults.lr)
    stream = BatchStream(setting, tasks, BATCH, seed)
    steps_per_epoch = setting.steps_per_epoch(BATCH)
    with Recorder(
        store,
        "digits_pair",
        setting.select(tasks),
        seed,
        steps_per_epoch=steps_per_epoch,
        hyperparameters={"lr": setting.defaults.lr, "batch_size": BATCH, "epochs": EPOCHS},
    ) as rec:
        for step in range(EPOCHS * steps_per_epoch + 1):
            if step > 0:
                model.train()
                losses = []
                for batch in stream.next().values():
                    outputs = model(batch.inputs, list(batch.targets))
                    losses += [setting.task(t).loss(outputs[t], y).float().mean() for t, y in batch.targets.items()]
                optimizer.zero_grad(set_to_none=True)
                torch.stack(losses).sum().backward()
                optimizer.step()
            if step % steps_per_epoch == 0:
                for task in setting.select(tasks):
                    data = setting.data[task.name]
                    rows = train_eval_rows(data.train, TRAIN_EVAL, task.name)
                    for split, subset in (("train", rows), ("val", None), ("test", None)):
                        rec.log(
                            step,
                            split,
                            {task.name: evaluate_task(model, task, data.split(split), torch.device("cpu"), subset)},
                        )


def test_recorded_loop_reports_the_transfer_and_gap_of_mtlens_study(tmp_path):
    trained, recorded = RunStore(tmp_path / "trained"), RunStore(tmp_path / "recorded")
    argv = [
        "study",
        "digits_pair",
        "--seeds",
        "1",
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        *[a for k, v in OPTIONS.items() for a in ("--option", f"{k}={v}")],
        "--set",
        "probes=[]",
        "--set",
        f"train_eval_size={TRAIN_EVAL}",
        "--store",
        str(trained.root),
        "--quiet",
    ]
    assert main(argv) == 0
    for tasks in (["a"], ["b"], ["a", "b"]):
        record_like_the_trainer(recorded, tasks, seed=0)

    runs = recorded.runs()
    assert len(runs) == 3 and set(runs["state"]) == {"finished"} and set(runs["source"]) == {"recorder"}
    # Same rows as the trainer's, up to the run ids: every value agrees to float tolerance.
    key = ["mode", "seed", "task", "step", "quantity"]
    rows = {
        name: s.trajectories().sort_values(key).reset_index(drop=True)
        for name, s in (("trained", trained), ("recorded", recorded))
    }
    pd.testing.assert_frame_equal(
        rows["trained"][[*key, "epoch", "setting", "method"]], rows["recorded"][[*key, "epoch", "setting", "method"]]
    )
    np.testing.assert_allclose(rows["recorded"]["value"], rows["trained"]["value"], rtol=1e-5, atol=1e-7)

    tables = {name: report_tables(store) for name, store in (("trained", trained), ("recorded", recorded))}
    for table, n_rows in (("transfer", 2), ("gap_onset", 4)):  # per task; the gap for val/loss and val/error
        trained_table, recorded_table = tables["trained"][table], tables["recorded"][table]
        assert len(trained_table) == n_rows
        pd.testing.assert_frame_equal(recorded_table, trained_table, rtol=1e-5, atol=1e-7)


def report_tables(store: RunStore) -> dict[str, pd.DataFrame]:
    """The report's transfer and gap tables, from the analysis object the report itself uses (the rest
    of the report is tested elsewhere and costs a minute on a loaded machine)."""
    results = mtlens.load(store, alpha=0.05)
    return {"transfer": results.transfer(), "gap_onset": results.gap()}


def open_recorder(store: RunStore, **changes) -> Recorder:
    description = dict(setting="toy", tasks=["a", "b"], seed=3, hyperparameters={"lr": 0.1}, steps_per_epoch=10)
    return Recorder(store, **{**description, **changes})


def test_rows_identity_and_status(store):
    with open_recorder(store) as rec:
        assert store.status(rec.run_id)["state"] == "running"
        rec.log(0, "train", {"a": torch.tensor(2.0), "b": 3.0})
        rec.log(5, "val", {"a": {"loss": 1.5, "error": 0.25}})
        rec.log(5, "val", {"a": {"loss": 1.25}})  # recorded again: replaces, never duplicates
    assert rec.run_id.startswith("toy-mtl-all-sum-s3-")
    assert store.status(rec.run_id)["state"] == "finished" and store.status(rec.run_id)["step"] == 5
    rows = store.trajectory(rec.run_id)
    assert list(rows.columns) == ROW_COLUMNS
    assert rows[["task", "step", "epoch", "quantity", "value"]].values.tolist() == [
        ["a", 0, 0.0, "train/loss", 2.0],
        ["b", 0, 0.0, "train/loss", 3.0],
        ["a", 5, 0.5, "val/error", 0.25],
        ["a", 5, 0.5, "val/loss", 1.25],
    ]
    assert set(rows["mode"]) == {"mtl"} and set(rows["seed"]) == {3} and set(rows["setting"]) == {"toy"}
    assert store.config(rec.run_id)["lr"] == 0.1
    assert store.task_info()[("toy", "a")] == {
        "selection_metric": "loss",
        "lower_is_better": {"loss": True, "error": True},
    }
    # The id follows the description: an STL run, another seed or another lr is another run.
    ids = {
        rec.run_id,
        open_recorder(store, tasks=["a"]).run_id,
        open_recorder(store, seed=4).run_id,
        open_recorder(store, hyperparameters={"lr": 0.2}).run_id,
    }
    assert len(ids) == 4 and open_recorder(store, tasks=["a"]).run_id.startswith("toy-stl-a-sum-s3-")
    assert open_recorder(store).run_id == rec.run_id
    with pytest.raises(RecordedRunFinishedError, match="already finished"):
        open_recorder(store).open()


def test_done_says_which_runs_a_rerun_loop_skips(store):
    """``rec.done()``: ``None`` for a new run (nothing written), an open one and a failed one (it resumes), the
    state of a finished or diverged one, whose ``open`` raises (audit A: a loop had no way to skip it)."""
    new = open_recorder(store, seed=0)
    assert new.done() is None and not store.run_dir(new.run_id).exists()
    with new as rec:
        assert rec.done() is None
        rec.log(0, "val", {"a": 1.0, "b": 1.0})
    assert open_recorder(store, seed=0).done() == "finished"
    with pytest.raises(RuntimeError, match="crash"), open_recorder(store, seed=1) as rec:
        rec.log(0, "val", {"a": 1.0, "b": 1.0})
        raise RuntimeError("crash")
    assert store.status(rec.run_id)["state"] == "failed"
    assert open_recorder(store, seed=1).done() is None
    with open_recorder(store, seed=1) as rec:  # done() released the run: the failed run resumes
        rec.log(1, "val", {"a": 1.0, "b": 1.0})
    assert open_recorder(store, seed=1).done() == "finished"
    with pytest.warns(RuntimeWarning, match="diverged"), open_recorder(store, seed=2) as rec:
        rec.log(0, "val", {"a": float("nan"), "b": 1.0})
    assert open_recorder(store, seed=2).done() == "diverged"
    assert mtlens.RecordedRunFinishedError is RecordedRunFinishedError


def test_done_raises_run_locked_error_while_another_process_trains_the_run(store):
    """``done()`` must lock a stored run to verify it, so while another process trains the run it raises
    :class:`RunLockedError` -- as opening it does -- which ``mtlens`` exports for a loop sharing its store to
    catch (the docstring said ``None`` and the error could only be imported from ``mtlens.store``)."""
    opened_read, opened_write = os.pipe()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the other process, training the run until the parent releases it
        try:
            with open_recorder(store) as rec:
                rec.log(0, "val", {"a": 1.0})
                os.write(opened_write, b"o")
                os.read(release_read, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(opened_read, 1) == b"o"
        with pytest.raises(RunLockedError, match="being trained by another process"):
            open_recorder(store).done()
    finally:
        os.write(release_write, b"x")
        os.waitpid(pid, 0)
    assert open_recorder(store).done() == "finished"
    assert RunLockedError is mtlens.store.RunLockedError


def test_rows_of_a_step_logged_after_it_was_written_join_its_written_rows(store):
    """A callback that flushes (a library saving a checkpoint) between the values of one step, in
    this session or the next: the step keeps every row, the part on disk is replaced, not appended."""
    with pytest.raises(KeyboardInterrupt):
        with open_recorder(store) as rec:
            rec.log(4, "train", {"a": 1.0})
            rec.flush()
            rec.log(4, "val", {"a": 2.0})
            rec.flush()
            rec.log(4, "val", {"b": 3.0})
            rec.flush()
            raise KeyboardInterrupt
    assert store.part_steps(rec.run_id) == [4]
    with open_recorder(store) as rec:
        rec.log(4, "test", {"a": 4.0})  # a pending step with a part on disk at the run's end
        rec.log(8, "train", {"a": 5.0})
    rows = store.trajectory(rec.run_id)
    assert rows[["task", "step", "quantity", "value"]].values.tolist() == [
        ["a", 4, "test/loss", 4.0],
        ["a", 4, "train/loss", 1.0],
        ["a", 4, "val/loss", 2.0],
        ["b", 4, "val/loss", 3.0],
        ["a", 8, "train/loss", 5.0],
    ]
    assert store.part_steps(rec.run_id) == [] and store.status(rec.run_id)["state"] == "finished"


@pytest.mark.parametrize("end", ["ctrl-c", "flush, then a kill"])
def test_rows_recorded_at_a_checkpoints_step_after_it_leave_a_run_that_resumes(store, end):
    """A loop that logs ``val``, checkpoints, then logs ``test`` at the same step rewrites the part the checkpoint's
    status had a digest for; Ctrl-C (or ``flush`` then a kill) wrote that part and no status, so the run read
    ``damaged`` and was retrained from scratch.  The status is rewritten with the part's digest: the run is
    ``interrupted`` and resumes from its checkpoint with every row of its step."""
    with pytest.raises(KeyboardInterrupt):
        with open_recorder(store) as rec:
            rec.log(4, "train", {"a": 1.0})
            rec.log(4, "val", {"a": 2.0})
            rec.checkpoint(4, {"w": torch.tensor(4.0)})
            rec.log(4, "test", {"a": 3.0})
            if end == "flush, then a kill":
                rec.flush()
                rec.handle.close()  # the lock goes with the process; nothing else is written
            raise KeyboardInterrupt
    assert store.runs()[["state", "message"]].values.tolist() == [["interrupted", ""]]
    assert store.check().empty
    with open_recorder(store) as rec:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no DamagedRunWarning: nothing is retrained
            step, state = rec.restore()
        assert step == 4 and float(state["w"]) == 4.0
    rows = store.trajectory(rec.run_id)
    assert rows[["step", "quantity", "value"]].values.tolist() == [
        [4, "test/loss", 3.0],
        [4, "train/loss", 1.0],
        [4, "val/loss", 2.0],
    ]


def test_exception_marks_the_run_failed_and_keeps_its_rows(store):
    with pytest.raises(ZeroDivisionError):
        with open_recorder(store) as rec:
            rec.log(1, "train", {"a": 1.0})
            raise ZeroDivisionError("the user's loop fails")
    status = store.status(rec.run_id)
    assert status["state"] == "failed" and "ZeroDivisionError" in status["message"]
    assert len(store.trajectory(rec.run_id)) == 1
    assert not store.runs().query("state == 'finished'").shape[0]


@pytest.mark.parametrize("how", ["checkpoint", "resume_from"])
def test_crash_and_resume_gives_no_duplicated_rows(store, how):
    """A run killed after its checkpoint at step 4 (rows of steps 5-6 already written) resumes from
    step 4: the rows match an uninterrupted run's exactly, with no step recorded twice."""

    def loop(rec: Recorder, start: int, stop: int, crash_at: int | None = None) -> None:
        for step in range(start, stop + 1):
            rec.log(step, "train", {"a": float(step), "b": 10.0 + step})
            if step % 4 == 0:
                rec.checkpoint(step, {"w": torch.tensor(float(step))}) if how == "checkpoint" else rec.flush()
            if step == crash_at:
                rec.flush()
                raise KeyboardInterrupt

    with open_recorder(store) as reference:
        loop(reference, 0, 8)
    expected = store.trajectory(reference.run_id)[["task", "step", "quantity", "value"]]

    crashed = RunStore(store.root.parent / "crashed")
    with pytest.raises(KeyboardInterrupt):
        with open_recorder(crashed) as rec:
            loop(rec, 0, 8, crash_at=6)
    assert crashed.part_steps(rec.run_id) == list(range(7))
    with open_recorder(crashed) as rec:
        if how == "checkpoint":
            step, state = rec.restore()
            assert step == 4 and float(state["w"]) == 4.0
        else:
            rec.resume_from(4)
            step = 4
        loop(rec, step + 1, 8)
    resumed = crashed.trajectory(rec.run_id)[["task", "step", "quantity", "value"]]
    assert not resumed.duplicated(["task", "step", "quantity"]).any()
    pd.testing.assert_frame_equal(resumed, expected)


def test_restarting_without_resume_discards_the_later_rows_of_the_interrupted_session(store):
    with pytest.raises(RuntimeError):
        with open_recorder(store) as rec:
            for step in range(5):
                rec.log(step, "train", {"a": 1.0})
            raise RuntimeError("killed")
    with open_recorder(store) as rec:
        rec.log(2, "train", {"a": 2.0})
    rows = store.trajectory(rec.run_id)
    assert rows[["step", "value"]].values.tolist() == [[0, 1.0], [1, 1.0], [2, 2.0]]


def test_bad_descriptions_and_rows_are_clear_errors(store):
    with pytest.raises(ValueError, match="distinct"):
        open_recorder(store, tasks=["a", "a"])
    with pytest.raises(ValueError, match="clash"):
        open_recorder(store, hyperparameters={"seed": 1})
    with pytest.raises(ValueError, match="JSON"):
        open_recorder(store, hyperparameters={"lr": object()})
    with open_recorder(store, steps_per_epoch=None) as rec:
        with pytest.raises(KeyError, match=r"\['c'\]"):
            rec.log(0, "val", {"c": 1.0})
        with pytest.raises(ValueError, match="split"):
            rec.log(0, "probe", {"a": 1.0})
        with pytest.raises(ValueError, match="epoch="):
            rec.log(0, "val", {"a": 1.0})
        with pytest.raises(ValueError, match=r"val/a/accuracy=True: expected a number, not a boolean"):
            rec.log(0, "val", {"a": {"loss": 1.0, "accuracy": True}}, epoch=0.0)  # was stored as 1.0
        rec.log(0, "val", {"a": 1.0}, epoch=0.0)
    with pytest.raises(RuntimeError, match="not open"):
        rec.log(1, "val", {"a": 1.0})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tasks": "right"}, r"tasks='right': expected a list of task names or Task objects \(one task: \['right'\]\)"),
        ({"tasks": iter(["a"])}, "tasks=<list_iterator.*expected a list"),
        ({"tasks": ["a", 1]}, "task name 1: expected a non-empty string"),
        ({"seed": -1}, "Recorder: .*seed=-1: Input should be greater than or equal to 0"),
        ({"seed": True}, "seed=True: expected a number or text, not a boolean"),
        ({"seed": 2**70}, f"seed={2**70}: Input should be less than or equal to {2**63 - 1}"),
        ({"seed": 1.0}, "seed=1.0: Input should be a valid integer"),
        ({"seed": "3"}, "seed='3': Input should be a valid integer"),
        ({"steps_per_epoch": "4"}, "steps_per_epoch='4': Input should be a valid integer"),
        ({"steps_per_epoch": 2.5}, "steps_per_epoch=2.5: Input should be a valid integer"),
        ({"steps_per_epoch": True}, "steps_per_epoch=True: expected a number or text, not a boolean"),
        ({"steps_per_epoch": 0}, "steps_per_epoch=0: Input should be greater than or equal to 1"),
    ],
    ids=[
        *("tasks-str", "tasks-iterator", "task-int", "seed-negative", "seed-bool", "seed-2**70", "seed-1.0"),
        *("seed-str", "steps_per_epoch-str", "steps_per_epoch-2.5", "steps_per_epoch-bool", "steps_per_epoch-0"),
    ],
)
def test_tasks_and_seed_are_checked_when_the_recorder_is_made(store, changes, message):
    """A string of tasks was an MTL run of its letters ('right': r, i, g, h, t), a negative or boolean seed a run,
    and a seed above the store's int64 trained the whole loop and failed at the end, leaving the run interrupted;
    ``steps_per_epoch="4"`` raised a bare TypeError: each is one ValueError now, from the declared Seed and
    PositiveCount, before the run exists."""
    with pytest.raises(ValueError, match=message):
        open_recorder(store, **changes)
    assert not store.run_ids()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"setting": "exp/v1"}, r"setting name 'exp/v1' contains '/'"),
        ({"setting": "../../../escaped"}, r"setting name '../../../escaped' contains '/'"),
        ({"setting": ""}, r"setting name '': .*non-empty string other than '\.' and '\.\.'"),
        ({"setting": ".."}, r"setting name '\.\.': "),
        ({"method": "team\\sum"}, r"method name 'team\\\\sum' contains '\\\\'"),
        ({"method": "."}, r"method name '\.': "),
    ],
    ids=["setting-slash", "setting-escapes", "setting-empty", "setting-dotdot", "method-backslash", "method-dot"],
)
def test_a_setting_or_method_name_that_is_no_directory_name_is_refused(store, tmp_path, changes, message):
    """The setting and the method are parts of the run id, the run's directory: ``exp/v1`` wrote the run to
    ``runs/exp/v1-...`` (the index then showed a damaged run ``exp`` and not the run), ``../../../escaped``
    wrote it outside the store, and an empty setting was accepted.  Each is one error now, before anything
    is written."""
    with pytest.raises(ConfigError, match=message):
        open_recorder(store, **changes)
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
    assert not list(tmp_path.parent.glob("escaped*"))  # where runs/../../../escaped-... would have gone


def test_a_numpy_integer_seed_names_the_same_run_as_the_int(store):
    assert open_recorder(store, seed=np.int64(3)).run_id == open_recorder(store, seed=3).run_id
    assert open_recorder(store, seed=2**63 - 1).config["seed"] == 2**63 - 1
    assert open_recorder(store, steps_per_epoch=np.int64(10)).run_id == open_recorder(store).run_id


def test_close_with_an_unknown_state_is_refused_before_anything_is_closed(store):
    """``close("completed")`` closed the handle before refusing the state: the buffered rows were lost, the run
    stayed ``running``, and a second ``close("finished")`` returned without finishing it."""
    rec = open_recorder(store).open()
    rec.log(0, "val", {"a": 1.0})
    with pytest.raises(ValueError, match=r"state must be one of \['finished', 'diverged', 'failed'\], got 'completed'"):
        rec.close("completed")
    assert rec.handle.is_open and store.status(rec.run_id)["state"] == "running"
    rec.close("finished")
    assert store.status(rec.run_id)["state"] == "finished"
    assert store.trajectory(rec.run_id)[["step", "value"]].values.tolist() == [[0, 1.0]]


@pytest.mark.parametrize("step", [np.int64(4), np.uint8(4), torch.tensor(4)], ids=["int64", "uint8", "tensor"])
def test_a_numpy_or_torch_integer_step_is_recorded_as_the_int(store, step):
    """A loop counting steps in NumPy or torch: ``np.int64(4)`` or ``torch.tensor(4)`` made the end of the ``with``
    block raise ``Object of type int64 is not JSON serializable`` and lose every buffered row (the run stayed
    ``interrupted``).  Steps are read with ``operator.index``, as the seed is."""
    with open_recorder(store) as rec:
        rec.log(0, "val", {"a": 1.0})
        rec.log(step, "val", {"a": 2.0})
        rec.log_metrics(step, {"test/a/loss": 3.0})
        rec.checkpoint(step, {"w": torch.tensor(1.0)})
        rec.step(step)
    assert store.status(rec.run_id)["state"] == "finished" and store.status(rec.run_id)["step"] == 4
    assert store.trajectory(rec.run_id)[["step", "quantity"]].values.tolist() == [
        [0, "val/loss"],
        [4, "test/loss"],
        [4, "val/loss"],
    ]


@pytest.mark.parametrize(
    "step",
    [4.0, 2.5, True, "4", np.float64(4), torch.tensor(4.0), torch.tensor(True), -1, np.int64(-1)],
    ids=["4.0", "2.5", "True", "str", "np-float", "float-tensor", "bool-tensor", "-1", "np-minus-1"],
)
def test_a_step_that_is_not_a_non_negative_integer_is_refused_by_every_method_taking_one(store, step):
    """``4.0`` was recorded and the run ended ``damaged``, ``2.5`` was stored as step 2 (or failed the flush):
    every method taking a step refuses anything but an integer >= 0 in one line naming it, and records nothing."""
    with open_recorder(store) as rec:
        rec.log(0, "val", {"a": 1.0})
        calls = {
            "log": lambda: rec.log(step, "val", {"a": 2.0}),
            "log_metrics": lambda: rec.log_metrics(step, {"val/a/loss": 2.0}),
            "checkpoint": lambda: rec.checkpoint(step, {}),
            "resume_from": lambda: rec.resume_from(step),
            "step": lambda: rec.step(step),
            "probe": lambda: rec.probe(step),
        }
        for name, call in calls.items():
            with pytest.raises(ValueError, match=r"^step=.*: expected an integer step >= 0") as raised:
                call()
            assert "\n" not in str(raised.value), name
    assert store.status(rec.run_id)["state"] == "finished"
    assert store.trajectory(rec.run_id)[["step", "value"]].values.tolist() == [[0, 1.0]]


def test_report_flags_recorded_runs_whose_configurations_differ_beyond_the_task_set(store, tmp_path):
    from mtlens.report.study_report import mismatched_recorded_runs, overview_section

    for tasks, lr in ((["a"], 0.1), (["b"], 0.1), (["a", "b"], 0.2)):
        with open_recorder(store, tasks=tasks, hyperparameters={"lr": lr}) as rec:
            rec.log(1, "val", {t: 1.0 for t in tasks})
    index = store.runs()
    flagged = mismatched_recorded_runs(index)
    assert len(flagged) == 3 and set(flagged["differs"]) == {"lr=0.1", "lr=0.2"}
    assert "differ in more than the task set" in overview_section(index, store.trajectories(), tmp_path).body
    assert mismatched_recorded_runs(index[index["lr"] == 0.1]).empty


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_ends_the_run_diverged_without_its_rows_as_the_trainer_does(store, bad):
    """The first non-finite loss (any split's ``loss``) marks the run diverged at that step, its rows and
    later ones are not kept, and it never counts among the finished runs an analysis reads."""
    with pytest.warns(RuntimeWarning, match="diverged: non-finite loss at step 2"):
        with open_recorder(store) as rec:
            for step in range(5):
                rec.log(step, "train", {"a": 1.0, "b": {"loss": bad if step >= 2 else 1.0, "error": 0.5}})
                rec.log(step, "val", {"a": 1.0, "b": 1.0})
                rec.checkpoint(step, {"w": step})  # a no-op once diverged
                if rec.diverged is not None:
                    assert rec.diverged == 2
    status = store.status(rec.run_id)
    assert status["state"] == "diverged" and status["step"] == 2
    assert "non-finite loss at step 2" in status["message"] and "b/train/loss" in status["message"]
    assert sorted(store.trajectory(rec.run_id)["step"].unique()) == [0, 1]
    assert store.runs().query("state == 'finished'").empty
    with pytest.raises(RecordedRunFinishedError, match="already diverged"):
        open_recorder(store).open()


def test_an_evaluation_logged_before_resuming_discards_no_row_up_to_the_restore_point(store):
    """Step 0 logged first in a session (a library's evaluate-before-fit), then ``restore``: the rows up
    to the checkpoint stay; a session that records past its first step without resuming still
    discards what the interrupted session left after it."""
    with pytest.raises(RuntimeError):
        with open_recorder(store) as rec:
            for step in range(0, 13, 4):
                rec.log(step, "val", {"a": float(step)})
                if step == 8:
                    rec.checkpoint(8, {"w": 8})
            raise RuntimeError("crash after step 12")
    with open_recorder(store) as rec:
        rec.log(0, "val", {"a": 0.0})
        assert rec.restore()[0] == 8
        rec.log(12, "val", {"a": 12.5})
    assert store.trajectory(rec.run_id)[["step", "value"]].values.tolist() == [[0, 0], [4, 4], [8, 8], [12, 12.5]]


def test_failed_and_reopened_statuses_keep_the_checkpoints_parts_so_a_lost_part_is_caught(store):
    """After an exception (``failed``) and after a session that reopened the run without restoring, the
    status still says which row parts the checkpoint covers: a part deleted since is noticed on restore
    and the run retrained, never resumed with a hole in its rows."""
    from mtlens.training.handle import DamagedRunWarning

    with pytest.raises(RuntimeError):
        with open_recorder(store) as rec:
            for step in range(5):
                rec.log(step, "train", {"a": 1.0})
                if step == 2:
                    rec.checkpoint(2, {"w": 2})
            raise RuntimeError("boom")
    status = store.status(rec.run_id)
    assert status["state"] == "failed" and status["step"] == 2 and status["parts"] == [0, 1, 2]
    with pytest.raises(KeyboardInterrupt):
        with open_recorder(store):
            raise KeyboardInterrupt  # reopened, nothing restored
    assert store.status(rec.run_id)["parts"] == [0, 1, 2]
    (store.run_dir(rec.run_id) / "parts" / "000000000001.parquet").unlink()
    with pytest.warns(DamagedRunWarning, match="missing"):
        with open_recorder(store) as rec:
            assert rec.restore() is None
            rec.log(0, "train", {"a": 3.0})
    assert store.trajectory(rec.run_id)[["step", "value"]].values.tolist() == [[0, 3.0]]


@pytest.mark.parametrize("kill_at", range(4))
def test_a_kill_during_a_reset_never_leaves_a_checkpoint_the_next_session_trusts(store, monkeypatch, kill_at):
    """A run whose checkpoint lost a row part is reset; a kill at any store call of that reset (``kill_at``)
    leaves nothing the next session resumes from: it used to write the ``running``, step 0 status (no parts)
    before deleting the checkpoint, and the next session read that status as an old one, trusted the parts
    left on disk and finished the run with rows missing."""
    from mtlens.store.run_store import RunStore as Store

    with pytest.raises(KeyboardInterrupt):
        with open_recorder(store) as rec:
            for step in (0, 4, 8):
                rec.log(step, "train", {"a": 1.0})
            rec.checkpoint(8, {"w": 1})
            raise KeyboardInterrupt
    (store.run_dir(rec.run_id) / "parts" / "000000000004.parquet").unlink()  # a part the checkpoint covers

    calls, resetting = [], []
    reset_run = Store.reset_run

    def counted(name):
        original = getattr(Store, name)

        def call(self, *args, **kwargs):
            if resetting:
                calls.append(name)
                if len(calls) > kill_at:
                    raise KeyboardInterrupt(f"killed at {name}")
            return original(self, *args, **kwargs)

        return call

    def killed_reset(self, *args, **kwargs):
        resetting.append(True)
        try:
            reset_run(self, *args, **kwargs)
        finally:
            resetting.clear()

    with monkeypatch.context() as patch:
        for name in ("remove_file", "set_status", "discard_parts_after", "keep_selected_models"):
            patch.setattr(Store, name, counted(name))
        patch.setattr(Store, "reset_run", killed_reset)
        with pytest.warns(UserWarning), pytest.raises(KeyboardInterrupt, match="killed"):
            with open_recorder(store) as rec:
                rec.restore()

    with open_recorder(store) as rec:
        restored = rec.restore()
        assert restored is None
        for step in (0, 4, 8, 12, 16):
            rec.log(step, "train", {"a": 2.0})
    rows = store.trajectory(rec.run_id)
    assert store.status(rec.run_id)["state"] == "finished"
    assert rows[["step", "value"]].values.tolist() == [[s, 2.0] for s in (0, 4, 8, 12, 16)]


def test_a_run_stored_with_a_task_name_refused_since_reopens(store, monkeypatch):
    """Task names holding ``+ > , *`` are refused since 0d03d80, and the Recorder refused to reopen the runs
    stored before with such a name: they could be loaded and reported but not resumed.  The check is for new
    runs; a stored run with probes, whose pair rows would join its names, is refused naming the run."""
    import mtlens.training.recorder as recorder_module

    tasks = ["a+b", "c"]
    with monkeypatch.context() as patch:  # the Recorder of before 0d03d80: the name is stored
        patch.setattr(recorder_module, "check_task_name", lambda name: None)
        with Recorder(store, "toy", tasks, 0, steps_per_epoch=10) as rec:
            rec.log(1, "val", {"a+b": 1.0, "c": 2.0})
            rec.flush()
            rec.close("failed", "stopped")
    with Recorder(store, "toy", tasks, 0, steps_per_epoch=10) as rec:  # reopened: it resumes
        rec.resume_from(1)
        rec.log(2, "val", {"a+b": 0.5, "c": 1.5})
    run_id = rec.run_id
    assert store.runs().set_index("run_id").loc[run_id, "state"] == "finished"
    rows = store.trajectory(run_id)
    assert rows[rows["task"] == "a+b"]["value"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match=r"task name 'a\+b' contains '\+'"):  # a new run with it: refused
        Recorder(store, "toy", tasks, 1, steps_per_epoch=10)
    assert store.run_ids() == [run_id]
