"""Sweeps end to end: selection, seed reuse, failures, resume after SIGKILL, concurrency, Ray."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kills import fork
from mtlens import RunStore, load
from mtlens.cli import main
from mtlens.orchestration import LocalExecutor, SerialExecutor, run_sweep
from mtlens.orchestration.sweep import grid_candidates
from mtlens.training import trainer
from mtlens.training.config import RunConfig
from mtlens.training.pack import PACK_ATOL, PACK_RTOL
from mtlens.training.trainer import train_run

BASE = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 64,
    "setting_options": {"n_train": 64, "n_val": 32, "n_test": 32},
}
GRID = {"lr": [3e-2, 1e-3]}
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted in-process sweep: 3 groups x 2 grid points + 3 extra seed runs."""
    store = RunStore(tmp_path_factory.mktemp("reference"))
    return store, run_sweep(BASE, GRID, store, ["sum"], SEEDS, progress=False)


def _all_rows(store: RunStore) -> pd.DataFrame:
    return store.trajectories().sort_values(["run_id", "step", "task", "quantity"]).reset_index(drop=True)


def test_selection_matches_brute_force_and_seed_zero_run_is_reused(reference):
    store, result = reference
    assert len(store.run_ids()) == 6 + 3  # the seed-0 run of each selection is the grid run
    assert (store.runs()["state"] == "finished").all()
    rows = store.trajectories()
    for row in result.selected.itertuples():
        runs = result.candidates[result.candidates["group"] == row.group]
        # Brute force: mean over the run's tasks of its minimum validation error; first point on ties.
        scores = [
            rows[(rows["run_id"] == r) & (rows["quantity"] == "val/error")].groupby("task")["value"].min().mean()
            for r in runs["run_id"]
        ]
        best = min(range(len(scores)), key=lambda i: (scores[i], i))
        assert row.point == best and row.score == pytest.approx(scores[best])
        assert row.lr == GRID["lr"][best] and row.seeds_finished == "2/2"
        seed_runs = row.seed_run_ids.split(";")
        assert seed_runs[0] == runs["run_id"].iloc[best]
        assert [store.config(r)["seed"] for r in seed_runs] == SEEDS
    saved = pd.read_csv(result.directory / "selected.csv")
    assert saved["group"].tolist() == ["stl:a", "stl:b", "mtl:sum"]
    assert len(pd.read_csv(result.directory / "candidates.csv")) == 6


def _selected_test_errors(store: RunStore, run_ids: list[str], task: str) -> pd.Series:
    """Brute force, by seed: each run's ``test/error`` of ``task`` at its lowest ``val/error`` (earliest step)."""
    rows = store.trajectories(run_ids)
    rows = rows[rows["task"] == task]
    values = {}
    for _, run in rows.groupby("run_id"):
        val = run[run["quantity"] == "val/error"].sort_values("step", kind="stable")
        step = val["step"].iloc[int(np.argmin(val["value"].to_numpy()))]
        test = run[(run["quantity"] == "test/error") & (run["step"] == step)]
        values[int(run["seed"].iloc[0])] = float(test["value"].iloc[-1])
    return pd.Series(values).sort_index()


