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

import numpy as np
import pandas as pd

from mtlens.store import RunStore
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

    def write_step(self, step: int, epoch: float, records: Sequence[Mapping[str, Any]]) -> None:
        """Write the rows ``{"task", "quantity", "value"}`` recorded at ``step`` as one part
        (replacing an earlier part of the same step)."""
        identity, n = self.identity, len(records)
        frame = pd.DataFrame(
            {  # built column by column: a third of the cost of from_records + assign
                "run_id": [identity.run_id] * n,
                "setting": [identity.setting] * n,
                "mode": [identity.mode] * n,
                "method": [identity.method] * n,
                "seed": np.full(n, identity.seed, dtype=np.int64),
                "task": [r["task"] for r in records],
                "step": np.full(n, step, dtype=np.int64),
                "epoch": np.full(n, float(epoch)),
                "quantity": [r["quantity"] for r in records],
                "value": np.array([float(r["value"]) for r in records], dtype=np.float64),
            }
        )
        self.store.write_part(self.run_id, step, frame)

    def discard_after(self, step: int) -> None:
        """Delete the rows recorded after ``step`` (``-1``: all rows)."""
        self.store.discard_parts_after(self.run_id, step)

    def mark_running(self, step: int, **extra: Any) -> None:
        """State ``running`` at ``step`` (a checkpoint was written); ``extra`` goes into the status."""
        self.store.set_status(self.run_id, "running", step, **extra)

    def mark_failed(self, step: int, message: str) -> None:
        """State ``failed``: the rows stay as parts, so the run can be resumed."""
        self.store.set_status(self.run_id, "failed", step, message)

    def finish(self, state: str, step: int, message: str = "", **extra: Any) -> None:
        """Merge the rows into the run's trajectory and mark it ``state`` (``finished`` or ``diverged``);
        ``extra`` goes into the status."""
        self.store.finalize(self.run_id, state, step, message, **extra)
