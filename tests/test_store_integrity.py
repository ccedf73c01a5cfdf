"""A damaged or interrupted store: every reader names the file and the run, `mtlens runs` shows
`damaged`/`interrupted`, `runs --check` lists the problems, and a rerun retrains exactly what it
cannot trust (its rows then equal an undamaged run's, bit for bit); files respect the umask;
leftover temporary files are named and removed; local workers stop quietly when the driver dies."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from kills import fork
from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import DamagedStoreError
from mtlens.orchestration import LocalExecutor, SerialExecutor
from mtlens.report.study_report import selected_runs
from mtlens.settings import load_setting
from mtlens.store import atomic_write
from mtlens.store.run_store import file_digest
from mtlens.training import trainer
from mtlens.training.config import parse_config, resolve_config
from mtlens.training.handle import Checkpoint
from mtlens.training.trainer import DamagedRunWarning, ThreadCountError, train_run
from report_stores import planted_store

OPTIONS = {"n_train": 64, "n_val": 32, "n_test": 32}
RAW = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 32,
    "probes": [],
    "setting_options": OPTIONS,
    "save_selected_models": True,
}
"""4 steps; rows and checkpoints at steps 0, 2 and 4; a selected model per task."""


class Interrupt(BaseException):
    """Stands for a kill: not an ``Exception``, so nothing marks the run failed."""


def _train_until(store: RunStore, config, setting, step: int, monkeypatch) -> None:
    """Train ``config`` and stop as a kill would right after the rows of ``step`` (before its checkpoint)."""
    original = trainer.TrainingRun._checkpoint

    def checkpoint_or_stop(self, at):
        if at == step:
            raise Interrupt
        original(self, at)

    with monkeypatch.context() as patch:
        patch.setattr(trainer.TrainingRun, "_checkpoint", checkpoint_or_stop)
        with pytest.raises(Interrupt):
            train_run(config, store, setting=setting, progress=False)


@pytest.fixture(scope="module")
def setting():
    return load_setting("digits_pair", **OPTIONS)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, setting):
    """A finished run and the same run interrupted after the rows of step 4 (checkpoint at step 2)."""
    config = resolve_config(parse_config(RAW), setting)
    finished = RunStore(tmp_path_factory.mktemp("finished"))
    train_run(config, finished, setting=setting, progress=False)
    interrupted = RunStore(tmp_path_factory.mktemp("interrupted"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        _train_until(interrupted, config, setting, 4, monkeypatch)
    assert interrupted.part_steps(config.run_id) == [0, 2, 4]
    return config, finished, interrupted


def _copy(store: RunStore, tmp_path: Path) -> RunStore:
    shutil.copytree(store.root, tmp_path / "store")
    return RunStore(tmp_path / "store")


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x80\x02garbage" * 10)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_lr(path: Path) -> None:
    """The last digit of the learning rate changed (``"lr": 0.003`` -> ``0.005``): a valid config of the same
    size, which only the digest the run recorded when it wrote the file tells from the real one."""
    text = path.read_text()
    match = re.search(r'"lr": [0-9.e-]*?([0-9])[,\n}]', text)
    assert match is not None, text
    digit = "5" if match.group(1) != "5" else "6"
    path.write_text(text[: match.start(1)] + digit + text[match.end(1) :])


def _edit_status(**changes: object) -> Callable[[Path], None]:
    """A damage that keeps ``status.json`` valid JSON but sets ``changes`` (a value ``digest`` of a key
    ``digests/NAME`` sets that file's digest)."""

    def edit(path: Path) -> None:
        status = json.loads(path.read_text())
        for key, value in changes.items():
            if key.startswith("digests/"):
                status["digests"][key.removeprefix("digests/")] = value
            else:
                status[key] = value
        path.write_text(json.dumps(status))

    return edit


# (which store, file relative to the run directory, how it is damaged, the reader that must name it)
DAMAGES = {
    "status.json": ("finished", "status.json", lambda p: p.write_text('{"state": "finis'), lambda s, r: s.status(r)),
    "status.json, a digest null": (
        "finished",
        "status.json",
        _edit_status(**{"digests/trajectory.parquet": None}),
        lambda s, r: s.status(r),
    ),
    "status.json, a digest's size a string": (
        "interrupted",
        "status.json",
        _edit_status(**{"digests/config.json": {"size": "12", "sha256": "0" * 64}}),
        lambda s, r: s.status(r),
    ),
    "status.json, parts a string": ("interrupted", "status.json", _edit_status(parts="ab"), lambda s, r: s.status(r)),
    "status.json, a part's step a float": (
        "interrupted",
        "status.json",
        _edit_status(parts=[0, 2.0]),
        lambda s, r: s.status(r),
    ),
    "status.json, parts null": ("interrupted", "status.json", _edit_status(parts=None), lambda s, r: s.status(r)),
    "config.json": ("finished", "config.json", lambda p: p.write_text("[1, 2"), lambda s, r: s.config(r)),
    "config.json missing": ("finished", "config.json", lambda p: p.unlink(), lambda s, r: s.config(r)),
    "config.json edited, same size": ("finished", "config.json", _edit_lr, lambda s, r: s.config(r)),
    "config.json missing (interrupted)": ("interrupted", "config.json", lambda p: p.unlink(), lambda s, r: s.config(r)),
    "tasks.json": ("finished", "tasks.json", lambda p: p.write_bytes(b"\xff\xfe\x00"), None),
    "trajectory.parquet": ("finished", "trajectory.parquet", _truncate, lambda s, r: s.trajectory(r)),
    "checkpoint.pt": ("interrupted", "checkpoint.pt", _garbage, None),
    "parts/*.parquet": ("interrupted", "parts/000000000002.parquet", _truncate, lambda s, r: s.trajectory(r)),
    "selected/*.pt": ("finished", "selected", _truncate, None),
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_file_is_named_listed_checked_and_retrained(kind, stores, setting, tmp_path, capsys):
    config, finished, interrupted = stores
    which, name, damage, reader = DAMAGES[kind]
    store = _copy(finished if which == "finished" else interrupted, tmp_path)
    run_id = config.run_id
    path = store.run_dir(run_id) / name
    if path.is_dir():
        path = sorted(path.glob("*.pt"))[0]
        name = str(path.relative_to(store.run_dir(run_id)))
    damage(path)

    if reader is not None:  # the reader names the file and the run instead of a bare parser error
        with pytest.raises(DamagedStoreError, match=run_id) as err:
            reader(store, run_id)
        assert str(path) in str(err.value)
    index = store.runs()
    assert index["state"].tolist() == ["damaged"] and name in index["message"].iloc[0]
    assert not store.is_done(run_id)
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert str(path) in capsys.readouterr().out

    # A rerun rewrites or retrains what cannot be trusted: the rows equal the undamaged run's.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train_run(config, store, setting=setting, progress=False) == "finished"
    assert any(issubclass(w.category, DamagedRunWarning) for w in caught)
    pd.testing.assert_frame_equal(store.trajectory(run_id), finished.trajectory(run_id))
    for written in ("config.json", "tasks.json"):  # rewritten as the run wrote them (the run id says what they held)
        assert (store.run_dir(run_id) / written).read_bytes() == (finished.run_dir(run_id) / written).read_bytes()
    assert store.runs()["state"].tolist() == ["finished"] and store.check().empty
    assert main(["runs", "--store", str(store.root), "--check"]) == 0


def test_a_rerun_resumes_from_a_checkpoint_it_can_trust(stores, setting, tmp_path, monkeypatch):
    """A damaged part after the checkpoint is recomputed; nothing before it is retrained."""
    config, finished, interrupted = stores
    store = _copy(interrupted, tmp_path)
    _truncate(store.run_dir(config.run_id) / "parts" / "000000000004.parquet")
    resumed_from = []
    original = trainer.TrainingRun.start
    run_class = trainer.TrainingRun
    monkeypatch.setattr(run_class, "start", lambda self: resumed_from.append(original(self)) or resumed_from[-1])
    assert train_run(config, store, setting=setting, progress=False) == "finished"
    assert resumed_from == [2]
    pd.testing.assert_frame_equal(store.trajectory(config.run_id), finished.trajectory(config.run_id))


def test_a_checkpoint_of_an_earlier_version_without_diagnostics_or_selected_models_resumes(
    stores, setting, tmp_path, monkeypatch
):
    """A checkpoint written before the method diagnostics and the selected models existed lacks both keys: the
    run resumes from it (nothing accumulated, nothing selected yet) instead of failing every resume."""
    config, finished, interrupted = stores
    store = _copy(interrupted, tmp_path)
    path = store.checkpoint_path(config.run_id)
    checkpoint = Checkpoint.load(path)
    old_state = {k: v for k, v in checkpoint.state.items() if k not in ("method_diagnostics", "selected")}
    torch.save(Checkpoint(checkpoint.step, old_state, checkpoint.torch_rng, checkpoint.cuda_rng).to_payload(), path)
    status_path = store.run_dir(config.run_id) / "status.json"
    status = json.loads(status_path.read_text())
    status["digests"]["checkpoint.pt"] = file_digest(path)  # as the earlier version recorded it
    status_path.write_text(json.dumps(status))
    resumed_from = []
    original = trainer.TrainingRun.start
    monkeypatch.setattr(
        trainer.TrainingRun, "start", lambda self: resumed_from.append(original(self)) or resumed_from[-1]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedRunWarning)
        assert train_run(config, store, setting=setting, progress=False) == "finished"
    assert resumed_from == [2]  # resumed, not retrained
    rows, reference = store.trajectory(config.run_id), finished.trajectory(config.run_id)
    kept = rows["step"] <= 2
    pd.testing.assert_frame_equal(rows[kept], reference[reference["step"] <= 2])


@pytest.mark.parametrize(
    "name, damage",
    [
        ("config.json", lambda p: p.write_text("{")),
        ("status.json", _edit_status(**{"digests/trajectory.parquet": None})),  # raised AttributeError
        ("status.json", _edit_status(parts=[0, 2.0])),  # raised ValueError
    ],
)
def test_report_and_index_survive_a_damaged_run(name, damage, stores, tmp_path, capsys):
    config, finished, _ = stores
    store = _copy(finished, tmp_path)
    damage(store.run_dir(config.run_id) / name)
    if name == "config.json":
        assert store.task_info() == {}  # the damaged run's task info is not trusted
    assert main(["runs", "--store", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert "damaged" in captured.out and name in captured.err
    assert main(["report", "--store", str(store.root), "--out", str(tmp_path / "report")]) == 2
    assert f"{config.run_id} (damaged)" in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_store_files_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        RunStore(tmp_path).set_status("r", "running", 0)
        atomic_write(tmp_path / "table.csv", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(previous)
    for path in (tmp_path / "runs" / "r" / "status.json", tmp_path / "table.csv"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_run_whose_lock_nobody_holds_is_interrupted(stores, tmp_path):
    config, _, interrupted = stores
    store = _copy(interrupted, tmp_path)
    assert store.status(config.run_id)["state"] == "running"
    assert store.runs()["state"].tolist() == ["interrupted"]
    with store.lock(config.run_id):
        assert store.runs()["state"].tolist() == ["running"]
    assert main(["runs", "--store", str(store.root), "--state", "interrupted"]) == 0


def test_leftover_temporary_files_are_named_and_removed_on_rerun(stores, setting, tmp_path, capsys):
    config, finished, interrupted = stores
    for source, name in ((interrupted, "interrupted"), (finished, "finished")):
        store = _copy(source, tmp_path / name)
        run_dir = store.run_dir(config.run_id)
        stale = [run_dir / ".status.json.x1y2.tmp", run_dir / "parts" / ".000000000004.parquet.abc.tmp"]
        for path in stale:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"")
        capsys.readouterr()
        assert main(["runs", "--store", str(store.root), "--check"]) == 1
        out = capsys.readouterr().out
        assert all(str(path) in out for path in stale)
        # Rerunning (as a study or sweep does) removes them, whether the run is complete or not.
        results = SerialExecutor().run([config], store, progress=False)
        assert results["state"].tolist() == ["finished"]
        assert not any(path.exists() for path in stale) and store.check().empty


def test_a_damaged_checkpoint_of_a_finished_run_is_a_leftover_not_damage(stores, setting, tmp_path, capsys):
    """A finished run needs no checkpoint (its rows are merged): one that no longer reads leaves the run
    ``finished`` and in every analysis (it made an intact run ``damaged`` and left it out of the report); it
    is named by ``runs --check`` and removed by a rerun, which trains nothing."""
    config, finished, _ = stores
    store = _copy(finished, tmp_path)
    checkpoint = store.checkpoint_path(config.run_id)
    _truncate(checkpoint)
    assert store.runs().set_index("run_id").loc[config.run_id, "state"] == "finished"
    assert store.is_done(config.run_id, deep=True)
    problems = store.check()
    assert problems["path"].tolist() == [str(checkpoint)]
    assert "checkpoint of a complete run that does not read" in problems["problem"].iloc[0]
    assert main(["runs", "--store", str(store.root), "--check"]) == 1 and str(checkpoint) in capsys.readouterr().out
    rows = store.trajectory(config.run_id)
    assert SerialExecutor().run([config], store, progress=False)["state"].tolist() == ["finished"]
    assert not checkpoint.exists() and store.check().empty
    pd.testing.assert_frame_equal(store.trajectory(config.run_id), rows)  # nothing retrained


def test_an_unreadable_row_part_left_in_a_finished_run_is_a_leftover_not_damage(stores, tmp_path, capsys):
    """A kill between merging a run's rows and removing its parts leaves parts a complete run needs no more: one
    that does not read left the run ``damaged`` (out of every analysis, its rows retrained) while ``runs --check``
    also named it a leftover.  Now the run stays ``finished``, the part is named once, as a leftover, and a rerun
    removes it and trains nothing."""
    config, finished, _ = stores
    store = _copy(finished, tmp_path)
    part = store.run_dir(config.run_id) / "parts" / "000000000002.parquet"
    part.parent.mkdir(exist_ok=True)
    part.write_bytes(b"PAR1 not a parquet file")
    assert store.runs().set_index("run_id").loc[config.run_id, "state"] == "finished"
    assert store.is_done(config.run_id, deep=True) and store.damaged_files(config.run_id, deep=True) == {}
    problems = store.check()
    assert problems["path"].tolist() == [str(part)]
    assert "row part left in a complete run" in problems["problem"].iloc[0]
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert capsys.readouterr().out.count(str(part)) == 1
    merged = (store.run_dir(config.run_id) / "trajectory.parquet").read_bytes()
    assert SerialExecutor().run([config], store, progress=False)["state"].tolist() == ["finished"]
    assert not part.exists() and store.check().empty
    assert (store.run_dir(config.run_id) / "trajectory.parquet").read_bytes() == merged  # nothing retrained


def test_a_run_trains_under_its_recorded_thread_count_and_refuses_another(stores, setting, tmp_path, monkeypatch):
    config, finished, interrupted = stores
    assert finished.status(config.run_id)["threads"] == config.threads == 1
    assert Checkpoint.load(finished.checkpoint_path(config.run_id)).state["threads"] == 1
    two = config.model_copy(update={"threads": 2})
    assert two.run_id == config.run_id and "threads" not in config.identity()  # run ids do not change

    store = _copy(interrupted, tmp_path)
    seen = []
    original = trainer.TrainingRun.batch_losses
    run_class = trainer.TrainingRun
    monkeypatch.setattr(run_class, "batch_losses", lambda self: seen.append(torch.get_num_threads()) or original(self))
    torch.set_num_threads(2)
    try:
        with pytest.raises(ThreadCountError, match="--threads 1"):
            train_run(two, store, setting=setting, progress=False)
        assert seen == [] and torch.get_num_threads() == 2
        assert train_run(config, store, setting=setting, progress=False) == "finished"
        assert set(seen) == {1} and torch.get_num_threads() == 2  # set for the run, restored after
    finally:
        torch.set_num_threads(1)
    pd.testing.assert_frame_equal(store.trajectory(config.run_id), finished.trajectory(config.run_id))


def test_local_workers_stop_quietly_when_the_driver_is_killed(tmp_path):
    raw = {**RAW, "save_selected_models": False, "epochs": 400}  # long enough to outlive its driver
    run_id = resolve_config(parse_config(raw)).run_id
    store, log = RunStore(tmp_path / "store"), tmp_path / "stderr.log"

    def drive() -> None:  # the driver process: one local worker trains the run
        with LocalExecutor(workers=1) as executor:
            executor.run([parse_config(raw)], RunStore(store.root), progress=False)

    driver = fork(drive, stderr=log)  # the worker it spawns writes its standard error there too
    deadline = time.time() + 120
    while time.time() < deadline and not (store.run_dir(run_id) / "status.json").exists():
        time.sleep(0.02)
    assert store.is_locked(run_id), "the worker should be training"
    assert store.status(run_id)["threads"] == 1  # the run's own count, whatever the executor
    driver.kill()  # SIGKILL
    driver.join()
    deadline = time.time() + 30
    while time.time() < deadline and store.is_locked(run_id):
        time.sleep(0.05)
    time.sleep(0.5)  # a traceback, if any, has been written
    assert not store.is_locked(run_id), "the orphaned worker trained on"
    assert store.runs()["state"].tolist() == ["interrupted"]
    assert "Traceback" not in log.read_text() and "BrokenPipeError" not in log.read_text()


@pytest.mark.parametrize("killed_after", ["pending checkpoint", "its status"])
def test_a_kill_inside_a_checkpoint_commit_leaves_a_run_that_resumes(killed_after, setting, tmp_path, monkeypatch):
    """The checkpoint at step 4 is killed after its pending file (the status still records step 2's) or after
    the status recording it (the rename not done).  Either way the run reads as ``interrupted``, not
    ``damaged``; ``runs --check`` names an unrecorded pending checkpoint as a leftover; a rerun resumes from
    the checkpoint the status records (step 2, or 4 after completing the rename), not from scratch, and its
    rows equal an uninterrupted run's."""
    raw = {**RAW, "epochs": 3}  # checkpoints at steps 2, 4 and 6
    config = resolve_config(parse_config(raw), setting)
    finished = RunStore(tmp_path / "finished")
    train_run(config, finished, setting=setting, progress=False)
    store = RunStore(tmp_path / "store")
    stop_in = "set_status" if killed_after == "pending checkpoint" else "commit_checkpoint"
    original = getattr(RunStore, stop_in)

    def stop_at_step_4(self, run_id, *args, **kwargs):
        if (
            self.pending_checkpoint_path(run_id).exists()
            and Checkpoint.load(self.pending_checkpoint_path(run_id)).step == 4
        ):
            raise Interrupt
        return original(self, run_id, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, stop_in, stop_at_step_4)
        with pytest.raises(Interrupt):
            train_run(config, store, setting=setting, progress=False)
    run_id = config.run_id
    pending = store.pending_checkpoint_path(run_id)
    assert pending.exists() and store.runs()["state"].tolist() == ["interrupted"]
    assert store.damaged_files(run_id, deep=True) == {}
    recorded = killed_after == "its status"
    assert store.committed_checkpoint(run_id) == (pending if recorded else store.checkpoint_path(run_id))
    assert (pending in store.leftover_files(run_id)) is not recorded
    assert main(["runs", "--store", str(store.root), "--check"]) == (0 if recorded else 1)
    resumed_from = []
    original_start = trainer.TrainingRun.start
    monkeypatch.setattr(
        trainer.TrainingRun, "start", lambda self: resumed_from.append(original_start(self)) or resumed_from[-1]
    )
    assert train_run(config, store, setting=setting, progress=False) == "finished"
    assert resumed_from == [4 if recorded else 2] and not pending.exists()
    pd.testing.assert_frame_equal(store.trajectory(run_id), finished.trajectory(run_id))


def _as_a_handle_records(store: RunStore) -> RunStore:
    """Record each run's ``config.json`` and ``tasks.json`` digests in its status, as a run's handle does
    (planted stores are written without them)."""
    for run_id in store.run_ids():
        status, run_dir = store.status(run_id), store.run_dir(run_id)
        digests = {**status["digests"], **{n: file_digest(run_dir / n) for n in ("config.json", "tasks.json")}}
        store.set_status(run_id, status["state"], status["step"], digests=digests)
    return store


CONFIG_DAMAGES = {
    "missing": lambda p: p.unlink(),
    "edited, same size": _edit_lr,
    "truncated to 0 bytes": lambda p: p.write_bytes(b""),
}
DAMAGED_RUN = "planted-stl-b-sum-s1"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Three seeds of STL and MTL runs of setting ``planted`` (no training), with the digests a handle records."""
    return _as_a_handle_records(planted_store(tmp_path_factory.mktemp("planted") / "store", seeds=range(3)))


@pytest.mark.parametrize("kind", list(CONFIG_DAMAGES))
def test_a_run_whose_config_is_missing_or_damaged_is_damaged_and_named_by_every_reader(kind, planted, tmp_path, capsys):
    """The run is ``damaged`` in the index and named by ``runs --check``; the report leaves it out and names it
    (stderr and left_out_runs.csv) whatever its filters, and its numbers are those of the other runs (task b's
    STL at two seeds, no setting label made of the edited config)."""
    store = _copy(planted, tmp_path)
    path = store.run_dir(DAMAGED_RUN) / "config.json"
    CONFIG_DAMAGES[kind](path)

    index = store.runs().set_index("run_id")
    assert index.loc[DAMAGED_RUN, "state"] == "damaged" and "config.json" in index.loc[DAMAGED_RUN, "message"]
    assert pd.isna(index.loc[DAMAGED_RUN, "setting"])  # nothing of an untrusted config enters the index
    assert not store.is_done(DAMAGED_RUN) and ("planted", "b") in store.task_info()
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert str(path) in capsys.readouterr().out
    for filters in ({}, {"settings": ["planted"], "methods": ["sum"], "where": {"lr": ["0.001"]}}):
        left_out = selected_runs(store, **filters).left_out.set_index("run_id")
        assert left_out.loc[DAMAGED_RUN, "state"] == "damaged", filters

    out = tmp_path / "report"
    filters = ["--setting", "planted", "--methods", "sum", "--where", "lr=0.001"]
    assert main(["report", "--store", str(store.root), "--out", str(out), *filters]) == 0
    err = capsys.readouterr().err
    assert f"left out run {DAMAGED_RUN}: damaged: config.json" in err and "Traceback" not in err
    left_out = pd.read_csv(out / "tables" / "left_out_runs.csv")
    assert left_out[["run_id", "state"]].values.tolist() == [[DAMAGED_RUN, "damaged"]]
    transfer = pd.read_csv(out / "tables" / "transfer.csv").set_index("task")
    assert transfer.loc["b", "n_stl"] == 2 and transfer.loc["a", "n_stl"] == 3
    assert set(transfer["setting"]) == {"planted"} and transfer.loc["a", "n_mtl"] == 3


def test_plan_with_a_store_holding_an_unparseable_config_names_the_run(planted, tmp_path, capsys):
    """``plan --store`` (and so ``study --dry-run --store``) names the damaged run and plans from the others."""
    store = _copy(planted, tmp_path)
    (store.run_dir(DAMAGED_RUN) / "config.json").write_bytes(b"")
    capsys.readouterr()
    assert main(["plan", "planted", "--store", str(store.root)]) == 0
    out, err = capsys.readouterr()
    assert f"left out run {DAMAGED_RUN} of --store" in err and "config.json" in err
    assert "seed plan: planted" in out and "Traceback" not in out + err


def test_a_directory_without_config_is_a_run_only_once_it_recorded_something(tmp_path, capsys):
    """A directory holding only the lock of a run being started (and a temporary file of its config being
    written) is not a run yet; once it holds a file the run records, a missing config is damage."""
    store = RunStore(tmp_path / "store")
    run_dir = store.run_dir("r")
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").touch()
    (run_dir / ".config.json.0123456789ab.tmp").write_text("{")
    assert store.run_ids() == [] and store.runs().empty
    (run_dir / ".config.json.0123456789ab.tmp").unlink()
    store.set_status("r", "running", 0)
    assert store.run_ids() == ["r"] and store.damaged_files("r") == {
        "config.json": "missing: the run recorded files but its config is gone"
    }
    assert store.runs()["state"].tolist() == ["damaged"]
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert str(run_dir / "config.json") in capsys.readouterr().out
