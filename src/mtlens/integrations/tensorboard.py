"""Export a store's runs as TensorBoard event files (extra ``tensorboard``): ``mtlens export --to tensorboard
--logdir DIR``, then ``tensorboard --logdir DIR``.

One run directory ``DIR/<run id>`` per mtlens run, holding its trajectory rows as scalar series named
:func:`~mtlens.integrations.series.metric_key` ``(quantity, task)`` over the training step (``val/loss/a``,
``probe/conflict_cosine/a vs b``, ``epoch``, ...; TensorBoard groups them by the part before the first ``/``)
and two text summaries: ``config`` (the run's config as JSON) and ``status`` (state, last step, message).

**Idempotent.**  Event files only grow, so a run is written whole into a new directory that then replaces
its old one (``DIR/<run id>/mtlens.json`` records what was written: state, last step, row count and
:func:`~mtlens.integrations.series.export_digest` of every value and text; a run that matches it is left as it
is, any other -- a value changed at the same row count, or a directory exported before the digest was
recorded -- is rewritten whole); exporting again never duplicates a value.  The replacement is two renames (old
aside, new in place) before the old is deleted, so a kill leaves the old export or the new one, at worst set
aside as ``DIR/.<run id>.old-<pid>``, which the next export puts back or removes with any unfinished
``DIR/.<run id>.tmp-<pid>``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from mtlens.errors import MtlensError
from mtlens.integrations.series import Exported, SeriesClashError, export_digest, exportable_runs, metric_series
from mtlens.store import RunStore

MARKER = "mtlens.json"
"""The file in each run directory that records what was exported (TensorBoard ignores it)."""


def export_tensorboard(
    store: RunStore,
    logdir: str | Path,
    run_ids: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Exported]:
    """Write ``run_ids`` of ``store`` (default: every run) as TensorBoard runs under ``logdir`` (see the module
    docstring); one :class:`~mtlens.integrations.series.Exported` per run.  Damaged runs, and runs two of whose
    series would have one name, are skipped."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MtlensError("export --to tensorboard needs TensorBoard: pip install 'mtlens[tensorboard]'") from None

    logdir = Path(logdir)
    results = []
    for run in exportable_runs(store, run_ids):
        if isinstance(run, Exported):  # damaged: skipped
            results.append(run)
            continue
        row, config, rows = run
        run_id = row["run_id"]
        target = logdir / run_id
        _settle(logdir, run_id)
        try:
            series = metric_series(rows)
        except SeriesClashError as err:  # not exported: one of two series would be lost
            results.append(Exported(run_id, "skipped", message=str(err)))
            continue
        texts = {
            "config": "```\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```",
            "status": f"state: {row['state']}, last step: {row['last_step']}; {row.get('message') or ''}".rstrip("; "),
        }
        fingerprint = {
            "state": row["state"],
            "last_step": int(row["last_step"]),
            "rows": len(rows),
            "digest": export_digest(series, texts),
        }
        marker = target / MARKER
        if marker.exists():
            try:
                if json.loads(marker.read_text(encoding="utf-8")) == fingerprint:
                    results.append(Exported(run_id, "unchanged", str(target)))
                    continue
            except ValueError:  # a damaged marker: write the run again
                pass
        fresh = logdir / f".{run_id}.tmp-{os.getpid()}"
        shutil.rmtree(fresh, ignore_errors=True)
        writer = SummaryWriter(str(fresh))
        try:
            for key, steps in series.items():
                for step, value in steps.items():
                    writer.add_scalar(key, value, step)
            writer.add_text("config", texts["config"], 0)
            writer.add_text("status", texts["status"], int(row["last_step"]))
        finally:
            writer.close()
        (fresh / MARKER).write_text(json.dumps(fingerprint), encoding="utf-8")
        action = "updated" if target.exists() else "created"
        old = logdir / f".{run_id}.old-{os.getpid()}"
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        n = sum(len(steps) for steps in series.values())
        results.append(Exported(run_id, action, str(target), n))
        if log:
            log(f"export: {run_id} -> {target}: {action} ({n} values)")
    return results


def _settle(logdir: Path, run_id: str) -> None:
    """Finish what a killed export of ``run_id`` left under ``logdir``: an export set aside (``.<run id>.old-*``)
    goes back in place if nothing replaced it, else it is removed, and unfinished ones (``.<run id>.tmp-*``)
    are removed."""
    target = logdir / run_id
    for aside in sorted(logdir.glob(f".{run_id}.old-*")):
        if target.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.rename(target)
    for unfinished in logdir.glob(f".{run_id}.tmp-*"):
        shutil.rmtree(unfinished, ignore_errors=True)
