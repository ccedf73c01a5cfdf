"""A report people can read (issue 25): the answers in words, never stronger than the tests; short
tables with human headers and rounded numbers while the CSV keeps every column unrounded; notes where
the data is odd.  On synthetic stores with a planted truth (tests/report_stores.py), no training."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pdfplumber
import pytest
from torch import nn

from browser import cell_texts, page_marks, render_in_chromium, with_cell_check
from mtlens.data.bundled import load_sklearn_digits
from mtlens.errors import MtlensError
from mtlens.experiments import experiment_plan, run_experiment
from mtlens.render.pdf import print_pdf
from mtlens.render.tables import cell, empty_columns, number, table_html
from mtlens.report.oddities import early_window_notes, loss_range_notes, tie_notes
from mtlens.report.study_report import write_report
from mtlens.report.verdicts import (
    TABLES,
    UNANSWERED,
    answers,
    correlation_sentences,
    gap_sentence,
    optimization_sentence,
    optimizer_sentences,
    transfer_sentence,
)
from mtlens.settings import SETTINGS, Setting, Split, TaskData, register_setting
from mtlens.store import RunStore
from mtlens.tasks import classification_task
from report_stores import planted_store

TRANSFER_ROW = {
    "setting": "s",
    "task": "low",
    "method": "sum",
    "metric": "test/error",
    "stl_mean": 0.030,
    "mtl_mean": 0.061,
    "n_stl": 8,
    "n_mtl": 8,
    "design": "paired",
    "delta": 0.031,
    "delta_low": 0.012,
    "delta_high": 0.050,
    "p_value": 0.004,
    "p_adjusted": 0.02,
    "min_p": 2 / 2**8,
    "min_detectable": 0.014,
    "verdict": "MTL worse",
}


def test_gap_sentence_gives_the_band_at_its_level_and_errors_in_points():
    """The band of a found gap is at the BH-adjusted band_level (98.75% when 1 of 4 curves is selected at
    0.05), not at 1 − alpha; an error gap is in points, as the transfer sentence writes errors."""
    row = {
        "method": "sum",
        "task": "low",
        "measure": "val/error",
        "direction": "MTL worse",
        "design": "paired",
        "n_mtl": 8,
        "n_stl": 8,
        "onset_epoch_mtl": 10.8,
        "onset_train_loss": 0.18,
        "final_gap": 0.026,
        "final_band_low": 0.0018,
        "final_band_high": 0.067,
        "band_level": 0.0125,
        "p_persistent_adjusted": 0.04,
        "min_detectable_final": 0.02,
    }
    found = gap_sentence(pd.DataFrame([row]), 0.05)
    assert "where it was +2.6 points (98.75% band +0.18 to +6.7 points, adjusted p = 0.040)" in found
    assert "from epoch 11 of MTL (training loss 0.18) to the lowest common training loss, where" in found
    # An onset at the end level itself is one level, not a span.
    end = gap_sentence(pd.DataFrame([{**row, "end_train_loss": 0.18}]), 0.05)
    assert "gap at the lowest common training loss only (epoch 11 of MTL), where it was" in end
    none = gap_sentence(pd.DataFrame([{**row, "direction": "no persistent gap", "measure": "val/loss"}]), 0.05)
    assert "with 8 seeds a final gap of 0.020 in validation loss would have been detected" in none
    # No gap can be shown: the level named is the family's band_level the detectable gap was computed at, not
    # alpha (3 vs 5 unpaired runs: the permutation floor 0.018 is below 0.05 but above 0.0125).
    unpaired = {**row, "design": "unpaired", "n_stl": 3, "n_mtl": 5, "min_p": 0.018, "min_detectable_final": math.inf}
    none = gap_sentence(pd.DataFrame([{**unpaired, "direction": "no persistent gap"}]), 0.05)
    assert none.endswith(
        "with 3 STL and 5 MTL runs no final gap could reach this family's level 0.0125 (smallest possible p 0.018)."
    )


def test_sentence_states_only_what_the_test_shows():
    assert transfer_sentence(TRANSFER_ROW, 0.05) == (
        "MTL (sum) made task low worse: test error 3.0% → 6.1% (paired over 8 seeds, 95% interval +1.2 to "
        "+5.0 points, adjusted p = 0.020)."
    )
    # The same difference without a verdict (adjusted p above the level) is a null, with the power it had.
    null = transfer_sentence({**TRANSFER_ROW, "p_adjusted": 0.094, "verdict": "no evidence"}, 0.05)
    assert null.startswith("No effect of MTL (sum) on task low could be shown") and "worse" not in null
    assert "a difference of 1.4 points would have been detected with 80% power" in null
    # Too few seeds: the sentence says no difference could reach the level, never "inf".
    few = transfer_sentence({**TRANSFER_ROW, "n_mtl": 3, "min_detectable": math.inf, "verdict": "no evidence"}, 0.05)
    assert "with 3 seeds no difference could reach the level 0.05 (smallest possible p" in few and "inf" not in few
    # ... and where a lone effect cannot reach the table's lone level, that level is the one named.
    few = {**TRANSFER_ROW, "n_mtl": 3, "min_p": 0.02, "lone_level": 0.0125, "min_detectable_lone": math.inf}
    few = transfer_sentence({**few, "verdict": "no evidence"}, 0.05)
    assert few.endswith("no difference could reach this family's level 0.0125 (smallest possible p 0.020).")
    # What a lone effect of the table needs after BH (min_detectable_lone) is what the sentence states.
    lone = transfer_sentence({**TRANSFER_ROW, "min_detectable_lone": 0.0347, "verdict": "no evidence"}, 0.05)
    assert "a difference of 3.5 points would have been detected with 80% power as the one effect" in lone
    # An unadjusted interval that excludes 0 beside "could not be shown" says it is so only before BH.
    before = transfer_sentence({**TRANSFER_ROW, "p_adjusted": 0.094, "verdict": "no evidence"}, 0.05)
    assert "+5.0 points, which excludes 0 only before Benjamini–Hochberg over the table, adjusted p = 0.094" in before
    across = {**TRANSFER_ROW, "delta_low": -0.002, "p_adjusted": 0.094, "verdict": "no evidence"}
    assert "only before" not in transfer_sentence(across, 0.05)
    ratio = {"method": "sum", "task": "a", "log_ratio_final": 1.2, "log_ratio_final_low": 0.6, "n_seeds": 4}
    ratio |= {"log_ratio_final_high": 1.8, "log_ratio_final_p_adjusted": 0.058}
    assert "6.0, which excludes 1 only before Benjamini–Hochberg over the table, adjusted p = 0.058" in (
        optimization_sentence(ratio, 0.05)
    )
    assert "only before" not in optimization_sentence({**ratio, "log_ratio_final_p_adjusted": 0.01}, 0.05)
    # An adjusted p just above the level is not rounded onto it beside "could not be shown".
    near = transfer_sentence({**TRANSFER_ROW, "p_adjusted": 0.0504, "verdict": "no evidence"}, 0.05)
    assert "adjusted p = 0.0504)" in near and "0.050)" not in near
    lattice = transfer_sentence({**TRANSFER_ROW, "p_adjusted": 6521 / 131073 + 2.5e-4, "verdict": ""}, 0.05)
    assert "adjusted p = 0.050001)" in lattice  # a lattice point of the family-bound p-value
    assert "adjusted p = 0.094)" in transfer_sentence({**TRANSFER_ROW, "p_adjusted": 0.094, "verdict": ""}, 0.05)
    # The interval's confidence unrounded (":.0%" printed "100%" at alpha 0.005).
    assert "99.5% interval" in transfer_sentence(TRANSFER_ROW, 0.005)
    # No test (one seed): said so, no dashes or nan; no spread: no power claimed; beyond 100 points: said so.
    none = transfer_sentence({**TRANSFER_ROW, "design": "none", "n_mtl": 1, "n_stl": 1, "verdict": ""}, 0.05)
    assert "could not be tested" not in none and "could be tested: test error 3.0% → 6.1% (1 STL and 1 MTL runs" in none
    flat = transfer_sentence({**TRANSFER_ROW, "min_detectable": 0.0, "verdict": "no evidence"}, 0.05)
    assert "do not vary" in flat and "a difference of 0 " not in flat
    # the analysis gives NaN there now (no spread, no power), with the lone column too
    flat = transfer_sentence(
        {**TRANSFER_ROW, "min_detectable": math.nan, "min_detectable_lone": math.nan, "verdict": ""}, 0.05
    )
    assert "do not vary" in flat and "reach the level" not in flat and "one effect among" not in flat
    huge = transfer_sentence({**TRANSFER_ROW, "min_detectable": 4.9, "verdict": "no evidence"}, 0.05)
    assert "not even the largest possible difference (100 points)" in huge and "490" not in huge
    # Unpaired runs are not seeds of pairs.
    unpaired = {**TRANSFER_ROW, "design": "unpaired", "n_stl": 3, "n_mtl": 2, "verdict": "no evidence"}
    assert "with 3 STL and 2 MTL runs a difference of 1.4 points" in transfer_sentence(unpaired, 0.05)
    # A correlation whose min_p allows 0.05 ("conclusive") but whose adjusted p is 0.094 is not a finding.
    correlations = pd.DataFrame(
        [
            {
                "x": "coherence_diff",
                "y": "transfer_pct",
                "n": 8,
                "n_groups": 8,
                "pearson_r": 0.7,
                "pearson_low": 0.1,
                "pearson_high": 0.9,
                "pearson_p_adjusted": 0.094,
                "min_p": 0.004,
                "conclusive": True,
            }
        ]
    )
    [sentence] = correlation_sentences(correlations, 0.05)
    assert sentence.startswith("No correlation") and "adjusted p = 0.094" in sentence
    assert "rose" in correlation_sentences(correlations.assign(pearson_p_adjusted=0.01), 0.05)[0]
    # Elich et al.'s Adam vs SGD: described, with no test claimed.
    optimizers = pd.DataFrame(
        [
            {
                "setting": "s",
                "task": "a",
                "mode": "stl",
                "method": "-",
                "metric": "test/error",
                "adam": "0.1 ± 0.01 (n=2)",
                "sgd (momentum 0.9)": "0.2 (n=1)",
            }
        ]
    )
    assert optimizer_sentences(optimizers) == [
        "STL test/error of task a by optimizer: adam 0.1 ± 0.01 (n=2); sgd (momentum 0.9) 0.2 (n=1) "
        "(descriptive, no test)."
    ]


def test_what_cannot_be_read_is_said_not_read():
    """Correlations with too few clusters quote no p-value, uncomputable ones are named; a question a
    setting's tables cannot answer gets a sentence saying why; alignment caveats name only kinds present."""
    row = {"x": "coherence_diff", "y": "transfer_pct", "n": 4, "n_groups": 2, "conclusive": False}
    cosines = {"pearson_r": -0.89, "pearson_low": math.nan, "pearson_high": math.nan, "pearson_p_adjusted": 1.0}
    flat = {"pearson_r": math.nan, "pearson_low": math.nan, "pearson_high": math.nan, "pearson_p_adjusted": math.nan}
    few = pd.DataFrame([{**row, **cosines}, {**row, "x": "conflict_cosine", **flat}])
    [sentence] = correlation_sentences(few, 0.05)
    assert "adjusted p" not in sentence and "can be judged at 0.05 from these runs (2 pairs)" in sentence
    assert "2 of them have too few clusters" in sentence and "1 have no correlation to give" in sentence
    # With one readable row the smallest adjusted p is that row's, never an unreadable one's.
    readable = {**row, "conclusive": True, "x": "sharpness_diff", **cosines, "pearson_low": -0.95}
    readable |= {"pearson_high": -0.3, "pearson_p_adjusted": 0.2}
    [sentence] = correlation_sentences(pd.concat([few, pd.DataFrame([readable])]), 0.05)
    assert "smallest adjusted p = 0.20, Pearson, transfer_pct with sharpness_diff" in sentence
    # An STL-only setting: its alignment is described, every other question says why it is not answered,
    # and no caveat compares inter-task cosines that are not there.
    alignment = pd.DataFrame([{"setting": "s", "kind": "intra-task, class groups (STL)", "median": -0.7}])
    paragraphs = answers({"alignment": alignment})["s"]
    assert list(paragraphs) == ["transfer", "gap", "optimization", "explanation", "elich"]
    assert paragraphs["transfer"] == [f"Not answered from these runs: {UNANSWERED['transfer']}."]
    assert paragraphs["elich"] == [
        "Median gradient cosines: intra-task, class groups (STL) −0.70 (descriptive, no test)."
    ]
    inter = pd.DataFrame([{"setting": "s", "kind": "inter-task (MTL)", "median": 0.1}])
    [both] = answers({"alignment": pd.concat([alignment, inter])})["s"]["elich"]
    assert "not comparable as printed" in both and "inter_alignment" in both
    like = pd.DataFrame([{"setting": "s", "kind": "inter-task, sub-batches (MTL)", "median": 0.0}])
    [alike] = answers({"alignment": pd.concat([alignment, inter, like])})["s"]["elich"]
    assert "differ only in the task of the second gradient" in alike and "not comparable" not in alike


