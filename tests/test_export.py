"""`mtlens export --to mlflow` against a real MLflow client and a real local tracking store (sqlite file): every
run, parameter, state and metric series (probe curves included) of a tiny study reads back through
``MlflowClient``; a second export duplicates nothing; a run exported while it trains gains its later steps
and final status; a damaged run is skipped, named, and makes the command exit 1.  `--to tensorboard`: every
series reads back through TensorBoard's ``EventAccumulator``, and a second export rewrites nothing."""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtlens import Recorder, RunStore
from mtlens.cli import main
from mtlens.integrations.mlflow import RUN_ID_TAG
from mtlens.integrations.series import SeriesClashError, metric_key, metric_series


@pytest.fixture(scope="module")
def study_store(tmp_path_factory) -> RunStore:
    """A demo-like tiny study: 2 seeds, STL per task and MTL (sum), with probes (pair and per-run rows too)."""
    root = tmp_path_factory.mktemp("export") / "store"
    argv = ["study", "digits_pair", "--seeds", "2", "--epochs", "2", "--eval-every-steps", "4", "--store", str(root)]
    argv += ["--option", "n_train=128", "--option", "n_val=64", "--option", "n_test=64", "--quiet"]
    argv += ["--set", "probes=[coherence,conflict]", "--set", "probe_sample_size=32"]
    assert main(argv) == 0
    return RunStore(root)


@pytest.fixture(scope="module")
def new_tracking_db(tmp_path_factory) -> Path:
    """A new MLflow tracking store (sqlite file) as MLflow makes it on first use: its tables created, no run."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(new_tracking_db: Path, tmp_path: Path) -> str:
    """The URI of the test's own copy of :func:`new_tracking_db`: creating the tables takes MLflow about 2 s per
    store (the first export test still has its store made from nothing)."""
    shutil.copyfile(new_tracking_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def mlflow_runs(client, experiment: str = "mtlens") -> dict[str, object]:
    """The experiment's live MLflow runs by their mtlens run id."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=1000)
    by_id = {run.data.tags[RUN_ID_TAG]: run for run in runs}
    assert len(by_id) == len(runs), "an mtlens run was exported twice"
    return by_id


def test_export_to_mlflow_reads_back_every_run_param_and_series_and_is_idempotent(study_store, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["export", "--to", "mlflow", "--store", str(study_store.root), "--tracking-uri", uri, "--quiet"]
    assert main(argv) == 0
    assert "6 created" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=uri)
    exported = mlflow_runs(client)
    index = study_store.runs().set_index("run_id")
    assert set(exported) == set(index.index)
    rows = study_store.trajectories()
    assert {"probe/grad_coherence", "probe/conflict_cosine", "probe/update_norm"} <= set(rows["quantity"])
    lengths = {}
    for run_id, run in exported.items():
        config = study_store.config(run_id)
        expected = {
            k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v) for k, v in config.items()
        }
        assert run.data.params == expected, run_id
        assert run.data.tags["mtlens.state"] == "finished" and run.info.status == "FINISHED"
        assert run.data.tags["mtlens.mode"] == index.loc[run_id, "mode"] and run.info.run_name == run_id
        own = rows[rows["run_id"] == run_id]
        series = own.groupby(["quantity", "task", "step"])["value"].mean()
        pairs = series.index.droplevel("step").unique()
        assert set(run.data.metrics) == {metric_key(q, t) for q, t in pairs} | {"epoch"}  # one series each
        for quantity, task in pairs:
            history = client.get_metric_history(run.info.run_id, metric_key(quantity, task))
            expected_series = series.loc[(quantity, task)]
            assert [m.step for m in history] == sorted(expected_series.index), (run_id, quantity, task)
            got = {m.step: m.value for m in history}
            assert got == pytest.approx(expected_series.to_dict(), rel=1e-12, nan_ok=True), (run_id, quantity, task)
            lengths[run.info.run_id, quantity, task] = len(history)
        epochs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch")}
        assert epochs == pytest.approx(own.groupby("step")["epoch"].first().to_dict())
    assert any("|" in task for _, _, task in lengths) and any(task == "*" for _, _, task in lengths)

    # again: nothing new, nothing duplicated
    assert main(argv) == 0
    assert "6 unchanged" in capsys.readouterr().out
    again = mlflow_runs(client)
    assert {r.info.run_id for r in again.values()} == {r.info.run_id for r in exported.values()}
    for (mlflow_id, quantity, task), n in lengths.items():
        assert len(client.get_metric_history(mlflow_id, metric_key(quantity, task))) == n


