"""The report's answers in words: per setting, one sentence per question and task, written from the
report's tables and never stronger than their tests.

A pure module: tables in (the CSV tables the report writes, read back or in memory), sentences out.
:func:`answers` takes a mapping ``table name -> DataFrame`` and returns, per setting, the paragraphs of
the three questions of Mueller et al. (did MTL help, when did the gap open, what explains it) and of
Elich et al.'s experiments.  Every sentence is keyed off column names, listed here, so that a table
gaining columns changes nothing and a table missing one of them yields no sentence from it:

- ``transfer``: ``setting, task, method, metric, stl_mean, mtl_mean, n_stl, n_mtl, design, delta,
  delta_low, delta_high, p_adjusted, min_p, min_detectable, verdict`` and, where present,
  ``min_detectable_lone`` and ``lone_level`` (the level it is computed at, named where no difference can
  reach it) (a verdict "MTL better/worse" is stated only where the table states it, i.e.
  Benjamini–Hochberg adjusted p ≤ alpha);
- ``gap_onset``: ``setting, method, task, measure, design, n_mtl, n_stl, direction, final_gap,
  final_band_low, final_band_high, p_persistent_adjusted, min_p, min_detectable_final`` and, where present,
  ``band_level`` (the level ``min_detectable_final`` is computed at), ``onset_epoch_mtl``,
  ``onset_train_loss``, ``end_train_loss`` (a gap is stated only where ``direction`` names one);
- ``optimization_effect``: ``setting, task, method, n_seeds, log_ratio_final, log_ratio_final_low,
  log_ratio_final_high, log_ratio_final_p_adjusted, log_ratio_final_min_detectable`` (the training-loss
  ratio MTL/STL at equal steps is ``exp`` of the log-ratio);
- ``correlations``: ``x, y, n, n_groups, pearson_r, pearson_low, pearson_high, pearson_p_adjusted, min_p``
  (across settings: one family; a correlation is stated only where its adjusted p ≤ alpha **and** its
  interval excludes 0, :func:`correlation_words`; where the two disagree the sentence says which way, and
  ``min_p > alpha`` is said to be inconclusive, never shown as a finding);
- ``probe_differences``: ``setting, task, method, difference, n_seeds, mean, low, high, p_adjusted``;
- ``alignment`` (``setting, kind, median, fraction_negative``), ``magnitude_ratio`` (``setting, method,
  pair, median_ratio, median_abs_log10``) and ``optimizers`` (``setting, task, mode, method, metric`` and
  one "mean ± std (n=k)" column per optimizer): Elich et al.'s experiments, described without a test.

The ``agreement`` paragraph sets, per (setting, method, task) with a significant transfer verdict, that
verdict beside the gap and optimization verdicts (:func:`agreement_sentence`): MTL can be worse on test
data because it generalizes worse at equal training loss (a gap), or because it optimizes slower at equal
steps and so stops at a higher training loss (Mueller et al., Sec. 4).  The sentence says which of the
tests agree, never why beyond what they show.

Numbers are written with 2–3 significant digits (:func:`number`), error-like metrics (:data:`PERCENT_METRICS`)
as percentages with differences in percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mtlens.analysis.alignment import comparability_note
from mtlens.analysis.correlation import correlation_claim
from mtlens.render.tables import confidence, number, signed

QUESTIONS = {
    "transfer": "Did MTL help each task?",
    "gap": "When did the generalization gap open?",
    "optimization": "How did optimization differ?",
    "agreement": "Do transfer and the gap agree?",
    "explanation": "What explains it?",
    "elich": "Gradient alignment (Elich et al.)",
    "optimizers": "Adam vs SGD (Elich et al.)",
}
"""Paragraph keys of :func:`answers` and their headings, in the report's order."""

UNANSWERED = {
    "transfer": "it needs STL and MTL runs of the same task with a test metric (see the overview)",
    "gap": "it needs STL and MTL runs whose validation measures were recorded over training (see 'When did the "
    "gap open?')",
    "optimization": "it needs STL and MTL runs with the same seeds and a recorded training loss (see 'How did "
    "optimization differ?')",
    "explanation": "it needs STL and MTL runs with the same seeds, and probes for the trajectory factors (see "
    "'What explains transfer?')",
}
"""Why a question of :data:`QUESTIONS` has no sentence: :func:`answers` says so for a setting it answers
something for, so that a missing question reads as not answerable from these runs, never as skipped."""

