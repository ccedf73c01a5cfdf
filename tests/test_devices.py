"""Several runs per device: local workers sharing (or spread over) devices, and Ray's
fractional GPUs; results never depend on how many runs share a device."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pandas as pd
import pytest

from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import ConfigError, MtlensError
from mtlens.orchestration import LocalExecutor, SerialExecutor, make_executor
from mtlens.orchestration.executors import worker_devices
from mtlens.orchestration.sweep import grid_candidates

BASE = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 64,
    "device": "cpu",
    "setting_options": {"n_train": 64, "n_val": 32, "n_test": 32},
}


def test_workers_are_spread_round_robin_over_visible_gpus():
    assert worker_devices("cuda", 5, n_gpus=2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda", 3, n_gpus=1) == ["cuda:0"] * 3
    assert worker_devices("cuda:1", 2) == ["cuda:1", "cuda:1"]
    assert worker_devices("cpu", 2) == ["cpu", "cpu"]
    assert worker_devices(None, 2) == [None, None]
    with pytest.raises(MtlensError, match="no CUDA device"):
        worker_devices("cuda", 2, n_gpus=0)


def test_gpus_per_run_is_checked_before_anything_runs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="ray backend on a CUDA device"):
        make_executor("local", 2, device="cpu", gpus_per_run=0.25)
    code = main(["sweep", "digits_pair", "--gpus-per-run", "0.25", "--store", str(tmp_path / "s"), "--quiet"])
    assert code == 2 and "--gpus-per-run" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    pytest.importorskip("ray")
    from mtlens.orchestration.ray_backend import RayExecutor

    assert RayExecutor(device="cpu", gpus_per_run=None).num_gpus == 0
    with pytest.raises(ConfigError, match="fraction"):
        RayExecutor(device="cpu", gpus_per_run=1.5)


def _rows(store: RunStore) -> pd.DataFrame:
    return store.trajectories().sort_values(["run_id", "step", "task", "quantity"]).reset_index(drop=True)


def test_two_workers_sharing_a_device_give_the_rows_of_one_even_when_one_is_killed(tmp_path):
    _, candidates = grid_candidates(BASE, {"lr": [3e-2, 1e-3]}, ["sum"], seed=0)
    configs = list(candidates.values())[:4]
    alone = RunStore(tmp_path / "alone")  # one process trains them all: this one (no worker to start)
    assert list(SerialExecutor().run(configs, alone, progress=False)["state"]) == ["finished"] * 4
    shared = RunStore(tmp_path / "shared")
    executor = LocalExecutor(workers=2, device="cpu")
    results = {}
    thread = threading.Thread(target=lambda: results.update(table=executor.run(configs, shared, progress=False)))
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        (shared.status(r) or {}).get("state") == "running" for r in shared.run_ids()
    ):
        time.sleep(0.01)
    victims = multiprocessing.active_children()
    assert victims
    os.kill(victims[0].pid, signal.SIGKILL)  # kill -9 one of the two workers mid-run
    thread.join(timeout=300)
    assert sorted(executor._device_of.values()) == ["cpu", "cpu"]  # the replacement took the dead worker's device
    executor.close()
    assert list(results["table"]["state"]) == ["finished"] * 4
    pd.testing.assert_frame_equal(_rows(shared), _rows(alone))
