"""The run handle: the one owner of a run's life in the store.

The trainer (:mod:`mtlens.training.trainer`), packs (:mod:`mtlens.training.pack`) and the
:class:`~mtlens.training.recorder.Recorder` hold training state only; every file of a run is
opened, locked, verified, healed, written, checkpointed and restored here, through the
:class:`~mtlens.store.RunStore` (the only code that writes results).  A run's life:

1. :meth:`RunHandle.open` takes the run's lock (released by :meth:`RunHandle.close`), removes what
   interrupted processes left (temporary files of atomic writes, row parts of a complete run), and
   verifies every file the run wrote (:meth:`~mtlens.store.RunStore.damaged_files`, deep: Parquet
   page checksums, row schema, zip CRCs, digests recorded at write time).  Damage is named (a
   :class:`DamagedRunWarning`) and healed: a damaged (or missing) ``status.json`` of a complete run is rebuilt
   from the end record of its trajectory where that verifies (:meth:`~mtlens.store.RunStore.restore_status`), and the
   files are then verified against the digests it restores; a missing or damaged ``config.json`` (one edited
   to the same size included: its digest differs) or ``tasks.json`` is rewritten from the request (the run
   id, a hash of the config, says what it held; the rows it vouches for are kept), a damaged checkpoint of a
   complete run is dropped, and a complete run whose rows cannot be trusted is reset to be trained again
   from scratch.  A run is complete (``finished``/``diverged``) only if its merged trajectory is there
   and verified.
2. :meth:`RunHandle.resume` loads the last :class:`Checkpoint` if it verifies and every row part
   up to it is there and intact (the steps the checkpoint's status lists, or those the caller
   expects); otherwise the run is reset and trained from scratch -- kept and retrained rows are
   never mixed.  :meth:`RunHandle.start_fresh` resets a run to step 0.
3. Rows: :meth:`RunHandle.rows` builds a step's tidy rows (identity columns filled in);
   :meth:`RunHandle.write_step` writes one atomic part per recorded step at once (the trainer), and
   :meth:`RunHandle.record` buffers values by ``(step, task, quantity)`` (the Recorder: a value recorded
   again replaces the earlier one), written one part per step by :meth:`RunHandle.flush`, before
   every checkpoint and failure, and merged straight into the trajectory by :meth:`RunHandle.finish`.
   :meth:`RunHandle.save_checkpoint` writes a checkpoint and then the ``running`` status that
   lists the parts it covers; :meth:`RunHandle.save_selected` keeps a task's selected weights
   (:func:`load_selected_model` reads them back, verified).
   **Digests.**  The SHA-256 and size of every file the handle writes (config, task information,
   each row part, the checkpoint, each selected model, the merged trajectory) are taken from the
   bytes as they are written and go into every status it writes, so a file rewritten validly (page
   checksums or zip CRCs intact) is caught by the deep verification.  A part the status on disk records that is
   written again (rows recorded at a checkpoint's step after the checkpoint) is written after a status recording
   its new digest and the old one (*Rewritten parts* in :mod:`mtlens.store.run_store`).  The files of a run written
   before digests were recorded get theirs the first time they verify (:meth:`RunHandle.open`,
   :func:`clean_complete_run`).  A kill between writing a checkpoint and the status that records
   its digest leaves a checkpoint that no longer matches: the run is then retrained from scratch.
4. The end: :meth:`RunHandle.finish` (``finished`` or ``diverged``: parts merged into the
   trajectory, its digest in the status), :meth:`RunHandle.fail` (``failed``, rows kept, resumable;
   :meth:`RunHandle.record_failure` once the failing code has released the run);
   an interrupted run (Ctrl-C, ``kill``) keeps its ``running`` status, and with its lock released
   the index shows it ``interrupted``: rerunning resumes it from its last checkpoint.

Run states are :class:`~mtlens.states.RunState` members everywhere (``tests/test_run_ownership.py``
checks that no other module touches a run's files or spells a state as text).
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch import Tensor

from mtlens.errors import DamagedStoreError, MtlensError
from mtlens.store import RunLockedError, RunState, RunStore, StoreNotWritableError, atomic_write_bytes
from mtlens.store.run_store import (
    DONE_STATES,
    ROW_SCHEMA,
    accepted_digests,
    bytes_digest,
    file_digest,
    part_bytes,
    part_name,
    selected_model_name,
)
from mtlens.tasks import Task

MAX_PENDING_STEPS = 64
"""Buffered steps (:meth:`RunHandle.record`) that trigger a write (bounds the memory a long loop's rows take)."""

CHECKPOINT_VERSION = 2
"""The :class:`Checkpoint` format written now (version 1: the two unversioned dicts of earlier releases)."""


class DamagedRunWarning(UserWarning):
    """Files of a run could not be trusted; what they held is rewritten or retrained."""


class CheckpointError(MtlensError):
    """A checkpoint cannot be read (damaged, or of an unknown version)."""


@dataclass(frozen=True)
class RunIdentity:
    """The columns every trajectory row of a run carries besides ``task, step, epoch, quantity, value``."""

    run_id: str
    setting: str
    tasks: tuple[str, ...]
    method: str
    seed: int

    @property
    def mode(self) -> str:
        """``'stl'`` for one task, ``'mtl'`` otherwise (the store's index derives it the same way)."""
        return "stl" if len(self.tasks) == 1 else "mtl"


def task_info(tasks: Iterable[Task]) -> dict[str, dict[str, Any]]:
    """``{task: {"selection_metric", "lower_is_better": {metric: bool}}}``: what the analyses need to
    know about a run's tasks (``tasks.json`` in the store)."""
    return {
        t.name: {
            "selection_metric": t.selection_metric,
            "lower_is_better": {m: t.is_lower_better(m) for m in t.metric_names},
        }
        for t in tasks
    }


@dataclass
class Checkpoint:
    """A run's training state at ``step``: ``state`` (the trainer's model, optimizer, method, stream,
    ... or a :class:`~mtlens.training.recorder.Recorder` user's own dict) and torch's random states.

    Stored (``torch.save``) as ``{"version": CHECKPOINT_VERSION, "step", "state", "torch_rng",
    "cuda_rng"}``.  :meth:`from_payload` also reads both unversioned shapes of version 1: the
    trainer's flat dict (``step, model, optimizer, method, method_diagnostics, stream, torch_rng,
    cuda_rng, selected[, threads]``; everything but the step and RNG states becomes ``state``) and
    the recorder's ``{"step", "state", "torch_rng"}``."""

    step: int
    state: dict[str, Any]
    torch_rng: Tensor
    cuda_rng: list[Tensor] | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "state": self.state,
            "torch_rng": self.torch_rng,
            "cuda_rng": self.cuda_rng,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint in a loaded payload of any known version; :class:`CheckpointError` otherwise."""
        version = payload.get("version", 1)
        if version == CHECKPOINT_VERSION:
            state = dict(payload["state"])
        elif version == 1 and "model" in payload:  # the trainer's flat dict
            state = {k: v for k, v in payload.items() if k not in ("step", "torch_rng", "cuda_rng")}
        elif version == 1 and "state" in payload:  # the recorder's dict
            state = dict(payload["state"])
        else:
            raise CheckpointError(f"unknown checkpoint version {version!r} (this mtlens reads 1-{CHECKPOINT_VERSION})")
        return cls(int(payload["step"]), state, payload["torch_rng"], payload.get("cuda_rng"))

    @classmethod
    def load(cls, path: Any, map_location: str | torch.device | None = None) -> Checkpoint:
        """Verify (every zip member's CRC-32) and load the checkpoint file ``path``."""
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise CheckpointError(f"checksum mismatch in member {bad}")
        return cls.from_payload(torch.load(path, map_location=map_location, weights_only=False))


class RunHandle:
    """One run's files in ``store``; see the module docstring.

    ``config`` is the run's stored config (an existing run must have the same one: ``same_config(stored,
    config)`` if given, else equal up to the ``ignore`` keys, e.g. the device) and ``info`` its task
    information (``tasks.json``; needed by :meth:`open` only).
    ``status_extra`` is merged into every status the handle writes (e.g. the thread count)."""

    def __init__(
        self,
        store: RunStore,
        identity: RunIdentity,
        config: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
        ignore: Collection[str] = (),
        same_config: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
    ):
        self.store, self.identity = store, identity
        self.config, self.info, self.ignore = dict(config), dict(info or {}), ignore
        self.same_config = same_config
        self.status_extra: dict[str, Any] = {}
        self.damaged: dict[str, str] = {}  # what open() found, before healing
        self._opened_status: dict[str, Any] = {}  # the status open() found (the last checkpoint's parts)
        self._digests: dict[str, dict[str, Any]] = {}
        self._stack: ExitStack | None = None
        self._pending: dict[int, tuple[float, dict[tuple[str, str], float]]] = {}  # buffered rows by step
        self._parts: set[int] = set()  # steps with a part on disk (known once open: the lock keeps others out)
        self._restore_point: tuple[int, list[int]] | None = None  # the checkpoint's step and the parts it covers

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def opened_step(self) -> int:
        """The step in the status :meth:`open` found (0 for a new run, or one reset to train from scratch)."""
        return int(self._opened_status.get("step", 0))

    @property
    def has_rows(self) -> bool:
        """Whether the open run has rows, written as parts or buffered."""
        return bool(self._pending or self._parts)

    @property
    def is_open(self) -> bool:
        return self._stack is not None

    # -- opening and closing ---------------------------------------------------------------
    def open(self) -> RunState | None:
        """Lock, clean, verify and heal the run (module docstring, 1.); its done state if it is complete
        (then nothing is to be trained and the lock is not kept), else ``None`` with the lock held."""
        if self._stack is not None:
            raise RuntimeError(f"run {self.run_id} is already open")
        if self.store.is_done(self.run_id, deep=True):
            clean_complete_run(self.store, self.run_id)
            return self.store.done_state(self.run_id)
        fresh = not self.store.run_dir(self.run_id).exists()  # nothing to clean or verify yet
        stack = ExitStack()
        stack.enter_context(self.store.lock(self.run_id))
        try:
            if not fresh:
                self.store.settle_checkpoint(self.run_id)
                self.store.remove_leftovers(self.run_id)
            done = self._heal(verify=not fresh)
        except BaseException:
            stack.close()
            raise
        if done is not None:
            stack.close()
            return done
        self._stack = stack
        self._pending, self._parts = {}, set(self.store.part_steps(self.run_id))
        return None

    def _heal(self, verify: bool = True) -> RunState | None:
        """Verify every file (if ``verify``) and heal what is damaged; the done state of a complete run,
        else ``None``."""
        store, run_id = self.store, self.run_id
        self.damaged = store.damaged_files(run_id, deep=True) if verify else {}
        if "status.json" in self.damaged:  # rebuilt from the trajectory's end record where it verifies
            path = store.run_dir(run_id) / "status.json"
            store.remove_file(run_id, "status.json")  # removed below in any case (a directory in its place too)
            why_not = store.restore_status(run_id)
            warnings.warn(
                f"run {run_id}: {path} is damaged ({self.damaged['status.json']}); "
                + (f"it cannot be rebuilt: {why_not}" if why_not else "rebuilt from the end record of its trajectory"),
                DamagedRunWarning,
                stacklevel=4,
            )
            if not why_not:
                store.remove_leftovers(run_id)
                self.damaged = store.damaged_files(run_id, deep=True)
        if self.damaged:
            warnings.warn(
                f"run {run_id}: damaged files {self.damaged} in {store.run_dir(run_id)}; rewriting or retraining "
                "what they held",
                DamagedRunWarning,
                stacklevel=4,
            )
        for name in ("config.json", "tasks.json", "status.json"):
            if name in self.damaged:
                store.remove_file(run_id, name)
        status = None if "status.json" in self.damaged else store.status(run_id)
        self._digests = {"config.json": store.write_config(run_id, self.config, self.ignore, self.same_config)}
        tasks = store.run_dir(run_id) / "tasks.json"
        if (
            status is not None
            and status["state"] in DONE_STATES
            and tasks.is_file()
            and "tasks.json" not in self.damaged
        ):
            # a complete run keeps the task info it was trained with (a request with another selection metric
            # rewrote it, and a status rebuilt from the end record then no longer matched it: "damaged")
            self._digests["tasks.json"] = (status.get("digests") or {}).get("tasks.json") or file_digest(tasks)
        else:
            self._digests["tasks.json"] = store.write_task_info(run_id, self.info)
        self._opened_status = dict(status or {})
        self._restore_point = None
        if status is not None and "parts" in status and store.checkpoint_path(run_id).exists():
            self._restore_point = (int(status["step"]), [int(s) for s in status["parts"]])
        for path in self._written_files():  # intact (verified just now): their digests go on into every status
            name = path.relative_to(store.run_dir(run_id)).as_posix()
            if name not in self.damaged:
                # the one recorded; else the file's: none recorded (written before version 2: recorded from now on),
                # or two (a part whose rewrite a kill may have cut short: whichever verified is there)
                accepted = accepted_digests(status or {}, name)
                self._digests[name] = accepted[0] if len(accepted) == 1 else file_digest(path)
        rest = set(self.damaged) - {"config.json", "tasks.json", "checkpoint.pt"}
        if status is not None and status["state"] in DONE_STATES:
            if not rest:  # complete rows: keep them, drop what a complete run does not need
                store.checkpoint_path(run_id).unlink(missing_ok=True)
                if self.damaged:
                    kept = {k: v for k, v in status.items() if k not in ("state", "step", "message", "updated")}
                    digests = {**(status.get("digests") or {}), **self._digests}
                    message = status.get("message", "")
                    store.set_status(run_id, status["state"], status["step"], message, **{**kept, "digests": digests})
                return RunState(status["state"])
            self.start_fresh()  # rows of a complete run are lost: train it again from scratch
        return None

    def _written_files(self) -> list[Path]:
        """The row parts, checkpoint and selected models on disk (the files whose digests the status keeps
        while the run is in progress)."""
        run_dir = self.store.run_dir(self.run_id)
        files = [run_dir / part_name(step) for step in self.store.part_steps(self.run_id)]
        files.append(self.store.checkpoint_path(self.run_id))
        files += sorted((run_dir / "selected").glob("*.pt"))
        return [path for path in files if path.is_file()]

    def close(self) -> None:
        """Release the lock (the run keeps its state; a ``running`` run is then ``interrupted``)."""
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- resume ------------------------------------------------------------------------------
    def resume(
        self, expected_parts: Callable[[int], Sequence[int]] | None = None, map_location: Any = None
    ) -> Checkpoint | None:
        """The last checkpoint if it and every row part up to it verify (rows after it are discarded);
        ``None`` -- after resetting the run, with a :class:`DamagedRunWarning` -- if it cannot be
        trusted, and ``None`` if there is none.  The parts needed are those the checkpoint's status
        lists, else ``expected_parts(step)`` if given, else (a status of version 1, which lists no
        parts) every part on disk up to the step; without an intact status the checkpoint is not trusted."""
        self._require_open()
        path = self.store.checkpoint_path(self.run_id)
        if not path.exists():
            return None
        if "checkpoint.pt" in self.damaged:
            return self._untrusted(f"{path} is damaged ({self.damaged['checkpoint.pt']})")
        try:
            checkpoint = Checkpoint.load(path, map_location)
        except Exception as err:  # any failure to load means the checkpoint cannot be trusted
            return self._untrusted(f"{path} cannot be loaded ({type(err).__name__}: {err})")
        step = checkpoint.step
        status = self._opened_status
        have = [s for s in self.store.part_steps(self.run_id) if s <= step]
        if status.get("step") == step and "parts" in status:
            expected = list(status["parts"])
        elif expected_parts is not None:
            expected = list(expected_parts(step))
        elif status.get("state") in (RunState.RUNNING, RunState.FAILED):
            expected = have  # a status without the parts list (written before version 2): the parts on disk
        else:  # no intact status: nothing says which rows the checkpoint needs
            return self._untrusted(f"{self.store.run_dir(self.run_id) / 'status.json'} cannot say which rows it needs")
        if have != expected:
            missing = sorted(set(expected) - set(have))
            return self._untrusted(f"rows of steps {missing} before its checkpoint at step {step} are missing")
        lost = {
            name: why
            for name, why in self.damaged.items()
            if name.startswith("selected/") or (name.startswith("parts/") and int(name[6:18]) <= step)
        }
        if lost:
            return self._untrusted(f"files it needs are damaged: {lost}")
        self.discard_after(step)
        return checkpoint

    def _untrusted(self, why: str) -> Checkpoint | None:
        """Reset the run (it cannot resume), warning why; ``None``, the checkpoint it has instead."""
        warnings.warn(f"run {self.run_id}: {why}; retraining it from scratch", DamagedRunWarning, stacklevel=4)
        self.start_fresh()
        return None

    def start_fresh(self) -> None:
        """Delete everything the run recorded (rows, checkpoint, selected models): it starts at step 0."""
        self._digests = {name: self._digests[name] for name in ("config.json", "tasks.json") if name in self._digests}
        self.store.reset_run(self.run_id, digests=self._digests, **self.status_extra)
        self.damaged, self._opened_status, self._restore_point = {}, {}, None
        self._pending, self._parts = {}, set()

    # -- rows --------------------------------------------------------------------------------
    def rows(self, steps: Iterable[tuple[int, float, Sequence[Mapping[str, Any]]]]) -> pa.Table:
        """The rows ``{"task", "quantity", "value"}`` recorded at each ``(step, epoch, records)``, with
        the identity columns, as one Arrow table of :data:`~mtlens.store.run_store.ROW_SCHEMA` (built
        from columns directly: a tenth of the cost of a ``DataFrame`` written through pandas)."""
        identity = self.identity
        step_column: list[int] = []
        epoch_column: list[float] = []
        records: list[Mapping[str, Any]] = []
        for step, epoch, step_records in steps:
            step_column += [step] * len(step_records)
            epoch_column += [float(epoch)] * len(step_records)
            records += step_records
        n = len(records)
        columns = {
            "run_id": [identity.run_id] * n,
            "setting": [identity.setting] * n,
            "mode": [identity.mode] * n,
            "method": [identity.method] * n,
            "seed": [identity.seed] * n,
            "task": [r["task"] for r in records],
            "step": step_column,
            "epoch": epoch_column,
            "quantity": [r["quantity"] for r in records],
            "value": [float(r["value"]) for r in records],
        }
        return pa.table(columns, schema=ROW_SCHEMA)

    def write_step(self, step: int, epoch: float, records: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows ``{"task", "quantity", "value"}`` recorded at ``step`` as one part at once
        (replacing an earlier part of the same step and any rows of ``step`` buffered by :meth:`record`)."""
        self._pending.pop(step, None)
        self._write_part(step, self.rows([(step, epoch, records)]))

    def record(self, step: int, epoch: float, values: Mapping[tuple[str, str], float]) -> None:
        """Buffer ``{(task, quantity): value}`` recorded at ``step``: a value recorded again (in this session,
        or written before as the step's part) is replaced.  Buffered steps are written, one part each, by
        :meth:`flush`, :meth:`save_checkpoint`, :meth:`fail` and whenever :data:`MAX_PENDING_STEPS` are
        pending; :meth:`finish` merges them straight into the trajectory."""
        if step not in self._pending:
            self._pending[step] = (float(epoch), self._rows_on_disk(step))
        self._pending[step][1].update(values)
        if len(self._pending) >= MAX_PENDING_STEPS:
            self.flush()

    def _rows_on_disk(self, step: int) -> dict[tuple[str, str], float]:
        """Rows of ``step`` written earlier (this session or before), so new ones replace them by key."""
        if step not in self._parts:
            return {}
        part = self.store.read_part(self.run_id, step)
        return {(t, q): v for t, q, v in zip(part["task"], part["quantity"], part["value"])}

    def flush(self, steps: Iterable[int] | None = None) -> None:
        """Write the buffered rows of ``steps`` (default: every buffered step) as parts (a part holds all
        rows of its step)."""
        for step in sorted(self._pending if steps is None else set(steps) & set(self._pending)):
            epoch, values = self._pending.pop(step)
            self._write_part(step, self.rows([(step, epoch, _records(values))]))

    def _write_part(self, step: int, rows: pa.Table) -> None:
        """Write ``rows`` as the part of ``step`` (atomic); its digest goes into the next status.  A part the
        status on disk records (rows recorded at a checkpoint's step after the checkpoint, or recorded again) is
        rewritten only after that status is rewritten as it is (state, step, the parts its checkpoint covers)
        but for the digests: the new one, the old one as ``replaced`` (module docstring of
        :mod:`mtlens.store.run_store`, *Rewritten parts*), so a kill at any moment leaves a status the parts
        match.  Before, the status kept the old digest: Ctrl-C or a kill after the rewrite left the run
        ``damaged``, and it was retrained from scratch."""
        name = part_name(step)
        data = part_bytes(rows)
        status = (self.store.status(self.run_id) or {}) if step in self._parts else {}
        old = (status.get("digests") or {}).get(name)
        if old is not None:
            skip = ("state", "step", "message", "updated", "digests", "replaced")
            kept = {k: v for k, v in status.items() if k not in skip}
            digests = {**self._digests, name: bytes_digest(data)}
            message = status.get("message", "")
            self.store.set_status(
                self.run_id, status["state"], status["step"], message, **kept, digests=digests, replaced={name: old}
            )
        self._digests[name] = self.store.write_part(self.run_id, step, data)
        self._parts.add(step)

    def part_steps(self) -> list[int]:
        return self.store.part_steps(self.run_id)

    def discard_after(self, step: int) -> None:
        """Delete the rows recorded after ``step`` (``-1``: all rows), buffered or written."""
        self._pending = {s: rows for s, rows in self._pending.items() if s <= step}
        if any(s > step for s in self._parts):
            self.store.discard_parts_after(self.run_id, step)
        for discarded in (s for s in self._parts if s > step):
            self._digests.pop(part_name(discarded), None)
        self._parts = {s for s in self._parts if s <= step}

    # -- checkpoints and selected models -------------------------------------------------------
    def save_checkpoint(self, checkpoint: Checkpoint, keep_selected: Mapping[str, int] | None = None) -> None:
        """Write ``checkpoint`` as the pending checkpoint, then the ``running`` status listing its digest and
        the row parts it covers, then commit it over the last one (the store's two-phase commit,
        :mod:`mtlens.store.run_store`), then prune the selected models to ``keep_selected`` (task -> step)
        if given (in this order, so a kill at any moment leaves a checkpoint its status vouches for, whose
        parts and selected models are all there)."""
        self._require_open()
        self.flush()
        path = self.store.pending_checkpoint_path(self.run_id)
        self._digests["checkpoint.pt"] = atomic_write_bytes(path, _saved(checkpoint.to_payload()))
        if keep_selected is not None:  # the status lists the selected models the checkpoint keeps, no others
            kept = {selected_model_name(task, step) for task, step in keep_selected.items()}
            self._digests = {n: d for n, d in self._digests.items() if not n.startswith("selected/") or n in kept}
        self._restore_point = (checkpoint.step, [s for s in self.part_steps() if s <= checkpoint.step])
        self.mark_running(checkpoint.step, parts=self._restore_point[1])
        self.store.commit_checkpoint(self.run_id)
        if keep_selected is not None:
            self.keep_selected(keep_selected)

    def save_selected(self, task: str, step: int, weights: Mapping[str, Tensor]) -> None:
        """Save task ``task``'s validation-selected weights at ``step`` (its digest goes into the next status)."""
        path = self.store.selected_model_path(self.run_id, task, step)
        self._digests[selected_model_name(task, step)] = atomic_write_bytes(path, _saved(dict(weights)))

    def keep_selected(self, keep: Mapping[str, int]) -> None:
        """Delete every selected model but task ``t``'s at step ``keep[t]``."""
        self.store.keep_selected_models(self.run_id, dict(keep))
        run_dir = self.store.run_dir(self.run_id)
        for name in [n for n in self._digests if n.startswith("selected/")]:
            if not (run_dir / name).exists():
                del self._digests[name]

    # -- states ------------------------------------------------------------------------------
    def mark_running(self, step: int, **extra: Any) -> None:
        """State ``running`` at ``step``; ``extra`` goes into the status, and at the last checkpoint's step the
        row parts it covers (so the next :meth:`resume` still checks them)."""
        if self._restore_point is not None and self._restore_point[0] == step and "parts" not in extra:
            extra = {**extra, "parts": self._restore_point[1]}
        self.store.set_status(
            self.run_id, RunState.RUNNING, step, digests=self._digests, **{**self.status_extra, **extra}
        )

    def diverge(self, step: int, losses: Mapping[str, float], cause: str | None = None) -> RunState:
        """End the run ``diverged`` at ``step``, the first with a non-finite loss (``losses``: the
        non-finite values by name): the rows recorded at ``step`` and after it are discarded and the rest
        merged into the trajectory (:meth:`finish`), with the message both the trainer and the Recorder
        give (``cause``, where the non-finite values are not losses, replaces its first words).  Returns
        ``diverged``."""
        self.discard_after(step - 1)
        message = f"{cause or 'non-finite loss'} at step {step}: {dict(losses)}"
        return self.finish(RunState.DIVERGED, step, message)

    def fail(self, step: int, message: str) -> None:
        """State ``failed``: the buffered rows are written and stay as parts, so the run can be resumed.  With
        a checkpoint the status keeps its step and the row parts it covers (as :meth:`record_failure`
        does), so :meth:`resume` checks them; ``step`` is the status's step without one."""
        self.flush()
        extra: dict[str, Any] = dict(self.status_extra)
        if self._restore_point is not None:
            step, extra["parts"] = self._restore_point[0], self._restore_point[1]
        self.store.set_status(self.run_id, RunState.FAILED, step, message, digests=self._digests, **extra)

    def record_failure(self, message: str) -> None:
        """Mark the run ``failed`` with ``message`` after the code training it raised and released the run
        (the handle need not be open).  Under the run's lock the config is written (or rewritten, if
        missing or damaged) and the last status's step, digests and parts are kept, so the run resumes from
        its last checkpoint.  A run another process holds by now is left alone (it is being trained), and so
        is a complete one (its state ``finished``/``diverged``, or a damaged status its trajectory's end
        record rebuilds): ``failed`` over it made the next open resume a stale checkpoint and overwrite its
        merged rows.  A store that cannot be written raises :class:`~mtlens.store.StoreNotWritableError`
        (one line).  An open handle uses :meth:`fail`."""
        try:
            with self.store.lock(self.run_id):
                damaged = self.store.damaged_files(self.run_id)
                status = {} if "status.json" in damaged else self.store.status(self.run_id) or {}
                complete = status.get("state") in DONE_STATES
                if complete or ("status.json" in damaged and self.store.end_record(self.run_id)[0] is not None):
                    return
                kept = {k: v for k, v in status.items() if k not in ("state", "step", "message", "updated")}
                if "config.json" in damaged:
                    self.store.remove_file(self.run_id, "config.json")
                digest = self.store.write_config(self.run_id, self.config, self.ignore, self.same_config)
                kept["digests"] = {**(kept.get("digests") or {}), "config.json": digest}
                self.store.set_status(self.run_id, RunState.FAILED, status.get("step", 0), message, **kept)
        except RunLockedError:
            return
        except StoreNotWritableError as err:  # the lock could not be created
            why = str(err).removeprefix(f"run {self.run_id}: ")
            raise StoreNotWritableError(f"cannot record run {self.run_id} as failed: {why}") from None
        except OSError as err:
            raise StoreNotWritableError(
                f"cannot record run {self.run_id} as failed: cannot write {err.filename or self.store.root} "
                f"({err.strerror or err}); is the store {self.store.root} writable?"
            ) from None

    def finish(self, state: str, step: int, message: str = "") -> RunState:
        """Merge the written parts and the buffered rows (straight into the merged file: no part is written
        for them) into the run's trajectory and mark it ``state`` (``finished`` or ``diverged``).  Returns
        ``state``."""
        if state not in DONE_STATES:
            raise ValueError(f"a run ends finished or diverged, not {state!r}")
        self.flush(self._parts)  # a buffered step that has a part replaces it
        rows = (
            self.rows((s, epoch, _records(values)) for s, (epoch, values) in sorted(self._pending.items()))
            if self._pending
            else None
        )
        kept = {n: d for n, d in self._digests.items() if not n.startswith("parts/") and n != "checkpoint.pt"}
        self.store.finalize(self.run_id, state, step, message, rows=rows, digests=kept, **self.status_extra)
        self._pending = {}
        return RunState(state)

    def _require_open(self) -> None:
        if self._stack is None:
            raise RuntimeError(f"run {self.run_id} is not open")


def load_selected_model(store: RunStore, run_id: str, task: str, step: int) -> dict[str, Tensor]:
    """Task ``task``'s validation-selected weights at ``step`` of run ``run_id``, verified before they are
    trusted: the digest its status recorded when the run wrote the file (runs of format version 2), and
    every zip member's CRC.  :class:`~mtlens.errors.MtlensError` if the run kept no such file (it was not
    trained with ``save_selected_models: true``), :class:`~mtlens.errors.DamagedStoreError` naming the file
    if it cannot be trusted."""
    path = store.selected_model_path(run_id, task, step)
    if not path.is_file():
        raise MtlensError(
            f"run {run_id} has no saved model of task {task!r} at its selected step {step} ({path}); "
            "train it with save_selected_models: true"
        )
    try:
        data = path.read_bytes()
        recorded = ((store.status(run_id) or {}).get("digests") or {}).get(
            path.relative_to(store.run_dir(run_id)).as_posix()
        )
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded.get("sha256"):
            raise ValueError("its SHA-256 digest differs from the one recorded when the run wrote it")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"checksum mismatch in member {bad}")
        weights = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to verify or load means the file cannot be trusted
        raise DamagedStoreError(
            f"run {run_id}: {path} is damaged ({type(err).__name__}: {err}); rerun the run to retrain it"
        ) from None
    return dict(weights)


def _saved(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it (a zip archive), in memory: written atomically and digested at once."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _records(values: Mapping[tuple[str, str], float]) -> list[dict[str, Any]]:
    """``{(task, quantity): value}`` as row records ``{"task", "quantity", "value"}``."""
    return [{"task": t, "quantity": q, "value": v} for (t, q), v in values.items()]


def clean_complete_run(store: RunStore, run_id: str) -> None:
    """Tidy a complete, verified run (unless a process holds its lock or the store cannot be written):
    remove what interrupted processes left (:meth:`~mtlens.store.RunStore.leftover_files`), and record
    the digests of its files if it was written before format version 2 (no digests in its status), so
    that damage done to them from now on is caught (what verified now is what is trusted from now on;
    the status keeps its ``updated`` time and the rows are not rewritten)."""
    unrecorded = _unrecorded_files(store, run_id)
    if not (store.leftover_files(run_id) or unrecorded):
        return
    try:
        with store.lock(run_id):
            store.remove_leftovers(run_id)
            if unrecorded and not store.damaged_files(run_id, deep=True):
                status = store.status(run_id) or {}
                run_dir = store.run_dir(run_id)
                digests = {**(status.get("digests") or {}), **{n: file_digest(run_dir / n) for n in unrecorded}}
                kept = {k: v for k, v in status.items() if k not in ("state", "step", "message", "digests")}
                store.set_status(
                    run_id, status["state"], status["step"], status.get("message", ""), **kept, digests=digests
                )
    except (RunLockedError, StoreNotWritableError, OSError):
        pass  # being trained by another process, or a read-only store: nothing to tidy from here


def _unrecorded_files(store: RunStore, run_id: str) -> list[str]:
    """The files of a complete run whose digest its status does not record (runs written before version 2)."""
    status = store.status(run_id) or {}
    recorded = status.get("digests") or {}
    run_dir = store.run_dir(run_id)
    names = ["config.json", "tasks.json", "trajectory.parquet"]
    names += [p.relative_to(run_dir).as_posix() for p in sorted((run_dir / "selected").glob("*.pt"))]
    return [n for n in names if n not in recorded and (run_dir / n).is_file()]
