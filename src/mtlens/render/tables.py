"""Tables for people, CSV for machines.

:func:`table_html` writes a frame unrounded to ``tables/NAME.csv`` and returns it as an HTML table a
person can scan: human headers (:data:`COLUMNS`, with units) whose definition shows on hover, numbers
with :data:`DIGITS` significant digits (p-values with 2, "< 0.001" below), "—" where a value does not
apply, "not reachable with n seeds" for an infinite detectable difference, yes/no for booleans, and
the columns that are empty for the whole table left out.  A caller may name the few ``short`` columns a
reader needs; the others are then hidden behind an "all columns" toggle (one table, no copy: the page's
CSS hides the cells of class ``more``).  Cells never wrap (``white-space: nowrap``; the table scrolls
sideways in its box instead), headers wrap only between words.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlens.store.atomic import atomic_write_text

DIGITS = 3
"""Significant digits of the numbers in a table's HTML (the CSV keeps full precision)."""

NOT_APPLICABLE = "—"

COLUMNS: dict[str, tuple[str, str]] = {
    "setting": ("setting", "The setting (and training configuration where runs differ in it)."),
    "task": ("task", "The task of the setting."),
    "method": ("method", "The MTL method (aggregator) compared with STL."),
    "mode": ("mode", "stl: one task per run; mtl: all tasks in one run."),
    "metric": (
        "metric",
        "The test metric compared: each task's selection metric at the validation-selected checkpoint.",
    ),
    "stl_mean": ("STL mean", "Mean of the test metric over the STL runs the test used."),
    "stl_std": ("STL std", "Standard deviation (ddof 1) over the STL runs."),
    "n_stl": ("STL runs", "Number of STL runs (seeds) the test used."),
    "mtl_mean": ("MTL mean", "Mean of the test metric over the MTL runs the test used."),
    "mtl_std": ("MTL std", "Standard deviation (ddof 1) over the MTL runs."),
    "n_mtl": ("MTL runs", "Number of MTL runs (seeds) the test used."),
    "design": (
        "design",
        "paired: per-seed differences (same init and batch order); unpaired: Welch's t, skewness-corrected.",
    ),
    "delta": ("Δ MTL − STL", "Difference of the means MTL − STL in the metric's unit."),
    "delta_low": ("Δ low", "Lower end of the test's 1 − alpha interval of Δ (alpha: the report's FDR)."),
    "delta_high": ("Δ high", "Upper end of the test's 1 − alpha interval of Δ (alpha: the report's FDR)."),
    "effect_size": ("Hedges' g", "Bias-corrected standardized difference: g_z (paired) or g (unpaired)."),
    "df": ("df", "Degrees of freedom of the t statistic (n − 1 paired; Hsu's min(n_MTL, n_STL) − 1 unpaired)."),
    "skewness": (
        "skewness",
        "Sample skewness of the per-seed differences (the paired test holds its level up to the table's skewness "
        "bound).",
    ),
    "skewness_bound": (
        "skewness bound",
        "The |skewness| up to which the paired test holds its level: a 99.975% upper confidence limit of the "
        "common skewness of the table's rows of this setting (Berger & Boos), at most 2; its p-values include "
        "the 0.00025 it may miss.",
    ),
    "p_value": (
        "p",
        "Hall's skewness-corrected test (of the paired differences; unpaired, of Welch's t) p-value, before "
        "adjustment.",
    ),
    "p_adjusted": ("adjusted p", "Benjamini–Hochberg adjusted p-value over the table (FDR)."),
    "min_p": (
        "smallest possible p",
        "The smallest p-value the test allows (0 for t tests, 2/2^n for sign flips): above the level, "
        "no test can be significant.",
    ),
    "min_p_any": (
        "smallest possible p (any gap)",
        "The smallest p-value of the sign-flip band over all levels (2/2^n for n pairs): above the level, the "
        "band cannot exclude 0 anywhere.",
    ),
    "min_detectable": (
        "Δ detectable (80% power)",
        "The difference the test would detect with 80% power at this level.",
    ),
    "min_detectable_lone": (
        "Δ detectable, lone (80% power)",
        "The difference found with 80% power as the one effect among the table's m rows (its test at alpha / m, "
        "the level Benjamini–Hochberg then needs).",
    ),
    "relative_pct": ("relative change (%)", "100 × improvement of MTL over STL / |STL mean|; > 0: MTL better."),
    "verdict": ("verdict", "MTL better / worse only where the adjusted p ≤ the FDR level; otherwise no evidence."),
    "note": ("note", "Oddities in the data behind this row (see the warnings)."),
    "measure": ("measure", "The validation measure whose gap at equal training loss is tested."),
    "final_gap": ("final gap", "Gap MTL − STL at the lowest common training loss (> 0: MTL generalizes worse)."),
    "final_band_low": (
        "final band low",
        "Lower end of the interval of the gap at the lowest common training loss (the end level's own test).",
    ),
    "final_band_high": (
        "final band high",
        "Upper end of the interval of the gap at the lowest common training loss (the end level's own test).",
    ),
    "final_effect_size": (
        "final Hedges' g",
        "Standardized final gap, bias-corrected (Hedges' g_z paired, g unpaired).",
    ),
    "min_detectable_final": ("final gap detectable (80% power)", "The final gap detected with 80% power."),
    "p_any": ("p (any gap)", "p-value of a gap at some training-loss level."),
    "p_any_adjusted": ("adjusted p (any gap)", "Benjamini–Hochberg adjusted p of a gap at some level."),
    "p_persistent": (
        "p (persistent)",
        "p-value of a gap at the lowest common training loss (the end level's own test, first of the fixed sequence).",
    ),
    "p_persistent_adjusted": ("adjusted p (persistent)", "Benjamini–Hochberg adjusted p of a persistent gap."),
    "band_level": ("band level", "Per-test level of bands and onsets (Benjamini–Hochberg's rejection level)."),
    "onset_train_loss": (
        "onset (training loss)",
        "Earliest training loss from which every level to the end is significant (fixed sequence from the end).",
    ),
    "n_levels": ("loss levels", "Training-loss levels of the gap curve (never more than the runs' checkpoints)."),
    "end_train_loss": ("end (training loss)", "Lowest training loss every compared run reached: the end level."),
    "end_limited_by": ("end set by", "The runs whose lowest training loss is the end level."),
    "loo_p_persistent_max": (
        "p (persistent), worst seed left out",
        "Largest p (persistent) with one seed left out (the end recomputed each time).",
    ),
    "onset_epoch_mtl": ("onset (MTL epoch)", "Epoch at which the MTL runs reached the onset's training loss."),
    "onset_epoch_stl": ("onset (STL epoch)", "Epoch at which the STL runs reached the onset's training loss."),
    "direction": ("persistent gap", "Direction of a persistent gap, only where the test shows one."),
    "n_seeds": ("seeds", "Number of seeds (per-seed MTL − STL values) the test used."),
    "log_ratio_early": (
        "log-ratio early",
        "Mean log(L_MTL / L_STL) of the training loss over the first 25% of steps; < 0: MTL faster.",
    ),
    "log_ratio_final": ("log-ratio final", "log(L_MTL / L_STL) of the training loss at the last step; < 0: MTL lower."),
    "log_ratio_mean": (
        "log-ratio mean",
        "Mean log(L_MTL / L_STL) of the training loss at equal steps; < 0: MTL faster.",
    ),
    "log_ratio_early_p_adjusted": ("adjusted p (early)", "Benjamini–Hochberg adjusted p of the early log-ratio."),
    "log_ratio_final_p_adjusted": ("adjusted p (final)", "Benjamini–Hochberg adjusted p of the final log-ratio."),
    "log_ratio_early_skewness_bound": (
        "skewness bound (early)",
        "The skewness bound of the early log-ratio (this column's rows of the setting; see skewness bound).",
    ),
    "log_ratio_final_skewness_bound": (
        "skewness bound (final)",
        "The skewness bound of the final log-ratio (this column's rows of the setting; see skewness bound).",
    ),
    "delta_m_pct": ("Δm (%)", "Mean relative improvement of MTL over STL across tasks (%)."),
    "better": ("tasks better", "Tasks where MTL is significantly better (adjusted p ≤ FDR)."),
    "worse": ("tasks worse", "Tasks where MTL is significantly worse (adjusted p ≤ FDR)."),
    "tasks": ("tasks", "Tasks compared."),
    "gap_verdict": (
        "persistent gaps",
        "Tasks by the direction of their persistent gap in validation loss or error (mixed: the measures disagree).",
    ),
    "conflict_cosine": ("gradient cosine", "Mean inter-task gradient cosine of the MTL runs (< 0: conflict)."),
    "runs": ("runs", "Number of runs."),
    "state": ("state", "Run state in the store."),
    "conclusive": (
        "p can reach the FDR",
        "Whether the permutations allow any p-value ≤ the report's FDR level (min_p ≤ alpha). Not significance.",
    ),
    "pearson_r": ("Pearson r", "Pearson correlation across units."),
    "pearson_p_adjusted": (
        "adjusted p (Pearson)",
        "Benjamini–Hochberg adjusted permutation p of Pearson r (whole clusters moved; task pairs: the Mantel test).",
    ),
    "spearman_rho": ("Spearman ρ", "Spearman rank correlation across units."),
    "spearman_p_adjusted": (
        "adjusted p (Spearman)",
        "Benjamini–Hochberg adjusted permutation p of Spearman ρ (whole clusters moved; task pairs: the Mantel test).",
    ),
    "n": ("n", "Number of units (values)."),
    "n_groups": (
        "clusters",
        "Number of clusters permuted and left out by the jackknife (the report's: one per (setting, seed); task "
        "pairs: the tasks).",
    ),
    "n_centres": ("centring groups", "Groups each variable is centred within (the report's: (setting, task))."),
    "n_strata": ("strata", "Number of strata clusters are permuted within (the report's: settings)."),
}
"""Column name -> (header, definition on hover) for the columns the built-in tables share; other columns
get their name with spaces as the header."""

