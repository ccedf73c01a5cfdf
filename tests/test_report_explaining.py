"""The report that explains transfer, on a small real study (digits_pair, Adam with 2 seeds and
SGD with 1 seed), with probe rows appended through the store; and the page in headless Chromium:
every interactive figure renders without JavaScript errors and the page has no horizontal overflow."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import altair
import jsonschema
import numpy as np
import pandas as pd
import pytest

from browser import page_marks, render_in_chromium
from mtlens.cli import main
from mtlens.errors import ConfigError
from mtlens.orchestration.executors import run_configs
from mtlens.orchestration.study import study_configs
from mtlens.render.charts import export_static
from mtlens.report.study_report import select_runs, write_report
from mtlens.store import ROW_COLUMNS, RunStore

SECTIONS = (
    "summary",
    "overview",
    "transfer",
    "gap",
    "training",
    "probes",
    "optimization",
    "correlations",
    "alignment",
    "optimizers",
)
TASK_PROBES = ("probe/grad_coherence", "probe/fisher_trace", "probe/sharpness")
VEGA_LITE = jsonschema.Draft7Validator(
    json.loads((Path(altair.__file__).parent / "vegalite" / "v6" / "schema" / "vega-lite-schema.json").read_text())
)
"""The Vega-Lite v6 JSON schema (shipped with Altair, a test dependency) that every figure's spec must satisfy."""


def append_probe_rows(store: RunStore, run_id: str, rng: np.random.Generator) -> None:
    """Stand-in probe rows (the names of the probe contract) at every evaluated step of the run,
    written through the store: each step's rows are rewritten as one part and the run finalized."""
    rows = store.trajectory(run_id)
    evaluated = rows[rows["quantity"] == "train/loss"]
    first = rows.iloc[0]
    tasks = sorted(evaluated["task"].unique())
    probes = []
    for step, epoch in evaluated[["step", "epoch"]].drop_duplicates().itertuples(index=False):

        def row(task: str, quantity: str, value: float, step: int = step, epoch: int = epoch) -> dict:
            return {
                "run_id": run_id,
                "setting": first["setting"],
                "mode": first["mode"],
                "method": first["method"],
                "seed": first["seed"],
                "task": task,
                "step": step,
                "epoch": epoch,
                "quantity": quantity,
                "value": value,
            }

        for task in tasks:
            probes += [row(task, q, rng.uniform(0.1, 1.0)) for q in TASK_PROBES]
            if first["mode"] == "stl":
                probes += [
                    row(task, "probe/intra_cosine_subbatch", rng.uniform(-0.2, 0.9)),
                    row(task, "probe/intra_cosine_classgroup", rng.uniform(-0.2, 0.6)),
                ]
        if first["mode"] == "mtl":
            cosine = rng.uniform(-0.5, 0.5)
            probes += [
                row("a|b", "probe/conflict_cosine", cosine),
                row("a|b", "probe/magnitude_ratio", rng.uniform(0.3, 3)),
                row("*", "probe/conflict_fraction", float(cosine < 0)),
            ]
    merged = pd.concat([rows, pd.DataFrame(probes)[ROW_COLUMNS]], ignore_index=True)
    for step, part in merged.groupby("step"):
        store.write_part(run_id, int(step), part)
    store.finalize(run_id, "finished", int(merged["step"].max()))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> RunStore:
    store = RunStore(tmp_path_factory.mktemp("explaining") / "store")
    base = {
        "setting": "digits_pair",
        "epochs": 2,
        "batch_size": 32,
        "train_eval_size": 128,
        "eval_every_steps": 2,
        "probes": [],  # stand-in probe rows are appended below
        "setting_options": {"n_train": 128, "n_val": 64, "n_test": 64},
    }
    configs = study_configs(base, [0, 1], ["sum"]) + study_configs(
        {**base, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}, [0], ["sum"]
    )
    assert set(run_configs(configs, store, progress=False)["state"]) == {"finished"}
    rng = np.random.default_rng(0)
    for run_id in store.run_ids():
        append_probe_rows(store, run_id, rng)
    return store


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    """The full report of the study (written once: figures take most of the time)."""
    return write_report(study, tmp_path_factory.mktemp("report") / "report")


