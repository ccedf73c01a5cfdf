"""Interactive figures of the report: Vega-Lite specs, rendered in the browser by Vega-Embed.

A figure is data plus a declarative Vega-Lite spec (https://vega.github.io/vega-lite/), not
pixels: the page embeds each spec, with its data as a compact inline CSV string (numbers to
:data:`SIGNIFICANT_DIGITS` significant digits), and renders it with Vega-Embed, whose JavaScript
bundle (Vega, Vega-Lite, Vega-Embed, from the ``vl-convert-python`` wheel; no network) is inlined
once per page.  Every figure gets hover tooltips, legend toggling (click a legend entry;
shift-click for several) and zoom/pan (wheel and drag; double-click resets).  Static PNG/PDF/SVG
files are rendered from the same spec by vl-convert, offline, only on request.

Specs are written as plain dicts by the helpers below: building them through Altair's object
model (schema validation and deep copies on every operation) took seconds per figure, 90% of a
report's time; the tests validate every spec against the Vega-Lite JSON schema instead.

- :func:`inline_data` -- a frame as inline CSV data with its numeric columns parsed as numbers;
- :func:`mean_band` -- per series and x: mean, std, band and number of runs (one groupby);
- :func:`band_chart` -- mean lines with a shaded band per series, optional thin per-run lines whose
  tooltips name the run and seed, optional facets (wrapped), reference lines (:class:`Rule`);
- :func:`line_chart` -- lines with points per series (means computed by the caller);
- :func:`interactive` -- legend toggling and scale-bound zoom for any layered chart;
- :func:`vega_bundle` -- the JavaScript bundle (cached on disk: building it takes seconds);
- :func:`export_static` -- PNG/PDF/SVG of a spec.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlens.store.atomic import atomic_write_bytes, atomic_write_text

Spec = dict[str, Any]
"""A Vega-Lite (sub)spec as a JSON-ready dict."""

VEGA_LITE_VERSION = "6.4"
"""The Vega-Lite version the specs are written for (one that vl-convert bundles and renders)."""

SCHEMA = f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_VERSION.split('.')[0]}.json"

SIGNIFICANT_DIGITS = 4
"""Digits kept of every number in a figure's data (the tables keep full precision)."""

PANEL_WIDTH, PANEL_HEIGHT = 230, 150
"""Size in pixels of one panel of a faceted figure; four panels plus labels fit the 1100 px page."""

FACET_COLUMNS = 4
"""Panels per row of a faceted figure (more panels wrap onto further rows instead of widening the page)."""

MODE_COLORS: Spec = {"domain": ["stl", "mtl"], "range": ["#1f77b4", "#d62728"]}
"""STL blue, MTL red, in every figure that compares the two."""


Columns = dict[str, np.ndarray]
"""A table as named columns of equal length (what a figure's data is built from without a DataFrame)."""


def _csv_fields(values: np.ndarray) -> list[str]:
    """One column as CSV fields, as ``DataFrame.to_csv(float_format="%.<SIGNIFICANT_DIGITS>g")`` writes
    them: floats with :data:`SIGNIFICANT_DIGITS` significant digits, NaN and None empty, text quoted
    where it holds a comma, quote or line break."""
    kind = values.dtype.kind
    if kind == "f":
        float_format = f"%.{SIGNIFICANT_DIGITS}g"
        return ["" if v != v else float_format % v for v in values.tolist()]
    if kind in "iub":
        return [str(v) for v in values.tolist()]
    keys = [(v.__class__, v) for v in values.tolist()]  # typed: 1, 1.0 and True are equal keys otherwise
    fields: dict[Any, str] = {}  # per distinct value: labels repeat on every row of their series
    for key in keys:
        if key not in fields:
            v = key[1]
            text = "" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
            fields[key] = '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text
    return [fields[key] for key in keys]


