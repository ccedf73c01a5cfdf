"""The report's seed-planning section and the family sizes it and :mod:`mtlens.report.study_plan` read
(docs/statistics.md §9).

**Family sizes.** The report tests each of its tables as one Benjamini–Hochberg family (transfer, gap,
optimization, probe differences, correlations; :func:`family_sizes`).  Before training the plan reads them
off the report's own analyses of a synthetic study (:mod:`mtlens.report.study_plan`); this section reads
them off the study's own tables.

**Spread.** With a stored pilot (or an earlier study), the seed spread of each comparison comes from the
stored runs through the report's loaders (:func:`stored_spread`,
:func:`~mtlens.analysis.planning.spread_table`), so the detectable effect is given in the metric's units.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlens.analysis.inference import detectable_effect, hall_critical, welch_hall_detectable_effect
from mtlens.analysis.planning import (
    POWER,
    RATIO,
    detectable_correlation,
    detectable_table,
    family_plan,
    seeds_needed,
)
from mtlens.render import Section, table_html
from mtlens.render.tables import number

PERCENT_METRICS = ("error", "accuracy", "acc", "pixel_accuracy", "miou", "f1")
"""Metrics that are fractions in [0, 1]: their differences are written in points (as the answers do)."""


def family_sizes(tables: Mapping[str, pd.DataFrame], alpha: float | None = None) -> pd.DataFrame:
    """``family, comparisons, min_p, units, clusters, centres, strata`` of each family the report tests, from
    its tables (``name -> table``: :func:`~mtlens.report.study_report.report_families`; one row per table with
    a tested row).  The family is the rows Benjamini–Hochberg counts (:func:`~mtlens.analysis.inference.bh_adjust`):
    tested (a finite ``min_p``; a transfer row of one run per mode has none) and, with the report's ``alpha``,
    able to reach it (``min_p <= alpha``: a curve of 4 seeds beside curves of 8 is not one of the band's ``m``);
    where no row can reach ``alpha``, every tested row (nothing can be shown).  ``comparisons`` counts them,
    ``min_p`` is the largest of their smallest attainable p-values; for a table of correlations (columns
    ``n``, ``n_groups``, ``n_centres``, ``n_strata``: NaN for a table of differences) ``units`` and ``clusters``
    are the fewest units and clusters of such a row, ``centres`` and ``strata`` the most centring groups and
    strata (the planned ``|r|`` is then the largest a row needs).  Without ``alpha`` (the planner's synthetic
    tables, every row with the same seeds) every tested row counts."""
    columns = {"units": ("n", "min"), "clusters": ("n_groups", "min"), "centres": ("n_centres", "max")}
    columns["strata"] = ("n_strata", "max")
    records = []
    for name, table in tables.items():
        if not len(table) or "min_p" not in table:
            continue
        min_p = pd.to_numeric(table["min_p"], errors="coerce")
        kept = np.isfinite(min_p)
        if alpha is not None and (kept & (min_p <= alpha)).any():
            kept &= min_p <= alpha
        if not kept.any():
            continue
        rows = table[kept.to_numpy()]
        records.append(
            {"family": name, "comparisons": int(kept.sum()), "min_p": float(min_p[kept].max())}
            | {
                key: float(rows[column].agg(how)) if "n_groups" in rows else np.nan
                for key, (column, how) in columns.items()
            }
        )
    return pd.DataFrame.from_records(records, columns=["family", "comparisons", "min_p", *columns])


def difference_text(value: float, quantity: str) -> str:
    """A difference in ``quantity``'s units: points for percent metrics (``test/error`` 0.031 -> "3.1 error
    points"), else the value and the quantity's name."""
    name = quantity.split("/")[-1]
    if not math.isfinite(value):
        return "no difference"
    if name in PERCENT_METRICS:
        return f"{number(100 * value, 2)} {name} points"
    return f"{number(value, 2)} in {quantity}"


def correlation_sentences(sizes: pd.DataFrame, alpha: float) -> list[str]:
    """What the correlation family of :func:`family_sizes` ``sizes`` can show at its seeds, in words: nothing
    where its permutation floor ``min_p`` exceeds ``alpha / m``, else the |r| a lone correlation needs
    (:func:`~mtlens.analysis.planning.detectable_correlation` with its units independent and with a cluster's
    units moving as one); empty without correlations."""
    rows = sizes[sizes["clusters"].notna()]
    sentences = []
    for row in rows.to_dict("records"):
        m, lone, clusters = int(row["comparisons"]), alpha / row["comparisons"], int(row["clusters"])
        start = f"The {m} {row['family']} permute whole seeds ({clusters} clusters of {int(row['units'])} units)"
        if row["min_p"] > lone:
            sentences.append(
                f"{start}: their smallest possible p-value {number(row['min_p'], 2)} is above {number(lone, 2)}, "
                f"the level a lone correlation must reach, so none can be significant with these seeds."
            )
            continue
        sentences.append(
            f"{start}: a lone correlation is found with 80% power from |r| = "
            f"{number(detectable_correlation(row['units'], lone, POWER, row['centres']), 2)} (independent units) to "
            f"{number(detectable_correlation(clusters, lone, POWER, row['strata']), 2)} "
            "(units moving with their seed; Fisher's z)."
        )
    return sentences


FAMILY_NOTES = {
    "gap band": " (the one-level test's d_z: the band's max-|t| over every level needs somewhat more)",
}
"""What a family's sentence of :func:`family_sentences` adds to its detectable ``d_z``."""


def family_sentences(sizes: pd.DataFrame, n_seeds: int, alpha: float) -> list[str]:
    """What each family of :func:`family_sizes` ``sizes`` other than transfer, optimization (given in the metric's
    units by :func:`seed_planning_section`) and the correlations (:func:`correlation_sentences`) can show at
    ``n_seeds``, in ``d_z`` (:func:`~mtlens.analysis.planning.family_plan`): nothing where the family's floor
    ``min_p`` is above ``alpha / m`` (the gap band's sign flips below 9 seeds for 12 curves), else the effect a
    lone comparison and an effect in every comparison need for 80% power."""
    rows = sizes[sizes["clusters"].isna() & ~sizes["family"].isin(["transfer", "optimization"])]
    if rows.empty or n_seeds < 2:
        return []
    plan = family_plan(rows[["family", "comparisons", "min_p"]].assign(n_seeds=n_seeds), alpha)
    sentences = []
    for row in plan.to_dict("records"):
        m, lone = int(row["comparisons"]), float(row["lone_level"])
        start = f"The {row['family']} family ({m} comparisons, Benjamini–Hochberg at FDR {alpha:g}) at {n_seeds} seeds"
        if not row["can_reach"]:
            sentences.append(
                f"{start}: its smallest possible p-value {number(row['min_p'], 2)} is above {number(lone, 2)}, the "
                f"level a lone effect must reach, so none can be shown with these seeds (mtlens plan names the "
                f"seeds that can)."
            )
            continue
        sentences.append(
            f"{start}: a lone effect is found with 80% power from d_z = {number(row['d_z_lone'], 3)} seed-sd of the "
            f"per-seed differences, an effect in every comparison from d_z = {number(row['d_z_all'], 3)}"
            f"{FAMILY_NOTES.get(row['family'], '')}."
        )
    return sentences


def detectable_now(row: Mapping[str, Any], lone: float) -> float:
    """The difference a comparison of :func:`~mtlens.analysis.planning.spread_table` detects with 80% power at
    ``lone`` with the runs it has, by the test the report runs on it: paired, ``sd · d_z(n, lone)``; unpaired
    (its MTL and STL runs share no seeds), Hall's two-sample test, ``se · welch_hall_detectable_effect`` at the
    observed variance share, as the transfer table's ``min_detectable_lone`` (the paired ``d_z`` with the sd
    of a difference of independent runs was 3–8× too small there: that is what as many *paired* seeds would
    detect)."""
    if not float(row["sd"]) > 0:
        return np.nan  # nothing varies: the exact permutation test decides, no power can be stated
    if row["source"] == "unpaired":
        sizes = (int(row["n_mtl"]), int(row["n_seeds"]))
        critical = hall_critical(sizes, lone)
        return float(row["se"]) * welch_hall_detectable_effect(sizes, float(row["share"]), critical, POWER)
    return float(row["sd"]) * detectable_effect(int(row["n_seeds"]), lone, POWER)


def _tested_detectable(table: pd.DataFrame, transfer: pd.DataFrame | None) -> pd.Series:
    """``table``'s ``detectable_now``, replaced by the ``transfer`` table's ``min_detectable_lone`` where that
    table tests the comparison (same setting, task, method and metric)."""
    if transfer is None or transfer.empty or "min_detectable_lone" not in transfer:
        return table["detectable_now"]
    tested = transfer.set_index(["setting", "task", "method", "metric"])["min_detectable_lone"]
    keys = pd.MultiIndex.from_frame(table[["setting", "task", "method", "quantity"]])
    return tested.reindex(keys).set_axis(table.index).fillna(table["detectable_now"])


def _runs_text(row: Mapping[str, Any]) -> str:
    """``8 seeds`` (paired, or an STL spread), ``3 MTL and 9 STL runs (unpaired)``."""
    if row["source"] == "unpaired":
        return f"{int(row['n_mtl'])} MTL and {int(row['n_seeds'])} STL runs (unpaired)"
    return f"{int(row['n_seeds'])} seeds"


def seed_planning_section(
    spread: pd.DataFrame,
    sizes: pd.DataFrame,
    out_dir: Path,
    alpha: float,
    seeds: Sequence[int] = (),
    transfer: pd.DataFrame | None = None,
) -> Section:
    """The report's seed-planning paragraph and table: per comparison of the study (``spread``:
    :func:`~mtlens.analysis.planning.spread_table` of its runs), the difference this study's seeds detect
    with 80% power as a lone effect of its family (``sizes``: :func:`family_sizes`; the transfer family for
    the transfer metric, the optimization family for the log training-loss ratio; a study without the family,
    e.g. STL runs only, plans one comparison per row of the quantity, as ``mtlens plan`` counts them for one
    method), and the seeds that half of it would need (``seeds_for_half``).  A comparison the ``transfer``
    table tests takes that table's ``min_detectable_lone`` (the same test under its family's skewness bound,
    so the answers and this section give one figure); the others are at the bound 2 a plan must assume.
    ``seeds``: numbers of seeds to show besides the study's own (default: the study's and twice as many)."""
    title, anchor = "How many seeds?", "planning"
    spread = spread[np.isfinite(spread["sd"].astype(float)) & (spread["n_seeds"] >= 2)]
    correlations = correlation_sentences(sizes, alpha)
    families = family_sentences(sizes, int(spread["n_seeds"].max()) if len(spread) else 0, alpha)
    sizes = sizes.set_index("family")["comparisons"]
    if spread.empty:
        return Section(title, "<p>Too few seeds to estimate the seed spread of any comparison.</p>", anchor)
    frames = []
    for quantity_is_ratio, rows in spread.groupby(spread["quantity"] == RATIO, sort=False):
        m = int(sizes.get("optimization" if quantity_is_ratio else "transfer", len(rows)))
        n_now = int(rows["n_seeds"].max())
        shown = sorted({*seeds} or {n_now, 2 * n_now})
        table = detectable_table(rows, m, alpha, shown)
        lone = alpha / m
        table["comparisons"] = m
        table["detectable_now"] = [detectable_now(row, lone) for row in table.to_dict("records")]
        if not quantity_is_ratio:
            table["detectable_now"] = _tested_detectable(table, transfer)
        # in paired d_z (half of the difference over the sd of the per-seed differences), the same in any unit
        half = [
            seeds_needed(d / 2 / sd, lone, POWER) if sd > 0 else None
            for d, sd in zip(table["detectable_now"], table["sd"])
        ]
        table["seeds_for_half"] = pd.array(half, dtype="Int64")
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    varies = table["sd"].astype(float) > 0
    sentences = [
        f"{r['setting']}, task {r['task']}"
        + (f", MTL {r['method']}" if r["method"] else "")
        + ", "
        + (
            f"{r['quantity']}: the STL runs do not vary, so no detectable difference can be planned from them."
            if r["source"] == "STL spread"
            else f"{r['quantity']}: the differences do not vary, so no detectable difference can be stated (the "
            f"exact permutation test decides: docs/statistics.md §2)."
        )
        for r in table[~varies].to_dict("records")
    ]
    groups = table[varies].assign(_runs=[_runs_text(row) for row in table[varies].to_dict("records")])
    for (runs, quantity), rows in groups.groupby(["_runs", "quantity"], sort=False):
        parts = [
            f"{r['setting']}, task {r['task']}" + (f", MTL {r['method']}" if r["method"] else "") + ": "
            f"{difference_text(r['detectable_now'], str(quantity))}"
            for r in rows.to_dict("records")
        ]
        halves = sorted({int(h) for h in rows["seeds_for_half"].dropna()})
        paired = " paired" if runs.endswith("(unpaired)") else ""  # the plan assumes a paired study
        span = f"{halves[0]}" if len(halves) == 1 else f"{halves[0]}–{halves[-1]}" if halves else ""
        need = f"{span}{paired} seeds" if halves else "more than 200 seeds"
        sentences.append(
            f"With {runs}, a lone difference in {quantity} is found with 80% power from: {'; '.join(parts)}. "
            f"Half of any of these would need {need}."
        )
    body = (
        f"<p>What this study's seeds can detect, from the seed spread of its own runs (sd of the per-seed "
        f"differences MTL − STL; √2 × the STL spread where a task has no MTL run): the difference a lone "
        f"effect in its family (Benjamini–Hochberg at FDR {alpha:g}) needs to be found with 80% power "
        f"(the paired test of docs/statistics.md §2: where the transfer table tests the comparison, as that "
        f"table states it; otherwise at the skewness bound 2 a plan must assume), and the seeds "
        f"half of it would need. Plan a new study with <code>mtlens plan SETTING --store THIS_STORE --effect "
        f"X</code> (docs/statistics.md §9).</p>"
        + "".join(f'<p class="plan">{html.escape(s)}</p>' for s in [*sentences, *families, *correlations])
    )
    body += table_html(
        table,
        out_dir,
        "seed_planning",
        "Per comparison: sd of the per-seed differences (source: paired, unpaired or STL spread), comparisons "
        "in its family, detectable_now: the lone difference found with 80% power with this study's runs and "
        "test (the transfer table's min_detectable_lone where it tests the comparison; otherwise at the "
        "skewness bound 2; unpaired: Hall's two-sample test of n_mtl vs n_seeds runs), detectable_n*: what a "
        "paired study of n seeds would detect (unpaired rows: with the sd of a difference of independent runs), "
        "seeds_for_half: the paired seeds half of detectable_now needs.",
        short=("setting", "task", "method", "quantity", "n_seeds", "sd", "detectable_now", "seeds_for_half"),
    )
    return Section(title, body, anchor)
