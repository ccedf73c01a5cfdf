"""The report's vectorised building blocks give exactly what the straightforward versions give: the
figure data's CSV text is ``DataFrame.to_csv``'s, stacked columns are ``pandas.concat``'s, the selected
checkpoints of all runs at once are those of a loop over each (run, task), and the gap analysis from one
pivot of every task's checkpoints is the per-task :func:`generalization_gap`."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mtlens.analysis.gap import bound_of_gaps, generalization_gap
from mtlens.analysis.inference import symmetry_diagnostic
from mtlens.analysis.transfer import selected_checkpoints, selection_info
from mtlens.render.charts import SIGNIFICANT_DIGITS, concat, inline_data, line_chart, spec, stack_columns, with_data
from mtlens.report.study_report import GAP_MEASURES, gap_checkpoints, gap_section
from mtlens.tasks import selection_scores


def _to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format=f"%.{SIGNIFICANT_DIGITS}g", lineterminator="\n")


AWKWARD = pd.DataFrame(
    {
        "float": [1.23456789, np.nan, -0.0, np.inf, 1e-300, 123456.0],
        "int": [1, 2, 3, 4, 5, 123456],
        "text": ["x", "y,z", 'q"r', None, "a\nb", ""],
        "bool": [True, False, True, True, False, True],
        "nullable": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        "a b,c": pd.Series(["s", "t", None, "u", "v", "w"], dtype="str"),
        "mixed": np.array([1, True, 1.0, None, np.nan, "x"], dtype=object),
    }
)


@pytest.mark.parametrize(
    "frame",
    [
        AWKWARD,
        pd.DataFrame({"only": [np.nan, 1.0]}),  # a row of one empty field is written as ""
        pd.DataFrame({"only": ["", "x"]}),
        pd.DataFrame({"a": [], "b": []}),
    ],
)
def test_figure_data_is_the_text_to_csv_writes(frame):
    data = inline_data(frame)
    assert data["values"] == _to_csv(frame)
    assert data["format"]["parse"] == {c: "number" for c, dtype in frame.dtypes.items() if dtype.kind in "iuf"}


def test_stacked_columns_have_the_values_and_dtypes_of_concat():
    first = pd.DataFrame({"series": ["a", "b"], "x": [0.5, 1.0], "n": [3, 3], "flag": [True, False]})
    second = pd.DataFrame({"series": ["a", "a", "b"], "x": [1, 2, 3], "seed": [0, 1, 2], "run": [0, 1, 2]})
    expected = pd.concat([first, second], ignore_index=True)
    stacked = stack_columns([{c: f[c].to_numpy() for c in f.columns} for f in (first, second)])
    assert list(stacked) == list(expected.columns)
    for column, values in stacked.items():
        assert values.dtype.kind == ("O" if expected[column].dtype.kind in "OT" else expected[column].dtype.kind)
    assert inline_data(stacked)["values"] == _to_csv(expected)


def _selected_by_loop(rows: pd.DataFrame, info: dict) -> pd.DataFrame:
    """The definition, one (run, task) at a time: the first step of the smallest selection score."""
    records = []
    for (setting, run_id, task), frame in rows.groupby(["setting", "run_id", "task"], sort=True):
        chosen = selection_info(info, setting, task)
        metric = chosen["selection_metric"]
        val = frame[frame["quantity"] == f"val/{metric}"].sort_values("step", kind="stable")
        if val.empty:
            continue
        best = int(np.argmin(selection_scores(val["value"].to_numpy(float), chosen["lower_is_better"].get(metric))))
        step = int(val["step"].iloc[best])
        at = frame[(frame["step"] == step) & frame["quantity"].str.startswith("test/")]
        first = frame.iloc[0]
        records.append(
            {"setting": setting, "run_id": run_id, "task": task, "mode": first["mode"], "method": first["method"]}
            | {"seed": int(first["seed"]), "step": step, "epoch": float(val["epoch"].iloc[best])}
            | dict(zip(at["quantity"], at["value"]))
        )
    return pd.DataFrame.from_records(records)


def test_selected_checkpoints_of_all_runs_at_once_equal_the_loop_over_each_run():
    rng = np.random.default_rng(3)
    info = {
        ("s", "a"): {"selection_metric": "error", "lower_is_better": {"error": True}},
        ("s", "b"): {"selection_metric": "accuracy", "lower_is_better": {"accuracy": False}},
        # ("s2", *) has no task info: validation loss, lower is better
    }
    records = []
    for setting, task, run, seed in [
        ("s", "a", "r1", 0),
        ("s", "b", "r1", 0),
        ("s", "a", "r2", 1),
        ("s", "b", "r3", 2),
        ("s2", "a", "r4", 0),
    ]:
        for step in range(6):
            # values on a coarse grid, so that ties (earliest step wins) and repeated steps occur
            values = {"val/error": rng.integers(0, 3) / 4, "val/accuracy": rng.integers(0, 3) / 4}
            values |= {"val/loss": rng.integers(0, 3) / 4, "test/error": rng.random(), "test/accuracy": rng.random()}
            if step == 2:
                values["val/error"] = values["val/accuracy"] = values["val/loss"] = np.nan  # a diverged evaluation
            if run == "r2" and step in (3, 5):
                values["val/error"] = -1.0  # a tie for the best: step 3 is selected
            for quantity, value in values.items():
                records.append((run, setting, "mtl" if run == "r1" else "stl", "sum", seed, task, step, step / 2))
                records[-1] += (quantity, value)
    records.append(("r2", "s", "stl", "sum", 1, "a", 3, 1.5, "test/error", 0.123))  # a repeated row: the last counts
    records.append(("r2", "s", "stl", "sum", 1, "c", 0, 0.0, "test/error", 0.5))  # no validation rows: no checkpoint
    columns = ["run_id", "setting", "mode", "method", "seed", "task", "step", "epoch", "quantity", "value"]
    rows = pd.DataFrame.from_records(records, columns=columns).sample(frac=1.0, random_state=0)  # any row order
    expected = _selected_by_loop(rows, info)
    got = selected_checkpoints(rows, info)
    assert len(got) == 5 and (got["step"] == 2).sum() == 0  # a NaN score is never selected over a finite one
    r2 = got[(got["run_id"] == "r2") & (got["task"] == "a")].iloc[0]
    last = rows[(rows["run_id"] == "r2") & (rows["step"] == 3) & (rows["quantity"] == "test/error")]["value"]
    assert r2["step"] == 3 and r2["test/error"] == last.iloc[-1]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def _gap_rows() -> pd.DataFrame:
    """STL and MTL runs of two settings, two tasks, three seeds; one MTL run lacks validation error."""
    records = []
    for setting in ("s", "t"):
        for mode, method in (("stl", "sum"), ("mtl", "sum"), ("mtl", "pcgrad")):
            for seed in range(3):
                for task in ("a", "b"):
                    run = f"{setting}-{mode}-{method}-{seed}" + (f"-{task}" if mode == "stl" else "")
                    if mode == "stl" and method != "sum":
                        continue
                    noise = np.random.default_rng(abs(hash((setting, mode, method, seed, task))) % 2**32)
                    for step in range(8):
                        loss = 2 * np.exp(-0.4 * step) + 0.05 * noise.random()
                        values = {"train/loss": loss, "val/loss": loss + 0.1 * step * (mode == "mtl") + 0.01 * seed}
                        if not (run.startswith("t-mtl-pcgrad-1")):
                            values["val/error"] = 0.5 * values["val/loss"] + 0.01 * noise.random()
                        for quantity, value in values.items():
                            records.append((run, setting, mode, method, seed, task, step, step / 4, quantity, value))
    columns = ["run_id", "setting", "mode", "method", "seed", "task", "step", "epoch", "quantity", "value"]
    return pd.DataFrame.from_records(records, columns=columns)


def test_gap_section_says_why_there_is_no_gap_table(tmp_path):
    """Runs whose training loss rises (they did not train) share no range of training loss: the section says
    so, not that a mode is missing; without MTL runs it says that."""
    rows = _gap_rows()
    rising = rows.assign(value=np.where(rows["quantity"] == "train/loss", 1.0 + rows["step"], rows["value"]))
    section, table = gap_section(rising, tmp_path, 0.05)
    assert table.empty and "share a range of training loss" in section.body
    section, _ = gap_section(rows[rows["mode"] == "stl"], tmp_path, 0.05)
    assert "No task has both STL and MTL trajectories" in section.body


def test_gap_section_says_which_rows_are_unpaired_and_what_their_band_costs(tmp_path):
    """Where MTL and STL seeds do not match, the band's test respects unequal spreads at a price in power
    (docs/statistics.md §3): the section says so for those rows only."""
    rows = _gap_rows()
    section, table = gap_section(rows, tmp_path, 0.05)
    assert "unpaired" not in set(table["design"]) and "comparisons are unpaired" not in section.body
    shifted = rows.assign(seed=np.where(rows["mode"] == "mtl", rows["seed"] + 100, rows["seed"]))
    section, table = gap_section(shifted, tmp_path, 0.05)
    unpaired = int((table["design"] == "unpaired").sum())
    assert unpaired and f"{unpaired} of {len(table)} comparisons are unpaired" in section.body
    assert "Bonferroni's bound over the levels of Hsu's t" in section.body and "far more power" in section.body


def test_gap_section_equals_generalization_gap_per_setting_method_and_task(tmp_path):
    rows = _gap_rows()
    section, table = gap_section(rows, tmp_path, 0.05)
    # the pooled symmetry check over the validation-loss curves' end-level skewness (docs/statistics.md §2)
    loss = table[table["measure"] == "val/loss"]
    tasks = (loss["setting"] + "/" + loss["task"]).to_numpy()  # a task's rows share its STL runs: counted once
    check = symmetry_diagnostic(loss["skewness"].to_numpy(float), loss["n_mtl"].to_numpy(int), groups=tasks)
    assert check["rows"] == len(loss) and f"pooled over {check['rows']} rows ({check['groups']} tasks" in section.body
    assert f"Q = {check['q']:.1f}, p = {check['p_value']:.3g}" in section.body
    assert len(gap_checkpoints(rows)) == rows.groupby(["run_id", "task", "step"]).ngroups
    results = {}
    for setting, method, task in table[["setting", "method", "task"]].drop_duplicates().itertuples(index=False):
        pair = rows[(rows["setting"] == setting) & ((rows["mode"] == "stl") | (rows["method"] == method))]
        for measure in GAP_MEASURES:
            results[(setting, method, task, measure)] = generalization_gap(pair, task, measure)
    assert all(r is not None for r in results.values())
    bounds = {  # one skewness bound per setting, from that setting's curves
        setting: bound_of_gaps([r for key, r in results.items() if key[0] == setting])
        for setting in table["setting"].unique()
    }
    for (setting, method, task), frame in table.groupby(["setting", "method", "task"]):
        for measure in GAP_MEASURES:
            result = results[(setting, method, task, measure)].with_bound(bounds[setting])
            got = frame[frame["measure"] == measure]
            assert len(got) == 1
            summary = result.at_alpha(float(got["band_level"].iloc[0])).summary()
            row = got.iloc[0]
            for key, value in summary.items():
                if isinstance(value, float):
                    assert row[key] == pytest.approx(value, nan_ok=True), (setting, method, task, measure, key)
                else:
                    assert row[key] == value, (setting, method, task, measure, key)


def test_figure_parameter_names_are_numbered_within_each_figure():
    """The same figure built twice is the same spec (param names no longer come from a process-wide counter);
    within one spec every name stays unique and every reference follows its definition."""
    frame = pd.DataFrame({"step": [0, 1, 0, 1], "value": [1.0, 0.5, 1.2, 0.7], "task": ["a", "a", "b", "b"]})

    def figure() -> dict:
        panels = [
            with_data(line_chart("step", "value", {"field": "task", "type": "nominal"}, y_title="y", tooltip=[]), frame)
            for _ in range(2)
        ]
        return spec(concat("hconcat", panels))

    first, second = figure(), figure()
    assert json.dumps(first) == json.dumps(second)
    assert sorted(re.findall(r'"name": "([a-z]+\d+)"', json.dumps(first))) == ["legend0", "legend1", "zoom0", "zoom1"]
    for panel, (legend, zoom) in zip(first["hconcat"], (("legend0", "zoom0"), ("legend1", "zoom1"))):
        assert [p["name"] for p in panel["layer"][0]["params"]] == [zoom, legend]
        assert panel["layer"][0]["encoding"]["opacity"]["condition"]["param"] == legend