def stack_columns(parts: Sequence[Columns]) -> Columns:
    """The rows of ``parts`` one after the other, columns in order of first appearance, with
    ``pandas.concat``'s dtypes: a column missing from a part is NaN there (integers become floats,
    booleans objects), integers and floats together become floats, text stays text."""
    names = list(dict.fromkeys(name for part in parts for name in part))
    lengths = [len(next(iter(part.values()))) if part else 0 for part in parts]
    stacked: Columns = {}
    for name in names:
        pieces = [part[name] if name in part else np.full(n, np.nan) for part, n in zip(parts, lengths, strict=True)]
        if any(piece.dtype.kind not in "iuf" for piece in pieces):
            pieces = [piece.astype(object) for piece in pieces]
        stacked[name] = np.concatenate(pieces)
    return stacked


def inline_data(frame: pd.DataFrame | Columns) -> Spec:
    """``frame`` (a DataFrame or :data:`Columns`) as inline CSV data (about a third of the size of JSON
    records): floats with :data:`SIGNIFICANT_DIGITS` significant digits, NaN as an empty field (read as
    null), numeric columns parsed as numbers and the others kept as text.  The text is what
    ``DataFrame.to_csv`` writes, built column by column (a figure's data is small; pandas' writer costs
    milliseconds per call in set-up alone)."""
    if isinstance(frame, pd.DataFrame):
        columns = {str(c): frame[c].to_numpy() for c in frame.columns}
        numeric = [str(c) for c, dtype in frame.dtypes.items() if dtype.kind in "iuf"]
    else:
        columns, numeric = frame, [c for c, values in frame.items() if values.dtype.kind in "iuf"]
    header = ",".join(_csv_fields(np.array(list(columns), dtype=object)))
    lines = [",".join(row) or '""' for row in zip(*(_csv_fields(values) for values in columns.values()), strict=True)]
    text = "\n".join([header, *lines]) + "\n"
    return {"values": text, "format": {"type": "csv", "parse": {c: "number" for c in numeric}}}


def mean_band(
    rows: pd.DataFrame, by: Sequence[str], x: str, value: str = "value", run: str | None = "run_id"
) -> pd.DataFrame:
    """Per ``by + [x]``: ``mean``, ``std`` (ddof 1; NaN for one run) and ``n`` = the number of runs
    (distinct ``run``; rows if ``run`` is None) whose value is finite, the ones the mean is over (a probe's
    NaN is left out of the mean, so it is left out of the count).  :func:`band_chart` shades mean -/+ std."""
    keys = [*by, x]
    grouped = rows.groupby(keys, sort=True)[value]
    stats = grouped.agg(["mean", "std"]).reset_index()
    finite = rows[np.isfinite(rows[value].astype(float))]
    counted = finite.groupby(keys, sort=True)[run].nunique() if run else finite.groupby(keys, sort=True).size()
    stats = stats.merge(counted.rename("n").reset_index(), on=keys, how="left")
    stats["n"] = stats["n"].fillna(0).astype(int)
    return stats


def quantitative(
    name: str, title: str | None = None, log: bool = False, reverse: bool = False, zero: bool = False
) -> Spec:
    """A quantitative encoding of the field ``name``; a log scale is fitted to the data (no
    rounding out to powers of ten), a linear one does not force zero into the domain."""
    scale: Spec = {"type": "log", "nice": False} if log else {"zero": zero}
    if reverse:
        scale["reverse"] = True
    return {"field": name, "type": "quantitative", "title": title or name, "scale": scale}


def tip(name: str, kind: str = "quantitative", title: str | None = None) -> Spec:
    """A tooltip entry (numbers with 4 significant digits)."""
    entry: Spec = {"field": name, "type": kind, "title": title or name}
    if kind == "quantitative":
        entry["format"] = ".4g"
    return entry


def when(param: str, selected: float, other: float) -> Spec:
    """A value that is ``selected`` for data in the selection ``param`` and ``other`` elsewhere."""
    return {"condition": {"param": param, "value": selected}, "value": other}


_PARAM_NUMBERS = itertools.count()


def param_name(kind: str) -> str:
    """A parameter name unique within the process (so within any spec that combines figures); :func:`spec`
    renumbers them per figure, so the same figure built twice is the same spec."""
    return f"{kind}{next(_PARAM_NUMBERS)}"