SEED_COUNTS = ("n_mtl", "n_seeds", "n")
"""Columns naming how many seeds a row's test used (for "not reachable with n seeds")."""


def is_p_value(column: str) -> bool:
    """p-value columns (``p``, ``p_value``, ``*_p``, ``*p_adjusted``, ``min_p``, ``p_*``): 2 digits."""
    return column in ("p", "p_value", "min_p") or column.startswith("p_") or column.endswith(("_p", "_p_adjusted"))


def confidence(alpha: float) -> str:
    """The confidence of a ``1 − alpha`` interval in words, unrounded: 0.05 -> ``"95%"``, 0.005 -> ``"99.5%"``,
    0.0125 -> ``"98.75%"`` (``:.0%`` printed "100%" and "98%" there)."""
    return f"{100 * (1 - alpha):.6g}%"


def interval_confidences(table: pd.DataFrame, alpha: float) -> str:
    """The confidence of the correlation ``table``'s intervals in words: ``*_confidence`` of
    :func:`~mtlens.analysis.correlation.family_inference` (every correlation table of the report), the
    Benjamini–Yekutieli false-coverage-rate adjusted level ``1 − R · alpha / m`` of each family (``1 − alpha`` for
    a table without it)."""

    def level(kind: str) -> str:
        values = table[f"{kind}_confidence"].dropna() if f"{kind}_confidence" in table else pd.Series(dtype=float)
        return confidence(1 - float(values.iloc[0])) if len(values) else confidence(alpha)

    return (
        f"Pearson {level('pearson')}, Spearman {level('spearman')}: each family's Benjamini–Hochberg level R · "
        f"{alpha:g} / m, the false-coverage-rate adjusted intervals of Benjamini & Yekutieli 2005"
    )