def test_cells_are_for_people_and_the_csv_for_machines(tmp_path):
    frame = pd.DataFrame(
        {
            "setting": ["digits_pair", "digits_pair"],
            "delta": [0.0312500, -0.004536],
            "p_adjusted": [0.0004, 0.31234],
            "min_detectable": [math.inf, 0.012345],
            "n_mtl": [3, 8],
            "sharpness_diff": [np.nan, np.nan],
            "verdict": [None, "MTL worse"],
        }
    )
    assert [number(v) for v in (0.03125, -0.004536, 1234.5, 0.09996, 2.0)] == [
        "0.0312",
        "−0.00454",
        "1,234",
        "0.100",
        "2.00",
    ]
    assert cell("min_detectable", math.inf, {"n_mtl": 3}) == "not reachable with 3 seeds"
    assert cell("p_adjusted", 0.0004, {}) == "< 0.001" and cell("verdict", None, {}) == "—"
    assert empty_columns(frame) == ["sharpness_diff"]
    text = table_html(frame, tmp_path, "t", "caption", short=["setting", "delta", "verdict"])
    visible = re.findall(r"<td>([^<]*)</td>", text)
    assert visible == ["digits_pair", "0.0312", "—", "digits_pair", "−0.00454", "MTL worse"]
    assert 'class="more"' in text and "sharpness" not in text.split("Empty columns not shown")[1].split("</p>")[1]
    assert "not reachable with 3 seeds" in text and not re.search(r">(None|NaN|nan|inf)<", text)
    assert 'title="Benjamini' in html.unescape(text)  # a definition on hover
    saved = pd.read_csv(tmp_path / "tables" / "t.csv")
    assert list(saved.columns) == list(frame.columns) and saved["delta"].tolist() == [0.03125, -0.004536]


