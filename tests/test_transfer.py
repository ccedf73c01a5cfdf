"""Transfer at the validation-selected checkpoint, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mtlens.analysis.transfer import delta_m, selected_checkpoints, transfer_table

INFO = {("s", "t"): {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True}}}


def _run(run_id: str, mode: str, seed: int, val_error: list[float], test_error: list[float]) -> pd.DataFrame:
    records = []
    for step, (v, t) in enumerate(zip(val_error, test_error)):
        for quantity, value in (("val/error", v), ("test/error", t), ("test/loss", 10 * t)):
            records.append({"run_id": run_id, "setting": "s", "mode": mode, "method": "sum", "seed": seed,
                            "task": "t", "step": step, "epoch": float(step), "quantity": quantity, "value": value})
    return pd.DataFrame(records)


def test_selection_uses_best_validation_step_and_reads_test_there():
    rows = _run("r", "stl", 0, [0.5, 0.2, 0.3, 0.2], [0.6, 0.25, 0.1, 0.05])
    selected = selected_checkpoints(rows, INFO)
    assert selected.loc[0, "step"] == 1  # the earliest of the tied best validation errors
    assert selected.loc[0, "test/error"] == 0.25 and selected.loc[0, "test/loss"] == 2.5


def test_transfer_table_matches_hand_computation():
    stl_tests, mtl_tests = [0.30, 0.32, 0.34], [0.20, 0.22, 0.27]
    rows = pd.concat(
        [_run(f"s{i}", "stl", i, [0.9, 0.1], [0.9, e]) for i, e in enumerate(stl_tests)]
        + [_run(f"m{i}", "mtl", i, [0.9, 0.1], [0.9, e]) for i, e in enumerate(mtl_tests)])
    table = transfer_table(rows, INFO)
    row = table.iloc[0]
    assert row["stl_mean"] == pytest.approx(np.mean(stl_tests))
    assert row["mtl_std"] == pytest.approx(np.std(mtl_tests, ddof=1))
    assert row["delta"] == pytest.approx(np.mean(mtl_tests) - np.mean(stl_tests))
    # Lower error is better, so an MTL improvement is a positive relative transfer.
    assert row["relative_pct"] == pytest.approx(100 * (np.mean(stl_tests) - np.mean(mtl_tests)) / np.mean(stl_tests))
    assert row["p_value"] == pytest.approx(stats.ttest_ind(mtl_tests, stl_tests, equal_var=False).pvalue)
    assert delta_m(table)["delta_m_pct"].iloc[0] == pytest.approx(row["relative_pct"])


def test_higher_is_better_metrics_flip_the_sign():
    info = {("s", "t"): {"selection_metric": "error", "lower_is_better": {"error": False}}}
    rows = pd.concat([_run("s0", "stl", 0, [0.1, 0.9], [0.1, 0.5]), _run("m0", "mtl", 0, [0.1, 0.9], [0.1, 0.6])])
    row = transfer_table(rows, info).iloc[0]
    assert row["relative_pct"] == pytest.approx(20.0) and np.isnan(row["p_value"])