TABLES = (
    "transfer",
    "gap_onset",
    "optimization_effect",
    "probe_differences",
    "correlations",
    "alignment",
    "magnitude_ratio",
    "optimizers",
)
"""The report tables :func:`answers` reads (by their CSV names)."""

ALL_SETTINGS = "all settings"
"""The key of paragraphs drawn from tables that pool settings (the correlations)."""

PERCENT_METRICS = ("error", "accuracy", "acc", "pixel_accuracy", "miou", "f1")
"""Metrics that are fractions in [0, 1]: written as percentages, their differences in points."""

MEASURE_NAMES = {"val/loss": "validation loss", "val/error": "validation error"}


def p_text(p: Any, alpha: float | None = None) -> str:
    """An adjusted p-value as text: two significant digits, "< 0.001" below 0.001; with the sentence's
    ``alpha``, as many more digits as keep the printed value on the same side of ``alpha`` as ``p`` (0.0504 at
    0.05 is "0.0504", not "0.050" beside "could not be shown"), and "just above" ``alpha`` where 6 digits do not
    (a p-value of 0.0500009 is attainable: ``(1 + c) / 131073`` plus the bound's ``beta``)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "adjusted p not available"
    if float(p) < 0.001:
        return "adjusted p < 0.001"
    digits = 2
    while alpha is not None and (float(number(p, digits)) <= alpha) != (float(p) <= alpha):
        if digits == 6:  # alpha itself not round (e.g. 0.05 / 3): say the side
            return f"adjusted p just above {alpha:g}" if float(p) > alpha else f"adjusted p <= {alpha:g}"
        digits += 1
    return f"adjusted p = {number(p, digits)}"


def _metric(metric: str) -> tuple[str, bool]:
    """``(name, percent)`` of a transfer ``metric`` column (``test/error`` -> ``("test error", True)``)."""
    name = str(metric).split("/")[-1]
    return f"test {name}", name in PERCENT_METRICS


def _value(x: float, percent: bool) -> str:
    return f"{number(100 * x, 2)}%" if percent else number(x, 3)


def _difference(x: float, percent: bool) -> str:
    return f"{signed(100 * x, 2)} points" if percent else signed(x, 2)


def _seeds(row: Mapping[str, Any]) -> str:
    design, n = str(row.get("design", "")), row.get("n_mtl")
    if design == "paired":
        return f"paired over {n} seeds"
    return f"{design or 'unpaired'}, {row.get('n_stl')} STL and {n} MTL runs"


def _with_runs(row: Mapping[str, Any]) -> str:
    """``with 8 seeds`` (paired) or ``with 3 STL and 2 MTL runs`` (unpaired: the runs are not seeds of pairs)."""
    if str(row.get("design", "")) == "paired":
        return f"with {row.get('n_mtl')} seeds"
    return f"with {row.get('n_stl')} STL and {row.get('n_mtl')} MTL runs"


def _power(
    row: Mapping[str, Any], detectable: Any, what: str, percent: bool, level: float, alpha: float, unit: str = ""
) -> str:
    """What the comparison could have found: the ``detectable`` difference (80% power at ``level``, the level
    it was computed at), or that no ``what`` could reach ``level`` (an infinite one; with the row's smallest
    possible p), that the differences do not vary (NaN from a tested row, or 0 from an older table: no power can
    be stated), or, for a percent metric, that not even 100 points would be found."""
    runs = _with_runs(row)
    tested = str(row.get("design", "")) in ("paired", "unpaired")
    missing = detectable is None or pd.isna(detectable)
    size = (0.0 if tested else math.inf) if missing else float(detectable)
    if not math.isfinite(size):
        return _unreachable(row, what, level, alpha)
    if size == 0:
        return f"{runs} the per-seed differences do not vary, so the test says nothing about what it could find"
    if percent and abs(size) >= 1:
        return f"{runs} not even the largest possible {what} (100 points) would be detected with 80% power"
    size_text = _difference(abs(size), percent).lstrip("+")
    return f"{runs} a {what} of {size_text}{unit} would have been detected with 80% power"


def _level(row: Mapping[str, Any], column: str, alpha: float) -> float:
    """The level a row's detectable difference was computed at: its ``column`` (``lone_level`` of the transfer
    table, ``band_level`` of the gap table), ``alpha`` where an older table has none."""
    level = row.get(column)
    return float(level) if level is not None and pd.notna(level) else alpha


def _unreachable(row: Mapping[str, Any], what: str, level: float, alpha: float) -> str:
    """``with 8 seeds no gap could reach this family's level 0.0125 (smallest possible p 0.018)``: ``the level``
    where ``level`` is ``alpha``, ``this family's level`` where Benjamini–Hochberg lowered it."""
    where = "the level" if level >= alpha else "this family's level"
    smallest = number(row.get("min_p"), 2)
    return f"{_with_runs(row)} no {what} could reach {where} {level:.3g} (smallest possible p {smallest})"


