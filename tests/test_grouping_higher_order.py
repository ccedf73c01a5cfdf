"""Standley et al.'s higher-order approximation of a grouping's Δm from the measured pairs, against a hand
computation on a small store with known errors."""

from __future__ import annotations

import pandas as pd
import pytest

from mtlens.analysis.grouping import higher_order_prediction, higher_order_table

ERRORS = {  # test error of each task in each run (every seed alike, plus a seed offset below)
    "a": {"a": 0.20},
    "b": {"b": 0.40},
    "c": {"c": 0.50},
    "a+b": {"a": 0.18, "b": 0.42},
    "a+c": {"a": 0.22, "c": 0.45},
    "b+c": {"b": 0.38, "c": 0.55},
    "a+b+c": {"a": 0.19, "b": 0.36, "c": 0.52},
}


def _values() -> pd.DataFrame:
    records = []
    for seed, offset in enumerate((-0.01, 0.0, 0.01)):  # offsets average out: seed means are ERRORS
        for group, errors in ERRORS.items():
            role = "stl" if len(errors) == 1 else "all" if group == "a+b+c" else "group"
            for task, error in errors.items():
                records.append(
                    {"run_id": f"{group}-{seed}", "seed": seed, "role": role, "group": group, "task": task}
                    | {"sign": -1.0, "test": error + offset, "val": error}
                )
    return pd.DataFrame.from_records(records)


def test_higher_order_prediction_by_hand():
    values = _values()
    # a+b | c: a as in the pair (0.18 vs 0.20: +10%), b as in the pair (0.42 vs 0.40: -5%), c alone: 0.
    assert higher_order_prediction(values, (("a", "b"), ("c",))).to_dict() == pytest.approx(
        {"a": 10.0, "b": -5.0, "c": 0.0}
    )
    # a+b+c: a = mean(0.18, 0.22) = 0.20 -> 0; b = mean(0.42, 0.38) = 0.40 -> 0; c = mean(0.45, 0.55) = 0.50 -> 0.
    assert higher_order_prediction(values, (("a", "b", "c"),)).to_dict() == pytest.approx({"a": 0, "b": 0, "c": 0})
    # the triple measured: a 0.19 (+5%), b 0.36 (+10%), c 0.52 (-4%): Δm = 11/3.
    table = higher_order_table(values, ["a", "b", "c"], 3)
    assert list(table["grouping"]) == ["a+b+c"]  # the only grouping with a group of 3 or more
    row = table.iloc[0]
    assert row["predicted_delta_m"] == pytest.approx(0.0, abs=1e-12)
    assert row["measured_delta_m"] == pytest.approx(11 / 3) and row["error"] == pytest.approx(-11 / 3)
    assert row["n_seeds"] == 3


def test_a_missing_pair_gives_no_prediction():
    values = _values()
    values = values[values["group"] != "a+c"]
    predicted = higher_order_prediction(values, (("a", "b", "c"),))
    assert predicted.isna().to_dict() == {"a": True, "b": False, "c": True}
