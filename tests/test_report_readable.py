"""A report people can read (issue 25): the answers in words, never stronger than the tests; short
tables with human headers and rounded numbers while the CSV keeps every column unrounded; notes where
the data is odd.  On synthetic stores with a planted truth (tests/report_stores.py), no training."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest

from mtlens.render.tables import cell, empty_columns, number, table_html
from mtlens.report.oddities import tie_notes
from mtlens.report.study_report import write_report
from mtlens.report.verdicts import answers, correlation_sentences, transfer_sentence
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
    assert "with 3 seeds no difference could reach the level 0.05" in few and "inf" not in few
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


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory):
    store = planted_store(tmp_path_factory.mktemp("planted") / "store", zero_step_task=None)
    return write_report(store, tmp_path_factory.mktemp("report") / "report")


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
        for name in (
            "transfer",
            "gap_onset",
            "optimization_effect",
            "probe_differences",
            "correlations",
            "alignment",
            "magnitude_ratio",
        )
        if (out / "tables" / f"{name}.csv").exists()
    }
    expected = {(s, q): sentences for s, paragraphs in answers(tables).items() for q, sentences in paragraphs.items()}
    assert answer_sentences(page) == expected
    transfer = expected[("planted", "transfer")]
    assert any(s.startswith("MTL (sum) made task a worse") for s in transfer)
    assert any(s.startswith("No effect of MTL (sum) on task b could be shown") for s in transfer)
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