def number(value: Any, digits: int = DIGITS) -> str:
    """``value`` with ``digits`` significant digits (at least the integer part, thousands grouped; an
    exponent only outside 1e-4 .. 1e6), "—" for a missing value, "∞" for an infinite one."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return NOT_APPLICABLE
    x = float(value)
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 6 or magnitude < -4:
        return f"{x:.{digits - 1}e}".replace("-", "−")
    decimals = max(digits - 1 - magnitude, 0)
    rounded = round(x, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > magnitude:  # 0.0999 -> 0.100 -> 0.1 (one digit fewer)
        decimals = max(decimals - 1, 0)
    return f"{x:,.{decimals}f}".replace("-", "−")


def signed(value: Any, digits: int = DIGITS) -> str:
    """:func:`number` with an explicit sign (+0.5, −0.5)."""
    text = number(value, digits)
    return text if text.startswith(("−", NOT_APPLICABLE)) or text == "0" else "+" + text


def p_value(value: Any) -> str:
    """A p-value: 2 significant digits, "< 0.001" below 0.001, "—" where missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return NOT_APPLICABLE
    return "< 0.001" if float(value) < 0.001 else number(value, 2)


def cell(column: str, value: Any, row: Mapping[str, Any]) -> str:
    """The text of one cell (see the module docstring)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}".replace("-", "−")
    if isinstance(value, (float, np.floating)):
        if math.isinf(value) and column.startswith("min_detectable"):
            n = next((row[c] for c in SEED_COUNTS if c in row and pd.notna(row[c])), None)
            return f"not reachable with {int(n)} seeds" if n is not None else "not reachable with these seeds"
        return p_value(value) if is_p_value(column) else number(value)
    if value is None or value is pd.NA:
        return NOT_APPLICABLE
    text = str(value)
    return NOT_APPLICABLE if text in ("", "nan", "None", "NaN") else text


def header(column: str) -> tuple[str, str]:
    """``(header, definition)`` of a column (:data:`COLUMNS`, else its name with spaces)."""
    return COLUMNS.get(column, (column.replace("_", " "), f"Column {column} of the CSV table."))


def empty_columns(frame: pd.DataFrame) -> list[str]:
    """Columns with no value in any row (all NaN/None/empty text)."""
    return [c for c in frame.columns if frame[c].replace("", np.nan).isna().all()] if len(frame) else []


def table_html(
    frame: pd.DataFrame,
    out_dir: Path,
    name: str,
    caption: str,
    short: Sequence[str] = (),
) -> str:
    """Save ``frame`` (every column, unrounded) as ``out_dir/tables/name.csv`` and return it as an HTML
    table with ``caption``: the ``short`` columns first-class (all columns where none are named), the
    others behind the "all columns" toggle, columns empty in every row left out."""
    tables = Path(out_dir) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    atomic_write_text(tables / f"{name}.csv", frame.to_csv(index=False))
    empty = set(empty_columns(frame))
    columns = [c for c in frame.columns if c not in empty]
    shown = [c for c in short if c in columns] or columns
    more = [c for c in columns if c not in shown]
    order = shown + more
    cls = {c: ' class="more"' if c in more else "" for c in order}
    heads = "".join(
        f'<th{cls[c]} title="{html.escape(definition)}">{html.escape(text)}</th>'
        for c in order
        for text, definition in [header(str(c))]
    )
    records = frame[order].to_dict("records")
    body = "".join(
        "<tr>" + "".join(f"<td{cls[c]}>{html.escape(cell(str(c), row[c], row))}</td>" for c in order) + "</tr>"
        for row in records
    )
    toggle = (
        f'<button type="button" class="more-toggle" onclick="this.parentNode.classList.toggle(\'all\')">'
        f"all {len(order)} columns</button>"
        if more
        else ""
    )
    hidden = f" Empty columns not shown: {', '.join(sorted(map(str, empty)))}." if empty else ""
    return (
        f'<div class="table-wrap" data-table="{html.escape(name)}"><p class="caption">{html.escape(caption + hidden)} '
        f'Full precision: <a href="tables/{html.escape(name)}.csv">tables/{html.escape(name)}.csv</a>.</p>{toggle}'
        f'<table class="table"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table></div>'
    )
