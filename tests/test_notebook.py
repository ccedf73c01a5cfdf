"""The Python API (``mtlens.study``, ``mtlens.load``, ``StudyResults``): docs/notebook.md runs cell by cell, and
every table and figure it returns is the one the HTML report of the same runs writes (the same functions
on the same runs: equal CSV tables and identical Vega-Lite specs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

import mtlens
from mtlens.errors import ConfigError, MtlensError
from mtlens.report.results import FIGURE_KINDS

ROOT = Path(__file__).resolve().parents[1]


def cells(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def notebook(tmp_path_factory) -> tuple[Path, dict]:
    """The notebook page's cells run in order in a fresh directory: that directory and their namespace."""
    where = tmp_path_factory.mktemp("notebook")
    namespace: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        for i, cell in enumerate(cells(ROOT / "docs" / "notebook.md")):
            exec(compile(cell, f"docs/notebook.md cell {i}", "exec"), namespace)
    return where, namespace


def test_notebook_page_trains_reports_and_refuses_bad_input_before_training(notebook, capsys):
    where, namespace = notebook
    store = mtlens.RunStore(where / "runs" / "notebook")
    runs = store.runs()
    assert len(runs) == 8 and set(runs["state"]) == {"finished"}  # 2 seeds x (2 STL + sum + mgda)
    assert (where / "gap_a.svg").read_text().startswith("<svg")
    assert (where / "reports" / "notebook" / "report.html").exists()
    results = namespace["results"]
    assert set(results.runs()["method"][results.runs()["mode"] == "mtl"]) == {"sum"}  # load(methods="sum")


def test_study_validates_like_the_command_line_before_writing_anything(tmp_path):
    store = tmp_path / "store"
    bad = [
        ({"seeds": 0}, "seeds"),
        ({"seeds": [0, "1"]}, "seeds"),
        ({"epochs": 0}, "epochs"),
        ({"lr": float("inf")}, "lr"),
        ({"methods": ["sum", "nope"]}, "nope"),
        ({"options": {"n_train": -5}}, "n_train"),
        ({"no_such_key": 1}, "no_such_key"),
        ({"config": tmp_path / "missing.yaml"}, "missing.yaml"),
    ]
    for kwargs, named in bad:
        with pytest.raises(ConfigError, match=re.escape(named)):
            mtlens.study("digits_pair", store=store, progress=False, **kwargs)
    with pytest.raises(ConfigError, match="digits_pair"):  # the valid settings are listed
        mtlens.study("digits_pairs", store=store)
    assert not store.exists()
    with pytest.raises(ConfigError, match="no such directory"):
        mtlens.load(tmp_path / "nope")


def test_every_table_equals_the_reports_csv(notebook, tmp_path):
    where, _ = notebook
    results = mtlens.load(where / "runs" / "notebook")
    out = results.report(tmp_path / "report")
    tables = out.parent / "tables"
    compared = {
        "summary": results.summary(),
        "runs": results.run_counts(),
        "transfer": results.transfer(),
        "delta_m": results.delta_m(),
        "gap_onset": results.gap(),
        "optimization_effect": results.optimization(),
        "steps_to_loss": results.steps_to_loss(),
        "units": results.units(),
        "probe_differences": results.probe_differences(),
        "method_weights": results.method_weights(),
        "correlations": results.correlations(),
    }
    for name, frame in compared.items():
        assert len(frame) > 0, name
        written = pd.read_csv(tables / f"{name}.csv")
        # the CSV round trip: the same columns, numbers and text (empty strings and None read back as NaN)
        roundtrip = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))
        pd.testing.assert_frame_equal(roundtrip, written, check_dtype=False, obj=name)
    assert set(results.gap()["method"]) == {"sum", "mgda"}
    assert set(results.method_weights()["method"]) == {"mgda"}


def test_every_figure_is_the_reports_figure(notebook, tmp_path):
    where, _ = notebook
    results = mtlens.load(where / "runs" / "notebook")
    results.report(tmp_path / "report")
    figures = tmp_path / "report" / "figures"
    drawn = {p.name.removesuffix(".vl.json") for p in figures.glob("*.vl.json")}
    seen = set()
    for kind in FIGURE_KINDS:
        for name, chart in results.figures(kind).items():
            # the same spec, parameter names included (numbered within each figure, not by a process counter)
            assert chart.spec == json.loads((figures / f"{name}.vl.json").read_text()), name
            seen.add(name)
    prefixes = ("gap_", "training_", "probes_", "conflict_", "weights_", "loss_ratio_", "scatter_")
    assert seen == {n for n in drawn if n.startswith(prefixes)}
    assert {n.split("_")[0] for n in seen} >= {"gap", "training", "probes", "conflict", "weights", "loss"}
    # one figure by what it shows; an ambiguous choice lists the figures there are
    chart = results.figure("gap", setting="digits_pair", method="mgda", task="b")
    assert chart.name == "gap_digits_pair_mgda_b" and "task b" in chart.caption
    with pytest.raises(ConfigError, match="several.*digits_pair sum a"):
        results.figure("gap", task="a")
    with pytest.raises(ConfigError, match="unknown figure kind 'gaps'"):
        results.figures("gaps")
    bundle = chart._repr_mimebundle_()
    assert bundle["image/svg+xml"].startswith("<svg") and "gap_digits_pair_mgda_b" in bundle["text/plain"]
    assert chart.save(tmp_path / "gap.png").read_bytes().startswith(b"\x89PNG")


def test_load_selects_runs_as_the_report_does(notebook):
    where, _ = notebook
    store = where / "runs" / "notebook"
    assert set(mtlens.load(store, where={"seed": 1}).runs()["seed"]) == {1}
    with pytest.raises(ConfigError, match="unknown run-index column 'nope'"):
        mtlens.load(store, where={"nope": 1})
    with pytest.raises(MtlensError, match="no runs"):
        mtlens.load(store, settings="mnist_pair")
