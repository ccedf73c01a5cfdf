"""Building blocks of the report: sections, figures saved as PNG + PDF and embedded in HTML,
tables, and the split of runs by training configuration that every comparison section uses.

A layer of its own, below :mod:`mtlens.experiments` (whose report sections use it) and
:mod:`mtlens.report` (which assembles the report from the core and the experiments' sections)."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.transfer import TaskInfo  # noqa: E402


@dataclass(frozen=True)
class Section:
    """One section of the HTML report: a title and its HTML body (figures already embedded)."""

    title: str
    body: str
    anchor: str = ""


def save_figure(fig: "plt.Figure", out_dir: Path, name: str, caption: str) -> str:
    """Save ``fig`` as ``out_dir/figures/name.png`` and ``.pdf``, close it, and return an
    HTML ``<figure>`` with the PNG embedded as base64 and ``caption`` below it."""
    figures = Path(out_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    png = figures / f"{name}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    fig.savefig(figures / f"{name}.pdf", bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(png.read_bytes()).decode()
    return (
        f'<figure id="fig-{html.escape(name)}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{encoded}"/><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def table_html(frame, out_dir: Path, name: str, caption: str, float_format: str = "{:.4g}") -> str:
    """Save ``frame`` as ``out_dir/tables/name.csv`` and return it as an HTML table with a caption."""
    tables = Path(out_dir) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    frame.to_csv(tables / f"{name}.csv", index=False)
    rendered = frame.to_html(index=False, float_format=float_format.format, border=0, classes="table")
    return f'<div class="table-wrap"><p class="caption">{html.escape(caption)}</p>{rendered}</div>'


RUN_KEYS = {"run_id", "setting", "tasks", "mode", "method", "method_options", "seed", "state", "last_step", "message",
            "device"}
"""Run-index columns that do not describe the training configuration shared by a run and its STL
references (the method and its options are what an MTL run compares against STL)."""


def _default_text(key: str) -> str | None:
    """``RunConfig``'s default of ``key`` as the run index writes it (JSON for lists and dicts)."""
    from mtlens.training.config import RunConfig

    field = RunConfig.model_fields.get(key)
    if field is None:
        return None
    default = field.get_default(call_default_factory=True)
    return json.dumps(default) if isinstance(default, (list, dict)) else str(default)


def by_configuration(index: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo) -> tuple[pd.DataFrame, TaskInfo]:
    """Where the runs differ in their training configuration (optimizer, lr, momentum, ...), append
    it to each row's ``setting`` (``"digits_pair [optimizer=sgd lr=0.05]"``) so that MTL runs are
    only ever paired with STL runs trained the same way; ``task_info`` gains the new names.

    A label lists, among the keys in which the runs differ, those whose value is not the config
    default, so labels stay short and different configurations still get different labels."""
    keys = [c for c in index.columns if c not in RUN_KEYS and index[c].astype(str).nunique() > 1]
    if not keys or rows.empty:
        return rows, task_info
    defaults = {k: _default_text(k) for k in keys}
    labels = index.set_index("run_id")[keys].astype(str).apply(
        lambda r: " ".join(f"{k}={v}" for k, v in r.items() if v != defaults[k]) or "defaults", axis=1)
    rows = rows.assign(setting=rows["setting"] + " [" + rows["run_id"].map(labels) + "]")
    names = rows[["setting"]].drop_duplicates()["setting"]
    extended = dict(task_info)
    for (setting, task), info in task_info.items():
        extended.update({(name, task): info for name in names if name.startswith(f"{setting} [")})
    return rows, extended


def slug(*parts: object) -> str:
    """A file-name-safe figure name from ``parts``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")


def not_available(what: str) -> str:
    return f'<p class="not-available">Not available: {html.escape(what)}.</p>'