def test_report_answers_the_papers_questions(report):
    out, html = report.parent, report.read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert "Not available" not in html  # every section has its data on this study

    # Runs trained with different optimizers are never paired: units are per configuration.
    units = pd.read_csv(out / "tables" / "units.csv")
    assert len(units) == 2 * 2 + 1 * 2
    assert units.groupby("setting").size().to_dict() == {
        "digits_pair [lr=0.003]": 4,  # defaults left out
        "digits_pair [lr=0.05 momentum=0.9 optimizer=sgd]": 2,
    }
    assert (
        units[
            [
                "transfer_pct",
                "gap_mean",
                "log_ratio_mean",
                "fisher_early_diff",
                "coherence_diff",
                "sharpness_diff",
                "conflict_cosine",
                "conflict_fraction",
            ]
        ]
        .notna()
        .all()
        .all()
    )
    correlations = pd.read_csv(out / "tables" / "correlations.csv")
    assert (correlations["n"] == 6).all() and {"coherence_diff", "conflict_cosine"} <= set(correlations["x"])

    optimizers = pd.read_csv(out / "tables" / "optimizers.csv")
    assert {"adam", "sgd (momentum 0.9)"} <= set(optimizers.columns)
    assert (
        optimizers["adam"].str.contains(r"\(n=2\)").all()
        and optimizers["sgd (momentum 0.9)"].str.contains(r"\(n=1\)").all()
    )
    for table in ("optimization_effect", "steps_to_loss", "alignment", "magnitude_ratio"):
        assert len(pd.read_csv(out / "tables" / f"{table}.csv")) > 0

    # Every figure is embedded once as a Vega-Lite spec with its data (also written to figures/NAME.vl.json),
    # and its caption says how many runs/units stand behind it; no static files unless asked for.
    figures = re.findall(
        r'<figure id="fig-([^"]+)"><div class="chart"[^>]*></div>'
        r'<script type="application/json" class="vl-spec">(.+?)</script>'
        r"<figcaption>([^<]+)</figcaption></figure>",
        html,
    )
    names = [name for name, _, _ in figures]
    assert len(figures) == html.count("<figure") and len(set(names)) == len(names)
    for prefix in (
        "gap_",
        "training_",
        "loss_ratio_",
        "probes_",
        "conflict_",
        "alignment_",
        "magnitude_ratio",
        "scatter_transfer_pct",
    ):
        assert any(name.startswith(prefix) for name in names), prefix
    for name, spec, caption in figures:
        assert re.search(r"\b(n=\d+|\d+ (runs|seeds?|seed pairs|units|STL|MTL runs))", caption), caption
        assert json.loads(spec.replace("<\\/", "</")) == json.loads((out / "figures" / f"{name}.vl.json").read_text())
        assert '"format":{"type":"csv"' in spec  # data, not pixels
        VEGA_LITE.validate(json.loads(spec.replace("<\\/", "</")))  # a valid Vega-Lite spec
    assert not list((out / "figures").glob("*.png")) and not list((out / "figures").glob("*.pdf"))
    assert html.count("vegaEmbed=") + html.count("vegaEmbed =") >= 1 and html.count("<script>") == 3  # JS once
    scatter = next(caption for name, _, caption in figures if name == "scatter_transfer_pct")
    # clusters: (setting, seed), one MTL run is every task's unit: 2 seeds of the Adam runs, 1 of the SGD runs
    # (3 clusters: leaving out one of the 2 Adam seeds leaves one unit per (setting, task), nothing to
    # correlate once centred, so the jackknife interval may be undefined)
    assert re.search(
        r"coherence_diff: n = 6 units \(3 clusters\), Pearson r = -?[0-9.]+ "
        r"(\[-?[0-9.]+, -?[0-9.]+\]|\(no interval\)), Spearman rho = ",
        scatter,
    )
    assert "nan" not in scatter  # an undefined interval is said to be missing, not printed

    # No empty panels: the training curves have panels for the tasks a and b only (no pseudo-task * or a|b).
    adam = "digits_pair-lr-0.003-_sum"  # the figures of the Adam runs: slug of "digits_pair [lr=0.003]", sum
    training = json.loads((out / "figures" / f"training_{adam}.vl.json").read_text())
    for panel in training["vconcat"]:
        data = pd.read_csv(io.StringIO(panel["data"]["values"]))
        assert set(data["task"]) == {"a", "b"} and set(data["mode"]) == {"stl", "mtl"}
    # The gap figure draws the simultaneous band of the gap test: gap +/- c * SE with one critical value c
    # of the max-|t| statistic for every training-loss level (values are written with 4 significant digits).
    gap = json.loads((out / "figures" / f"gap_{adam}_a.vl.json").read_text())
    # (The grid is no finer than the runs' checkpoints: these short runs share 2 levels; the fixed
    # sequence's rejected levels are a second series without a band.)
    band = pd.read_csv(io.StringIO(gap["vconcat"][0]["hconcat"][1]["data"]["values"]))
    band = band[band["series"] == "gap = MTL − STL"]
    upper, lower = band["high"] - band["mean"], band["mean"] - band["low"]
    assert np.allclose(upper, lower, rtol=1e-2, atol=1e-3 * band["std"].max())
    critical = (upper / band["std"])[band["std"] > 0]
    assert len(critical) >= 2 and critical.min() > 1 and np.allclose(critical, critical.median(), rtol=3e-2)

    # The summary answers per setting and method, first.
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert len(summary) == 2 and {
        "delta_m_pct",
        "better",
        "worse",
        "gap_verdict",
        "log_ratio_mean",
        "conflict_cosine",
    } <= set(summary.columns)
    assert html.index('<section id="summary">') < html.index('<section id="overview">')


