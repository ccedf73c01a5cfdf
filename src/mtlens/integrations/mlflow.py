"""Export a store's runs to MLflow (extra ``mlflow``: ``mlflow-skinny`` with SQLAlchemy for a local file
database), so the runs appear in the tracker people already watch: ``mtlens export --to mlflow``.

One MLflow run per mtlens run, in the experiment ``experiment`` (created if missing), named by the mtlens
run id and tagged ``mtlens.run_id`` with it:

- **params**: the run's config (``config.json``), lists and dicts as JSON text;
- **tags**: ``mtlens.state`` (finished, running, interrupted, failed, diverged, pending), ``mtlens.message``,
  ``mtlens.last_step``, ``mtlens.setting``, ``mtlens.mode``, ``mtlens.method``, ``mtlens.seed``,
  ``mtlens.tasks``; the MLflow run status follows the state (:data:`MLFLOW_STATUS`);
- **metrics**: every trajectory row (metrics, losses, probe curves, method weights) as the series
  :func:`~mtlens.integrations.series.metric_key` ``(quantity, task)`` over the training step, e.g. ``val/loss/a`` or
  ``probe/conflict_cosine/a vs b``, plus the series ``epoch`` (the epoch of each recorded step).

**Idempotent.**  A run already exported (found by its ``mtlens.run_id`` tag) is updated, never duplicated:
its tags and status are set again and only the (series, step) values it lacks are logged, so exporting a
store again after more training adds the new steps.  If a value it holds differs from the store's (a
resumed run replaced rows after its checkpoint), the MLflow run is deleted and exported afresh.  MLflow's SQL
store keeps ±inf as ±``sys.float_info.max`` (1.797e308): read back, that counts as the store's ±inf.

**Where.**  ``tracking_uri`` as MLflow takes it: ``sqlite:///path/mlflow.db`` (a local file, no server;
``mlflow ui --backend-store-uri sqlite:///path/mlflow.db`` shows it) or ``http://host:5000`` (a running
``mlflow server``); default: MLflow's own (``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
current directory).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtlens.errors import ConfigError, MtlensError
from mtlens.integrations.series import Exported, SeriesClashError, exportable_runs, metric_series
from mtlens.quantities import TASK_LIST
from mtlens.store import RunState, RunStore

RUN_ID_TAG = "mtlens.run_id"
"""The tag that ties an MLflow run to its mtlens run (what makes a second export update, not duplicate)."""

DEFAULT_EXPERIMENT = "mtlens"
"""The MLflow experiment runs are exported to unless another is named (``mtlens export --experiment``)."""

MLFLOW_STATUS = {
    RunState.FINISHED: "FINISHED",
    RunState.RUNNING: "RUNNING",
    RunState.INTERRUPTED: "KILLED",
    RunState.FAILED: "FAILED",
    RunState.DIVERGED: "FAILED",
    RunState.PENDING: "SCHEDULED",
}
"""The MLflow run status of each mtlens state (the exact state is the tag ``mtlens.state``)."""

BATCH = 1000
"""Metrics per ``log_batch`` call (MLflow's limit; params and tags: 100)."""

MAX_PARAM_LENGTH = 6000
"""MLflow's longest parameter value; longer config values (rare: long lists) are cut, ending in ``...``."""


def _param_text(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def _as_stored(value: float) -> float:
    """``value`` as MLflow's SQL store keeps it: ±inf as ±``sys.float_info.max`` (the largest float), every
    other value as it is."""
    return math.copysign(sys.float_info.max, value) if math.isinf(value) else value


def _same(a: float, b: float) -> bool:
    """Whether the values ``a`` and ``b`` (one from the store, one read back from MLflow) are one value: both
    NaN, or equal up to 1e-9 relative once infinities are taken as MLflow stores them (else a run with ±inf
    read back as ±max float would count as changed and be deleted and recreated by every export)."""
    a, b = _as_stored(a), _as_stored(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


CONNECT_TIMEOUT_S = 10
"""Seconds the first request to an ``http(s)://`` tracking server may take before ``export`` refuses the URI
(MLflow's own default is 120 s, retried 7 times with backoff: about 4 minutes of silence for a wrong port)."""

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def _check_sqlite_path(tracking_uri: str | None) -> None:
    """For a ``sqlite:///PATH`` URI, raise ``OSError`` naming ``PATH`` if it is a directory, a file that is no
    SQLite database, or cannot be created (its nearest existing directory is not writable): MLflow retried
    each for about 50 s, logging every attempt, before failing."""
    if tracking_uri is None or not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    if path.is_file():
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise OSError(f"{path}: file is not a database")
        return
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create {path}: {existing} is not a writable directory")


@contextmanager
def _no_retries() -> Iterator[None]:
    """While the URI is first checked: MLflow's HTTP requests are not retried and time out after
    :data:`CONNECT_TIMEOUT_S` (unless the user set them in the environment), and its retry warnings are not
    logged, so a URI it cannot use gives the one line of :func:`_connect` promptly."""
    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CONNECT_TIMEOUT_S)}
    added = {key: value for key, value in defaults.items() if key not in os.environ}
    quiet = [logging.getLogger(name) for name in ("mlflow", "alembic", "sqlalchemy")]
    levels = [logger.level for logger in quiet]
    os.environ.update(added)
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def _connect(client_class: Any, tracking_uri: str | None, experiment: str) -> tuple[Any, Any]:
    """The MLflow client of ``tracking_uri`` and the experiment ``experiment`` (``None`` if missing), read
    before anything is written; a URI MLflow cannot use (an unknown scheme, a file that is not a database, no
    server) raises one-line :class:`ConfigError` naming ``--tracking-uri``, not MLflow's traceback."""
    from mlflow.exceptions import MlflowException

    errors: tuple[type[BaseException], ...] = (MlflowException, OSError)
    try:
        from sqlalchemy.exc import SQLAlchemyError

        errors += (SQLAlchemyError,)
    except ImportError:  # no SQLAlchemy: MLflow cannot open a sqlite:// store either, and says so
        pass
    try:
        _check_sqlite_path(tracking_uri)
        with _no_retries():
            client = client_class(tracking_uri=tracking_uri)
            return client, client.get_experiment_by_name(experiment)
    except errors as err:
        import mlflow

        uri = tracking_uri if tracking_uri is not None else f"{mlflow.get_tracking_uri()} (MLflow's default)"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].strip()
        raise ConfigError(
            f"--tracking-uri {uri}: MLflow cannot use it ({reason}); give sqlite:///PATH/mlflow.db "
            "(a local file, no server) or http://HOST:PORT (a running mlflow server)"
        ) from None


