"""The corruptions experiment (Elich et al. 2023): do MTL encoders transfer better under corruptions?

STL per task and MTL (``sum``), saving each task's validation-selected model
(``save_selected_models``); the analysis (:mod:`mtlens.experiments.corruption_transfer`) freezes
each selected encoder, fits a linear probe per task on clean training features and evaluates it on
the test images under every corruption of :mod:`mtlens.data.corruptions` at severities 1..5.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.analysis.assumptions import corruption_table, corruption_tests
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment, stl_and_mtl
from mtlens.experiments.corruption_transfer import check_image_setting, corruption_accuracy
from mtlens.render import save_figure, table_html
from mtlens.render.charts import Spec, facet, line_chart, tip
from mtlens.render.tables import confidence
from mtlens.settings import Setting
from mtlens.store import RunStore


def corruptions_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int]) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed on an image setting (inputs ``(N, C, H, W)``)."""
    check_image_setting(setting)
    runs = stl_and_mtl(setting, seeds, {"probes": [], "save_selected_models": True})
    return plan_runs("corruptions", base, setting, runs)


def corruptions_analysis(plan: ExperimentPlan, store: RunStore, setting: Setting) -> None:
    """Store the linear-probe accuracies under every corruption as ``corruptions-<setting>``."""
    accuracy = corruption_accuracy(store, plan.manifest, setting, device=plan.configs[0].device)
    store.write_table(f"corruptions-{plan.setting}", accuracy)


def corruptions_section(
    store: RunStore,
    index: pd.DataFrame,
    manifest: pd.DataFrame,
    rows: pd.DataFrame,
    out_dir: Path,
    setting: str,
    alpha: float = 0.05,
) -> str:
    """The probe accuracies (descriptive), the test of MTL − STL drop per task and corruption at the
    report's FDR ``alpha`` (:func:`~mtlens.analysis.assumptions.corruption_tests`) and the figure."""
    if f"corruptions-{setting}" not in store.table_names("corruptions-"):
        return "<p>The corruption analysis has not been computed for these runs.</p>"
    accuracy = store.table(f"corruptions-{setting}")
    accuracy = accuracy[accuracy["run_id"].isin(manifest["run_id"])]
    if accuracy.empty:
        return "<p>No finished runs of the corruption experiment yet.</p>"
    table = corruption_table(accuracy)
    body = table_html(
        table,
        out_dir,
        f"corruptions_{setting}",
        "Linear-probe test accuracy on frozen encoders at each task's validation-selected checkpoint "
        "(probe fitted on clean training "
        "features), per task, encoder (STL or MTL) and corruption, at severities 1-5 and their mean; "
        "drop = clean - mean_corrupted; mean over seeds. Descriptive, no test (the MTL − STL drop is tested "
        "in the next table).",
    )
    tests = corruption_tests(accuracy, alpha)
    if len(tests):
        body += table_html(
            tests,
            out_dir,
            f"corruptions_tests_{setting}",
            "Does the MTL encoder lose more accuracy under a corruption than the STL encoder? Per task and "
            "corruption, each encoder's drop (clean − mean over severities 1-5) and delta = MTL − STL drop (> 0: "
            "MTL loses more), paired by seed (each MTL encoder against the same-seed STL encoder; design says "
            f"so) with the transfer table's test (Hall's skewness-corrected t), its {confidence(alpha)} interval, "
            f"n seeds (n_stl, n_mtl) and Benjamini-Hochberg over this table at FDR {alpha:g} (p_adjusted); "
            "min_p: the smallest p the test allows.",
        )
    return body + save_figure(
        _corruption_figure(accuracy),
        out_dir,
        f"corruptions_{setting}",
        "Linear-probe accuracy against corruption severity (0 = clean), STL vs MTL encoder, "
        "one panel per corruption and task (mean over seeds; descriptive, the test is in the table above).",
    )


def _corruption_figure(accuracy: pd.DataFrame) -> Spec:
    """Linear-probe accuracy against severity (0 = clean) per corruption and task (panels), STL
    (dashed) vs MTL encoder (mean over seeds)."""
    clean = accuracy[accuracy["corruption"] == "none"]
    frames = [
        pd.concat([clean, accuracy[accuracy["corruption"] == c]]).assign(corruption=c)
        for c in accuracy["corruption"].unique()
        if c != "none"
    ]
    curves = (
        pd.concat(frames)
        .groupby(["corruption", "task", "mode", "severity"], as_index=False)
        .agg(accuracy=("accuracy", "mean"), n=("accuracy", "size"))
    )
    curves["panel"] = curves["corruption"] + ", task " + curves["task"].astype(str)
    curves["mode"] = curves["mode"].str.upper()
    chart = line_chart(
        "severity",
        "accuracy",
        {"field": "mode", "type": "nominal", "scale": {"domain": ["STL", "MTL"], "range": ["#1f77b4", "#d62728"]}},
        y_title="probe accuracy",
        dash="mode",
        tooltip=[tip("panel", "nominal"), tip("mode", "nominal"), tip("severity"), tip("accuracy"), tip("n")],
    )
    return facet(chart, curves, "panel", independent_y=False)


register_experiment(
    Experiment(
        "corruptions",
        "Assumptions: feature transfer under corruptions",
        corruptions_experiment,
        corruptions_section,
        corruptions_analysis,
    )
)