def test_tie_note():
    selected = pd.DataFrame(
        {
            "setting": "s",
            "run_id": ["r1", "r2"],
            "task": "a",
            "mode": ["stl", "mtl"],
            "method": ["sum", "sum"],
            "seed": 0,
            "step": [10, 10],
            "epoch": 0.2,
        }
    )
    rows = pd.DataFrame(
        {
            "setting": "s",
            "run_id": ["r1", "r1", "r1", "r2", "r2"],
            "task": "a",
            "quantity": "val/error",
            "step": [0, 10, 20, 0, 10],
            "value": [0.5, 0.2, 0.2, 0.5, 0.3],
        }
    )
    notes = tie_notes(rows, selected, {("s", "a"): {"selection_metric": "error", "lower_is_better": {"error": True}}})
    assert notes["note"].tolist() == [
        "selection tie in 1 of 2 runs (best validation value at several steps; earliest taken)"
    ]


def test_early_window_and_loss_range_notes():
    """A run evaluated at steps 0 and 100 only has nothing but step 0 in its early window; a run whose
    lowest training loss is 5 times the others' limits the common loss range."""
    loss = pd.DataFrame(
        {
            "setting": "s",
            "task": "a",
            "method": "sum",
            "mode": "mtl",
            "quantity": "train/loss",
            "step": [0, 100, 0, 10, 100],
            "run_id": ["r1", "r1", "r2", "r2", "r2"],
            "value": 1.0,
        }
    )
    assert early_window_notes(loss[loss["run_id"] == "r1"])["note"].str.contains("only step 0").all()
    assert early_window_notes(loss[loss["run_id"] == "r2"]).empty
    checkpoints = pd.DataFrame(
        {
            "setting": "s",
            "task": "a",
            "run_id": ["s0", "s1", "s2", "m0", "m1", "m2"],
            "mode": ["stl"] * 3 + ["mtl"] * 3,
            "method": ["sum"] * 6,
            "seed": [0, 1, 2, 0, 1, 2],
            "train/loss": [0.1, 0.1, 0.5, 0.1, 0.1, 0.1],
        }
    )
    [note] = loss_range_notes(checkpoints)["note"]
    assert note.startswith("STL seed 2 limits the common training-loss range") and "0.5" in note


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory):
    """The report of the default planted store (8 seeds, MTL method sum: 24 runs), printed to PDF as well
    (``--formats pdf``)."""
    store = planted_store(tmp_path_factory.mktemp("planted") / "store", zero_step_task=None)
    return write_report(store, tmp_path_factory.mktemp("report") / "report", formats=["pdf"])


