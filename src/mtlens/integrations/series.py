"""What every tracker export writes (:mod:`mtlens.integrations.mlflow`, :mod:`mtlens.integrations.tensorboard`):
a run's trajectory rows as named metric series over the training step, and what an export did per run."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from mtlens.errors import DamagedStoreError, MtlensError
from mtlens.quantities import RUN_ROW, TASK_PAIR
from mtlens.store import RunState, RunStore


def metric_key(quantity: str, task: str) -> str:
    """The tracker's name of the series ``(quantity, task)``: ``<quantity>/<task>``, the task pair ``a|b``
    written ``a vs b`` and the per-run task ``*`` written ``run`` (MLflow's metric names allow letters, digits,
    ``_ - . /`` and space; any other character becomes ``_``)."""
    name = "run" if task == RUN_ROW else " vs ".join(task.split(TASK_PAIR))
    return re.sub(r"[^\w\-./ ]", "_", f"{quantity}/{name}")


class SeriesClashError(MtlensError):
    """Two series of one run would get the same tracker name (:func:`metric_key` is not one-to-one: ``a:b`` and
    ``a_b`` are both written ``a_b``); the run is not exported rather than one series silently lost."""


def metric_series(rows: pd.DataFrame) -> dict[str, dict[int, float]]:
    """``{metric key: {step: value}}`` of one run's trajectory ``rows`` (the mean of duplicate rows of a step,
    as the report reads them) and the series ``epoch``; :class:`SeriesClashError` naming both series if two
    of them would have the same key."""
    series: dict[str, dict[int, float]] = {}
    if rows.empty:
        return series
    values = rows.groupby(["quantity", "task", "step"], sort=True)["value"].mean()
    origin: dict[str, tuple[str, str]] = {}
    for quantity, task in values.index.droplevel("step").unique():
        key = metric_key(str(quantity), str(task))
        seen = origin.setdefault(key, (str(quantity), str(task)))
        if seen != (str(quantity), str(task)):
            raise SeriesClashError(
                f"the series {seen[0]} of task {seen[1]!r} and {quantity} of task {task!r} would both be named "
                f"{key!r} (a tracker's metric names hold only letters, digits, _ - . / and space, and a pair a|b is "
                "written 'a vs b'); rename a task so that their names differ there"
            )
    for (quantity, task, step), value in values.items():
        series.setdefault(metric_key(str(quantity), str(task)), {})[int(step)] = float(value)
    series["epoch"] = {int(s): float(e) for s, e in rows.groupby("step")["epoch"].first().items()}
    return series


def export_digest(series: Mapping[str, Mapping[int, float]], texts: Mapping[str, str]) -> str:
    """The SHA-256 (hex) of what an export writes of one run: every value of :func:`metric_series`'s
    ``series`` by name and step, and the text summaries ``texts`` by name.  For a tracker whose values cannot
    be read back and compared (TensorBoard's event files): two exports of a run write the same thing exactly
    when their digests agree, so a run whose values changed while its row count stayed (a resumed or healed
    run trained again) is seen to have changed.  Values enter as ``repr``: exact, and every NaN alike."""
    digest = hashlib.sha256()
    for key in sorted(series):
        for step in sorted(series[key]):
            digest.update(f"s\t{key}\t{step}\t{series[key][step]!r}\n".encode())
    for name in sorted(texts):
        digest.update(f"t\t{name}\t{len(texts[name])}\t{texts[name]}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Exported:
    """What an export did to one mtlens run: ``action`` is ``created``, ``updated`` (new steps, tags or status),
    ``unchanged``, ``recreated`` (values differed: written afresh) or ``skipped`` (damaged, or two series of one
    name: ``message`` says why); ``target`` the tracker's run (MLflow run id, TensorBoard run directory);
    ``metrics`` the values written now."""

    run_id: str
    action: str
    target: str = ""
    metrics: int = 0
    message: str = ""


class ExportableRun(NamedTuple):
    """A run an export can write: its run-index row, its config and its trajectory rows."""

    row: dict[str, Any]
    config: dict[str, Any]
    rows: pd.DataFrame


def exportable_runs(store: RunStore, run_ids: Sequence[str] | None = None) -> Iterator[ExportableRun | Exported]:
    """Each run of ``store`` (only ``run_ids`` if given) with its config and trajectory, in index order; a
    damaged run (in the index, or found so when its files are read) as an :class:`Exported` ``skipped``
    naming why, so that no tracker gets part of it."""
    index = store.runs()
    if run_ids is not None:
        index = index[index["run_id"].isin(run_ids)]
    for row in index.to_dict("records"):
        run_id = row["run_id"]
        if row["state"] == RunState.DAMAGED:
            yield Exported(run_id, "skipped", message=row["message"])
            continue
        try:
            yield ExportableRun(row, store.config(run_id), store.trajectory(run_id))
        except DamagedStoreError as err:
            yield Exported(run_id, "skipped", message=str(err))
