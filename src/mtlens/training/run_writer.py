"""Writing one run into a :class:`~mtlens.store.RunStore`: the code the trainer and the recorder share.

A run is written as: its config and task information once (:meth:`RunWriter.open`), then one
part of tidy trajectory rows per recorded step (:meth:`RunWriter.write_step`; the columns of
:data:`~mtlens.store.ROW_COLUMNS`, identity columns filled in here), a ``running`` status at
every checkpoint (:meth:`RunWriter.mark_running`), rows after a checkpoint discarded on resume
(:meth:`RunWriter.discard_after`) and finally the merged trajectory with its end state
(:meth:`RunWriter.finish`).  Because both loops write through this class, a run recorded from a
user's loop has exactly the rows a run of the trainer has, and every analysis reads both alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mtlens.store import RunStore
from mtlens.store.run_store import ROW_SCHEMA
from mtlens.tasks import Task


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


class RunWriter:
    """Writes the config, rows and status of one run; see the module docstring."""

    def __init__(self, store: RunStore, identity: RunIdentity):
        self.store, self.identity = store, identity

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    def open(self, config: Mapping[str, Any], info: Mapping[str, Any], ignore: Collection[str] = ()) -> None:
        """Write the config (an existing run must have the same one, up to ``ignore`` keys) and task info."""
        self.store.write_config(self.run_id, dict(config), ignore=ignore)
        self.store.write_task_info(self.run_id, dict(info))

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
        """Write the rows ``{"task", "quantity", "value"}`` recorded at ``step`` as one part
        (replacing an earlier part of the same step)."""
        self.store.write_part(self.run_id, step, self.rows([(step, epoch, records)]))

    def discard_after(self, step: int) -> None:
        """Delete the rows recorded after ``step`` (``-1``: all rows)."""
        self.store.discard_parts_after(self.run_id, step)

    def mark_running(self, step: int, **extra: Any) -> None:
        """State ``running`` at ``step`` (a checkpoint was written); ``extra`` goes into the status."""
        self.store.set_status(self.run_id, "running", step, **extra)

    def mark_failed(self, step: int, message: str) -> None:
        """State ``failed``: the rows stay as parts, so the run can be resumed."""
        self.store.set_status(self.run_id, "failed", step, message)

    def finish(self, state: str, step: int, message: str = "", rows: pa.Table | None = None, **extra: Any) -> None:
        """Merge the written rows and ``rows`` (of steps not written, from :meth:`rows`) into the run's
        trajectory and mark it ``state`` (``finished`` or ``diverged``); ``extra`` goes into the status."""
        self.store.finalize(self.run_id, state, step, message, rows=rows, **extra)