def transfer_sentence(row: Mapping[str, Any], alpha: float) -> str:
    """One sentence from a ``transfer`` row (see the module docstring for the columns read)."""
    name, percent = _metric(row["metric"])
    method, task = row["method"], row["task"]
    values = f"{name} {_value(row['stl_mean'], percent)} → {_value(row['mtl_mean'], percent)}"
    low, high = _difference(row["delta_low"], percent), _difference(row["delta_high"], percent)
    interval = f"{confidence(alpha)} interval {low.removesuffix(' points')} to {high}"
    verdict = str(row.get("verdict", ""))
    if verdict in ("MTL better", "MTL worse"):
        word = "better" if verdict == "MTL better" else "worse"
        return (
            f"MTL ({method}) made task {task} {word}: {values} ({_seeds(row)}, {interval}, "
            f"{p_text(row.get('p_adjusted'), alpha)})."
        )
    if str(row.get("design", "")) not in ("paired", "unpaired"):
        return (
            f"No effect of MTL ({method}) on task {task} could be tested: {values} ({row.get('n_stl')} STL and "
            f"{row.get('n_mtl')} MTL runs; a test needs 2 seeds run in both modes, or 2 runs of each)."
        )
    lone = "min_detectable_lone" in row
    detectable = row["min_detectable_lone"] if lone else row.get("min_detectable")
    power = _power(row, detectable, "difference", percent, _level(row, "lone_level", alpha), alpha)
    if lone and "do not vary" not in power and "could reach" not in power:
        power += " as the one effect among the table's comparisons (after Benjamini–Hochberg)"
    interval += _uncorrected(row.get("delta_low"), row.get("delta_high"))
    return (
        f"No effect of MTL ({method}) on task {task} could be shown: {values} ({_seeds(row)}, {interval}, "
        f"{p_text(row.get('p_adjusted'), alpha)}); {power}."
    )


def _uncorrected(low: Any, high: Any, null: str = "0") -> str:
    """``", which excludes 0 only before Benjamini–Hochberg over the table"`` where an unadjusted interval
    (``low``, ``high`` of a difference or a log-ratio) beside "could not be shown" excludes 0, so that it is
    not read as a finding; ``null``: how 0 is written (``"1"`` for a ratio); else empty."""
    if low is None or high is None or not (float(low) > 0 or float(high) < 0):
        return ""
    return f", which excludes {null} only before Benjamini–Hochberg over the table"


