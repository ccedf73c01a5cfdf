"""The run store: the only code that writes results.

Layout under the store root::

    runs/<run_id>/config.json        the run's full config (written once)
    runs/<run_id>/tasks.json         per task: selection metric and metric directions
    store.json                       {"format_version": N} (:data:`FORMAT_VERSION`; absent in stores of version 1)
    runs/<run_id>/status.json        {"state": running|finished|diverged|failed, "step", "message",
                                     "digests": {file: {"size", "sha256"}}, "parts": [steps], ...,
                                     "replaced": {part: {"size", "sha256"}} (see *Rewritten parts* below)}
    runs/<run_id>/parts/<step>.parquet  trajectory rows recorded at one step (while running)
    runs/<run_id>/trajectory.parquet  all rows, written when the run ends; its footer holds the run's end
                                     record (:data:`END_RECORD_KEY`, see *A lost status* below)
    runs/<run_id>/checkpoint.pt      training state at the last checkpoint (written by training)
    runs/<run_id>/checkpoint.pt.next a new checkpoint before the status that records it is written;
                                     renamed to checkpoint.pt after (see *Checkpoints* below)
    runs/<run_id>/selected/<task>-<step>.pt  model weights at a task's validation-selected step
                                     (only with ``save_selected_models``)
    runs/<run_id>/.lock              held (exclusive flock) by the process training the run; probed with a
                                     shared flock (:meth:`RunStore.is_locked`)
    runs/<run_id>/**/.<name>.*.tmp   left by a process killed inside an atomic write; removed when
                                     the run's lock is next taken (:meth:`RunStore.remove_leftovers`)
    tables/<name>.parquet            tables computed from runs (experiment manifests, analyses of checkpoints)
    tables/.<name>.lock              held (blocking exclusive flock) while a process reads, merges and
                                     rewrites that table (:meth:`RunStore.table_lock`)
    sweeps/<sweep_id>/*.csv          a sweep's selected.csv, candidates.csv and problems.csv
                                     (:mod:`mtlens.orchestration.sweep`; :meth:`RunStore.sweep_dir`)

Trajectory rows are tidy: one row per (run, task, step, quantity) with the columns
:data:`ROW_COLUMNS`.  Every write is atomic, so a process killed at any moment leaves
complete files only.  Rows recorded after the last checkpoint are discarded on resume
(:meth:`RunStore.discard_parts_after`) and recomputed, so a resumed run has neither lost
nor duplicated rows.  Selected models are named by step and pruned only after a checkpoint
(:meth:`RunStore.keep_selected_models`), so the checkpoint's selection always has its file.

*Checkpoints* are committed in two phases, so that a kill at any moment leaves a checkpoint its status
vouches for: the new one is written to ``checkpoint.pt.next``, then the status recording its digest, then
it is renamed over ``checkpoint.pt``.  Killed before the status, the old status and checkpoint stand and
the pending file is a leftover (:meth:`RunStore.leftover_files`); killed after it, the pending file is the
checkpoint the status records (:meth:`RunStore.committed_checkpoint`: its digest matches) and the rename
is completed when the run is next opened (:meth:`RunStore.settle_checkpoint`).  Before this order a kill
between the checkpoint and its status left a checkpoint whose size the status did not record: the run
read as ``damaged`` and was retrained from its start.

*Rewritten parts.*  Rows recorded at a step whose part the status already records (at a checkpoint's step after
the checkpoint, or recorded again) rewrite that part.  The run's handle first writes the status with the part's
new digest and the old one as ``replaced``, then the part; a status accepts either (:func:`accepted_digests`),
so a kill before the part is written (the old part, the rows the checkpoint saw) or after it (the new part)
leaves a run whose files verify, and the next status drops ``replaced``.  Before, the status kept the old
digest: Ctrl-C or a kill after such a rewrite left the run ``damaged``, and it was retrained from scratch.

Runs in the index (:meth:`RunStore.runs`) are in one of :data:`INDEX_STATES`: the stored state, except
that a ``running`` run whose lock nobody holds is ``interrupted`` (its process died; rerunning resumes
it), a run without status is ``pending`` and a run with a file that cannot be read or trusted is
``damaged`` (:meth:`RunStore.damaged_files` names it; rerunning retrains what cannot be trusted).  A run
folder is in the index as soon as it holds anything but its lock, so a run whose ``config.json`` is gone
is ``damaged``, not out of sight; ``config.json`` and ``tasks.json`` are checked against the digests
recorded when they were written wherever a run is read (:data:`ALWAYS_DIGESTED`).  Every reader raises
:class:`~mtlens.errors.DamagedStoreError` naming the file and the run instead of a bare parser error;
:meth:`RunStore.check` verifies a whole store.

*A lost status.*  The status is the only file that says a run is complete and holds the digests of the others,
so a complete run whose ``status.json`` is damaged (or missing: a run with a ``trajectory.parquet`` always had
one) could not be trusted: it was retrained.  Since
2026-12-06 :meth:`RunStore.finalize` also writes the status the run ends with into the footer of
``trajectory.parquet`` (the *end record*: state, step, message, the other keys of the status, the digests of
the run's other files, and the SHA-256 of every byte of the file before its footer: all its data pages), so
the rows have a digest of their own, independent of the status.  :meth:`RunStore.restore_status` rebuilds a
damaged status from it when that digest, the Parquet page checksums, the row schema and the run id verify;
the digests it restores then verify the config, task information and selected models as the lost status
would have.  A trajectory without an end record (written before, or rewritten by another tool, which drops or
invalidates it) vouches for nothing: its run is retrained as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtlens.errors import ConfigError, DamagedStoreError, MtlensError
from mtlens.quantities import TASK_LIST
from mtlens.states import RunState
from mtlens.store.atomic import TMP_SUFFIX, atomic_write, atomic_write_bytes, atomic_write_json, read_json

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


STATES = (RunState.RUNNING, RunState.FINISHED, RunState.DIVERGED, RunState.FAILED)
"""States stored in ``status.json``."""
DONE_STATES = (RunState.FINISHED, RunState.DIVERGED)
"""States in which a run is complete and is never trained again."""
INDEX_STATES = tuple(RunState)
"""States :meth:`RunStore.runs` shows (see the module docstring)."""
INDEX_COLUMNS = ("run_id", "setting", "tasks", "mode", "method", "seed", "state", "last_step", "message")
"""Columns :meth:`RunStore.runs` always has (empty where a run's config cannot be read)."""
JSON_FILES = ("config.json", "status.json", "tasks.json")
"""A run's JSON files, each a JSON object."""
ALWAYS_DIGESTED = ("config.json", "tasks.json")
"""Files whose recorded SHA-256 digest even the cheap checks compare (:meth:`RunStore.damaged_files`): small,
and read by every analysis, so an edit that keeps their size reads as damage, never as the run's config."""
_LOCKS_HELD_HERE: set[tuple[int, Path]] = set()
"""``(pid, lock file)`` of the run locks held (:meth:`RunStore.lock`), to tell a process's own earlier handle
of a run from another process's."""
FORMAT_VERSION = 2
"""The store format this code writes (``store.json``); a store without ``store.json`` is version 1."""
STORE_FILE = "store.json"
"""The file at a store's root that records its format version (:data:`FORMAT_VERSION`)."""
PROBE_WAIT_S = 0.5
"""How long :meth:`RunStore.lock` waits while only probes (:meth:`RunStore.is_locked`) hold a run's lock
(:func:`_lock_exclusive`); a probe holds it for microseconds, so this bound is only reached if probes keep
the lock busy without a break (then the lock is refused as held)."""
END_RECORD_KEY = "mtlens.end"
"""Key of the end record in the footer (key-value metadata) of ``trajectory.parquet``: JSON of the status the run
ended with but ``updated`` (its ``digests`` without the trajectory's own), ``run_id``, and ``rows_sha256``: the
SHA-256 of the file's bytes before its footer (module docstring, *A lost status*)."""
PARQUET_WRITE = {"write_page_checksum": True}
"""Options of every Parquet file the store writes (CRC-32 page checksums, verified on read)."""


class RunLockedError(RuntimeError):
    """Another process is training this run."""


class StoreVersionError(MtlensError):
    """The store was written by a newer mtlens, in a format this version cannot read."""


class StoreNotWritableError(MtlensError):
    """A run's files cannot be written (e.g. a read-only store)."""


class RunStore:
    """A directory of runs; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._version_checked = False
        self._version_recorded = False

    # -- format version ----------------------------------------------------------------
    def format_version(self) -> int:
        """The store's format version: ``store.json``'s, or 1 for a store without one (module docstring);
        :class:`StoreVersionError` for a version newer than :data:`FORMAT_VERSION`."""
        path = self.root / STORE_FILE
        if not path.exists():
            return 1
        try:
            version = _json_object(path).get("format_version")
        except ValueError as err:
            raise DamagedStoreError(f'{path} is damaged ({err}); it should read {{"format_version": N}}') from None
        if not isinstance(version, int) or version < 1:
            raise DamagedStoreError(f"{path} is damaged: format_version {version!r} is not a positive integer")
        if version > FORMAT_VERSION:
            raise StoreVersionError(
                f"store {self.root} has format version {version}, newer than this mtlens reads "
                f"(version {FORMAT_VERSION}); upgrade mtlens to read it"
            )
        return version

    def _check_version(self) -> None:
        if not self._version_checked:
            self.format_version()
            self._version_checked = True

    def _record_version(self) -> None:
        """Record :data:`FORMAT_VERSION` in a store without ``store.json`` (before the first write of a run;
        read once per :class:`RunStore` object)."""
        if self._version_recorded:
            return
        if self.format_version() < FORMAT_VERSION:
            atomic_write_json(self.root / STORE_FILE, {"format_version": FORMAT_VERSION})
        self._version_recorded = self._version_checked = True

    # -- paths -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """``root/runs/run_id``; :class:`~mtlens.errors.ConfigError` for a run id that is not one directory name
        (:func:`_is_run_dir_name`), which would name a directory outside ``root/runs`` or ``runs`` itself.  The
        names a run id is made of are checked where they enter (:func:`~mtlens.registry.check_name`); this
        guards every path the store builds from a run id."""
        if not _is_run_dir_name(run_id):
            raise ConfigError(
                f"run id {run_id!r} is not a directory name inside {self.root / 'runs'}; "
                "a run id is one non-empty name other than '.' and '..', without a path separator"
            )
        return self.root / "runs" / run_id

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def pending_checkpoint_path(self, run_id: str) -> Path:
        """Where a new checkpoint is written before the status that records it (module docstring)."""
        return self.run_dir(run_id) / "checkpoint.pt.next"

    def committed_checkpoint(self, run_id: str, status: Mapping[str, Any] | None = None) -> Path:
        """The file holding the checkpoint the run's status records: the pending one if it exists and its
        size and SHA-256 are the ones the status records for ``checkpoint.pt`` (a kill came between the
        status and the rename), else :meth:`checkpoint_path`.  ``status``: the run's, if already read."""
        pending = self.pending_checkpoint_path(run_id)
        if pending.is_file():
            if status is None:
                try:
                    status = self.status(run_id)
                except DamagedStoreError:  # a status that cannot be read records nothing
                    status = None
            recorded = ((status or {}).get("digests") or {}).get("checkpoint.pt")
            if recorded is not None and file_digest(pending) == {k: recorded.get(k) for k in ("size", "sha256")}:
                return pending
        return self.checkpoint_path(run_id)

    def commit_checkpoint(self, run_id: str) -> None:
        """Rename the pending checkpoint over ``checkpoint.pt`` (atomic); only call while holding the run's
        lock, once the status records the pending checkpoint's digest."""
        os.replace(self.pending_checkpoint_path(run_id), self.checkpoint_path(run_id))

    def settle_checkpoint(self, run_id: str) -> None:
        """Complete a commit a kill interrupted (:meth:`commit_checkpoint`) if the status records the pending
        checkpoint; one it does not record is left to :meth:`remove_leftovers`.  Only call while holding
        the run's lock."""
        if self.committed_checkpoint(run_id) == self.pending_checkpoint_path(run_id):
            self.commit_checkpoint(run_id)

    def selected_model_path(self, run_id: str, task: str, step: int) -> Path:
        """The model weights of task ``task``'s validation-selected checkpoint at ``step``."""
        return self.run_dir(run_id) / selected_model_name(task, step)

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
    def write_config(
        self,
        run_id: str,
        config: dict[str, Any],
        ignore: Collection[str] = (),
        same: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Write the run's config; an existing run must have the same config: ``same(stored, config)`` if
        given (e.g. one that knows the defaults of keys a config stored by an earlier version lacks), else
        equal except for ``ignore`` keys (e.g. the device, which may change when a run is resumed elsewhere).
        The stored file is kept as it is.  A damaged ``config.json`` is replaced (the run id, a hash of the
        config, says it is this config).  Returns the file's :func:`file_digest`."""
        path = self.run_dir(run_id) / "config.json"
        try:
            existing = self.config(run_id) if path.exists() else None
        except DamagedStoreError:
            existing = None
        if existing is not None:
            if same is not None:
                matches = same(existing, config)
            else:
                matches = {k: v for k, v in existing.items() if k not in ignore} == {
                    k: v for k, v in config.items() if k not in ignore
                }
            if not matches:
                raise ValueError(f"run {run_id} exists in {self.root} with a different config")
            return file_digest(path)
        return atomic_write_json(path, config)

    def config(self, run_id: str) -> dict[str, Any]:
        """The run's config, verified (:meth:`_read_recorded_json`)."""
        return self._read_recorded_json(run_id, "config.json")

    def _read_recorded_json(self, run_id: str, name: str) -> dict[str, Any]:
        """The JSON object in the run's file ``name`` (one of :data:`ALWAYS_DIGESTED`), verified against the
        digest the run's status recorded when it wrote the file (if the status is readable and records one:
        runs of format version 1 record none); :class:`DamagedStoreError` naming it otherwise."""
        path = self.run_dir(run_id) / name
        try:
            status = self.status(run_id) or {}
        except DamagedStoreError:  # named by its own reader; it vouches for nothing
            status = {}
        digests = status.get("digests")
        recorded = digests.get(name) if isinstance(digests, dict) else None
        if isinstance(recorded, dict) and path.is_file():
            data = path.read_bytes()
            if len(data) != recorded.get("size") or hashlib.sha256(data).hexdigest() != recorded.get("sha256"):
                raise DamagedStoreError(
                    f"run {run_id}: {path} is damaged (its SHA-256 digest differs from the one recorded when the "
                    f"run wrote it); rerun the run to rewrite it, or delete {self.run_dir(run_id)}"
                )
        return self._read_json(run_id, name)

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

    def write_task_info(self, run_id: str, info: dict[str, Any]) -> dict[str, Any]:
        """Write what analysis needs to know about the run's tasks (metric directions,
        selection metric), so analysis never has to load a setting's data; the file's :func:`file_digest`."""
        return atomic_write_json(self.run_dir(run_id) / "tasks.json", info)

    def task_info(self) -> dict[tuple[str, str], dict[str, Any]]:
        """``(setting, task) -> info``, merged over all runs (the same in every run of a setting);
        runs whose ``config.json`` or ``tasks.json`` is damaged are skipped (the index shows them
        ``damaged`` and analyses leave them out)."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for run_id in self.run_ids():
            if (self.run_dir(run_id) / "tasks.json").exists():
                try:
                    setting = self.config(run_id)["setting"]
                    info = self._read_recorded_json(run_id, "tasks.json")
                except DamagedStoreError:
                    continue
                merged.update({(setting, task): value for task, value in info.items()})
        return merged

    def set_status(self, run_id: str, state: str, step: int, message: str = "", **extra: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {[str(s) for s in STATES]}")
        atomic_write_json(
            self.run_dir(run_id) / "status.json",
            {"state": str(state), "step": step, "message": message, "updated": time.time(), **extra},
        )

    def status(self, run_id: str) -> dict[str, Any] | None:
        """The stored status (``None`` before the first one); :class:`DamagedStoreError` if unreadable or unfit
        (:func:`_status_problem`: a status that decodes but whose state, step, digests or parts are malformed is
        as damaged as one that does not decode, and is named and healed the same way)."""
        path = self.run_dir(run_id) / "status.json"
        if not path.exists():
            return None
        status = self._read_json(run_id, "status.json")
        problem = _status_problem(status)
        if problem:
            raise DamagedStoreError(
                f"run {run_id}: {path} is damaged ({problem}); rerun the run to rewrite what it "
                f"can, or delete {self.run_dir(run_id)}"
            )
        return status

    def end_record(self, run_id: str) -> tuple[dict[str, Any] | None, str]:
        """``(status, "")``: the status the run ended with, from the end record of its ``trajectory.parquet``
        (:data:`END_RECORD_KEY`; without ``updated``, and its ``digests`` without the trajectory's own) if
        the record is there and verifies: the SHA-256 of the bytes before the footer, the run id, the page
        checksums, the row schema and a done state with a well-formed status.  ``(None, why not)`` otherwise."""
        path = self.run_dir(run_id) / "trajectory.parquet"
        try:
            data = path.read_bytes()
            footer = int.from_bytes(data[-8:-4], "little") if data[-4:] == b"PAR1" else -1
            if not 0 < footer <= len(data) - 12:
                return None, f"{path} is not a Parquet file"
            metadata = pq.read_metadata(pa.BufferReader(data)).metadata or {}
            if END_RECORD_KEY.encode() not in metadata:
                return None, f"{path} holds no end record (written before 2026-12-06, or by another tool)"
            record = json.loads(metadata[END_RECORD_KEY.encode()])
            if record.get("rows_sha256") != hashlib.sha256(data[: len(data) - 8 - footer]).hexdigest():
                return None, f"the rows of {path} differ from the digest its end record holds"
            if record.get("run_id") != run_id:
                return None, f"the end record of {path} is of run {record.get('run_id')!r}"
            problem = row_schema_problem(pq.read_table(pa.BufferReader(data), page_checksum_verification=True).schema)
        except (OSError, ValueError, TypeError, AttributeError) as err:  # pyarrow's errors are ValueErrors
            return None, f"{path} cannot be read ({type(err).__name__}: {err})"
        status = {k: v for k, v in record.items() if k not in ("run_id", "rows_sha256")}
        problem = problem or _status_problem(status)
        if problem or status["state"] not in DONE_STATES:
            return None, f"the end record of {path} is unfit ({problem or 'state ' + repr(status['state'])})"
        return status, ""

    def restore_status(self, run_id: str) -> str:
        """Rebuild a damaged ``status.json`` from the end record of the run's trajectory (:meth:`end_record`),
        recording the trajectory's digest as it is now (its rows verified against the record's own digest);
        ``""`` once done, else why it cannot be (the status is left as it is).  Only call while holding the
        run's lock."""
        status, why = self.end_record(run_id)
        if status is None:
            return why
        digest = file_digest(self.run_dir(run_id) / "trajectory.parquet")
        rest = {k: v for k, v in status.items() if k not in ("state", "step", "message", "digests")}
        digests = {**status["digests"], "trajectory.parquet": digest}
        self.set_status(run_id, status["state"], status["step"], status["message"], **rest, digests=digests)
        return ""

    def done_state(self, run_id: str) -> RunState | None:
        """The stored state if it is one of :data:`DONE_STATES` (``None`` otherwise or if unreadable)."""
        try:
            state = (self.status(run_id) or {}).get("state")
        except DamagedStoreError:
            return None
        return RunState(state) if state in DONE_STATES else None

    def is_done(self, run_id: str, deep: bool = False) -> bool:
        """Complete and intact: a done state and no damaged file (a damaged run is trained again);
        ``deep`` verifies every file deeply (:meth:`damaged_files`)."""
        return self.done_state(run_id) is not None and not self.damaged_files(run_id, deep=deep)

    def remove_file(self, run_id: str, name: str) -> None:
        """Delete the run's file ``name`` (relative to its directory), or a directory left in its place."""
        path = self.run_dir(run_id) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def is_locked(self, run_id: str) -> bool:
        """Whether some process (this one included) holds the run's lock right now (``False`` where the
        lock file cannot be opened: nobody can be writing there).  The probe takes a *shared* lock for an
        instant: it fails only against a holder of the exclusive lock (:meth:`lock`), two probes never fail
        each other, and a taker that meets a probe waits for it (:func:`_lock_exclusive`)."""
        path = self.run_dir(run_id) / ".lock"
        try:
            handle = open(path, "rb")
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    # -- integrity -------------------------------------------------------------------------
    def damaged_files(self, run_id: str, deep: bool = False) -> dict[str, str]:
        """Run file (relative to the run directory) -> why it cannot be trusted (module docstring,
        *Verification*).  The cheap checks read JSON files, Parquet footers and schemas, zip
        directories and file sizes, and compare the SHA-256 digests recorded at write time of the small
        :data:`ALWAYS_DIGESTED` files; ``deep`` also reads every Parquet page (checksums), tests the CRC
        of every ``.pt`` member and compares the recorded digests of every file.  A run that recorded
        files (:func:`_has_records`) without a ``config.json`` has it ``missing``, and so has one with a
        ``trajectory.parquet`` (merged rows) its ``status.json`` (a complete run that lost it: the rerun rebuilds it
        from the trajectory's end record, :meth:`restore_status`)."""
        run_dir = self.run_dir(run_id)
        damaged = {}
        for name in JSON_FILES:
            if (run_dir / name).exists():
                try:
                    _json_object(run_dir / name)
                except ValueError as err:
                    damaged[name] = str(err)
        if not (run_dir / "config.json").exists() and _has_records(run_dir):
            damaged["config.json"] = "missing: the run recorded files but its config is gone"
        if not (run_dir / "status.json").exists() and (run_dir / "trajectory.parquet").exists():
            # a status is written before any rows are merged and never removed: a merged run without one lost it
            damaged["status.json"] = "missing: the run merged its rows into trajectory.parquet but its status is gone"
        status: dict[str, Any] = {}
        if "status.json" not in damaged and (run_dir / "status.json").exists():
            status = _json_object(run_dir / "status.json")
            problem = _status_problem(status)
            if problem:
                damaged["status.json"] = problem
                status = {}
        checkpoint = self.committed_checkpoint(run_id, status) if status else self.checkpoint_path(run_id)
        complete = status.get("state") in DONE_STATES  # needs no checkpoint: one that does not read is a leftover
        # nor its row parts once its rows are merged: they are leftovers (:meth:`leftover_files`), not damage
        merged = complete and (run_dir / "trajectory.parquet").exists()
        files = [
            run_dir / "trajectory.parquet",
            *([] if merged else sorted(self._parts_dir(run_id).glob("*.parquet"))),
            *([] if complete else [checkpoint]),
            *sorted((run_dir / "selected").glob("*.pt")),
        ]
        for path in files:
            if path.exists():
                problem = _unreadable(path, deep)
                if problem:
                    damaged["checkpoint.pt" if path == checkpoint else str(path.relative_to(run_dir))] = problem
        if status.get("state") in DONE_STATES and not (run_dir / "trajectory.parquet").exists():
            damaged["trajectory.parquet"] = f"missing: the run is {status['state']} but its rows are gone"
        if status.get("state") not in DONE_STATES:  # the parts its last checkpoint covers
            for step in status.get("parts") or []:
                name = f"parts/{step:012d}.parquet"
                if not (run_dir / name).exists():
                    damaged[name] = f"missing (the checkpoint at step {status['step']} covers it)"
        for name, recorded in (status.get("digests") or {}).items():
            if name in damaged:
                continue
            path = checkpoint if name == "checkpoint.pt" else run_dir / name
            if name == "checkpoint.pt" and status.get("state") in DONE_STATES:
                continue  # a complete run needs no checkpoint (one that does not read is a leftover)
            if name.startswith("parts/") and (merged or not path.exists()):
                continue  # discarded on resume (the parts a checkpoint needs are its status's "parts") or merged
            accepted = accepted_digests(status, name)
            if not path.exists():
                damaged[name] = "missing (the run wrote it)"
            elif path.is_file() and path.stat().st_size not in [d.get("size") for d in accepted]:
                damaged[name] = f"{path.stat().st_size} bytes, the run wrote {recorded.get('size')}"
            elif (
                (deep or name in ALWAYS_DIGESTED)
                and path.is_file()
                and file_digest(path)["sha256"] not in [d.get("sha256") for d in accepted]
            ):
                damaged[name] = "its SHA-256 digest differs from the one recorded when the run wrote it"
        return damaged

    def leftover_files(self, run_id: str) -> list[Path]:
        """Files a rerun removes: temporary files of interrupted writes, the row parts of a complete run
        (left when it was killed between merging its rows and removing the parts), the checkpoint of a
        complete run if it does not read (the run needs it no more: damage there does not make the run
        ``damaged``), and a pending checkpoint the status does not record (killed between writing it and the
        status; module docstring)."""
        leftovers = self.stale_tmp_files(run_id)
        if self.done_state(run_id) is not None and (self.run_dir(run_id) / "trajectory.parquet").exists():
            leftovers += sorted(self._parts_dir(run_id).glob("*.parquet"))
            checkpoint = self.checkpoint_path(run_id)
            if checkpoint.exists() and _unreadable(checkpoint, False):
                leftovers.append(checkpoint)
        pending = self.pending_checkpoint_path(run_id)
        if pending.exists() and self.committed_checkpoint(run_id) != pending:
            leftovers.append(pending)
        return leftovers

    def remove_leftovers(self, run_id: str) -> list[Path]:
        """Delete :meth:`leftover_files`; only call while holding the run's lock.  Returns the deleted paths."""
        leftovers = self.leftover_files(run_id)
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def stale_tmp_files(self, run_id: str | None = None) -> list[Path]:
        """Temporary files of interrupted atomic writes: of the run ``run_id``, or anywhere in the store."""
        if run_id is None:
            return sorted(self.root.rglob(f".*{TMP_SUFFIX}")) if self.root.exists() else []
        run_dir = self.run_dir(run_id)
        found = []
        for directory in (run_dir, run_dir / "parts", run_dir / "selected"):  # where a run writes (no walk)
            try:
                with os.scandir(directory) as entries:
                    found += [Path(e.path) for e in entries if e.name.startswith(".") and e.name.endswith(TMP_SUFFIX)]
            except (FileNotFoundError, NotADirectoryError):
                continue
        return sorted(found)

    def check(self) -> pd.DataFrame:
        """Verify the whole store (deeply, see :meth:`damaged_files`): one row per problem,
        ``run_id`` (empty outside runs), ``path``, ``problem``; empty if the store is intact."""
        records = []
        for run_id in self.run_ids():
            for name, problem in self.damaged_files(run_id, deep=True).items():
                path = self.committed_checkpoint(run_id) if name == "checkpoint.pt" else self.run_dir(run_id) / name
                records.append({"run_id": run_id, "path": str(path), "problem": problem})
        for path in sorted((self.root / "tables").glob("*.parquet")):
            problem = _unreadable(path, deep=True, rows=False)
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
        for run_id in self.run_ids():
            for path in self.leftover_files(run_id):
                if path.suffix == ".parquet":
                    records.append(
                        {
                            "run_id": run_id,
                            "path": str(path),
                            "problem": "row part left in a complete run (its rows are merged; removed when the "
                            "run is rerun)",
                        }
                    )
                elif path == self.checkpoint_path(run_id):
                    records.append(
                        {
                            "run_id": run_id,
                            "path": str(path),
                            "problem": f"checkpoint of a complete run that does not read ({_unreadable(path, False)}); "
                            "the run needs it no more (its rows are merged): removed when the run is rerun",
                        }
                    )
                elif path == self.pending_checkpoint_path(run_id):
                    records.append(
                        {
                            "run_id": run_id,
                            "path": str(path),
                            "problem": "checkpoint written by a process killed before its status recorded it "
                            "(the run resumes from the checkpoint before; removed when the run is rerun)",
                        }
                    )
        return pd.DataFrame.from_records(records, columns=["run_id", "path", "problem"])

    def _open_lock_file(self, path: Path, owner: str) -> IO[bytes]:
        """Open (creating it and its folder) the lock file ``path`` of ``owner`` (``"run <id>"``, ``"table
        <name>"``), readable too (a shared lock on NFS needs a file open for reading), after recording the store's
        version; :class:`StoreNotWritableError` (one line naming ``owner``) if it cannot be created."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._record_version()
            return open(path, "a+b")
        except OSError as err:
            raise StoreNotWritableError(
                f"{owner}: cannot write {err.filename or path} ({err.strerror or err}); "
                f"is the store {self.root} writable?"
            ) from None

    @contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock for the duration; raise :class:`RunLockedError` if taken (naming this process
        when it holds the lock itself: an earlier handle of the run left open, e.g. by a re-executed notebook
        cell), and :class:`StoreNotWritableError` (one line) if the lock cannot be created (a read-only store)."""
        path = self.run_dir(run_id) / ".lock"
        with self._open_lock_file(path, f"run {run_id}") as handle:
            if not _lock_exclusive(handle):
                if (os.getpid(), path.resolve()) in _LOCKS_HELD_HERE:
                    raise RunLockedError(
                        f"run {run_id} is already open in this process (an earlier Recorder or handle of it that "
                        "was not closed, e.g. by a re-executed notebook cell): close that one, or restart the kernel"
                    )
                raise RunLockedError(f"run {run_id} is being trained by another process")
            held = (os.getpid(), path.resolve())  # a forked child inherits the set, not the lock
            _LOCKS_HELD_HERE.add(held)
            try:
                yield
            finally:
                _LOCKS_HELD_HERE.discard(held)
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- trajectory rows -------------------------------------------------------------------
    def write_part(self, run_id: str, step: int, rows: pd.DataFrame | pa.Table | bytes) -> dict[str, Any]:
        """Atomically write the rows recorded at ``step`` (or their :func:`part_bytes`), replacing any earlier
        write; the part's :func:`file_digest` (recorded in the status by the run's handle, see :func:`part_name`)."""
        data = rows if isinstance(rows, bytes) else part_bytes(rows)
        return atomic_write_bytes(self.run_dir(run_id) / part_name(step), data)

    def part_steps(self, run_id: str) -> list[int]:
        parts = self._parts_dir(run_id)
        if not parts.exists():
            return []
        return sorted(int(p.stem) for p in parts.glob("*.parquet"))

    def read_part(self, run_id: str, step: int) -> pd.DataFrame:
        """The rows written at ``step`` by :meth:`write_part` (while the run is in progress)."""
        return self._read_parquet(run_id, self._parts_dir(run_id) / f"{step:012d}.parquet")

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
        the status, and only then are the parts removed.  The merged file's footer holds the end record
        (:data:`END_RECORD_KEY`), from which :meth:`restore_status` rebuilds a status damaged later.
        """
        tables = [_row_table(rows)] if rows is not None else []
        parts = self.part_steps(run_id)
        if parts or not tables:  # writing rows given here needs no read of the parts
            tables.insert(0, _row_table(self._read_parts(run_id)))
        others = extra.pop("digests", {})
        end = {"run_id": run_id, "state": str(state), "step": step, "message": message, **extra, "digests": others}
        data = _trajectory_bytes(pa.concat_tables(tables), end)
        digest = atomic_write_bytes(self.run_dir(run_id) / "trajectory.parquet", data)
        self.set_status(run_id, state, step, message, digests={**others, "trajectory.parquet": digest}, **extra)
        for part_step in parts:
            (self._parts_dir(run_id) / f"{part_step:012d}.parquet").unlink()

    def _read_parts(self, run_id: str, status: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """The rows of every part on disk, verified: page checksums, the row schema and, for each part whose
        digest the run's ``status`` (if given) records, that digest (:func:`accepted_digests`); a part written
        after the last status has none yet and is trusted on its checksums, as :meth:`damaged_files` trusts it."""
        steps = self.part_steps(run_id)
        if not steps:
            return _empty_rows()
        paths = [self._parts_dir(run_id) / f"{s:012d}.parquet" for s in steps]
        for step, path in zip(steps, paths):
            accepted = accepted_digests(status or {}, part_name(step))
            if accepted:  # hashed here, parsed below in one read (the OS still holds the bytes)
                try:
                    _check_digest(path.read_bytes(), accepted)
                except (OSError, ValueError) as err:
                    raise _damaged_rows(run_id, path, err) from None
        try:  # one read of all parts (half the time of reading and concatenating them one by one)
            frame = pd.read_parquet(paths, page_checksum_verification=True)
            if row_schema_problem(pa.Schema.from_pandas(frame, preserve_index=False)) is None:
                return frame
        except (OSError, ValueError):  # a damaged part: read them one by one to name it
            pass
        return pd.concat([self._read_parquet(run_id, path) for path in paths], ignore_index=True)

    def _read_parquet(self, run_id: str, path: Path, digest: dict[str, Any] | None = None) -> pd.DataFrame:
        """The rows in ``path``, verified: page checksums, the row schema and (if given) the digest recorded
        when the file was written; :class:`DamagedStoreError` naming the run and file otherwise."""
        try:
            if digest is None:
                table = pq.read_table(path, page_checksum_verification=True)
            else:
                data = path.read_bytes()
                _check_digest(data, [digest])
                table = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
            problem = row_schema_problem(table.schema)
            if problem:
                raise ValueError(problem)
            return table.to_pandas()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise _damaged_rows(run_id, path, err) from None

    def reset_run(self, run_id: str, **extra: Any) -> None:
        """Delete everything the run recorded (rows, checkpoint, selected models) before training it from
        scratch.  The checkpoints go first, then the status says ``running`` at step 0 (with ``extra``), then
        the rows: a kill at any moment leaves no checkpoint beside a status that does not vouch for it (a
        status without parts would have the next session trust the parts on disk, some of them deleted), and
        no reader takes the run for complete once its rows are going."""
        self.remove_file(run_id, "checkpoint.pt")
        self.pending_checkpoint_path(run_id).unlink(missing_ok=True)
        self.set_status(run_id, RunState.RUNNING, 0, **extra)
        self.remove_file(run_id, "trajectory.parquet")
        self.discard_parts_after(run_id, -1)
        self.keep_selected_models(run_id, {})

    def trajectory(self, run_id: str) -> pd.DataFrame:
        """All rows of one run, sorted by step (finished runs and runs in progress alike), verified against the
        digests its status records: the merged trajectory of a complete run, each row part of one in progress
        (:meth:`_read_parts`); :class:`DamagedStoreError` naming the file if one does not verify, or the status
        if it cannot be read (it vouches for nothing).  Until 2026-12-06 the parts of a run in progress were read
        on their page checksums alone, so a part rewritten validly went into ``report --include-unfinished`` and
        ``export`` while ``runs --check`` named it."""
        merged = self.run_dir(run_id) / "trajectory.parquet"
        status = self.status(run_id) or {}
        digests = status.get("digests") or {}
        if status.get("state") in DONE_STATES and merged.exists():
            frame = self._read_parquet(run_id, merged, digests.get("trajectory.parquet"))
        else:
            frame = self._read_parts(run_id, status)
        return frame.sort_values(["step", "task", "quantity"], kind="stable").reset_index(drop=True)

    # -- the index -------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        """The ids of the stored runs: directories with a ``config.json`` or anything else a run records
        (:func:`_has_records`; one whose config is gone is ``damaged``, never out of sight), not those
        holding only the lock of a run being started; :class:`DamagedStoreError` if ``runs`` is not a
        directory, :class:`StoreVersionError` for a store of a newer format."""
        runs = self.root / "runs"
        if not runs.exists():
            return []
        self._check_version()
        if not runs.is_dir():
            raise DamagedStoreError(f"{runs} is not a directory; a store keeps its runs in the directory runs/")
        return sorted(p.name for p in runs.iterdir() if self.has_run(p.name))

    def has_run(self, run_id: str) -> bool:
        """Whether run ``run_id`` is stored: in :meth:`run_ids` (a lock file alone is not a run; a run id that
        names no directory inside ``runs``, :func:`_is_run_dir_name`, is no stored run)."""
        if not _is_run_dir_name(run_id):
            return False
        run_dir = self.run_dir(run_id)
        return (run_dir / "config.json").exists() or _has_records(run_dir)

    def runs(self) -> pd.DataFrame:
        """One row per run: its config (lists and dicts as JSON strings) and its status, as a DataFrame.

        ``state`` is one of :data:`INDEX_STATES` (see the module docstring); a damaged run's
        ``message`` names its damaged files, and its config columns are empty if ``config.json`` is."""
        records = []
        for run_id in self.run_ids():
            damaged = self.damaged_files(run_id)
            config = {} if "config.json" in damaged else self._read_json(run_id, "config.json")  # verified just now
            status = {} if "status.json" in damaged else self.status(run_id) or {}
            flat = {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in config.items()}
            if config:
                flat["tasks"] = TASK_LIST.join(config.get("tasks") or [])
                flat["mode"] = "stl" if len(config.get("tasks") or []) == 1 else "mtl"
            state = status.get("state", RunState.PENDING)
            if damaged:
                state = RunState.DAMAGED
            elif state in (RunState.RUNNING, RunState.PENDING) and (self.run_dir(run_id) / ".lock").exists():
                state = RunState.RUNNING if self.is_locked(run_id) else RunState.INTERRUPTED
            message = (
                "damaged: " + "; ".join(f"{name} ({why})" for name, why in damaged.items())
                if damaged
                else status.get("message", "")
            )
            records.append(
                {"run_id": run_id, **flat, "state": str(state), "last_step": status.get("step", 0), "message": message}
            )
        frame = pd.DataFrame.from_records(records)
        missing = [c for c in INDEX_COLUMNS if c not in frame.columns]  # e.g. every run's config.json damaged
        return frame.assign(**dict.fromkeys(missing, None)) if len(frame) and missing else frame

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
        """Atomically write (or replace, also a directory left in its place) the table ``name`` (letters,
        digits, ``-``, ``_``, ``.``)."""
        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise ValueError(f"table name {name!r} may only contain letters, digits, '-', '_' and '.'")
        frame = frame.reset_index(drop=True)
        path = self.root / "tables" / f"{name}.parquet"
        if path.is_dir():  # damage (`runs --check` names it): the table rewritten replaces it
            shutil.rmtree(path)
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, **PARQUET_WRITE))

    @contextmanager
    def table_lock(self, name: str) -> Iterator[None]:
        """Hold table ``name``'s lock (``tables/.<name>.lock``, an exclusive ``flock``; waits for another holder)
        for the duration: a read, merge and :meth:`write_table` of that table under it is not lost to another
        process doing the same (e.g. two invocations of one experiment writing its manifest).
        :class:`StoreNotWritableError` (one line) if the lock cannot be created."""
        with self._open_lock_file(self.root / "tables" / f".{name}.lock", f"table {name}") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name`` written by :meth:`write_table`."""
        path = self.root / "tables" / f"{name}.parquet"
        try:
            return pd.read_parquet(path, page_checksum_verification=True)
        except (OSError, ValueError) as err:
            raise DamagedStoreError(
                f"table {name}: {path} is damaged ({type(err).__name__}: {err}); rerun the command that wrote it"
            ) from None

    @property
    def sweeps_dir(self) -> Path:
        """The folder of the sweeps' tables, one folder per sweep (:meth:`sweep_dir`)."""
        return self.root / "sweeps"

    def sweep_dir(self, sweep_id: str) -> Path:
        """The folder of sweep ``sweep_id``'s tables (:mod:`mtlens.orchestration.sweep` writes and reads them)."""
        return self.sweeps_dir / sweep_id

    def sweep_ids(self) -> list[str]:
        """The ids of the sweeps whose selection is in the store (``sweeps/<id>/selected.csv``), sorted."""
        return sorted(p.parent.name for p in self.sweeps_dir.glob("*/selected.csv") if p.is_file())

    def table_names(self, prefix: str = "") -> list[str]:
        """Names of the stored tables starting with ``prefix``, sorted."""
        tables = self.root / "tables"
        if not tables.exists():
            return []
        return sorted(p.stem for p in tables.glob("*.parquet") if p.stem.startswith(prefix))


def enclosing_store(path: str | os.PathLike[str]) -> Path | None:
    """The root of the run store that ``path`` (absolute, made so if not; it need not exist) is or lies in: the
    nearest of ``path`` and its ancestors that holds :data:`STORE_FILE` or a ``runs`` directory with a run's
    ``config.json`` (a store of version 1, or one whose runs were written without a run's lock, has no
    :data:`STORE_FILE`); ``None`` if there is none.  A ``runs`` directory alone marks no root: it is also the
    ordinary parent of stores (the default store is ``runs/mtlens``)."""
    absolute = Path(path).resolve()
    return next(
        (p for p in (absolute, *absolute.parents) if (p / STORE_FILE).is_file() or any(p.glob("runs/*/config.json"))),
        None,
    )


def _lock_exclusive(handle: IO[bytes]) -> bool:
    """Take the exclusive ``flock`` of the open lock file ``handle`` without blocking; ``False`` if another
    process (or another open of the file) holds it exclusively.

    A refusal must mean a holder, never a probe (:meth:`RunStore.is_locked`, whose shared lock lasts an
    instant): when the exclusive lock is refused, a shared one is tried at once; it is refused only by an
    exclusive holder (refused then, without waiting), and granted when the lock was held shared only, or
    was just released: it is let go and the exclusive lock tried again, every millisecond until
    :data:`PROBE_WAIT_S` has passed.  ``flock`` locks (BSD semantics, the same on Linux and macOS) belong to
    the open file, so a shared and an exclusive lock of two opens in one process conflict as they do across
    processes.  The shared lock is released before the exclusive one is tried, never converted in place
    (Linux drops the held lock first when converting, so a refused conversion would leave none)."""
    deadline = time.monotonic() + PROBE_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # held exclusively: by a process training the run
        fcntl.flock(handle, fcntl.LOCK_UN)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)


def _trajectory_bytes(table: pa.Table, end: dict[str, Any]) -> bytes:
    """``table`` (of :data:`ROW_SCHEMA`) as a Parquet file (:data:`PARQUET_WRITE`) whose footer holds ``end`` and
    ``rows_sha256``, the SHA-256 of every byte before the footer (:data:`END_RECORD_KEY`): the data is written
    and hashed first, then the footer with the record."""
    buffer = io.BytesIO()
    sink = pa.PythonFile(buffer, mode="w")
    with pq.ParquetWriter(sink, ROW_SCHEMA, **PARQUET_WRITE) as writer:
        writer.write_table(table)
        sink.flush()
        rows = buffer.getvalue()
        record = {**end, "rows_sha256": hashlib.sha256(rows).hexdigest()}
        writer.add_key_value_metadata({END_RECORD_KEY: json.dumps(record, sort_keys=True)})
    data = buffer.getvalue()
    if data[: len(rows)] != rows or len(data) - 8 - int.from_bytes(data[-8:-4], "little") != len(rows):
        raise RuntimeError("pyarrow wrote row data after the footer was begun: the end record's digest would not hold")
    return data


def _check_digest(data: bytes, accepted: Sequence[Mapping[str, Any]]) -> None:
    """``ValueError`` unless the SHA-256 of ``data`` is one of those the ``accepted`` digests (a status's records of
    the file, :func:`accepted_digests`) hold."""
    if hashlib.sha256(data).hexdigest() not in [d.get("sha256") for d in accepted]:
        raise ValueError("its SHA-256 digest differs from the one recorded when the run wrote it")


def _damaged_rows(run_id: str, path: Path, err: Exception) -> DamagedStoreError:
    """The error naming the run and its rows file ``path`` that cannot be trusted, and why (``err``)."""
    return DamagedStoreError(
        f"run {run_id}: {path} is damaged ({type(err).__name__}: {err}); rerun the run to retrain what it lost"
    )


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``ValueError`` saying why if it is not one."""
    try:
        value = read_json(path)
    except (ValueError, UnicodeDecodeError, OSError) as err:  # OSError: e.g. a directory in its place
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object was expected, got {type(value).__name__}")
    return value


def _is_run_dir_name(run_id: object) -> bool:
    """Whether ``run_id`` names one directory inside a store's ``runs``: a non-empty string other than ``.`` and
    ``..``, without a path separator of this system (what :meth:`RunStore.run_dir` requires)."""
    return isinstance(run_id, str) and run_id not in ("", ".", "..") and PurePath(run_id).name == run_id


def _has_records(run_dir: Path) -> bool:
    """Whether the directory ``run_dir`` holds anything a run records besides its lock and the temporary
    files of interrupted writes (a run writes its ``config.json`` first, so one without it is damaged)."""
    try:
        with os.scandir(run_dir) as entries:
            names = [e.name for e in entries]
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(n != ".lock" and not (n.startswith(".") and n.endswith(TMP_SUFFIX)) for n in names)


def part_name(step: int) -> str:
    """The file of the row part written at ``step``, relative to the run directory (the key of its digest)."""
    return f"parts/{step:012d}.parquet"


def selected_model_name(task: str, step: int) -> str:
    """The file of task ``task``'s selected model at ``step``, relative to the run directory (its digest's key)."""
    return f"selected/{task}-{step:012d}.pt"


def file_digest(path: Path) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex digest}`` of the file ``path`` (what a run's status records)."""
    return bytes_digest(path.read_bytes())