def _renumbered_params(chart: Any) -> Any:
    """``chart`` with every parameter (``params: [{"name": ...}]``) of :func:`param_name` renamed
    ``KIND0, KIND1, ...`` per kind in the order of first definition, and every reference to it
    (``{"param": name}``) renamed alike: names stay unique within the spec but no longer depend on how many
    figures the process built before."""
    names: dict[str, str] = {}
    counts: dict[str, int] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for entry in node.get("params", ()):
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str):
                    continue
                kind = name.rstrip("0123456789")
                if kind and kind != name and name not in names:
                    names[name] = f"{kind}{counts.setdefault(kind, 0)}"
                    counts[kind] += 1
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def rename(node: Any, in_params: bool = False) -> Any:
        if isinstance(node, dict):
            return {
                key: names.get(value, value)
                if (key == "param" or (key == "name" and in_params)) and isinstance(value, str)
                else rename(value, key == "params")
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rename(value, in_params) for value in node]
        return node

    collect(chart)
    return rename(chart) if names else chart


def legend_toggle(field: str) -> Spec:
    """A selection bound to the legend of ``field``: click an entry to show only it, shift-click for several."""
    return {"name": param_name("legend"), "select": {"type": "point", "fields": [field]}, "bind": "legend"}


@dataclass(frozen=True)
class Rule:
    """A reference line: horizontal at y = ``value`` (``axis="y"``) or vertical at x = ``value``."""

    value: float
    axis: str = "y"
    color: str = "grey"
    dash: tuple[int, ...] = ()


def reference_line(line: Rule) -> Spec:
    """A layer drawing ``line`` once per panel (it aggregates the panel's rows to one)."""
    mark: Spec = {"type": "rule", "color": line.color, "strokeWidth": 1}
    if line.dash:
        mark["strokeDash"] = list(line.dash)
    return {
        "transform": [{"aggregate": [{"op": "count", "as": "rows"}]}],
        "mark": mark,
        "encoding": {line.axis: {"datum": line.value, "type": "quantitative"}},
    }


def interactive(layers: Sequence[Spec], *params: Spec, width: int = PANEL_WIDTH, height: int = PANEL_HEIGHT) -> Spec:
    """The ``layers`` layered, with the selection ``params`` (e.g. a legend toggle) and zoom/pan on
    both axes bound to the first layer."""
    first, *rest = layers
    zoom = {"name": param_name("zoom"), "select": "interval", "bind": "scales"}
    return {"layer": [{**first, "params": [zoom, *params]}, *rest], "width": width, "height": height}


def with_data(chart: Spec, frame: pd.DataFrame | Columns, title: str = "") -> Spec:
    """``chart`` with ``frame`` as its inline data and an optional title."""
    return {**({"title": title} if title else {}), "data": inline_data(frame), **chart}


def facet(chart: Spec, frame: pd.DataFrame | Columns, field: str, title: str = "", independent_y: bool = True) -> Spec:
    """One panel of ``chart`` per value of ``field`` in ``frame``, :data:`FACET_COLUMNS` to a row."""
    spec: Spec = {
        "data": inline_data(frame),
        "facet": {"field": field, "type": "nominal", "title": None},
        "columns": FACET_COLUMNS,
        "spec": chart,
    }
    if independent_y:
        spec["resolve"] = {"scale": {"y": "independent"}}
    return {"title": title, **spec} if title else spec