def answer_sentences(page: str) -> dict[tuple[str, str], list[str]]:
    """The report's sentences per (setting, question), read from its HTML."""
    found: dict[tuple[str, str], list[str]] = {}
    for setting, block in re.findall(r'<div class="answers" data-setting="([^"]*)">(.*?)</div>', page):
        for question, paragraph in re.findall(r'<p class="answer" data-question="([a-z]+)">(.*?)</p>', block):
            found[(html.unescape(setting), question)] = [
                html.unescape(s) for s in re.findall(r'<span class="sentence">(.*?)</span>', paragraph)
            ]
    return found


def test_sentences_match_the_csv_tables(planted_report):
    """The sentences regenerated from the CSV tables the report wrote are the ones in its HTML, and they
    state the planted truth: MTL worse on task a (significant), an honest null on task b."""
    out, page = planted_report.parent, planted_report.read_text()
    tables = {
        name: pd.read_csv(out / "tables" / f"{name}.csv")
        for name in TABLES
        if (out / "tables" / f"{name}.csv").exists()
    }
    expected = {(s, q): sentences for s, paragraphs in answers(tables).items() for q, sentences in paragraphs.items()}
    assert answer_sentences(page) == expected
    transfer = expected[("planted", "transfer")]
    assert any(s.startswith("MTL (sum) made task a worse") for s in transfer)
    assert any(s.startswith("No effect of MTL (sum) on task b could be shown") for s in transfer)
    [agreement] = expected[("planted", "agreement")]  # only task a has a transfer verdict; its gap agrees
    assert agreement.startswith("Transfer and the gap agree for MTL (sum) on task a: worse test error")
    verdicts = pd.read_csv(out / "tables" / "transfer.csv").set_index("task")["verdict"]
    assert verdicts.to_dict() == {"a": "MTL worse", "b": "no evidence"}
    assert page.index('<section id="answers">') < page.index('<section id="summary">')