def gap_sentence(rows: pd.DataFrame, alpha: float) -> str:
    """One sentence per (setting, method, task) from its ``gap_onset`` rows (one per measure)."""
    first = rows.iloc[0]
    method, task = first["method"], first["task"]
    found = rows[rows["direction"].isin(["MTL worse", "MTL better"])]
    if len(found):
        parts = []
        for row in found.to_dict("records"):
            measure = MEASURE_NAMES.get(row["measure"], row["measure"])
            span = " to the lowest common training loss"
            if pd.notna(row.get("onset_epoch_mtl")):
                span = f" from epoch {number(row['onset_epoch_mtl'], 2)} of MTL"
                if pd.notna(row.get("onset_train_loss")):
                    span += f" (training loss {number(row['onset_train_loss'], 2)})"
                span += " to the lowest common training loss"
                if row.get("onset_train_loss") == row.get("end_train_loss"):  # one level: no span to speak of
                    span = (
                        f" at the lowest common training loss only (epoch {number(row['onset_epoch_mtl'], 2)} of MTL)"
                    )
            percent = str(row["measure"]).split("/")[-1] in PERCENT_METRICS
            band = f"{confidence(float(row['band_level']))} band" if pd.notna(row.get("band_level")) else "band"
            parts.append(
                f"a persistent {measure} gap{span}, where it was "
                f"{_difference(row['final_gap'], percent)} ({band} "
                f"{_difference(row['final_band_low'], percent).removesuffix(' points')} "
                f"to {_difference(row['final_band_high'], percent)}, "
                f"{p_text(row.get('p_persistent_adjusted'), alpha)})"
            )
        word = "worse" if (found["direction"] == "MTL worse").all() else "better"
        if found["direction"].nunique() > 1:
            word = "differently (the measures disagree)"
        return f"MTL ({method}) generalized {word} than STL on task {task} at equal training loss: {'; '.join(parts)}."
    loss = rows[rows["measure"] == "val/loss"]
    row = (loss if len(loss) else rows).iloc[0]
    measure = MEASURE_NAMES.get(row["measure"], row["measure"])
    percent = str(row["measure"]).split("/")[-1] in PERCENT_METRICS
    power = _power(
        row,
        row.get("min_detectable_final"),
        "final gap",
        percent,
        _level(row, "band_level", alpha),
        alpha,
        f" in {measure}",
    )
    return (
        f"No persistent generalization gap of MTL ({method}) on task {task} at equal training loss could be shown "
        f"({measure}: {p_text(row.get('p_persistent_adjusted'), alpha)}); {power}."
    )


def optimization_sentence(row: Mapping[str, Any], alpha: float) -> str:
    """One sentence from an ``optimization_effect`` row: the final training-loss ratio MTL/STL at equal steps."""
    method, task = row["method"], row["task"]
    log_ratio = row.get("log_ratio_final")
    if log_ratio is None or not math.isfinite(float(log_ratio)):
        return f"The training losses of MTL ({method}) and STL on task {task} could not be compared."
    ratio = math.exp(float(log_ratio))
    interval = ""
    if pd.notna(row.get("log_ratio_final_low")) and pd.notna(row.get("log_ratio_final_high")):
        interval = (
            f", {confidence(alpha)} interval {number(math.exp(row['log_ratio_final_low']), 2)} to "
            f"{number(math.exp(row['log_ratio_final_high']), 2)}"
        )
    p = row.get("log_ratio_final_p_adjusted")
    shown = p is not None and math.isfinite(float(p)) and float(p) <= alpha
    if interval and not shown:
        interval += _uncorrected(row["log_ratio_final_low"], row["log_ratio_final_high"], "1")
    detail = (
        f"(final training-loss ratio MTL/STL at equal steps {number(ratio, 2)}{interval}, {p_text(p, alpha)}, "
        f"{row.get('n_seeds')} seeds)"
    )
    if shown:
        change = f"{number(abs(ratio - 1) * 100, 2)}% {'higher' if ratio > 1 else 'lower'}"
        word = "slower" if ratio > 1 else "faster"
        return f"MTL ({method}) optimized task {task} {word}: its training loss ended {change} than STL's {detail}."
    return f"No difference in how fast MTL ({method}) and STL optimized task {task} could be shown {detail}."


def _optimized(row: Mapping[str, Any] | None, alpha: float) -> str | None:
    """``"slower"``/``"faster"`` where an ``optimization_effect`` row's final log training-loss ratio is
    significant (adjusted p ≤ alpha), else ``None``."""
    if row is None:
        return None
    log_ratio, p = row.get("log_ratio_final"), row.get("log_ratio_final_p_adjusted")
    if log_ratio is None or p is None or not (math.isfinite(float(log_ratio)) and math.isfinite(float(p))):
        return None
    if float(p) > alpha or float(log_ratio) == 0:
        return None
    return "slower" if float(log_ratio) > 0 else "faster"


