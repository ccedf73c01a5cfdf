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
    runs/<run_id>/**/.<name>.*.tmp   left by a process killed inside an atomic write; removed when
                                     the run's lock is next taken (:meth:`RunStore.remove_stale_tmp`)
    tables/<name>.parquet            tables computed from runs (experiment manifests, analyses of checkpoints)

Trajectory rows are tidy: one row per (run, task, step, quantity) with the columns
:data:`ROW_COLUMNS`.  Every write is atomic, so a process killed at any moment leaves
complete files only.  Rows recorded after the last checkpoint are discarded on resume
(:meth:`RunStore.discard_parts_after`) and recomputed, so a resumed run has neither lost
nor duplicated rows.  Selected models are named by step and pruned only after a checkpoint
(:meth:`RunStore.keep_selected_models`), so the checkpoint's selection always has its file.

Runs in the index (:meth:`RunStore.runs`) are in one of :data:`INDEX_STATES`: the stored state,
except that a ``running`` run whose lock nobody holds is ``interrupted`` (its process died;
rerunning resumes it), a run without status is ``pending`` and a run with a file that cannot be
read is ``damaged`` (:meth:`RunStore.damaged_files` names it; rerunning retrains what cannot be
trusted).  Every reader raises :class:`~mtlens.errors.DamagedStoreError` naming the file and
the run instead of a bare parser error; :meth:`RunStore.check` verifies a whole store.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtlens.errors import DamagedStoreError
from mtlens.store.atomic import TMP_SUFFIX, atomic_write, atomic_write_json, read_json

ROW_COLUMNS = ["run_id", "setting", "mode", "method", "seed", "task", "step", "epoch", "quantity", "value"]
"""Columns of every trajectory table."""
ROW_SCHEMA = pa.schema(
    [
        (
            c,
            {"seed": pa.int64(), "step": pa.int64(), "epoch": pa.float64(), "value": pa.float64()}.get(
                c, pa.large_string()
            ),
        )
        for c in ROW_COLUMNS
    ]
)
"""Arrow types of :data:`ROW_COLUMNS` in the Parquet files (the types pandas writes for its string, int64
and float64 columns, so files written before and after rows were written through Arrow read alike)."""