def export_mlflow(
    store: RunStore,
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_ids: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Exported]:
    """Export ``run_ids`` of ``store`` (default: every run) to the MLflow experiment ``experiment`` at
    ``tracking_uri`` (see the module docstring); one :class:`~mtlens.integrations.series.Exported` per run.
    Damaged runs, and runs two of whose series would have one name
    (:class:`~mtlens.integrations.series.SeriesClashError`), are skipped and reported (``action="skipped"``),
    never exported in part."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MtlensError("export --to mlflow needs MLflow: pip install 'mtlens[mlflow]'") from None

    client, found = _connect(MlflowClient, tracking_uri, experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    results = []
    for run in exportable_runs(store, run_ids):
        if isinstance(run, Exported):  # damaged: skipped
            results.append(run)
            continue
        row, config, rows = run
        run_id = row["run_id"]
        tags = {
            RUN_ID_TAG: run_id,
            "mtlens.state": row["state"],
            "mtlens.message": (row.get("message") or "")[:5000],
            "mtlens.last_step": str(row["last_step"]),
            "mtlens.setting": str(config.get("setting", "")),
            "mtlens.mode": str(row.get("mode", "")),
            "mtlens.method": str(config.get("method", "")),
            "mtlens.seed": str(config.get("seed", "")),
            "mtlens.tasks": TASK_LIST.join(config.get("tasks") or []),
            "mlflow.runName": run_id,
        }
        try:
            series = metric_series(rows)
        except SeriesClashError as err:  # not exported: one of two series would be lost
            results.append(Exported(run_id, "skipped", message=str(err)))
            continue
        existing: list[Any] = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'", max_results=2
        )
        action, logged = "created", {}
        if existing:
            mlflow_run = existing[0]
            for key in mlflow_run.data.metrics:
                logged[key] = {m.step: m.value for m in client.get_metric_history(mlflow_run.info.run_id, key)}
            stale = any(
                step in logged.get(key, {}) and not _same(logged[key][step], value)
                for key, steps in series.items()
                for step, value in steps.items()
            ) or any(key not in series for key in logged)
            if stale:
                client.delete_run(mlflow_run.info.run_id)
                existing, logged, action = [], {}, "recreated"
            else:
                action = "updated"
        if not existing:
            mlflow_run = client.create_run(experiment_id, run_name=run_id, tags={RUN_ID_TAG: run_id})
            params = [Param(k, _param_text(v)) for k, v in sorted(config.items())]
            for part in _chunks(params, 100):
                client.log_batch(mlflow_run.info.run_id, params=list(part))
        mlflow_id = mlflow_run.info.run_id
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, value, now, step)
            for key, steps in series.items()
            for step, value in steps.items()
            if step not in logged.get(key, {})
        ]
        for part in _chunks(metrics, BATCH):
            client.log_batch(mlflow_id, metrics=list(part))
        old_tags = mlflow_run.data.tags if existing else {}
        changed_tags = [RunTag(k, v) for k, v in tags.items() if old_tags.get(k) != v]
        for part in _chunks(changed_tags, 100):
            client.log_batch(mlflow_id, tags=list(part))
        status = MLFLOW_STATUS.get(row["state"], "RUNNING")
        if mlflow_run.info.status != status or not existing:
            if status in ("FINISHED", "FAILED", "KILLED"):
                client.set_terminated(mlflow_id, status)
            else:
                client.update_run(mlflow_id, status=status)
        if action == "updated" and not metrics and not changed_tags and mlflow_run.info.status == status:
            action = "unchanged"
        results.append(Exported(run_id, action, mlflow_id, len(metrics)))
        if log:
            log(f"export: {run_id} -> mlflow run {mlflow_id}: {action} ({len(metrics)} values)")
    return results
