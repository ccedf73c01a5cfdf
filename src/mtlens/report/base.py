"""Building blocks of the report: sections, and figures saved as PNG + PDF and embedded in HTML."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
