"""The run store: the only code that writes results.

Layout under the store root::

    runs/<run_id>/config.json        the run's full config (written once)
    runs/<run_id>/tasks.json         per task: selection metric and metric directions
    runs/<run_id>/status.json        {"state": running|finished|diverged|failed, "step", "message", ...}
    runs/<run_id>/parts/<step>.parquet  trajectory rows recorded at one step (while running)
    runs/<run_id>/trajectory.parquet  all rows, written when the run ends
    runs/<run_id>/checkpoint.pt      training state at the last checkpoint (written by training)
    runs/<run_id>/selected/<task>-<step>.pt  model weights at a task's validation-selected step
                                     (only with ``save_selected_models``)
    runs/<run_id>/.lock              held (flock) by the process training the run
    tables/<name>.parquet            tables computed from runs (experiment manifests, analyses of checkpoints)

Trajectory rows are tidy: one row per (run, task, step, quantity) with the columns
:data:`ROW_COLUMNS`.  Every write is atomic, so a process killed at any moment leaves
complete files only.  Rows recorded after the last checkpoint are discarded on resume
(:meth:`RunStore.discard_parts_after`) and recomputed, so a resumed run has neither lost
nor duplicated rows.  Selected models are named by step and pruned only after a checkpoint
(:meth:`RunStore.keep_selected_models`), so the checkpoint's selection always has its file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterator

import pandas as pd

from mtlens.store.atomic import atomic_write, atomic_write_json, read_json

ROW_COLUMNS = ["run_id", "setting", "mode", "method", "seed", "task", "step", "epoch", "quantity", "value"]
"""Columns of every trajectory table."""

STATES = ("running", "finished", "diverged", "failed")
DONE_STATES = ("finished", "diverged")
"""States in which a run is complete and is never trained again."""


class RunLockedError(RuntimeError):
    """Another process is training this run."""


class RunStore:
    """A directory of runs; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def selected_model_path(self, run_id: str, task: str, step: int) -> Path:
        """The model weights of task ``task``'s validation-selected checkpoint at ``step``."""
        return self.run_dir(run_id) / "selected" / f"{task}-{step:012d}.pt"

    def selected_model_steps(self, run_id: str) -> dict[str, list[int]]:
        """Task -> steps of the selected models on disk (one per task once a checkpoint is written)."""
        steps: dict[str, list[int]] = {}
        for path in sorted((self.run_dir(run_id) / "selected").glob("*.pt")):
            task, _, step = path.stem.rpartition("-")
            steps.setdefault(task, []).append(int(step))
        return steps

    def keep_selected_models(self, run_id: str, keep: dict[str, int]) -> None:
        """Delete every selected model but task ``t``'s at step ``keep[t]`` (all of a task not in ``keep``)."""
        for task, steps in self.selected_model_steps(run_id).items():
            for step in steps:
                if keep.get(task) != step:
                    self.selected_model_path(run_id, task, step).unlink()

    def _parts_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "parts"

    # -- config and status ---------------------------------------------------------------
    def write_config(self, run_id: str, config: dict[str, Any], ignore: Collection[str] = ()) -> None:
        """Write the run's config; an existing run must have the same config except for ``ignore`` keys
        (e.g. the device, which may change when a run is resumed elsewhere; the first value is kept)."""
        path = self.run_dir(run_id) / "config.json"
        if path.exists():
            existing = read_json(path)
            if {k: v for k, v in existing.items() if k not in ignore} != {
                    k: v for k, v in config.items() if k not in ignore}:
                raise ValueError(f"run {run_id} exists in {self.root} with a different config")
            return
        atomic_write_json(path, config)

    def config(self, run_id: str) -> dict[str, Any]:
        return read_json(self.run_dir(run_id) / "config.json")

    def write_task_info(self, run_id: str, info: dict[str, Any]) -> None:
        """Write what analysis needs to know about the run's tasks (metric directions,
        selection metric), so analysis never has to load a setting's data."""
        atomic_write_json(self.run_dir(run_id) / "tasks.json", info)

    def task_info(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``(setting, task) -> info``, merged over all runs (the same in every run of a setting)."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for run_id in self.run_ids():
            path = self.run_dir(run_id) / "tasks.json"
            if path.exists():
                setting = self.config(run_id)["setting"]
                merged.update({(setting, task): info for task, info in read_json(path).items()})
        return merged

    def set_status(self, run_id: str, state: str, step: int, message: str = "", **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
        atomic_write_json(
            self.run_dir(run_id) / "status.json",
            {"state": state, "step": step, "message": message, "updated": time.time(), **extra},
        )

    def status(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_dir(run_id) / "status.json"
        return read_json(path) if path.exists() else None

    def is_done(self, run_id: str) -> bool:
        status = self.status(run_id)
        return status is not None and status["state"] in DONE_STATES

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock for the duration; raise :class:`RunLockedError` if taken."""
        path = self.run_dir(run_id) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise RunLockedError(f"run {run_id} is being trained by another process") from err
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- trajectory rows -------------------------------------------------------------------
    def write_part(self, run_id: str, step: int, rows: pd.DataFrame) -> None:
        """Atomically write the rows recorded at ``step`` (replacing any earlier write)."""
        missing = set(ROW_COLUMNS) - set(rows.columns)
        if missing:
            raise ValueError(f"trajectory rows lack columns {sorted(missing)}")
        frame = rows[ROW_COLUMNS].reset_index(drop=True)
        path = self._parts_dir(run_id) / f"{step:012d}.parquet"
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def part_steps(self, run_id: str) -> list[int]:
        parts = self._parts_dir(run_id)
        if not parts.exists():
            return []
        return sorted(int(p.stem) for p in parts.glob("*.parquet"))

    def read_part(self, run_id: str, step: int) -> pd.DataFrame:
        """The rows written at ``step`` by :meth:`write_part` (while the run is in progress)."""
        return pd.read_parquet(self._parts_dir(run_id) / f"{step:012d}.parquet")

    def discard_parts_after(self, run_id: str, step: int) -> None:
        """Delete rows recorded after ``step`` (they are recomputed when the run resumes)."""
        for part_step in self.part_steps(run_id):
            if part_step > step:
                (self._parts_dir(run_id) / f"{part_step:012d}.parquet").unlink()

    def finalize(self, run_id: str, state: str, step: int, message: str = "") -> None:
        """Merge the parts into ``trajectory.parquet`` and mark the run ``state``.

        Order matters for crash safety: the merged table is written atomically, then
        the status, and only then are the parts removed.
        """
        frame = self._read_parts(run_id)
        atomic_write(self.run_dir(run_id) / "trajectory.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
        self.set_status(run_id, state, step, message)
        for part_step in self.part_steps(run_id):
            (self._parts_dir(run_id) / f"{part_step:012d}.parquet").unlink()

    def _read_parts(self, run_id: str) -> pd.DataFrame:
        steps = self.part_steps(run_id)
        if not steps:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in ROW_COLUMNS})
        # one read of all parts (half the time of reading and concatenating them one by one)
        return pd.read_parquet([self._parts_dir(run_id) / f"{s:012d}.parquet" for s in steps])

    def trajectory(self, run_id: str) -> pd.DataFrame:
        """All rows of one run, sorted by step (finished runs and runs in progress alike)."""
        merged = self.run_dir(run_id) / "trajectory.parquet"
        if self.is_done(run_id) and merged.exists():
            frame = pd.read_parquet(merged)
        else:
            frame = self._read_parts(run_id)
        return frame.sort_values(["step", "task", "quantity"], kind="stable").reset_index(drop=True)

    # -- the index -------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        if not runs.exists():
            return []
        return sorted(p.name for p in runs.iterdir() if (p / "config.json").exists())

    def runs(self) -> pd.DataFrame:
        """One row per run: its config (lists and dicts as JSON strings) and its status, as a DataFrame."""
        records = []
        for run_id in self.run_ids():
            config = self.config(run_id)
            status = self.status(run_id) or {"state": "pending", "step": 0, "message": ""}
            flat = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                    for k, v in config.items()}
            flat["tasks"] = ",".join(config.get("tasks") or [])
            flat["mode"] = "stl" if len(config.get("tasks") or []) == 1 else "mtl"
            records.append(
                {"run_id": run_id, **flat, "state": status["state"], "last_step": status["step"],
                 "message": status.get("message", "")}
            )
        return pd.DataFrame.from_records(records)

    def trajectories(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenated trajectory rows of ``run_ids`` (default: all runs)."""
        ids = self.run_ids() if run_ids is None else run_ids
        frames = [self.trajectory(r) for r in ids]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in ROW_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    # -- tables computed from runs ------------------------------------------------------------
    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        """Atomically write (or replace) the table ``name`` (letters, digits, ``-``, ``_``, ``.``)."""
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise ValueError(f"table name {name!r} may only contain letters, digits, '-', '_' and '.'")
        frame = frame.reset_index(drop=True)
        atomic_write(self.root / "tables" / f"{name}.parquet", lambda tmp: frame.to_parquet(tmp, index=False))

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name`` written by :meth:`write_table`."""
        return pd.read_parquet(self.root / "tables" / f"{name}.parquet")

    def table_names(self, prefix: str = "") -> list[str]:
        """Names of the stored tables starting with ``prefix``, sorted."""
        tables = self.root / "tables"
        if not tables.exists():
            return []
        return sorted(p.stem for p in tables.glob("*.parquet") if p.stem.startswith(prefix))


def _dtype(column: str) -> str:
    return {"seed": "int64", "step": "int64", "epoch": "float64", "value": "float64"}.get(column, "object")
