"""The run store: atomic parts, discard-after-checkpoint, finalize, index."""

from __future__ import annotations

import os
import time

import pandas as pd
import pyarrow as pa
import pytest

from lock_contention import lock_contention
from mtlens.errors import ConfigError
from mtlens.store import ROW_COLUMNS, RunLockedError, RunStore, atomic_write
from mtlens.store.run_store import PROBE_WAIT_S, ROW_SCHEMA


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


def test_finalize_merges_parts_of_an_earlier_version_with_rows_given_as_an_arrow_table(tmp_path):
    """A run resumed after an upgrade: a part written by pandas' ``to_parquet`` (as earlier versions
    wrote parts, object string columns) merges with rows handed to ``finalize`` as an Arrow table; the
    trajectory has every row once and the dtypes of a trajectory written by pandas."""
    store = RunStore(tmp_path)
    store.write_config("r", {"setting": "s", "tasks": ["t0", "t1", "t2"], "seed": 0})
    old_part = store.run_dir("r") / "parts" / f"{0:012d}.parquet"
    old_part.parent.mkdir(parents=True)
    _rows(0).astype({c: object for c in ("run_id", "setting", "mode", "method", "task", "quantity")}).to_parquet(
        old_part, index=False
    )
    store.finalize("r", "finished", 5, rows=pa.Table.from_pandas(_rows(5), schema=ROW_SCHEMA, preserve_index=False))
    frame = store.trajectory("r")
    assert store.part_steps("r") == [] and store.is_done("r")
    assert frame[["task", "step", "value"]].values.tolist() == [
        ["t0", 0, 0.0],
        ["t1", 0, 1.0],
        ["t2", 0, 2.0],
        ["t0", 5, 5.0],
        ["t1", 5, 6.0],
        ["t2", 5, 7.0],
    ]
    written_by_pandas = tmp_path / "reference.parquet"
    pd.concat([_rows(0), _rows(5)]).to_parquet(written_by_pandas, index=False)
    assert frame.dtypes.to_dict() == pd.read_parquet(written_by_pandas).dtypes.to_dict()


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


@pytest.mark.parametrize("run_id", ["../escaped", "exp/v1", "..", ".", "", "/tmp/elsewhere"])
def test_a_run_id_that_is_no_directory_name_inside_runs_is_refused(tmp_path, run_id):
    """Defence in depth behind the name checks: a run id holding a path separator, or ``.``/``..``/empty,
    named a directory outside ``runs`` (or ``runs`` itself), and the store wrote there."""
    store = RunStore(tmp_path / "store")
    with pytest.raises(ConfigError, match="is not a directory name inside"):
        store.write_config(run_id, {"setting": "s", "tasks": ["a"], "seed": 1})
    assert not store.has_run(run_id)
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


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
            except RunLockedError as err:
                os.write(write_end, b"refused" if "another process" in str(err) else b"misnamed")
            os._exit(0)
        os.waitpid(pid, 0)
        # this process again (a notebook cell re-executed while its first handle is open): named as such
        with pytest.raises(RunLockedError, match="already open in this process"):
            with store.lock("r"):
                pass
    assert os.read(read_end, 16) == b"refused"
    with store.lock("r"):  # released: can be taken again
        pass


def test_a_probe_never_makes_a_taker_fail(tmp_path):
    """``is_locked`` probed the lock by taking it exclusively for an instant: a take that met a probe was
    refused as if the run were being trained (113 of 2,603 takes against two probing processes, 2 s)."""
    contention = lock_contention(tmp_path, seconds=1.5)
    assert contention.takes > 200 and contention.probes > 1000, contention  # they did collide often enough
    assert contention.refused == 0, contention


def test_a_held_lock_is_refused_at_once_and_probed_as_held(tmp_path):
    """Waiting out probes (:data:`PROBE_WAIT_S`) never delays the refusal of a lock another process holds."""
    store = RunStore(tmp_path)
    held_read, held_write = os.pipe()
    release_read, release_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: hold the lock until the parent says to release it
        with store.lock("r"):
            os.write(held_write, b"held")
            os.read(release_read, 1)
        os._exit(0)
    assert os.read(held_read, 4) == b"held"
    assert store.is_locked("r") and store.is_locked("r")
    start = time.monotonic()
    with pytest.raises(RunLockedError, match="another process"):
        with store.lock("r"):
            pass
    assert time.monotonic() - start < PROBE_WAIT_S / 2
    os.write(release_write, b"x")
    os.waitpid(pid, 0)
    assert not store.is_locked("r")