def agreement_sentence(
    transfer: Mapping[str, Any], gap: pd.DataFrame, effect: Mapping[str, Any] | None, alpha: float
) -> str | None:
    """How a significant ``transfer`` verdict of one (setting, method, task) compares with its ``gap_onset``
    rows (one per measure; may be empty) and its ``optimization_effect`` row (``None`` if absent).

    - the gap shows a persistent gap of the same sign on every measure where it shows one: they agree;
    - it shows one of the opposite sign on some measure: they disagree in sign, and the sentence says so;
    - it shows none: they differ, and the sentence gives every measure's adjusted persistence p-value (the
      validation loss first), so a near miss in the measure of the transfer metric is not hidden.
    Where they disagree or differ, the sentence says whether the optimization table shows MTL optimizing
    slower (with MTL worse) or faster (with MTL better) at equal steps (final log training-loss ratio,
    adjusted p ≤ alpha), the other way MTL can end up worse or better on test data, or that the tests do not
    say why.  "Goes with", never "because": no test here separates the two causally.

    ``None`` where the transfer verdict is not significant or no gap rows exist (nothing to compare).
    """
    verdict = str(transfer.get("verdict", ""))
    if verdict not in ("MTL better", "MTL worse") or gap.empty:
        return None
    method, task = transfer["method"], transfer["task"]
    name, _ = _metric(transfer["metric"])
    word = "worse" if verdict == "MTL worse" else "better"
    said = f"{word} {name} ({p_text(transfer.get('p_adjusted'), alpha)})"
    found = gap[gap["direction"].isin(["MTL worse", "MTL better"])]

    def measures(rows: pd.DataFrame) -> str:
        return "; ".join(
            f"{MEASURE_NAMES.get(r['measure'], r['measure'])}, {p_text(r.get('p_persistent_adjusted'), alpha)}"
            for r in rows.to_dict("records")
        )

    def unseen(row: dict[str, Any]) -> str:
        text = f"{MEASURE_NAMES.get(row['measure'], row['measure'])}: {p_text(row.get('p_persistent_adjusted'), alpha)}"
        detectable = row.get("min_detectable_final")
        if detectable is not None and pd.notna(detectable) and not math.isfinite(float(detectable)):
            text += f", {_unreachable(row, 'gap', _level(row, 'band_level', alpha), alpha)}"
        return text

    if len(found) and (found["direction"] == verdict).all():
        return (
            f"Transfer and the gap agree for MTL ({method}) on task {task}: {said}, and a persistent gap at equal "
            f"training loss in the same direction ({measures(found)})."
        )
    opposite = found[found["direction"] != verdict]
    want = "slower" if word == "worse" else "faster"
    speed = _optimized(effect, alpha)
    optimization = f"{want} optimization at equal steps"
    if speed == want and effect is not None:
        ratio = number(math.exp(float(effect["log_ratio_final"])), 2)
        optimization += (
            f" (final training-loss ratio MTL/STL {ratio}, {p_text(effect.get('log_ratio_final_p_adjusted'), alpha)})"
        )
    else:
        optimization += f" ({f'MTL optimized it {speed}' if speed else 'no test showed any'})"
    if len(opposite):
        other = "better" if word == "worse" else "worse"
        head = f"Transfer and the gap disagree in sign for MTL ({method}) on task {task}"
        at_equal_loss = f"at equal training loss MTL generalized {other} ({measures(opposite)})"
        if speed == want:
            return f"{head}: the {said} goes with {optimization}, while {at_equal_loss}."
        return f"{head}, and the tests do not say why: {at_equal_loss}, and the {said} does not go with {optimization}."
    rows = gap.sort_values("measure", key=lambda m: m != "val/loss", kind="stable").to_dict("records")
    no_gap = (
        "a persistent gap at equal training loss, which no test showed (" + "; ".join(unseen(row) for row in rows) + ")"
    )
    if speed == want:
        return f"The {said} of MTL ({method}) on task {task} goes with {optimization}, not with {no_gap}."
    return (
        f"Transfer and the gap differ for MTL ({method}) on task {task}, and the tests do not say why: the {said} "
        f"goes with neither {no_gap} nor {optimization}."
    )


