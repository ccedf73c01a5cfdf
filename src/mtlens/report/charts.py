"""Interactive figures of the report: Vega-Lite specs built with Altair.

A figure is data plus a declarative spec, not pixels: the page embeds each spec (with its data as
a compact inline CSV string, numbers to :data:`SIGNIFICANT_DIGITS` significant digits) and renders
it in the browser with Vega-Embed, whose JavaScript bundle (Vega, Vega-Lite, Vega-Embed, from the
``vl-convert-python`` wheel; no network) is inlined once per page.  Every figure gets hover
tooltips, legend toggling (click a legend entry; shift-click for several) and zoom/pan (wheel and
drag; double-click resets).  Static PNG/PDF files are rendered from the same spec by vl-convert,
only on request.

Building blocks:

- :func:`inline_data` -- a frame as inline CSV data with its numeric columns parsed as numbers;
- :func:`band_chart` -- mean lines with a shaded band (``low``..``high``) per series, optional thin
  per-run lines whose tooltips name the run and seed, optional facets (wrapped);
- :class:`Rule` -- a reference line of a :func:`band_chart`;
- :func:`interactive` -- legend toggling and scale-bound zoom for any layered chart;
- :func:`vega_bundle` -- the JavaScript bundle (cached on disk per vl-convert version: building it
  takes seconds);
- :func:`export_static` -- PNG/PDF of a spec.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import altair as alt
import numpy as np
import pandas as pd

SIGNIFICANT_DIGITS = 4
"""Digits kept of every number in a figure's data (the tables keep full precision)."""

PANEL_WIDTH, PANEL_HEIGHT = 230, 150
"""Size in pixels of one panel of a faceted figure; four panels plus labels fit the 1100 px page."""

FACET_COLUMNS = 4
"""Panels per row of a faceted figure (more tasks wrap onto further rows instead of widening the page)."""

MODE_COLORS = alt.Scale(domain=["stl", "mtl"], range=["#1f77b4", "#d62728"])
"""STL blue, MTL red, in every figure that compares the two."""