STATES = ("running", "finished", "diverged", "failed")
DONE_STATES = ("finished", "diverged")
"""States in which a run is complete and is never trained again."""
INDEX_STATES = (*STATES, "interrupted", "pending", "damaged")
"""States :meth:`RunStore.runs` shows (see the module docstring)."""
JSON_FILES = ("config.json", "status.json", "tasks.json")
"""A run's JSON files, each a JSON object."""


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
        (e.g. the device, which may change when a run is resumed elsewhere; the first value is kept).
        A damaged ``config.json`` is replaced (the run id, a hash of the config, says it is this config)."""
        path = self.run_dir(run_id) / "config.json"
        try:
            existing = self.config(run_id) if path.exists() else None
        except DamagedStoreError:
            existing = None
        if existing is not None:
            if {k: v for k, v in existing.items() if k not in ignore} != {
                k: v for k, v in config.items() if k not in ignore
            }:
                raise ValueError(f"run {run_id} exists in {self.root} with a different config")
            return
        atomic_write_json(path, config)

    def config(self, run_id: str) -> dict[str, Any]:
        return self._read_json(run_id, "config.json")

    def _read_json(self, run_id: str, name: str) -> dict[str, Any]:
        """The JSON object in the run's file ``name``; :class:`DamagedStoreError` naming it if unreadable."""
        path = self.run_dir(run_id) / name
        try:
            return _json_object(path)
        except ValueError as err:
            raise DamagedStoreError(
                f"run {run_id}: {path} is damaged ({err}); rerun the run to rewrite what it "
                f"can, or delete {self.run_dir(run_id)}"
            ) from None

    def write_task_info(self, run_id: str, info: dict[str, Any]) -> None:
        """Write what analysis needs to know about the run's tasks (metric directions,
        selection metric), so analysis never has to load a setting's data."""
        atomic_write_json(self.run_dir(run_id) / "tasks.json", info)

    def task_info(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``(setting, task) -> info``, merged over all runs (the same in every run of a setting);
        runs whose ``config.json`` or ``tasks.json`` is damaged are skipped (the index shows them
        ``damaged`` and analyses leave them out)."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for run_id in self.run_ids():
            if (self.run_dir(run_id) / "tasks.json").exists():
                try:
                    setting = self.config(run_id)["setting"]
                    info = self._read_json(run_id, "tasks.json")
                except DamagedStoreError:
                    continue
                merged.update({(setting, task): value for task, value in info.items()})
        return merged

    def set_status(self, run_id: str, state: str, step: int, message: str = "", **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
        atomic_write_json(
            self.run_dir(run_id) / "status.json",
            {"state": state, "step": step, "message": message, "updated": time.time(), **extra},
        )

    def status(self, run_id: str) -> dict[str, Any] | None:
        """The stored status (``None`` before the first one); :class:`DamagedStoreError` if unreadable."""
        path = self.run_dir(run_id) / "status.json"
        return self._read_json(run_id, "status.json") if path.exists() else None

    def done_state(self, run_id: str) -> str | None:
        """The stored state if it is one of :data:`DONE_STATES` (``None`` otherwise or if unreadable)."""
        try:
            state = (self.status(run_id) or {}).get("state")
        except DamagedStoreError:
            return None
        return state if state in DONE_STATES else None

    def is_done(self, run_id: str) -> bool:
        """Complete and intact: a done state and no damaged file (a damaged run is trained again)."""
        return self.done_state(run_id) is not None and not self.damaged_files(run_id)

    def is_locked(self, run_id: str) -> bool:
        """Whether some process (this one included) holds the run's lock right now."""
        path = self.run_dir(run_id) / ".lock"
        if not path.exists():
            return False
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # -- integrity -------------------------------------------------------------------------
    def damaged_files(self, run_id: str, deep: bool = False) -> dict[str, str]:
        """Run file (relative to the run directory) -> why it cannot be read.

        Checks that the JSON files parse to objects, that the Parquet files have a valid footer
        and the ``.pt`` files (zip archives written by ``torch.save``) a valid central directory:
        cheap checks that catch truncated and overwritten files.  ``deep`` also reads every
        Parquet file and verifies the CRC of every member of every ``.pt`` file."""
        run_dir = self.run_dir(run_id)
        damaged = {}
        for name in JSON_FILES:
            if (run_dir / name).exists():
                try:
                    _json_object(run_dir / name)
                except ValueError as err:
                    damaged[name] = str(err)
        files = [
            run_dir / "trajectory.parquet",
            *sorted(self._parts_dir(run_id).glob("*.parquet")),
            self.checkpoint_path(run_id),
            *sorted((run_dir / "selected").glob("*.pt")),
        ]
        for path in files:
            if path.exists():
                problem = _unreadable(path, deep)
                if problem:
                    damaged[str(path.relative_to(run_dir))] = problem
        return damaged

    def stale_tmp_files(self, run_id: str | None = None) -> list[Path]:
        """Temporary files of interrupted atomic writes: of the run ``run_id``, or anywhere in the store."""
        root = self.root if run_id is None else self.run_dir(run_id)
        return sorted(root.rglob(f".*{TMP_SUFFIX}")) if root.exists() else []

    def remove_stale_tmp(self, run_id: str) -> list[Path]:
        """Delete the run's temporary files of interrupted writes; only call while holding its lock
        (no writer of the run is then in flight).  Returns the deleted paths."""
        stale = self.stale_tmp_files(run_id)
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def check(self) -> pd.DataFrame:
        """Verify the whole store (deeply, see :meth:`damaged_files`): one row per problem,
        ``run_id`` (empty outside runs), ``path``, ``problem``; empty if the store is intact."""
        records = []
        for run_id in self.run_ids():
            for name, problem in self.damaged_files(run_id, deep=True).items():
                records.append({"run_id": run_id, "path": str(self.run_dir(run_id) / name), "problem": problem})
        for path in sorted((self.root / "tables").glob("*.parquet")):
            problem = _unreadable(path, deep=True)
            if problem:
                records.append({"run_id": "", "path": str(path), "problem": problem})
        for path in self.stale_tmp_files():
            run_id = path.relative_to(self.root).parts[1] if path.is_relative_to(self.root / "runs") else ""
            records.append(
                {
                    "run_id": run_id,
                    "path": str(path),
                    "problem": "temporary file of an interrupted write (removed when the run is rerun; "
                    "safe to delete when no mtlens process is writing)",
                }
            )
        return pd.DataFrame.from_records(records, columns=["run_id", "path", "problem"])

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
    def write_part(self, run_id: str, step: int, rows: pd.DataFrame | pa.Table) -> None:
        """Atomically write the rows recorded at ``step`` (replacing any earlier write)."""
        table = _row_table(rows)
        path = self._parts_dir(run_id) / f"{step:012d}.parquet"
        atomic_write(path, lambda tmp: pq.write_table(table, tmp))

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

    def finalize(
        self,
        run_id: str,
        state: str,
        step: int,
        message: str = "",
        rows: pd.DataFrame | pa.Table | None = None,
        **extra: Any,
    ) -> None:
        """Merge the parts, and ``rows`` (rows of steps that have no part, not written yet), into
        ``trajectory.parquet`` and mark the run ``state``.

        Order matters for crash safety: the merged table is written atomically, then
        the status, and only then are the parts removed.
        """
        tables = [_row_table(rows)] if rows is not None else []
        parts = self.part_steps(run_id)
        if parts or not tables:  # writing rows given here needs no read of the parts
            tables.insert(0, _row_table(self._read_parts(run_id)))
        table = pa.concat_tables(tables)
        atomic_write(self.run_dir(run_id) / "trajectory.parquet", lambda tmp: pq.write_table(table, tmp))
        self.set_status(run_id, state, step, message, **extra)
        for part_step in parts:
            (self._parts_dir(run_id) / f"{part_step:012d}.parquet").unlink()

    def _read_parts(self, run_id: str) -> pd.DataFrame:
        steps = self.part_steps(run_id)
        if not steps:
            return _empty_rows()
        paths = [self._parts_dir(run_id) / f"{s:012d}.parquet" for s in steps]
        try:  # one read of all parts (half the time of reading and concatenating them one by one)
            return pd.read_parquet(paths)
        except (OSError, ValueError):  # a damaged part: read them one by one to name it
            return pd.concat([self._read_parquet(run_id, path) for path in paths], ignore_index=True)

    def _read_parquet(self, run_id: str, path: Path) -> pd.DataFrame:
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DamagedStoreError(
                f"run {run_id}: {path} is damaged ({type(err).__name__}: {err}); rerun the run to retrain what it lost"
            ) from None

    def reset_run(self, run_id: str, **extra: Any) -> None:
        """Delete everything the run recorded (rows, checkpoint, selected models) before training it from
        scratch; its status says ``running`` at step 0 (with ``extra``) first, so no reader takes it for
        complete."""
        self.set_status(run_id, "running", 0, **extra)
        (self.run_dir(run_id) / "trajectory.parquet").unlink(missing_ok=True)
        self.discard_parts_after(run_id, -1)
        self.checkpoint_path(run_id).unlink(missing_ok=True)
        self.keep_selected_models(run_id, {})

    def trajectory(self, run_id: str) -> pd.DataFrame:
        """All rows of one run, sorted by step (finished runs and runs in progress alike)."""
        merged = self.run_dir(run_id) / "trajectory.parquet"
        if self.done_state(run_id) and merged.exists():
            frame = self._read_parquet(run_id, merged)
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
        """One row per run: its config (lists and dicts as JSON strings) and its status, as a DataFrame.

        ``state`` is one of :data:`INDEX_STATES` (see the module docstring); a damaged run's
        ``message`` names its damaged files, and its config columns are empty if ``config.json`` is."""
        records = []
        for run_id in self.run_ids():
            damaged = self.damaged_files(run_id)
            config = {} if "config.json" in damaged else self.config(run_id)
            status = {} if "status.json" in damaged else self.status(run_id) or {}
            flat = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in config.items()}
            if config:
                flat["tasks"] = ",".join(config.get("tasks") or [])
                flat["mode"] = "stl" if len(config.get("tasks") or []) == 1 else "mtl"
            state = status.get("state", "pending")
            if damaged:
                state = "damaged"
            elif state in ("running", "pending") and (self.run_dir(run_id) / ".lock").exists():
                state = "running" if self.is_locked(run_id) else "interrupted"
            message = (
                "damaged: " + "; ".join(f"{name} ({why})" for name, why in damaged.items())
                if damaged
                else status.get("message", "")
            )
            records.append(
                {"run_id": run_id, **flat, "state": state, "last_step": status.get("step", 0), "message": message}
            )
        return pd.DataFrame.from_records(records)

    def trajectories(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Concatenated trajectory rows of ``run_ids`` (default: all runs)."""
        ids = self.run_ids() if run_ids is None else run_ids
        frames = [self.trajectory(r) for r in ids]
        frames = [f for f in frames if len(f)]
        if not frames:
            return _empty_rows()
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
        path = self.root / "tables" / f"{name}.parquet"
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise DamagedStoreError(
                f"table {name}: {path} is damaged ({type(err).__name__}: {err}); rerun the command that wrote it"
            ) from None

    def table_names(self, prefix: str = "") -> list[str]:
        """Names of the stored tables starting with ``prefix``, sorted."""
        tables = self.root / "tables"
        if not tables.exists():
            return []
        return sorted(p.stem for p in tables.glob("*.parquet") if p.stem.startswith(prefix))


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ValueError`` saying why if it is not one."""
    try:
        value = read_json(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object was expected, got {type(value).__name__}")
    return value


def _unreadable(path: Path, deep: bool) -> str:
    """Why the Parquet or ``.pt`` file ``path`` cannot be read, or ``""`` (see :meth:`RunStore.damaged_files`)."""
    try:
        if path.suffix == ".parquet" and deep:
            pq.read_table(path)
        elif path.suffix == ".parquet":
            pq.read_metadata(path)
        else:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip() if deep else None
            if bad is not None:
                return f"checksum mismatch in member {bad}"
    except Exception as err:  # any parser error means the file cannot be trusted
        return f"{type(err).__name__}: {err}"
    return ""


def _row_table(rows: pd.DataFrame | pa.Table) -> pa.Table:
    """``rows`` (with at least the columns :data:`ROW_COLUMNS`) as an Arrow table of :data:`ROW_SCHEMA`."""
    missing = set(ROW_COLUMNS) - set(rows.column_names if isinstance(rows, pa.Table) else rows.columns)
    if missing:
        raise ValueError(f"trajectory rows lack columns {sorted(missing)}")
    if isinstance(rows, pa.Table):
        return rows if rows.schema.equals(ROW_SCHEMA) else rows.select(ROW_COLUMNS).cast(ROW_SCHEMA)
    return pa.Table.from_pandas(rows[ROW_COLUMNS], schema=ROW_SCHEMA, preserve_index=False)


def _empty_rows() -> pd.DataFrame:
    """A trajectory table without rows, with the pandas dtypes of :data:`ROW_SCHEMA`'s columns."""
    return pd.DataFrame({c: pd.Series(dtype=ROW_SCHEMA.field(c).type.to_pandas_dtype()) for c in ROW_COLUMNS})