def correlation_words(row: Mapping[str, Any], alpha: float, kind: str = "pearson") -> str:
    """What a correlation row shows at FDR ``alpha``, in words
    (:func:`~mtlens.analysis.correlation.correlation_claim`: stated as found only where the adjusted
    p-value and the interval agree; with too few clusters neither is read)."""
    claim = correlation_claim(row, alpha, kind)
    if claim == "shown":
        return "shown: the permutation test rejects and the jackknife interval excludes 0"
    if claim == "test only":
        return "the permutation test rejects but the jackknife interval reaches 0: not conclusive"
    if claim == "interval only":
        return "the jackknife interval excludes 0 but the permutation test does not reject: not conclusive"
    if claim == "too few clusters":
        return f"too few clusters for any p-value to reach {alpha:g}: no conclusion"
    return "not shown"


def interval_words(row: Mapping[str, Any], alpha: float, kind: str = "pearson") -> str:
    """``"99.6429% interval -0.12 to 0.56"``: a correlation row's interval at its confidence
    (``{kind}_confidence``, BH's per-pair level, :func:`~mtlens.analysis.correlation.correlation_table`;
    ``1 − alpha`` for a row without it)."""
    level = row.get(f"{kind}_confidence", math.nan)
    level = 1 - alpha if pd.isna(level) else float(level)
    low, high = number(row[f"{kind}_low"], 2), number(row[f"{kind}_high"], 2)
    return f"{confidence(1 - level)} interval {low} to {high}"


CORRELATION_KINDS = {"pearson": ("Pearson r", "pearson_r"), "spearman": ("Spearman rho", "spearman_rho")}
"""The correlation table's two measures (each its own BH family): column prefix -> (name, coefficient column)."""


def _correlation_text(row: Mapping[str, Any], alpha: float, kind: str) -> str:
    """``"Pearson r = 0.61, 98.3333% interval 0.2 to 0.84, adjusted p = 0.004"``: one measure of a row."""
    name, column = CORRELATION_KINDS[kind]
    return (
        f"{name} = {number(row[column], 2)}, {interval_words(row, alpha, kind)}, "
        f"{p_text(row[f'{kind}_p_adjusted'], alpha)}"
    )


def _has_coefficient(row: Mapping[str, Any], kind: str) -> bool:
    """Whether a correlation row has a finite coefficient of ``kind`` (none where a value does not vary)."""
    return math.isfinite(_as_float(row[CORRELATION_KINDS[kind][1]]))


def _as_float(value: Any) -> float:
    """``value`` as a float, NaN where it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite_or_one(value: Any) -> float:
    """A p-value as a float, 1 where it is missing or not a number (an untested pair ranks last)."""
    p = _as_float(value)
    return 1.0 if math.isnan(p) else p


def correlation_sentences(table: pd.DataFrame, alpha: float) -> list[str]:
    """Sentences from the ``correlations`` table, Pearson and Spearman each read by its own test and interval
    (:func:`correlation_words`): each correlation a measure shows (both tests and intervals agree), then what
    no measure shows, where a measure's test and interval disagree, and what is inconclusive."""
    if table.empty:
        return []
    kinds = [k for k in CORRELATION_KINDS if f"{k}_p_adjusted" in table.columns]
    records = table.to_dict("records")
    claims = [{k: correlation_claim(row, alpha, k) for k in kinds} for row in records]
    sentences = []
    for row, claim in zip(records, claims, strict=True):
        shown = [k for k in kinds if claim[k] == "shown"]
        if shown:
            rises = float(row[CORRELATION_KINDS[shown[0]][1]]) > 0
            sentences.append(
                f"Across {row['n']} units ({row['n_groups']} clusters), {row['y']} {'rose' if rises else 'fell'} "
                f"with {row['x']} ({'; '.join(_correlation_text(row, alpha, k) for k in shown)})."
            )
    rest = [(row, claim) for row, claim in zip(records, claims, strict=True) if "shown" not in claim.values()]
    if rest:
        cannot = sum(all(c == "too few clusters" for c in claim.values()) for _, claim in rest)
        read = [
            (row, k)
            for row, claim in rest
            for k in kinds
            if claim[k] != "too few clusters" and _has_coefficient(row, k)
        ]
        subject = f"{'No other' if len(rest) < len(records) else 'No'} correlation between a trajectory factor and "
        if read:
            best, kind = min(read, key=lambda item: _finite_or_one(item[0][f"{item[1]}_p_adjusted"]))
            sentence = (
                f"{subject}transfer or the gap could be shown ({len(rest)} tested; smallest "
                f"{p_text(best[f'{kind}_p_adjusted'], alpha)}, {CORRELATION_KINDS[kind][0].split()[0]}, "
                f"{best['y']} with {best['x']})"
            )
        else:  # no p-value here can be read: none is quoted (docs/statistics.md §10)
            sentence = f"{subject}transfer or the gap can be judged at {alpha:g} from these runs ({len(rest)} pairs)"
        for row, claim in rest:
            for k in kinds:
                if claim[k] in ("test only", "interval only"):
                    sentence += f"; {row['y']} with {row['x']} ({_correlation_text(row, alpha, k)}): "
                    sentence += correlation_words(row, alpha, k)
        if cannot:
            sentence += f"; {cannot} of them have too few clusters for any p-value to reach {alpha:g}"
        flat = sum(not any(_has_coefficient(row, k) for k in kinds) for row, _ in rest)
        if flat:
            sentence += f"; {flat} have no correlation to give (a factor or the outcome does not vary)"
        sentences.append(sentence + ".")
    return sentences


