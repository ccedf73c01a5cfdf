"""A correlation is stated as found only where its permutation p-value and its jackknife interval agree
(docs/statistics.md §6, §10): the two come from different methods and can disagree."""

import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.correlation import correlation_claim, correlation_table
from mtlens.report.correlations import scatter_figures
from mtlens.report.verdicts import correlation_sentences

ROW = {
    "x": "fx",
    "y": "ty",
    "n": 36,
    "n_groups": 6,
    "pearson_r": 0.21,
    "pearson_low": -0.41,
    "pearson_high": 0.70,
    "pearson_p_adjusted": 0.0042,
    "spearman_rho": 0.2,
    "spearman_low": -0.4,
    "spearman_high": 0.6,
    "min_p": 1 / 720,
    "conclusive": True,
}


def _sentence(**changes: object) -> str:
    [sentence] = correlation_sentences(pd.DataFrame([{**ROW, **changes}]), 0.05)
    return sentence


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        ({}, "test only"),
        ({"pearson_low": 0.05}, "shown"),
        ({"pearson_high": -0.05, "pearson_low": -0.5, "pearson_r": -0.3}, "shown"),
        ({"pearson_low": 0.1, "pearson_p_adjusted": 0.2}, "interval only"),
        ({"pearson_p_adjusted": 0.2}, "not shown"),
        ({"pearson_p_adjusted": float("nan")}, "not shown"),
        (
            {"conclusive": False, "pearson_low": 0.756, "pearson_high": 0.926, "pearson_p_adjusted": 1.0},
            "too few clusters",
        ),
    ],
)
def test_claim_needs_both_the_test_and_the_interval(changes: dict[str, object], claim: str) -> None:
    assert correlation_claim({**ROW, **changes}, 0.05) == claim


def test_claim_reads_min_p_without_conclusive() -> None:
    row = {k: v for k, v in ROW.items() if k != "conclusive"}
    assert (
        correlation_claim({**row, "min_p": 1 / 6, "pearson_low": 0.7, "pearson_high": 0.9}, 0.05) == "too few clusters"
    )
    assert correlation_claim({**row, "pearson_low": 0.1}, 0.05) == "shown"


def test_sentence_does_not_state_a_correlation_whose_interval_reaches_zero() -> None:
    # The audit's study: adjusted p 0.0042, jackknife interval −0.41 to 0.70 ("ty rose with fx" before).
    sentence = _sentence()
    assert "rose" not in sentence and sentence.startswith("No correlation")
    assert "the permutation test rejects but the jackknife interval reaches 0: not conclusive" in sentence
    assert "adjusted p = 0.0042" in sentence


def test_sentence_does_not_read_the_interval_of_too_few_clusters() -> None:
    # 3 seeds: min_p 1/6, p 0.333 (adjusted 1), yet an interval 0.756 to 0.926 that excludes 0.
    sentence = _sentence(conclusive=False, min_p=1 / 6, pearson_low=0.756, pearson_high=0.926, pearson_p_adjusted=1.0)
    assert "rose" not in sentence and "excludes 0" not in sentence
    assert "too few clusters" in sentence


def test_sentence_says_when_only_the_interval_excludes_zero() -> None:
    sentence = _sentence(pearson_low=0.1, pearson_p_adjusted=0.2)
    assert "rose" not in sentence
    assert "the jackknife interval excludes 0 but the permutation test does not reject: not conclusive" in sentence


def test_sentence_states_a_correlation_both_show() -> None:
    assert "ty rose with fx" in _sentence(pearson_low=0.05)
    assert "ty fell with fx" in _sentence(pearson_r=-0.3, pearson_low=-0.5, pearson_high=-0.05)


def test_scatter_caption_says_what_each_panel_shows() -> None:
    table = pd.DataFrame([ROW, {**ROW, "x": "gx", "conclusive": False, "pearson_low": 0.7, "pearson_high": 0.9}])
    units = pd.DataFrame(
        {"setting": "s", "task": "a", "seed": [0, 1, 2], "method": "m", "fx": 1.0, "gx": 1.0, "ty": 1.0}
    )
    rows = pd.DataFrame({"run_id": ["r"]})
    [figure] = scatter_figures(rows, units, table, 0.05)
    assert (
        "fx: " in figure.caption
        and "the permutation test rejects but the jackknife interval reaches 0" in figure.caption
    )
    assert "too few clusters for any p-value to reach 0.05: no conclusion" in figure.caption


def test_the_audits_study_is_not_stated_as_a_correlation() -> None:
    # 6 seeds × 2 tasks × 3 methods, heavy-tailed values: the 5th study of this stream has permutation
    # p 0.0042 but jackknife interval −0.41 to 0.70; the report printed "ty rose with fx" before.
    rng = np.random.default_rng(11)
    s, t, m = (a.ravel() for a in np.meshgrid(np.arange(6), np.arange(2), np.arange(3), indexing="ij"))
    for _ in range(5):
        x = rng.standard_t(3, size=len(s))
        y = 0.3 * x + rng.standard_t(3, size=len(s))
    units = pd.DataFrame(
        {"setting": "syn", "task": np.array(["a", "b"])[t], "seed": s, "method": np.array(["m1", "m2", "m3"])[m]}
    ).assign(fx=x, ty=y)
    table = correlation_table(units, pairs=[("fx", "ty")], n_perm=999)
    row = table.iloc[0]
    assert row["pearson_p_adjusted"] <= 0.05 and row["pearson_low"] < 0 < row["pearson_high"]
    [sentence] = correlation_sentences(table, 0.05)
    assert "rose" not in sentence and "jackknife interval reaches 0: not conclusive" in sentence