def test_export_follows_a_recorded_run_while_it_trains(tmp_path, capsys, tracking_uri):
    """Exported while running (status RUNNING, the steps so far), then again when finished: the same MLflow run
    gains the new steps and its final status, and nothing is logged twice."""
    store = RunStore(tmp_path / "store")
    argv = ["export", "--to", "mlflow", "--store", str(store.root), "--tracking-uri", tracking_uri, "--quiet"]
    client = MlflowClient(tracking_uri=tracking_uri)
    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2, hyperparameters={"lr": 0.1}) as rec:
        for step in (0, 1, 2):
            rec.log(step, "val", {"a": {"loss": 1.0 / (step + 1), "error": 0.5}})
        rec.flush()
        assert main(argv) == 0
        assert "1 created" in capsys.readouterr().out
        (run,) = mlflow_runs(client).values()
        assert run.info.status == "RUNNING" and run.data.tags["mtlens.state"] == "running"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss/a")] == [0, 1, 2]
        assert run.data.params["lr"] == "0.1"
        rec.log(3, "val", {"a": {"loss": 0.2, "error": 0.25}})
    assert main(argv) == 0
    assert "1 updated" in capsys.readouterr().out
    (again,) = mlflow_runs(client).values()
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/loss/a")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (3, 0.2)]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "epoch")] == [0, 0.5, 1, 1.5]


def test_export_follow_shows_a_recorded_run_live_and_ends_when_it_finishes(tmp_path, capsys, tracking_uri):
    """`export --follow` in the background while a loop records: the steps flushed so far reach MLflow while the
    run is still open, the rest after it finishes, and the command then ends on its own."""
    store = RunStore(tmp_path / "store")
    client = MlflowClient(tracking_uri=tracking_uri)
    argv = ["export", "--to", "mlflow", "--store", str(store.root), "--tracking-uri", tracking_uri]
    argv += ["--follow", "0.2", "--quiet"]
    follower: threading.Thread | None = None
    exit_codes: list[int] = []

    def steps_in_mlflow() -> list[int]:
        experiment = client.get_experiment_by_name("mtlens")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return [m.step for m in client.get_metric_history(runs[0].info.run_id, "val/loss/a")] if runs else []

    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2) as rec:
        for step in (0, 1, 2):
            rec.log(step, "val", {"a": {"loss": 1.0 / (step + 1)}})
        rec.flush()
        follower = threading.Thread(target=lambda: exit_codes.append(main(argv)))
        follower.start()
        deadline = time.monotonic() + 120
        while steps_in_mlflow() != [0, 1, 2]:  # live: in MLflow while the run is open
            assert time.monotonic() < deadline and follower.is_alive(), "the flushed steps never reached MLflow"
            time.sleep(0.2)
        rec.log(3, "val", {"a": {"loss": 0.2}})
    follower.join(timeout=120)
    assert not follower.is_alive() and exit_codes == [0]
    assert steps_in_mlflow() == [0, 1, 2, 3]
    (run,) = mlflow_runs(client).values()
    assert run.info.status == "FINISHED"