def inline_data(frame: pd.DataFrame) -> alt.InlineData:
    """``frame`` as inline CSV data (about a third of the size of JSON records): floats with
    :data:`SIGNIFICANT_DIGITS` significant digits, NaN as an empty field (read as null), numeric
    columns parsed as numbers and the others kept as text."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
        frame[c])]
    text = frame.to_csv(index=False, float_format=f"%.{SIGNIFICANT_DIGITS}g", lineterminator="\n")
    return alt.InlineData(values=text, format=alt.DataFormat(type="csv", parse={c: "number" for c in numeric}))


def mean_band(rows: pd.DataFrame, by: Sequence[str], x: str, value: str = "value",
              run: str | None = "run_id") -> pd.DataFrame:
    """Per ``by + [x]``: ``mean``, ``std`` (ddof 1; NaN for one run), ``low``/``high`` = mean -/+ std
    (the band), and ``n`` = the number of runs (distinct ``run``; rows if ``run`` is None)."""
    keys = [*by, x]
    grouped = rows.groupby(keys, sort=True)[value]
    stats = grouped.agg(["mean", "std"]).reset_index()
    stats["n"] = (rows.groupby(keys, sort=True)[run].nunique() if run else grouped.size()).to_numpy()
    spread = stats["std"].fillna(0.0)
    stats["low"], stats["high"] = stats["mean"] - spread, stats["mean"] + spread
    return stats


def axis_scale(log: bool = False, reverse: bool = False, zero: bool = False) -> alt.Scale:
    """A log scale fitted to the data (no rounding out to powers of ten), or a linear one."""
    return alt.Scale(type="log", reverse=reverse, nice=False) if log else alt.Scale(reverse=reverse, zero=zero)


def band_chart(stats: pd.DataFrame, x: str, color: str, *, x_title: str, y_title: str,
               runs: pd.DataFrame | None = None, facet: str | None = None, color_scale: alt.Scale | None = None,
               x_log: bool = False, x_reverse: bool = False, y_log: bool = False, dash: str | None = None,
               tooltip: Sequence[str] = (), titles: dict[str, str] | None = None, rules: Sequence[Rule] = (),
               width: int = PANEL_WIDTH,
               height: int = PANEL_HEIGHT, title: str = "") -> alt.LayerChart | alt.FacetChart:
    """Lines of ``stats.mean`` against ``x`` with the band ``low``..``high``, one colour per ``color``
    (and dash per ``dash``), points carrying the tooltips (``mean, std, n`` and ``tooltip``); with
    ``runs`` (columns ``x, value, run_id, seed`` and the same series columns) a thin line per run
    under them whose tooltip names the run and seed.  With ``facet``, one panel per value of that
    column, :data:`FACET_COLUMNS` to a row, each with its own y scale.  ``titles`` renames the
    ``mean``/``std`` tooltips (e.g. ``{"mean": "gap"}``); ``rules`` adds reference lines.  Legend toggling and zoom are added
    (:func:`interactive`)."""
    titles = {"mean": "mean", "std": "std", **(titles or {})}
    series = [c for c in (color, dash, facet) if c]
    frame = stats.assign(kind="mean")
    if runs is not None and len(runs):
        frame = pd.concat([frame, runs[[*series, x, "value", "run_id", "seed"]].assign(kind="run")],
                          ignore_index=True)
    x_enc = alt.X(f"{x}:Q", title=x_title, scale=axis_scale(x_log, x_reverse))
    y_scale = axis_scale(y_log)
    color_enc = alt.Color(f"{color}:N", scale=color_scale or alt.Undefined, title=color)
    legend = alt.selection_point(fields=[color], bind="legend", name=param_name("legend"))
    visible = alt.condition(legend, alt.value(1.0), alt.value(0.08))
    base = alt.Chart().encode(x=x_enc, color=color_enc)
    if dash:
        base = base.encode(strokeDash=alt.StrokeDash(f"{dash}:N", title=dash))
    mean_rows = base.transform_filter("datum.kind == 'mean'")
    layers = []
    if runs is not None and len(runs):
        layers.append(base.transform_filter("datum.kind == 'run'").mark_line(strokeWidth=0.8).encode(
            y=alt.Y("value:Q", title=y_title, scale=y_scale), detail="run_id:N",
            opacity=alt.condition(legend, alt.value(0.3), alt.value(0.03)),
            tooltip=["run_id:N", "seed:Q", alt.Tooltip(f"{x}:Q", format=".4g"),
                     alt.Tooltip("value:Q", format=".4g"), *(f"{c}:N" for c in series)]))
    layers += [
        mean_rows.mark_area(opacity=0.18, line=False).encode(
            y=alt.Y("low:Q", title=y_title, scale=y_scale), y2="high:Q",
            opacity=alt.condition(legend, alt.value(0.18), alt.value(0.02))),
        mean_rows.mark_line().encode(y=alt.Y("mean:Q", title=y_title, scale=y_scale), opacity=visible),
        mean_rows.mark_point(size=9, filled=True).encode(
            y=alt.Y("mean:Q", title=y_title, scale=y_scale), opacity=visible,
            tooltip=[*(f"{c}:N" for c in series), alt.Tooltip(f"{x}:Q", format=".4g"),
                     alt.Tooltip("mean:Q", format=".4g", title=titles["mean"]),
                     alt.Tooltip("std:Q", format=".3g", title=titles["std"]), "n:Q",
                     *tooltip]),
    ]
    layers += [reference_line(r) for r in rules]
    chart = interactive(layers, legend, width=width, height=height)
    if facet:
        faceted = chart.facet(facet=alt.Facet(f"{facet}:N", title=None), columns=FACET_COLUMNS,
                              data=inline_data(frame)).resolve_scale(y="independent")
        return faceted.properties(title=title) if title else faceted
    chart = chart.properties(data=inline_data(frame))
    return chart.properties(title=title) if title else chart


_PARAM_NUMBERS = itertools.count()


def param_name(kind: str) -> str:
    """A parameter name unique within the process (Altair merges same-looking unnamed parameters of
    concatenated charts, which would tie the zoom of one panel to another's)."""
    return f"{kind}{next(_PARAM_NUMBERS)}"


def interactive(layers: Sequence[alt.Chart], *params: Any, width: int = PANEL_WIDTH,
                height: int = PANEL_HEIGHT) -> alt.LayerChart:
    """The ``layers`` layered, with the selection ``params`` (e.g. a legend toggle) and zoom/pan on
    both axes bound to the first layer."""
    first, *rest = layers
    zoom = alt.selection_interval(bind="scales", name=param_name("zoom"))
    return alt.layer(first.add_params(zoom, *params), *rest).properties(
        width=width, height=height)


@dataclass(frozen=True)
class Rule:
    """A reference line: horizontal at y = ``value`` (``axis="y"``) or vertical at x = ``value``."""

    value: float
    axis: str = "y"
    color: str = "grey"
    dash: tuple[int, ...] = ()


def reference_line(line: Rule) -> alt.Chart:
    """A layer drawing ``line`` once per panel (it aggregates the panel's rows to one)."""
    mark = alt.Chart().transform_aggregate(rows="count()").mark_rule(
        color=line.color, strokeWidth=1, strokeDash=list(line.dash) or alt.Undefined)
    return mark.encode(**{line.axis: alt.datum(line.value)})


def spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The Vega-Lite spec of ``chart`` (schema-validated by Altair)."""
    return chart.to_dict()


def vega_bundle() -> str:
    """The Vega + Vega-Lite + Vega-Embed JavaScript (one script defining ``vegaEmbed``), matching
    Altair's Vega-Lite version; cached in ``$XDG_CACHE_HOME/mtlens`` (default ``~/.cache/mtlens``)
    per vl-convert version, since vl-convert bundles it anew (seconds) on every first call."""
    import vl_convert

    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlens"
    path = cache / f"vega-embed-vl{major_minor}-vlconvert{vl_convert.__version__}.js"
    if path.exists():
        return path.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle(vl_version=major_minor)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(bundle, encoding="utf-8")
        tmp.replace(path)
    except OSError:  # a read-only home: bundle anew next time
        pass
    return bundle


STATIC_FORMATS = ("png", "pdf", "svg")


def export_static(chart_spec: dict[str, Any], path_stem: Path, formats: Sequence[str]) -> list[Path]:
    """Render ``chart_spec`` to ``path_stem.<format>`` for each of ``formats`` (offline, vl-convert);
    PNG at twice the spec's pixel size."""
    import vl_convert

    written = []
    for fmt in formats:
        path = path_stem.with_suffix(f".{fmt}")
        if fmt == "png":
            path.write_bytes(vl_convert.vegalite_to_png(chart_spec, scale=2))
        elif fmt == "pdf":
            path.write_bytes(vl_convert.vegalite_to_pdf(chart_spec))
        elif fmt == "svg":
            path.write_text(vl_convert.vegalite_to_svg(chart_spec), encoding="utf-8")
        else:
            raise ValueError(f"unknown figure format {fmt!r}; valid: {', '.join(STATIC_FORMATS)}")
        written.append(path)
    return written