def test_a_sweeps_report_compares_each_methods_selected_runs_with_its_tasks_selected_stl_runs(
    reference, tmp_path, capsys
):
    """``mtlens report --sweep ID``: STL selects lr 3e-2 and MTL 1e-3 here, so a report that compares only runs
    of one configuration (the report without ``--sweep``) pairs no selected MTL run with a selected STL run;
    with ``--sweep`` each task's row pairs the two selected seed runs of each side by seed, and its paired
    difference is the brute-force one of those runs."""
    store, result = reference
    chosen = result.selected.set_index("group")
    assert chosen.loc["mtl:sum", "lr"] != chosen.loc["stl:a", "lr"] == chosen.loc["stl:b", "lr"]  # the case tested
    out = tmp_path / "report"
    assert main(["report", "--store", str(store.root), "--out", str(out), "--sweep", result.sweep_id]) == 0
    transfer = pd.read_csv(out / "tables" / "transfer.csv")
    assert sorted(transfer["task"]) == ["a", "b"] and set(transfer["setting"]) == {"digits_pair"}
    assert (transfer[["n_stl", "n_mtl"]] == len(SEEDS)).all().all() and set(transfer["design"]) == {"paired"}
    mtl_ids = chosen.loc["mtl:sum", "seed_run_ids"].split(";")
    for row in transfer.itertuples():
        stl = _selected_test_errors(store, chosen.loc[f"stl:{row.task}", "seed_run_ids"].split(";"), row.task)
        mtl = _selected_test_errors(store, mtl_ids, row.task)
        assert list(stl.index) == list(mtl.index) == SEEDS
        assert row.delta == pytest.approx((mtl - stl).mean(), abs=1e-12)
    selection = pd.read_csv(out / "tables" / "sweep_selection.csv").set_index("group")
    assert selection["lr"].to_dict() == pytest.approx(chosen["lr"].to_dict())
    assert set(selection["seeds_analysed"]) == {f"{len(SEEDS)}/{len(SEEDS)}"}
    html = (out / "report.html").read_text()
    assert f"Every comparison below is of sweep {result.sweep_id}&#x27;s selection" in html  # the answers' lead
    in_python = load(store.root, sweep=result.sweep_id).transfer().sort_values(["task", "method"])
    assert in_python["delta"].tolist() == pytest.approx(transfer.sort_values(["task", "method"])["delta"].tolist())
    assert main(["runs", "--store", str(store.root)]) == 0  # where a user finds the id later
    listed = capsys.readouterr().out
    assert f"sweeps (mtlens report --sweep ID reports one's selected runs): {result.sweep_id}" in listed
    # Without --sweep: every grid run is in, and the selected MTL runs meet no selected STL run.
    plain = tmp_path / "plain"
    assert main(["report", "--store", str(store.root), "--out", str(plain)]) == 0
    rows = pd.read_csv(plain / "tables" / "transfer.csv")
    assert all("lr=" in s for s in rows["setting"]) and not ((rows["n_stl"] == 2) & (rows["n_mtl"] == 2)).any()
    capsys.readouterr()


def test_a_sweeps_report_names_selected_runs_missing_from_the_store(reference, tmp_path, capsys):
    """A selected seed run deleted from the store: the report leaves it out, says so on stderr and in the
    sweep's table (1 of 2 seeds analysed), and still reports the other runs; a group the sweep could select
    no point for (here one more row, as the sweep writes it when every grid run failed) is named too."""
    store, result = reference
    copy = RunStore(shutil.copytree(store.root, tmp_path / "store"))
    gone = result.selected.set_index("group").loc["stl:a", "seed_run_ids"].split(";")[1]
    shutil.rmtree(copy.run_dir(gone))
    table = copy.root / "sweeps" / result.sweep_id / "selected.csv"
    unselected = {**result.selected.iloc[-1].to_dict(), "group": "mtl:pcgrad", "method": "pcgrad", "lr": None}
    unselected.update(point=None, score=None, seeds_finished="0/0", seed_run_ids="no eligible grid run (all failed)")
    pd.concat([pd.read_csv(table), pd.DataFrame([unselected])]).to_csv(table, index=False)
    grid = table.with_name("candidates.csv")  # its grid runs, which the sweep lists beside it
    failed = [{"group": "mtl:pcgrad", "mode": "mtl", "task": "all", "method": "pcgrad", "point": p} for p in (0, 1)]
    failed = [{**c, "run_id": f"pcgrad-{c['point']}", "state": "failed", "eligible": False} for c in failed]
    pd.concat([pd.read_csv(grid), pd.DataFrame(failed)]).to_csv(grid, index=False)
    out = tmp_path / "report"
    assert main(["report", "--store", str(copy.root), "--out", str(out), "--sweep", result.sweep_id]) == 0
    err = capsys.readouterr().err
    assert f"1 runs sweep {result.sweep_id} selected are not in the store: {gone}" in err
    assert f"sweep {result.sweep_id} selected no grid point for mtl:pcgrad" in err
    selection = pd.read_csv(out / "tables" / "sweep_selection.csv").set_index("group")
    assert selection.loc["stl:a", "seeds_analysed"] == "1/2" and selection.loc["stl:b", "seeds_analysed"] == "2/2"
    assert selection.loc["mtl:pcgrad", "seeds_analysed"] == "-"
    html = (out / "report.html").read_text()
    assert gone in html and "No grid point was selected for mtl:pcgrad" in html