def test_export_recreates_a_run_whose_recorded_values_were_replaced(tmp_path, capsys, tracking_uri):
    """A run resumed from an earlier step records other values at steps already exported: MLflow cannot replace
    a logged value, so the export deletes that MLflow run and writes the run afresh (never two values at a step)."""
    store = RunStore(tmp_path / "store")
    argv = ["export", "--to", "mlflow", "--store", str(store.root), "--tracking-uri", tracking_uri, "--quiet"]
    client = MlflowClient(tracking_uri=tracking_uri)
    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2) as rec:
        for step in (0, 1, 2):
            rec.log(step, "val", {"a": {"loss": 1.0 / (step + 1)}})
        rec.flush()
        assert main(argv) == 0
        (first,) = mlflow_runs(client).values()
        rec.resume_from(1)  # e.g. restarted from a checkpoint at step 1: step 2 is trained again
        rec.log(2, "val", {"a": {"loss": 0.4}})
    assert main(argv) == 0
    assert "1 recreated" in capsys.readouterr().out
    (run,) = mlflow_runs(client).values()
    assert run.info.run_id != first.info.run_id
    assert client.get_run(first.info.run_id).info.lifecycle_stage == "deleted"
    history = client.get_metric_history(run.info.run_id, "val/loss/a")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.4)]


def copy_of(store: RunStore, root) -> RunStore:
    shutil.copytree(store.root, root)
    return RunStore(root)


