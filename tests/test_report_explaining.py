"""The report that explains transfer, on a small real study (digits_pair, Adam with 2 seeds and
SGD with 1 seed), with probe rows appended through the store; and the page in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from mtlens.cli import main
from mtlens.errors import ConfigError
from mtlens.report.study_report import select_runs, write_report
from mtlens.store import ROW_COLUMNS, RunStore
from mtlens.orchestration.study import run_configs, study_configs

SECTIONS = ("overview", "transfer", "gap", "training", "probes", "optimization", "correlations", "alignment",
            "optimizers")
TASK_PROBES = ("probe/grad_coherence", "probe/fisher_trace", "probe/sharpness")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def append_probe_rows(store: RunStore, run_id: str, rng: np.random.Generator) -> None:
    """Stand-in probe rows (the names of the probe contract) at every evaluated step of the run,
    written through the store: each step's rows are rewritten as one part and the run finalized."""
    rows = store.trajectory(run_id)
    evaluated = rows[rows["quantity"] == "train/loss"]
    first = rows.iloc[0]
    tasks = sorted(evaluated["task"].unique())
    probes = []
    for step, epoch in evaluated[["step", "epoch"]].drop_duplicates().itertuples(index=False):
        def row(task: str, quantity: str, value: float) -> dict:
            return {"run_id": run_id, "setting": first["setting"], "mode": first["mode"], "method": first["method"],
                    "seed": first["seed"], "task": task, "step": step, "epoch": epoch, "quantity": quantity,
                    "value": value}
        for task in tasks:
            probes += [row(task, q, rng.uniform(0.1, 1.0)) for q in TASK_PROBES]
            if first["mode"] == "stl":
                probes += [row(task, "probe/intra_cosine_subbatch", rng.uniform(-0.2, 0.9)),
                           row(task, "probe/intra_cosine_classgroup", rng.uniform(-0.2, 0.6))]
        if first["mode"] == "mtl":
            cosine = rng.uniform(-0.5, 0.5)
            probes += [row("a|b", "probe/conflict_cosine", cosine),
                       row("a|b", "probe/magnitude_ratio", rng.uniform(0.3, 3)),
                       row("*", "probe/conflict_fraction", float(cosine < 0))]
    merged = pd.concat([rows, pd.DataFrame(probes)[ROW_COLUMNS]], ignore_index=True)
    for step, part in merged.groupby("step"):
        store.write_part(run_id, int(step), part)
    store.finalize(run_id, "finished", int(merged["step"].max()))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> RunStore:
    store = RunStore(tmp_path_factory.mktemp("explaining") / "store")
    base = {"setting": "digits_pair", "epochs": 2, "batch_size": 32, "train_eval_size": 128, "eval_every_steps": 2,
            "probes": [],  # stand-in probe rows are appended below
            "setting_options": {"n_train": 128, "n_val": 64, "n_test": 64}}
    configs = study_configs(base, [0, 1], ["sum"]) + study_configs(
        {**base, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}, [0], ["sum"])
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
    assert units.groupby("setting").size().to_dict() == {"digits_pair [lr=0.003]": 4,  # defaults left out
                                                         "digits_pair [lr=0.05 momentum=0.9 optimizer=sgd]": 2}
    assert units[["transfer_pct", "gap_mean", "log_ratio_mean", "fisher_early_diff", "coherence_diff",
                  "sharpness_diff", "conflict_cosine", "conflict_fraction"]].notna().all().all()
    correlations = pd.read_csv(out / "tables" / "correlations.csv")
    assert (correlations["n"] == 6).all() and {"coherence_diff", "conflict_cosine"} <= set(correlations["x"])

    optimizers = pd.read_csv(out / "tables" / "optimizers.csv")
    assert {"adam", "sgd (momentum 0.9)"} <= set(optimizers.columns)
    assert optimizers["adam"].str.contains(r"\(n=2\)").all() and optimizers["sgd (momentum 0.9)"].str.contains(
        r"\(n=1\)").all()
    for table in ("optimization_effect", "steps_to_loss", "alignment", "magnitude_ratio"):
        assert len(pd.read_csv(out / "tables" / f"{table}.csv")) > 0

    # Every figure is embedded, written as PNG and PDF, and its caption says how many runs/units stand behind it.
    figures = re.findall(r'<figure id="fig-([^"]+)"><img [^>]*src="data:image/png;base64,[^"]{100,}"/>'
                         r'<figcaption>([^<]+)</figcaption>', html)
    names = [name for name, _ in figures]
    assert len(figures) == html.count("<figure")
    for prefix in ("loss_ratio_", "probes_", "conflict_", "alignment_", "magnitude_ratio", "scatter_transfer_pct"):
        assert any(name.startswith(prefix) for name in names), prefix
    for name, caption in figures:
        assert re.search(r"\b(n=\d+|\d+ (runs|seeds?|seed pairs|units|STL|MTL runs))", caption), caption
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000 and (out / "figures" / f"{name}.pdf").exists()
    scatter = next(caption for name, caption in figures if name == "scatter_transfer_pct")
    assert re.search(r"coherence_diff: n = 6 units \(6 clusters\), Pearson r = -?[0-9.]+ \[-?[0-9.]+, -?[0-9.]+\], "
                     r"Spearman rho = ", scatter)


def test_report_run_filter(study, tmp_path, capsys):
    index = select_runs(study, where={"optimizer": ["adam"], "seed": [0, 1]})
    assert len(index) == 6 and set(index["optimizer"]) == {"adam"}
    assert len(select_runs(study, where={"seed": [1], "mode": ["stl"]})) == 2
    assert len(select_runs(study, where={"lr": [5e-2], "state": ["finished"]})) == 3
    with pytest.raises(ConfigError, match="--where seed: expected a number"):
        select_runs(study, where={"seed": ["zero"]})

    # Only the SGD STL runs: the report has fewer sections' data, and says what is missing.
    out = tmp_path / "sgd"
    assert main(["report", "--store", str(study.root), "--out", str(out), "--where", "lr=5e-2",
                 "--where", "mode=stl"]) == 0
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


def render_in_chromium(page, tmp_path) -> str:
    """The DOM of ``page`` after loading it in headless Chromium (its scripts have run)."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs it (make chromium)"
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                             "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_report_opens_in_headless_chromium(report, tmp_path):
    page = report
    dom = render_in_chromium(page, tmp_path)
    body = re.search(r'<body data-images="(\d+)" data-broken-images="(\d+)">', dom)
    assert body, "the page's load script did not run"
    assert int(body.group(1)) == page.read_text().count("<img ") > 10 and int(body.group(2)) == 0
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in dom
    # The check can fail: the same page with one corrupt image reports it.
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace('src="data:image/png;base64,', 'src="data:image/png;base64,AAAA', 1))
    assert re.search(r'data-broken-images="1"', render_in_chromium(broken, tmp_path))