def difference_sentences(table: pd.DataFrame, alpha: float) -> list[str]:
    """Sentences from ``probe_differences`` rows of one setting: the differences its test shows."""
    p = pd.to_numeric(table["p_adjusted"], errors="coerce")
    shown = table[p <= alpha]
    sentences = [
        f"MTL ({row['method']}) changed {row['difference']} of task {row['task']} by {signed(row['mean'], 2)} "
        f"({confidence(alpha)} interval {signed(row['low'], 2)} to {signed(row['high'], 2)}, {row['n_seeds']} seeds, "
        f"{p_text(row['p_adjusted'], alpha)})."
        for row in shown.to_dict("records")
    ]
    if len(table) > len(shown):
        sentences.append(
            f"No {'other ' if len(shown) else ''}difference in the probes between MTL and STL could be shown "
            f"({len(table) - len(shown)} tested)."
        )
    return sentences


def elich_sentences(alignment: pd.DataFrame, ratios: pd.DataFrame) -> list[str]:
    """Descriptive sentences (Elich et al. report no test here, nor does mtlens) from the ``alignment``
    rows (``kind, median, fraction_negative``) and ``magnitude_ratio`` rows (``method, pair,
    median_ratio, median_abs_log10``) of one setting."""
    sentences = []
    if {"kind", "median"} <= set(alignment.columns) and len(alignment):
        parts = [
            f"{row['kind']} {number(row['median'], 2)}"
            + (f" ({row['fraction_negative']:.0%} negative)" if pd.notna(row.get("fraction_negative")) else "")
            for row in alignment.to_dict("records")
        ]
        note = comparability_note(set(alignment["kind"]))
        sentences.append(
            f"Median gradient cosines: {'; '.join(parts)} (descriptive, no test{'; ' + note if note else ''})."
        )
    if {"pair", "median_ratio"} <= set(ratios.columns):
        for row in ratios.to_dict("records"):
            method = f" with MTL ({row['method']})" if "method" in row else ""
            spread = (
                f", typically {number(row['median_abs_log10'], 2)} orders of magnitude apart"
                if pd.notna(row.get("median_abs_log10"))
                else ""
            )
            sentences.append(
                f"The gradient magnitudes of tasks {row['pair']}{method} had a median ratio of "
                f"{number(row['median_ratio'], 2)}{spread} (descriptive, no test)."
            )
    return sentences


def optimizer_sentences(table: pd.DataFrame) -> list[str]:
    """Descriptive sentences from the ``optimizers`` rows of one setting (Elich et al.'s Adam vs SGD):
    ``task, mode, method, metric`` and one column per optimizer holding "mean ± std (n=k)"."""
    keys = ("setting", "task", "mode", "method", "metric")
    optimizers = [c for c in table.columns if c not in keys]
    sentences = []
    for row in table.to_dict("records"):
        who = "STL" if row.get("mode") == "stl" else f"MTL ({row.get('method')})"
        values = "; ".join(f"{o} {row[o]}" for o in optimizers if pd.notna(row[o]))
        sentences.append(
            f"{who} {row.get('metric')} of task {row.get('task')} by optimizer: {values} (descriptive, no test)."
        )
    return sentences