def band_chart(
    stats: pd.DataFrame,
    x: str,
    color: str,
    *,
    x_title: str,
    y_title: str,
    runs: pd.DataFrame | None = None,
    facet_by: str | None = None,
    color_scale: Spec | None = None,
    x_log: bool = False,
    x_reverse: bool = False,
    y_log: bool = False,
    tooltip: Sequence[Spec] = (),
    titles: dict[str, str] | None = None,
    rules: Sequence[Rule] = (),
    width: int = PANEL_WIDTH,
    height: int = PANEL_HEIGHT,
    title: str = "",
) -> Spec:
    """Lines of ``stats.mean`` against ``x`` with the band ``low``..``high``, one colour per ``color``,
    points carrying the tooltips (``mean, std, n`` and ``tooltip``); with ``runs`` (columns ``x,
    value, run_id, seed`` and the same series columns) a thin line per run under them whose
    tooltip names the run and seed.  With ``facet_by``, one panel per value of that column,
    :data:`FACET_COLUMNS` to a row, each with its own y scale.  ``titles`` renames the ``mean``/``std``
    tooltips (e.g. ``{"mean": "gap"}``); ``rules`` adds reference lines.  Legend toggling and zoom
    are added (:func:`interactive`)."""
    titles = {"mean": "mean", "std": "std", **(titles or {})}
    series = [c for c in (color, facet_by) if c]
    own_band = {"low", "high"} <= set(stats.columns)
    columns = [*series, x, "mean", "std", "n", *(["low", "high"] if own_band else [])]
    parts = [
        {c: stats[c].to_numpy() for c in dict.fromkeys([*columns, *(t["field"] for t in tooltip)])}
        | {"kind": np.full(len(stats), "m", dtype=object)}
    ]
    with_runs = runs is not None and len(runs) > 0
    if runs is not None and with_runs:
        # a run is drawn by its number within the figure (in order of appearance); its series, panel and
        # seed identify it in the tooltip
        parts.append(
            {c: runs[c].to_numpy() for c in dict.fromkeys([*series, x, "value", "seed"])}
            | {"kind": np.full(len(runs), "r", dtype=object), "run": pd.factorize(runs["run_id"])[0]}
        )
    frame = stack_columns(parts)
    band = (
        []
        if own_band
        else [
            {"calculate": "datum.mean - (isValid(datum.std) ? datum.std : 0)", "as": "low"},
            {"calculate": "datum.mean + (isValid(datum.std) ? datum.std : 0)", "as": "high"},
        ]
    )
    legend = legend_toggle(color)
    x_enc = quantitative(x, x_title, log=x_log, reverse=x_reverse)
    color_enc: Spec = {"field": color, "type": "nominal", "title": color}
    if color_scale:
        color_enc["scale"] = color_scale
    means = [{"filter": "datum.kind == 'm'"}]
    series_tips = [tip(c, "nominal") for c in series]
    layers: list[Spec] = []
    if with_runs:
        layers.append(
            {
                "transform": [{"filter": "datum.kind == 'r'"}],
                "mark": {"type": "line", "strokeWidth": 0.8},
                "encoding": {
                    "y": quantitative("value", y_title, log=y_log),
                    "detail": {"field": "run", "type": "nominal"},
                    "opacity": when(legend["name"], 0.3, 0.03),
                    "tooltip": [*series_tips, tip("seed"), tip(x), tip("value")],
                },
            }
        )
    layers += [
        {
            "transform": [*means, *band],
            "mark": {"type": "area"},
            "encoding": {
                "y": quantitative("low", y_title, log=y_log),
                "y2": {"field": "high"},
                "opacity": when(legend["name"], 0.18, 0.02),
            },
        },
        {
            "transform": means,
            "mark": {"type": "line"},
            "encoding": {
                "y": quantitative("mean", y_title, log=y_log),
                "opacity": when(legend["name"], 1.0, 0.08),
            },
        },
        {
            "transform": means,
            "mark": {"type": "point", "filled": True, "size": 9},
            "encoding": {
                "y": quantitative("mean", y_title, log=y_log),
                "opacity": when(legend["name"], 1.0, 0.08),
                "tooltip": [
                    *series_tips,
                    tip(x),
                    tip("mean", title=titles["mean"]),
                    tip("std", title=titles["std"]),
                    tip("n"),
                    *tooltip,
                ],
            },
        },
    ]
    # the first layer holds the parameters: with runs that is the per-run lines, else the band.  The
    # layers share x and colour through their parent (written once per figure, not once per layer);
    # the reference lines sit beside that parent, since they aggregate the rows away and must not
    # inherit the fields
    chart = interactive(layers, legend, width=width, height=height)
    chart["encoding"] = {"x": x_enc, "color": color_enc}
    if rules:
        chart = {
            "layer": [{"layer": chart["layer"], "encoding": chart["encoding"]}, *map(reference_line, rules)],
            "width": width,
            "height": height,
        }
    if facet_by:
        return facet(chart, frame, facet_by, title)
    return with_data(chart, frame, title)