def bytes_digest(data: bytes) -> dict[str, Any]:
    """``{"size": bytes, "sha256": hex digest}`` of ``data``: the :func:`file_digest` of a file holding it."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def accepted_digests(status: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The digests of the run's file ``name`` that ``status`` vouches for: the one it records (``digests``) and,
    for a part being rewritten, the one the rewrite replaces (``replaced``: the part a kill before the rewrite
    leaves; module docstring, *Rewritten parts*); empty if it records none."""
    recorded = (status.get("digests") or {}).get(name)
    replaced = (status.get("replaced") or {}).get(name)
    if recorded is None:
        return []
    return [recorded] if replaced is None else [recorded, replaced]


def part_bytes(rows: pd.DataFrame | pa.Table) -> bytes:
    """``rows`` as the Parquet file of a row part (:data:`PARQUET_WRITE`), as :meth:`RunStore.write_part` writes
    it (encoded apart where its digest is needed before it is written: a rewritten part, module docstring)."""
    sink = pa.BufferOutputStream()
    pq.write_table(_row_table(rows), sink, **PARQUET_WRITE)
    return bytes(sink.getvalue().to_pybytes())


def row_schema_problem(schema: pa.Schema) -> str | None:
    """What makes ``schema`` unfit for trajectory rows (a column of :data:`ROW_COLUMNS` missing or of
    another kind: strings, integers for ``seed``/``step``, floats for ``epoch``/``value``), or ``None``."""
    kinds = {"seed": pa.types.is_integer, "step": pa.types.is_integer, "epoch": pa.types.is_floating}
    kinds["value"] = pa.types.is_floating
    missing = [c for c in ROW_COLUMNS if c not in schema.names]
    if missing:
        return f"columns {missing} are missing"
    wrong = [
        f"{c} ({schema.field(c).type})"
        for c in ROW_COLUMNS
        if not kinds.get(c, lambda t: pa.types.is_string(t) or pa.types.is_large_string(t))(schema.field(c).type)
    ]
    return f"columns of the wrong type: {', '.join(wrong)}" if wrong else None