def _rows(tables: Mapping[str, pd.DataFrame], name: str, needed: tuple[str, ...]) -> pd.DataFrame:
    """Table ``name`` if it has the columns ``needed``, else an empty frame."""
    frame = tables.get(name)
    if frame is None or frame.empty or not set(needed) <= set(frame.columns):
        return pd.DataFrame(columns=list(needed))
    return frame


def answers(tables: Mapping[str, pd.DataFrame], alpha: float = 0.05) -> dict[str, dict[str, list[str]]]:
    """``{setting: {question key: [sentences]}}`` (keys of :data:`QUESTIONS`, in order, only those with
    sentences; tables pooling settings under :data:`ALL_SETTINGS`) from the report's ``tables``.  A setting
    with any sentence gets one for each question of :data:`UNANSWERED` its tables cannot answer, saying why."""
    out: dict[str, dict[str, list[str]]] = {}

    def add(setting: str, key: str, sentences: list[str]) -> None:
        if sentences:
            out.setdefault(str(setting), {}).setdefault(key, []).extend(sentences)

    transfer = _rows(tables, "transfer", ("setting", "task", "method", "metric", "verdict"))
    for row in transfer.to_dict("records"):
        add(row["setting"], "transfer", [transfer_sentence(row, alpha)])
    gap = _rows(tables, "gap_onset", ("setting", "method", "task", "measure", "direction"))
    for (setting, _, _), rows in gap.groupby(["setting", "method", "task"], sort=False):
        add(setting, "gap", [gap_sentence(rows, alpha)])
    effect = _rows(tables, "optimization_effect", ("setting", "task", "method", "log_ratio_final"))
    for row in effect.to_dict("records"):
        add(row["setting"], "optimization", [optimization_sentence(row, alpha)])
    effects = {(r["setting"], r["method"], r["task"]): r for r in effect.to_dict("records")}
    gaps = {key: rows for key, rows in gap.groupby(["setting", "method", "task"], sort=False)}
    for row in transfer.to_dict("records"):
        key = (row["setting"], row["method"], row["task"])
        rows = gaps.get(key, gap.iloc[0:0])
        sentence = agreement_sentence(row, rows, effects.get(key), alpha)
        add(row["setting"], "agreement", [sentence] if sentence else [])
    differences = _rows(tables, "probe_differences", ("setting", "task", "method", "difference", "p_adjusted"))
    for setting, rows in differences.groupby("setting", sort=False):
        add(setting, "explanation", difference_sentences(rows, alpha))
    correlations = _rows(tables, "correlations", ("x", "y", "n", "pearson_r", "pearson_p_adjusted"))
    add(ALL_SETTINGS, "explanation", correlation_sentences(correlations, alpha))
    alignment, ratios = _rows(tables, "alignment", ("setting",)), _rows(tables, "magnitude_ratio", ("setting",))
    for setting in pd.unique(pd.concat([alignment["setting"], ratios["setting"]])):
        add(
            setting,
            "elich",
            elich_sentences(alignment[alignment["setting"] == setting], ratios[ratios["setting"] == setting]),
        )
    optimizers = _rows(tables, "optimizers", ("setting", "task", "mode", "method", "metric"))
    for setting, rows in optimizers.groupby("setting", sort=False):
        add(setting, "optimizers", optimizer_sentences(rows))
    for setting, paragraphs in out.items():
        if setting == ALL_SETTINGS:
            continue
        for question, reason in UNANSWERED.items():
            pooled = question == "explanation" and question in out.get(ALL_SETTINGS, {})
            if question not in paragraphs and not pooled:
                paragraphs[question] = [f"Not answered from these runs: {reason}."]
    order = list(QUESTIONS)
    return {
        setting: dict(sorted(paragraphs.items(), key=lambda item: order.index(item[0])))
        for setting, paragraphs in sorted(out.items(), key=lambda item: (item[0] == ALL_SETTINGS, item[0]))
    }