def test_report_of_an_unknown_or_damaged_sweep_exits_2_naming_it_and_writes_nothing(reference, tmp_path, capsys):
    store, result = reference
    out = tmp_path / "report"
    assert main(["report", "--store", str(store.root), "--out", str(out), "--sweep", result.sweep_id[:-1]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--sweep {result.sweep_id[:-1]}: no sweep" in err
    assert f"did you mean '{result.sweep_id}'" in err and not out.exists()
    broken = RunStore(tmp_path / "broken")
    (broken.root / "sweeps" / "s").mkdir(parents=True)
    (broken.root / "sweeps" / "s" / "selected.csv").write_text("group,mode,task\nstl:a,stl,a\n")
    assert main(["report", "--store", str(broken.root), "--out", str(out), "--sweep", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(broken.root / "sweeps" / "s" / "selected.csv") in err
    assert "rerun the sweep's command" in err and not out.exists()


def _cut_after(run_id: Callable[[pd.DataFrame], str], then: bytes = b"") -> Callable[[bytes, pd.DataFrame], bytes]:
    """A damage to ``selected.csv``: the file cut right after the run id ``run_id(selected)``, ``then`` appended."""

    def cut(data: bytes, selected: pd.DataFrame) -> bytes:
        end = data.index(run_id(selected).encode()) + len(run_id(selected))
        return data[:end] + then

    return cut


def _seed_run(group: str, seed: int) -> Callable[[pd.DataFrame], str]:
    return lambda selected: selected.set_index("group").loc[group, "seed_run_ids"].split(";")[seed]


def _one_run_id_of_two(data: bytes, selected: pd.DataFrame) -> bytes:
    """A well-formed file whose MTL row still says 2/2 seeds finished but lists one run."""
    table = selected.copy()
    table.loc[table["group"] == "mtl:sum", "seed_run_ids"] = _seed_run("mtl:sum", 0)(selected)
    return table.to_csv(index=False).encode()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_cut_after(_seed_run("mtl:sum", 0)), "ends inside a row"),
        (_cut_after(_seed_run("stl:a", 0)), "ends inside a row"),
        (lambda data, _: data[:150], "ends inside a row"),
        (_one_run_id_of_two, "mtl:sum): seeds_finished 2/2 but 1 run ids"),
        (_cut_after(_seed_run("mtl:sum", 0), b"\n"), "(mtl:sum) has no criterion"),
        (lambda data, _: data[: data.rindex(b"\n", 0, -1) + 1], "has no row for mtl:sum"),
    ],
    ids=["mid-run-ids", "after-first-stl-id", "150-bytes", "count-disagrees", "cut-row-closed", "last-row-gone"],
)
def test_report_of_a_damaged_selection_exits_2_naming_the_file_and_writes_nothing(
    reference, tmp_path, capsys, damage, problem
):
    """An audit found that a selected.csv cut inside a row's run ids still read (its later cells empty, its
    seeds_finished 2/2 over one run id), and the report compared a silent subset of the runs (1 MTL run, or 1
    STL run and no MTL run) with exit 0; cut at 150 bytes it exited 2 without naming the file.  The reader now
    verifies the whole file (and its groups against the sweep's candidates.csv) before trusting any of it."""
    store, result = reference
    copy = RunStore(shutil.copytree(store.root, tmp_path / "store"))
    table = copy.root / "sweeps" / result.sweep_id / "selected.csv"
    table.write_bytes(damage(table.read_bytes(), result.selected))
    out = tmp_path / "report"
    assert main(["report", "--store", str(copy.root), "--out", str(out), "--sweep", result.sweep_id]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{table}: " in err and problem in err
    assert "rerun the sweep's command" in err and not out.exists()


def test_failed_run_is_recorded_listed_and_never_selected(tmp_path):
    def flaky_train(config, store, setting, progress):
        if config.lr == GRID["lr"][0] and config.mode == "mtl":
            raise RuntimeError("out of memory (simulated)")
        return train_run(config, store, setting=setting, progress=progress)

    store = RunStore(tmp_path)
    result = run_sweep(BASE, GRID, store, ["sum"], [0], executor=SerialExecutor(flaky_train), progress=False)
    mtl = result.candidates[result.candidates["group"] == "mtl:sum"]
    assert mtl["state"].tolist() == ["failed", "finished"]
    assert result.selected.set_index("group").loc["mtl:sum", "point"] == 1
    assert result.problems["state"].tolist() == ["failed"]
    assert "out of memory (simulated)" in result.problems["message"].iloc[0]
    assert "out of memory" in pd.read_csv(result.directory / "problems.csv")["message"].iloc[0]
    assert "out of memory" in store.status(mtl["run_id"].iloc[0])["message"]


def test_sweep_with_a_failed_run_exits_1_naming_it_on_stderr(tmp_path, monkeypatch, capsys):
    """The command, not only run_sweep: a failed grid run makes ``mtlens sweep`` exit 1 (it exited 0, the
    failures on stdout, while study and calibrate exit 1), and the run is named on stderr.  ``--report`` still
    writes the report of what the sweep selected (the failed grid run is not among it)."""
    original = trainer.TrainingRun.train

    def flaky(self, progress):  # type: ignore[no-untyped-def]
        if self.config.lr == GRID["lr"][0] and self.config.mode == "mtl":
            raise RuntimeError("out of memory (simulated)")
        return original(self, progress)

    monkeypatch.setattr(trainer.TrainingRun, "train", flaky)
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(json.dumps(GRID))
    argv = _sweep_args(RunStore(tmp_path / "store"), grid_file, workers=1)
    argv[argv.index("--seeds") + 1] = "1"
    assert main([*argv, "--report", str(tmp_path / "report")]) == 1
    out, err = capsys.readouterr()
    selection = pd.read_csv(tmp_path / "report" / "tables" / "sweep_selection.csv").set_index("group")
    assert selection.loc["mtl:sum", "lr"] == GRID["lr"][1] and set(selection["seeds_analysed"]) == {"1/1"}
    assert "out of memory" not in out and "failed or diverged" not in out
    assert "out of memory (simulated)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("mtlens sweep: 1 runs failed: digits_pair-mtl-all-sum-s0-") and "(grid)" in last


def _sweep_args(store: RunStore, grid_file, workers: int) -> list[str]:
    return [
        "sweep",
        "digits_pair",
        "--grid",
        str(grid_file),
        "--seeds",
        "2",
        "--workers",
        str(workers),
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--set",
        "train_eval_size=64",
        "--option",
        "n_train=64",
        "--option",
        "n_val=32",
        "--option",
        "n_test=32",
        "--store",
        str(store.root),
        "--quiet",
    ]


def test_killing_the_driver_mid_sweep_then_rerunning_finishes_only_what_is_missing(tmp_path, reference):
    ref_store, ref_result = reference
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(f"lr: {GRID['lr']}\n")
    store = RunStore(tmp_path / "store")
    driver = fork(lambda: sys.exit(main(_sweep_args(store, grid_file, workers=2))))
    deadline, finished, running = time.time() + 120, [], []
    while time.time() < deadline and driver.is_alive():
        states = {r: (store.status(r) or {}).get("state") for r in store.run_ids()}
        finished = [r for r, s in states.items() if s == "finished"]
        running = [r for r, s in states.items() if s == "running"]
        if len(finished) >= 2 and running:
            break
        time.sleep(0.01)
    assert driver.is_alive(), "the sweep ended before it could be killed"
    driver.kill()  # SIGKILL
    driver.join()
    done_before = {r: os.stat(store.run_dir(r) / "status.json").st_mtime_ns for r in finished}
    assert len(done_before) < 9

    # The rerun (in this process, serial) waits for runs the orphaned workers still hold.
    assert main(_sweep_args(store, grid_file, workers=1)) == 0
    assert {r: os.stat(store.run_dir(r) / "status.json").st_mtime_ns for r in finished} == done_before
    assert sorted(store.run_ids()) == sorted(ref_store.run_ids())
    assert (store.runs()["state"] == "finished").all()
    pd.testing.assert_frame_equal(_all_rows(store), _all_rows(ref_store))
    selected = pd.read_csv(next((store.root / "sweeps").iterdir()) / "selected.csv")
    assert selected["seed_run_ids"].tolist() == ref_result.selected["seed_run_ids"].tolist()


def test_killing_a_packed_sweep_then_rerunning_loses_and_duplicates_no_rows(tmp_path, reference):
    """--pack-size 2: each group's two grid points train as one pack (in worker processes, then in this
    process on the rerun); the driver is killed while a pack is training."""
    ref_store, ref_result = reference
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(f"lr: {GRID['lr']}\n")
    store = RunStore(tmp_path / "store")
    args = [*_sweep_args(store, grid_file, workers=2), "--pack-size", "2"]
    driver = fork(lambda: sys.exit(main(args)))
    deadline, packed = time.time() + 120, []
    while time.time() < deadline and driver.is_alive():
        statuses = [store.status(r) or {} for r in store.run_ids()]
        packed = [s for s in statuses if s.get("state") == "running" and s.get("pack_size") == 2]
        if packed:
            break
        time.sleep(0.005)
    assert driver.is_alive() and packed, "the sweep ended before a pack could be killed"
    driver.kill()  # SIGKILL
    driver.join()
    assert not (store.root / "sweeps").exists()  # the sweep was interrupted before its tables

    rerun = [*_sweep_args(store, grid_file, workers=1), "--pack-size", "2"]
    assert main(rerun) == 0
    assert sorted(store.run_ids()) == sorted(ref_store.run_ids())
    assert (store.runs()["state"] == "finished").all()
    grid_runs = set(ref_result.candidates["run_id"])
    # Grid runs trained in packs (a member the killed driver's orphaned worker still held when the rerun reached
    # it is retried on its own, unpacked); the seed runs have no partner to pack with.
    packed = {r for r in store.run_ids() if (store.status(r) or {}).get("pack_size") == 2}
    assert packed and packed <= grid_runs
    rows, reference_rows = _all_rows(store), _all_rows(ref_store)
    assert not rows.duplicated(["run_id", "task", "step", "quantity"]).any()
    pd.testing.assert_frame_equal(rows.drop(columns="value"), reference_rows.drop(columns="value"))
    np.testing.assert_allclose(rows["value"], reference_rows["value"], rtol=PACK_RTOL, atol=PACK_ATOL)
    selected = pd.read_csv(next((store.root / "sweeps").iterdir()) / "selected.csv")
    assert selected["seed_run_ids"].tolist() == ref_result.selected["seed_run_ids"].tolist()


def _counting(log: Path) -> Callable[[trainer.TrainingRun, bool], str]:
    """``TrainingRun.train`` that first logs the run id to ``log``: every run a process actually trains."""
    original = trainer.TrainingRun.train

    def counted(self: trainer.TrainingRun, progress: bool) -> str:
        with open(log, "a") as handle:
            handle.write(self.run_id + "\n")
        return original(self, progress)

    return counted


def _train_serially(configs: list[RunConfig], store: RunStore) -> pd.DataFrame:
    """Train ``configs`` in order, retrying a run another process holds every 0.05 s."""
    executor = SerialExecutor()
    executor.retry_delay = 0.05
    return executor.run(configs, store, progress=False)


def _concurrent_writer(configs: list[RunConfig], root: Path, log: Path) -> None:
    """What each of the other processes runs: train ``configs`` in order into the store at ``root`` (its own
    :class:`RunStore`), logging what it trains."""
    trainer.TrainingRun.train = _counting(log)  # type: ignore[method-assign]  # (in the child process only)
    results = _train_serially(configs, RunStore(root))
    assert (results["state"] == "finished").all(), results


def test_concurrent_processes_train_each_run_exactly_once(tmp_path, reference, monkeypatch):
    ref_store, _ = reference
    _, candidates = grid_candidates(BASE, GRID, ["sum"], seed=0)
    configs = list(candidates.values())[:4]
    store, log = RunStore(tmp_path / "store"), tmp_path / "trained.log"
    processes = [fork(lambda k=k: _concurrent_writer(configs[k:] + configs[:k], store.root, log)) for k in (1, 2)]
    # This process is the third writer, with the same counting hook.
    monkeypatch.setattr(trainer.TrainingRun, "train", _counting(log))
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text()):  # another process is training
        time.sleep(0.01)
    mine = _train_serially(configs, store)
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    assert (mine["state"] == "finished").all()
    trained = log.read_text().split()
    assert sorted(trained) == sorted(c.run_id for c in configs) == store.run_ids()
    rows = _all_rows(store)
    assert not rows.duplicated(["run_id", "task", "step", "quantity"]).any()
    reference_rows = _all_rows(ref_store)
    pd.testing.assert_frame_equal(
        rows, reference_rows[reference_rows["run_id"].isin(store.run_ids())].reset_index(drop=True)
    )


def test_a_killed_worker_loses_only_its_run_which_resumes(tmp_path, reference):
    ref_store, _ = reference
    _, configs = grid_candidates(BASE, GRID, ["sum"], seed=0)
    configs = list(configs.values())[:3]
    store = RunStore(tmp_path / "store")
    executor = LocalExecutor(workers=1)
    results = {}
    thread = threading.Thread(target=lambda: results.update(table=executor.run(configs, store, progress=False)))
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        running = [r for r in store.run_ids() if (store.status(r) or {}).get("state") == "running"]
        if running:
            break
        time.sleep(0.01)
    victims = multiprocessing.active_children()
    assert running and victims
    os.kill(victims[0].pid, signal.SIGKILL)
    thread.join(timeout=240)
    executor.close()
    assert list(results["table"]["state"]) == ["finished"] * 3
    rows = _all_rows(store)
    reference_rows = _all_rows(ref_store)
    pd.testing.assert_frame_equal(
        rows, reference_rows[reference_rows["run_id"].isin(store.run_ids())].reset_index(drop=True)
    )


def test_ray_backend_selects_the_same_configuration_with_the_same_trajectories(tmp_path, reference):
    """Ray on a local 2-CPU instance against the in-process reference sweep."""
    from mtlens.orchestration.ray_backend import RayExecutor

    ref_store, ref_result = reference
    store = RunStore(tmp_path / "store")
    result = run_sweep(BASE, GRID, store, ["sum"], SEEDS, executor=RayExecutor(workers=2), progress=False)
    pd.testing.assert_frame_equal(result.selected, ref_result.selected)
    pd.testing.assert_frame_equal(_all_rows(store), _all_rows(ref_store))