def test_oddities_are_noted_next_to_their_rows(tmp_path):
    store = planted_store(tmp_path / "store", seeds=range(3), zero_step_task="b", collapse=True)
    out = write_report(store, tmp_path / "report").parent
    transfer = pd.read_csv(out / "tables" / "transfer.csv").set_index("task")
    assert "checkpoint selected at step 0 (untrained) in 3 of 3 STL, 3 of 3 MTL runs" in transfer.loc["b", "note"]
    assert "task weights collapsed onto task a" in transfer.loc["a", "note"]
    assert "step 0" not in transfer.loc["a", "note"]


BAD_TEXT = re.compile(r"\b(None|NaN|nan|inf|-inf)\b")


def figures_in_pdf(
    pdf: Path, kinds: tuple[str, ...] = ("curves",), keep: Callable[[dict], bool] = lambda _: True
) -> dict[int, int]:
    """Per figure number: the curves (Vega's lines and areas; table borders are lines and rectangles)
    drawn in the 500 points above its caption ("Figure N.") on the caption's page, read from the PDF's
    pages with pdfplumber; ``kinds=("curves", "rects")`` counts rectangles too (a heatmap's cells), and only
    the objects ``keep`` accepts (e.g. :func:`coloured`)."""
    drawn = {}
    with pdfplumber.open(pdf) as document:
        for page in document.pages:
            for match in page.search(r"Figure (\d+)\.", regex=True):
                top = match["top"]
                objects = [o for kind in kinds for o in getattr(page, kind)]
                drawn[int(match["groups"][0])] = sum(
                    1 for o in objects if top - 500 <= o["bottom"] <= top + 1 and keep(o)
                )
    return drawn


def coloured(pdf_object: dict) -> bool:
    """Filled in a colour that is neither a grey (table text and borders) nor a link's pure blue: a figure's
    data marks (heatmap cells, points, lines)."""
    colour = pdf_object.get("non_stroking_color")
    if not (isinstance(colour, (tuple, list)) and len(colour) == 3):
        return False
    return max(colour) - min(colour) > 0.05 and not (colour[0] == colour[1] == 0)