def _status_problem(status: dict[str, Any]) -> str | None:
    """What makes a decoded ``status.json`` unfit (unknown state, step not an integer), or ``None``."""
    if status.get("state") not in STATES:
        return f"unknown state {status.get('state')!r}"
    if not isinstance(status.get("step"), int) or status["step"] < 0:
        return f"step {status.get('step')!r} is not a non-negative integer"
    for key in ("digests", "replaced"):
        digests = status.get(key, {})
        if not isinstance(digests, dict):
            return f"{key} is not an object"
        for name, digest in digests.items():
            if not (
                isinstance(digest, dict)
                and isinstance(digest.get("size"), int)
                and not isinstance(digest["size"], bool)
                and isinstance(digest.get("sha256"), str)
            ):
                return (
                    f"the digest of {name} in {key} is not an object with an integer size and a string sha256: "
                    f"{digest!r}"
                )
    parts = status.get("parts", [])
    if not isinstance(parts, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        return f"parts {parts!r} is not a list of non-negative integer steps"
    return None


def _unreadable(path: Path, deep: bool, rows: bool = True) -> str:
    """Why the Parquet or ``.pt`` file ``path`` cannot be read, or ``""`` (see :meth:`RunStore.damaged_files`);
    ``rows``: a Parquet file must hold trajectory rows (:func:`row_schema_problem`)."""
    try:
        if path.suffix == ".parquet":
            schema = pq.read_schema(path)
            problem = row_schema_problem(schema) if rows else None
            if problem:
                return problem
            if deep:
                pq.read_table(path, page_checksum_verification=True)
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