def test_export_skips_a_damaged_run_names_it_and_exits_1(study_store, tmp_path, capsys, tracking_uri):
    copy = copy_of(study_store, tmp_path / "copy")
    damaged = sorted(copy.run_ids())[0]
    (copy.run_dir(damaged) / "status.json").write_text("{not json")
    argv = ["export", "--to", "mlflow", "--store", str(copy.root), "--tracking-uri", tracking_uri]
    argv += ["--experiment", "damaged"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert f"{damaged} not exported" in captured.err and "status.json" in captured.err
    assert "5 created, 1 skipped" in captured.out
    client = MlflowClient(tracking_uri=tracking_uri)
    assert set(mlflow_runs(client, "damaged")) == set(copy.run_ids()) - {damaged}


def test_export_of_an_empty_store_is_an_error(tmp_path, capsys):
    assert (
        main(["export", "--to", "mlflow", "--store", str(tmp_path), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
        == 2
    )
    assert "nothing to export" in capsys.readouterr().err


def test_export_to_tensorboard_reads_back_every_series_and_is_idempotent(study_store, tmp_path, capsys):
    logdir = tmp_path / "tb"
    argv = ["export", "--to", "tensorboard", "--store", str(study_store.root), "--logdir", str(logdir), "--quiet"]
    assert main(argv) == 0
    assert "6 created" in capsys.readouterr().out
    rows = study_store.trajectories()
    for run_id in study_store.run_ids():
        events = EventAccumulator(str(logdir / run_id))
        events.Reload()
        own = rows[rows["run_id"] == run_id]
        series = own.groupby(["quantity", "task", "step"])["value"].mean()
        pairs = series.index.droplevel("step").unique()
        assert set(events.Tags()["scalars"]) == {metric_key(q, t) for q, t in pairs} | {"epoch"}
        for quantity, task in pairs:
            got = {e.step: e.value for e in events.Scalars(metric_key(quantity, task))}
            assert got == pytest.approx(series.loc[(quantity, task)].to_dict(), rel=1e-6, nan_ok=True)
        assert {"config/text_summary", "status/text_summary"} <= set(events.Tags()["tensors"])
    files = sorted(logdir.rglob("events.*"))
    assert len(files) == 6
    assert main(argv) == 0  # again: every run unchanged, not one event file added or rewritten
    assert "6 unchanged" in capsys.readouterr().out
    assert sorted(logdir.rglob("events.*")) == files
    # An export killed between its two renames left one run set aside and another half-written: the next
    # export puts the first back (unchanged, its events intact) and clears both leftovers.
    first, second = study_store.run_ids()[:2]
    (logdir / first).rename(logdir / f".{first}.old-999")
    (logdir / f".{second}.tmp-998").mkdir()
    assert main(argv) == 0
    assert "6 unchanged" in capsys.readouterr().out
    assert sorted(logdir.rglob("events.*")) == files and not list(logdir.glob(".*"))
    # --logdir without its value: argparse's one line, exit 2
    assert main(["export", "--to", "tensorboard", "--store", str(study_store.root), "--logdir"]) == 2
    assert main(["export", "--to", "tensorboard", "--store", str(study_store.root)]) == 2
    assert "--logdir: required with --to tensorboard" in capsys.readouterr().err


@pytest.mark.parametrize("tasks", [["a:b", "a_b"], ["a vs b", "a", "b"]])
def test_a_run_two_of_whose_series_would_get_one_name_is_skipped_named_not_merged(
    tmp_path, capsys, tracking_uri, tasks
):
    """A tracker's metric names keep only letters, digits, ``_ - . /`` and space: the tasks ``a:b`` and ``a_b``
    would both be ``val/loss/a_b``, and the task ``a vs b`` and the pair ``a|b`` both ``... vs ...``.  Such a run
    is skipped and named (exit 1) by both exports, never written with one series lost; the others are exported."""
    store = RunStore(tmp_path / "store")
    with Recorder(store, "toy", tasks, seed=0, steps_per_epoch=1) as rec:
        for step in (0, 1):
            rec.log(step, "val", {t: {"loss": float(i + step)} for i, t in enumerate(tasks)})
            if len(tasks) == 3:  # a probe's per-task row of the task 'a vs b' and its per-pair row of a|b
                rec.handle.record(step, float(step), {("a vs b", "probe/x"): 1.0, ("a|b", "probe/x"): 2.0})
    with Recorder(store, "toy", ["c"], seed=0, steps_per_epoch=1) as fine:
        fine.log(0, "val", {"c": 1.0})
    key = "val/loss/a_b" if len(tasks) == 2 else "probe/x/a vs b"
    with pytest.raises(SeriesClashError, match=re.escape(f"would both be named {key!r}")):
        metric_series(store.trajectory(rec.run_id))
    logdir = tmp_path / "tb"
    for argv in (
        ["export", "--to", "mlflow", "--store", str(store.root), "--tracking-uri", tracking_uri, "--quiet"],
        ["export", "--to", "tensorboard", "--store", str(store.root), "--logdir", str(logdir), "--quiet"],
    ):
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert "1 created, 1 skipped" in captured.out
        assert f"{rec.run_id} not exported: " in captured.err and repr(key) in captured.err
    assert set(mlflow_runs(MlflowClient(tracking_uri=tracking_uri))) == {fine.run_id}
    assert sorted(p.name for p in logdir.iterdir()) == [fine.run_id]


def tensorboard_values(logdir, run_id: str, key: str) -> dict[int, float]:
    """``{step: value}`` of the scalar series ``key`` of the TensorBoard run ``logdir/run_id``."""
    events = EventAccumulator(str(logdir / run_id))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(key)}


def _tensorboard_export(tmp_path: Path) -> tuple[RunStore, Path, list[str]]:
    """A store, a TensorBoard logdir and the command line that exports the one into the other."""
    store, logdir = RunStore(tmp_path / "store"), tmp_path / "tb"
    argv = ["export", "--to", "tensorboard", "--store", str(store.root), "--logdir", str(logdir), "--quiet"]
    return store, logdir, argv


def test_tensorboard_rewrites_a_run_whose_values_changed_at_the_same_row_count(tmp_path, capsys):
    """A run resumed from step 1 again records another value at step 2: state, last step and row count are what
    was exported, only a value differs; the export sees it (the marker's digest of every value) and rewrites the
    run, so TensorBoard shows the store's value, not the one the store replaced (audit C)."""
    store, logdir, argv = _tensorboard_export(tmp_path)
    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2) as rec:
        for step in (0, 1, 2):
            rec.log(step, "val", {"a": {"loss": 1.0 / (step + 1)}})
        rec.resume_from(1)  # restarted from step 1 twice: both exports see the same state and last step
        rec.log(2, "val", {"a": {"loss": 1 / 3}})
        rec.flush()
        assert main(argv) == 0
        assert "1 created" in capsys.readouterr().out
        exported = store.runs()[["state", "last_step"]].to_dict("records"), len(store.trajectory(rec.run_id))
        rec.resume_from(1)
        rec.log(2, "val", {"a": {"loss": 0.4}})
        rec.flush()
        assert (store.runs()[["state", "last_step"]].to_dict("records"), len(store.trajectory(rec.run_id))) == exported
        assert main(argv) == 0
        assert "1 updated" in capsys.readouterr().out
        assert tensorboard_values(logdir, rec.run_id, "val/loss/a") == pytest.approx({0: 1.0, 1: 0.5, 2: 0.4})
        assert main(argv) == 0
        assert "1 unchanged" in capsys.readouterr().out


def test_tensorboard_rewrites_once_a_run_exported_before_its_marker_had_a_digest(tmp_path, capsys):
    """A logdir written by an mtlens whose marker held only state, last step and row count: the next export
    cannot tell whether its values are the store's, so it rewrites each run once (``updated``, the same values,
    one event file) and leaves it alone from then on (audit C)."""
    store, logdir, argv = _tensorboard_export(tmp_path)
    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2) as rec:
        for step in (0, 1, 2):
            rec.log(step, "val", {"a": {"loss": 1.0 / (step + 1)}})
    assert main(argv) == 0
    assert "1 created" in capsys.readouterr().out
    marker = logdir / rec.run_id / "mtlens.json"
    written = json.loads(marker.read_text())
    assert set(written) == {"state", "last_step", "rows", "digest"}
    old = {key: written[key] for key in ("state", "last_step", "rows")}  # the earlier marker, exactly
    marker.write_text(json.dumps(old))
    before = sorted((logdir / rec.run_id).glob("events.*"))
    assert main(argv) == 0
    assert "1 updated" in capsys.readouterr().out
    assert json.loads(marker.read_text()) == written
    after = sorted((logdir / rec.run_id).glob("events.*"))
    assert len(after) == 1 and after != before
    assert tensorboard_values(logdir, rec.run_id, "val/loss/a") == pytest.approx({0: 1.0, 1: 0.5, 2: 1 / 3})
    assert main(argv) == 0
    assert "1 unchanged" in capsys.readouterr().out