@pytest.mark.integration  # Chromium
@pytest.mark.parametrize("methods", [("sum",), ("sum", "pcgrad", "cagrad", "mgda")], ids=["demo-like", "four-methods"])
def test_report_reads_well_in_chromium_and_in_print(methods, tmp_path, request):
    """At 1280 px: no table cell breaks inside a word or number, no None/NaN/inf in a cell, the answers
    are there; printed to PDF (``--formats pdf``), every figure is drawn above its caption.  One method: the
    module's planted report (the same store); four methods: 48 runs."""
    if len(methods) == 1:
        page = request.getfixturevalue("planted_report")
    else:
        page = write_report(planted_store(tmp_path / "store", methods=methods), tmp_path / "report")
    checked = with_cell_check(page, page.with_name("checked.html"))
    dom, console = render_in_chromium(checked, tmp_path)
    marks = page_marks(dom)
    n_figures = page.read_text().count("<figure ")
    assert marks["charts-done"] == str(n_figures) and marks["chart-errors"] == "0", (marks, console)
    visible, every = map(int, marks["cells"].split("/"))
    assert 0 < visible < every, marks  # the short tables hide columns that "all columns" shows
    assert marks["broken-cells"] == "0", marks["broken-examples"]
    assert (
        marks["overflow"] == "no" and float(marks["answers-top"]) < 700
    )  # the answers start on a laptop's first screen
    assert not [t for t in cell_texts(dom) if BAD_TEXT.search(t)]
    sentences = re.findall(r'<span class="sentence">(.*?)</span>', dom)
    assert any(s.startswith("MTL (sum) made task a worse") for s in sentences)
    assert len(sentences) >= 3 * len(methods)

    pdf = page.with_name("report.pdf")
    if len(methods) > 1:
        print_pdf(page, pdf)
    drawn = figures_in_pdf(pdf)
    assert sorted(drawn) == list(range(1, n_figures + 1)) and min(drawn.values()) > 20, drawn


@pytest.mark.integration  # Chromium
def test_cell_check_and_pdf_check_can_fail(tmp_path, planted_report):
    """The checks above catch a cell that breaks inside a number and figures missing from the print."""
    narrow = planted_report.with_name("narrow.html")
    narrow.write_text(
        planted_report.read_text().replace(
            "table.table td{white-space:nowrap}", "table.table td{max-width:1.5em;overflow-wrap:anywhere}"
        )
    )
    marks = page_marks(render_in_chromium(with_cell_check(narrow, tmp_path / "narrow.html"), tmp_path)[0])
    assert int(marks["broken-cells"]) > 0
    blank = planted_report.with_name("blank.html")  # the figures' specs never rendered
    blank.write_text(planted_report.read_text().replace("vegaEmbed(el,spec", "Promise.resolve(el,spec"))
    drawn = figures_in_pdf(print_pdf(blank, tmp_path / "blank.pdf"))
    assert drawn and max(drawn.values()) < 20  # where every figure of a drawn report has more (test above)


def test_pdf_without_chromium_is_refused_before_writing(tmp_path, monkeypatch):
    store = planted_store(tmp_path / "store", seeds=range(2))
    monkeypatch.setattr("mtlens.render.pdf.shutil.which", lambda name: None)
    with pytest.raises(MtlensError, match="headless Chromium, which is not installed"):
        write_report(store, tmp_path / "report", formats=["pdf"])
    assert not (tmp_path / "report").exists()


GROUPING_TASKS = {"even": lambda d: d % 2 == 0, "ge5": lambda d: d >= 5, "small": lambda d: d < 3}


def grouping_digits() -> Setting:
    """Three binary tasks (even, >= 5, < 3) on 300 of scikit-learn's 8x8 digits: a grouping store in seconds."""
    images, digits = load_sklearn_digits()
    x = images[:300].flatten(1)
    cuts = {"train": slice(0, 150), "val": slice(150, 225), "test": slice(225, 300)}
    data = {
        name: TaskData("digits", **{s: Split(x[c], rule(digits[c]).long()) for s, c in cuts.items()})
        for name, rule in GROUPING_TASKS.items()
    }
    tasks = tuple(classification_task(name, 2) for name in GROUPING_TASKS)
    return Setting("grouping_digits", tasks, data, lambda: nn.Sequential(nn.Linear(64, 16), nn.ReLU()), 16)