def test_static_figures_on_request(report, tmp_path, study, capsys):
    """PNG/PDF copies come from the same spec as the interactive figure; an unknown format is refused
    before anything is written."""
    spec = json.loads((report.parent / "figures" / "loss_ratio_digits_pair-lr-0.003-_sum.vl.json").read_text())
    png, pdf = export_static(spec, tmp_path / "loss_ratio", ["png", "pdf"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    out = tmp_path / "refused"
    assert main(["report", "--store", str(study.root), "--out", str(out), "--formats", "png,gif"]) == 2
    assert "unknown figure format(s) gif" in capsys.readouterr().err and not out.exists()


def test_report_run_filter(study, tmp_path, capsys):
    index = select_runs(study, where={"optimizer": ["adam"], "seed": [0, 1]})
    assert len(index) == 6 and set(index["optimizer"]) == {"adam"}
    assert len(select_runs(study, where={"seed": [1], "mode": ["stl"]})) == 2
    assert len(select_runs(study, where={"lr": [5e-2], "state": ["finished"]})) == 3
    with pytest.raises(ConfigError, match="--where seed: expected a number"):
        select_runs(study, where={"seed": ["zero"]})

    # Only the SGD STL runs: the report has fewer sections' data, and says what is missing.
    out = tmp_path / "sgd"
    assert (
        main(["report", "--store", str(study.root), "--out", str(out), "--where", "lr=5e-2", "--where", "mode=stl"])
        == 0
    )
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert runs["runs"].sum() == 2 and set(runs["mode"]) == {"stl"}
    html = (out / "report.html").read_text()
    assert "Not available: needs runs that differ in optimizer" in html
    assert "Not available: needs MTL runs with STL runs of the same setting" in html
    capsys.readouterr()
    assert main(["report", "--store", str(study.root), "--out", str(out), "--where", "optimiser=adam"]) == 2
    error = capsys.readouterr().err
    assert "unknown run-index column 'optimiser'" in error and "optimizer" in error
    assert main(["report", "--store", str(study.root), "--out", str(out), "--where", "optimizer=rmsprop"]) == 2
    assert "no runs" in capsys.readouterr().err


def test_report_opens_in_headless_chromium(report, tmp_path):
    page = report
    dom, console = render_in_chromium(page, tmp_path)
    marks = page_marks(dom)
    n_figures = page.read_text().count("<figure ")
    assert marks.get("charts-done") == marks.get("charts") == str(n_figures) and n_figures > 10, marks
    assert marks["chart-errors"] == "0" and marks["js-errors"] == "0", (marks, console)
    assert "Uncaught" not in console and "Error" not in console, console
    assert marks["overflow"] == "no"
    assert dom.count('data-state="rendered"') == n_figures
    assert len(re.findall(r'<svg[^>]*class="marks"', dom)) == n_figures  # every figure drew its marks
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom

    # The checks can fail: a page with one broken spec and a too wide element reports both.
    broken = tmp_path / "broken.html"
    broken.write_text(
        page.read_text()
        .replace('class="vl-spec">{', 'class="vl-spec">{"mark":"nonsense",', 1)
        .replace("<nav>", '<div style="width:4000px">wide</div><nav>', 1)
    )
    marks = page_marks(render_in_chromium(broken, tmp_path)[0])
    assert marks["chart-errors"] == "1" and marks["js-errors"] != "0" and marks["overflow"] == "yes", marks