def line_chart(
    x: str, y: str, color: Spec, *, y_title: str, tooltip: list[Spec], dash: str | None = None, y_log: bool = False
) -> Spec:
    """Lines with points of ``y`` against ``x`` coloured by the encoding ``color`` (and dashed by the
    field ``dash``), legend toggling on the colour field and zoom."""
    legend = legend_toggle(color["field"])
    encoding: Spec = {
        "x": quantitative(x),
        "y": quantitative(y, y_title, log=y_log),
        "color": color,
        "opacity": when(legend["name"], 1.0, 0.1),
        "tooltip": tooltip,
    }
    if dash:
        encoding["strokeDash"] = {"field": dash, "type": "nominal"}
    return interactive([{"mark": {"type": "line", "point": {"size": 14}}, "encoding": encoding}], legend)


def concat(direction: str, charts: Sequence[Spec], independent: Sequence[str] = ()) -> Spec:
    """``charts`` side by side (``direction`` ``"hconcat"``) or stacked (``"vconcat"``); scales in
    ``independent`` (e.g. ``color``) are not shared between them."""
    spec: Spec = {direction: list(charts)}
    if independent:
        spec["resolve"] = {"scale": {channel: "independent" for channel in independent}}
    return spec


def spec(chart: Spec) -> Spec:
    """``chart`` as a top-level Vega-Lite spec, its parameter names numbered within it (:func:`param_name`)."""
    return {"$schema": SCHEMA, **_renumbered_params(chart)}


def vega_bundle() -> str:
    """The Vega + Vega-Lite + Vega-Embed JavaScript (one script defining ``vegaEmbed``) for
    :data:`VEGA_LITE_VERSION`; cached in ``$XDG_CACHE_HOME/mtlens`` (default ``~/.cache/mtlens``)
    per vl-convert version, since vl-convert bundles it anew (seconds) on every first call."""
    import vl_convert

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlens"
    version = vl_convert.__version__  # type: ignore[attr-defined]  # the extension sets it; its .pyi omits it
    path = cache / f"vega-embed-vl{VEGA_LITE_VERSION}-vlconvert{version}.js"
    if path.exists():
        return path.read_text(encoding="utf-8")
    # vl-convert's .pyi marks ``snippet`` required; the function has a default snippet (its docstring says so)
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)  # type: ignore[call-arg]
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, bundle)
    except OSError:  # a read-only home: bundle anew next time
        pass
    return bundle


STATIC_FORMATS = ("png", "pdf", "svg")


def export_static(chart_spec: Spec, path_stem: Path, formats: Sequence[str]) -> list[Path]:
    """Render ``chart_spec`` to ``path_stem.<format>`` for each of ``formats`` (offline, vl-convert);
    PNG at twice the spec's pixel size."""
    import vl_convert

    written = []
    for fmt in formats:
        path = path_stem.parent / f"{path_stem.name}.{fmt}"  # names may contain dots (lr-0.003)
        if fmt == "png":
            atomic_write_bytes(path, vl_convert.vegalite_to_png(chart_spec, vl_version=VEGA_LITE_VERSION, scale=2))
        elif fmt == "pdf":
            atomic_write_bytes(path, vl_convert.vegalite_to_pdf(chart_spec, vl_version=VEGA_LITE_VERSION))
        elif fmt == "svg":
            atomic_write_text(path, vl_convert.vegalite_to_svg(chart_spec, vl_version=VEGA_LITE_VERSION))
        else:
            raise ValueError(f"unknown figure format {fmt!r}; valid: {', '.join(STATIC_FORMATS)}")
        written.append(path)
    return written
