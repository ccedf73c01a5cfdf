"""The run store: atomic parts, discard-after-checkpoint, finalize, index."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from mtlens.store import ROW_COLUMNS, RunLockedError, RunStore, atomic_write


def _rows(step: int, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": "r",
            "setting": "s",
            "mode": "mtl",
            "method": "sum",
            "seed": 0,
            "task": [f"t{i}" for i in range(n)],
            "step": step,
            "epoch": step / 10,
            "quantity": "val/loss",
            "value": [float(step + i) for i in range(n)],
        }
    )


def test_parts_discard_and_finalize(tmp_path):
    store = RunStore(tmp_path)
    store.write_config("r", {"setting": "s", "tasks": ["t0", "t1", "t2"], "seed": 0})
    for step in (0, 5, 10):
        store.write_part("r", step, _rows(step))
    store.write_part("r", 5, _rows(5))  # rewriting a step replaces it: no duplicates
    assert store.part_steps("r") == [0, 5, 10]
    store.discard_parts_after("r", 5)
    assert store.part_steps("r") == [0, 5]
    assert len(store.trajectory("r")) == 6
    store.finalize("r", "finished", 5)
    assert store.part_steps("r") == [] and store.is_done("r")
    frame = store.trajectory("r")
    assert list(frame.columns) == ROW_COLUMNS and len(frame) == 6
    assert frame["step"].is_monotonic_increasing


def test_config_is_immutable_and_index_lists_runs(tmp_path):
    store = RunStore(tmp_path)
    store.write_config("r", {"setting": "s", "tasks": ["a"], "seed": 1})
    store.write_config("r", {"setting": "s", "tasks": ["a"], "seed": 1})  # same config: fine
    with pytest.raises(ValueError, match="different config"):
        store.write_config("r", {"setting": "s", "tasks": ["a"], "seed": 2})
    store.write_config("r", {"setting": "s", "tasks": ["a"], "seed": 1, "device": "cuda"}, ignore=("device",))
    store.set_status("r", "running", 3)
    index = store.runs()
    assert index.loc[0, "run_id"] == "r" and index.loc[0, "mode"] == "stl" and index.loc[0, "state"] == "running"
    with pytest.raises(ValueError, match="unknown state"):
        store.set_status("r", "exploded", 3)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old")

    def failing(tmp):
        tmp.write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary file left behind


def test_lock_is_exclusive_across_processes(tmp_path):
    store = RunStore(tmp_path)
    read_end, write_end = os.pipe()
    with store.lock("r"):
        pid = os.fork()
        if pid == 0:  # child: the lock must be refused
            try:
                with store.lock("r"):
                    os.write(write_end, b"acquired")
            except RunLockedError:
                os.write(write_end, b"refused")
            os._exit(0)
        os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"refused"
    with store.lock("r"):  # released: can be taken again
        pass