def test_mlflow_export_of_infinities_twice_leaves_the_run_in_place(tmp_path, capsys, tracking_uri):
    """MLflow's SQL store keeps ±inf as ±``sys.float_info.max``: read back, that is the store's ±inf, so a second
    export finds the run unchanged -- same MLflow run, nothing deleted -- rather than deleting and recreating it
    every time (audit C).  The values MLflow holds are the ones logged, NaN included."""
    store = RunStore(tmp_path / "store")
    argv = ["export", "--to", "mlflow", "--store", str(store.root), "--tracking-uri", tracking_uri, "--quiet"]
    values = {0: math.nan, 1: math.inf, 2: -math.inf, 3: 1.0}
    with Recorder(store, "toy", ["a"], seed=0, steps_per_epoch=2) as rec:
        for step, value in values.items():
            rec.log(step, "val", {"a": {"loss": 0.5, "ratio": value}})
    assert main(argv) == 0
    assert "1 created" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=tracking_uri)
    (first,) = mlflow_runs(client).values()
    held = {m.step: m.value for m in client.get_metric_history(first.info.run_id, "val/ratio/a")}
    assert math.isnan(held.pop(0)) and held == {1: sys.float_info.max, 2: -sys.float_info.max, 3: 1.0}
    for _ in range(2):
        assert main(argv) == 0
        assert "1 unchanged" in capsys.readouterr().out
    (again,) = mlflow_runs(client).values()
    assert again.info.run_id == first.info.run_id
    experiment_id = client.get_experiment_by_name("mtlens").experiment_id
    assert client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY) == []


def test_the_tracking_uri_is_checked_without_mlflow_retries():
    """While export first checks the URI, MLflow's HTTP requests are not retried and time out (a wrong port
    was 4 minutes of silence), unless the user set those variables; both are restored afterwards."""
    import os

    from mtlens.integrations.mlflow import CONNECT_TIMEOUT_S, _no_retries

    keys = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    before = {key: os.environ.get(key) for key in keys}
    with _no_retries():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == str(CONNECT_TIMEOUT_S)
    assert {key: os.environ.get(key) for key in keys} == before
