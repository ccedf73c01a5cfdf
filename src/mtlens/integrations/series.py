"""What every tracker export writes (:mod:`mtlens.integrations.mlflow`, :mod:`mtlens.integrations.tensorboard`):
a run's trajectory rows as named metric series over the training step, and what an export did per run."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd


def metric_key(quantity: str, task: str) -> str:
    """The tracker's name of the series ``(quantity, task)``: ``<quantity>/<task>``, the task pair ``a|b``
    written ``a vs b`` and the per-run task ``*`` written ``run`` (MLflow's metric names allow letters, digits,
    ``_ - . /`` and space; any other character becomes ``_``)."""
    name = "run" if task == "*" else " vs ".join(task.split("|"))
    return re.sub(r"[^\w\-./ ]", "_", f"{quantity}/{name}")


def metric_series(rows: pd.DataFrame) -> dict[str, dict[int, float]]:
    """``{metric key: {step: value}}`` of one run's trajectory ``rows`` (the mean of duplicate rows of a step,
    as the report reads them) and the series ``epoch``."""
    series: dict[str, dict[int, float]] = {}
    if rows.empty:
        return series
    values = rows.groupby(["quantity", "task", "step"], sort=True)["value"].mean()
    for (quantity, task, step), value in values.items():
        series.setdefault(metric_key(str(quantity), str(task)), {})[int(step)] = float(value)
    series["epoch"] = {int(s): float(e) for s, e in rows.groupby("step")["epoch"].first().items()}
    return series


@dataclass(frozen=True)
class Exported:
    """What an export did to one mtlens run: ``action`` is ``created``, ``updated`` (new steps, tags or status),
    ``unchanged``, ``recreated`` (values differed: written afresh) or ``skipped`` (damaged: ``message`` says
    why); ``target`` the tracker's run (MLflow run id, TensorBoard run directory); ``metrics`` the values
    written now."""

    run_id: str
    action: str
    target: str = ""
    metrics: int = 0
    message: str = ""