@pytest.fixture(scope="module")
def grouping_report(tmp_path_factory):
    """The report of a grouping study on ``grouping_digits`` (3 seeds, 2 epochs: 21 runs) with its PDF."""
    register_setting("grouping_digits", data=("sklearn_digits",))(grouping_digits)
    root = tmp_path_factory.mktemp("grouping")
    base = {"setting": "grouping_digits", "epochs": 2, "batch_size": 50, "train_eval_size": 50}
    plan = experiment_plan("grouping", base | {"probe_sample_size": 50}, [0, 1, 2], budget=2)
    store = RunStore(root / "store")
    assert set(run_experiment(plan, store, progress=False)["state"]) == {"finished"}
    yield write_report(store, root / "report", formats=["pdf"])
    SETTINGS.unregister("grouping_digits")


@pytest.mark.integration  # Chromium
def test_grouping_section_reads_well_in_chromium_and_in_print(grouping_report, tmp_path):
    """The "Which tasks to train together?" section at 1280 px: its heatmaps (measured transfer, affinities)
    and the predicted-vs-measured scatter are drawn, its tables (pairwise transfer, correlations, groupings,
    Standley's higher-order approximation)
    show no None/NaN/inf and no cell breaks inside a token; in the PDF every figure is drawn."""
    page = grouping_report
    html_text = page.read_text()
    section = re.search(r'<section id="assumptions-grouping-grouping_digits">(.*?)</section>', html_text, flags=re.S)
    assert section and "Which tasks to train together?" in section.group(0)
    names = re.findall(r'<figure id="fig-(grouping_[a-z]+)_grouping_digits">', section.group(1))
    assert names == ["grouping_transfer", "grouping_affinity", "grouping_scatter"], names
    kinds = "transfer|correlations|results|higher_order|results_all"
    tables = re.findall(rf"grouping_(?:{kinds})_grouping_digits\.csv", html_text)
    assert len(set(tables)) == 5, tables
    results = pd.read_csv(page.parent / "tables" / "grouping_results_grouping_digits.csv")
    assert "all together" in set(results["choice"]) and results["delta_m"].notna().all()

    # The cell check on this section's tables only (elsewhere, a note cell of the optimization section may wrap
    # at the hyphen of "log-ratio" on a store this short: noted, not this section's).
    checked = with_cell_check(page, page.with_name("checked.html"), scope="#assumptions-grouping-grouping_digits")
    dom, console = render_in_chromium(checked, tmp_path)
    marks = page_marks(dom)
    assert int(marks["cells"].split("/")[0]) > 20, marks  # the section's tables were checked
    n_figures = html_text.count("<figure ")
    assert marks["charts-done"] == str(n_figures) and marks["chart-errors"] == "0", (marks, console)
    assert marks["broken-cells"] == "0", marks["broken-examples"]
    rendered = re.search(r'<section id="assumptions-grouping-grouping_digits">(.*?)</section>', dom, flags=re.S)
    assert rendered
    for name in names:  # each grouping figure has its drawing (Vega's SVG or canvas) in the page
        figure = re.search(rf'<figure id="fig-{name}_grouping_digits">(.*?)</figure>', rendered.group(1), re.S)
        assert figure and re.search(r"<(svg|canvas)\b", figure.group(1)), name
    assert not [t for t in cell_texts(rendered.group(1)) if BAD_TEXT.search(t)]
    assert cell_texts(rendered.group(1))

    # In the PDF: above each grouping figure's caption at least its 6 data marks (cells of the 3 x 3 heatmaps
    # without the diagonal, points of the scatter) in colour, where the same page printed with no figure drawn
    # has none (tables print in greys).
    drawn = figures_in_pdf(page.with_name("report.pdf"), ("curves", "rects"), coloured)
    blank = page.with_name("blank.html")
    blank.write_text(html_text.replace("vegaEmbed(el,spec", "Promise.resolve(el,spec"))
    undrawn = figures_in_pdf(print_pdf(blank, tmp_path / "blank.pdf"), ("curves", "rects"), coloured)
    order = re.findall(r'<figure id="fig-([^"]+)"', html_text)
    assert sorted(drawn) == sorted(undrawn) == list(range(1, n_figures + 1)), (drawn, undrawn)
    for name in names:
        number = order.index(f"{name}_grouping_digits") + 1
        assert drawn[number] >= 6 and undrawn[number] == 0, (name, drawn[number], undrawn[number])
