"""The corruptions experiment (Elich et al. 2023): do MTL encoders transfer better under corruptions?

STL per task and MTL (``sum``), saving each task's validation-selected model
(``save_selected_models``); the analysis (:mod:`mtlens.experiments.corruption_transfer`) freezes
each selected encoder, fits a linear probe per task on clean training features and evaluates it on
the test images under every corruption of :mod:`mtlens.data.corruptions` at severities 1..5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.assumptions import corruption_table  # noqa: E402
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment, stl_and_mtl  # noqa: E402
from mtlens.experiments.corruption_transfer import check_image_setting, corruption_accuracy  # noqa: E402
from mtlens.render import save_figure, table_html  # noqa: E402
from mtlens.settings import Setting  # noqa: E402
from mtlens.store import RunStore  # noqa: E402

def corruptions_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int]) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed on an image setting (inputs ``(N, C, H, W)``)."""
    check_image_setting(setting)
    runs = stl_and_mtl(setting, seeds, {"probes": [], "save_selected_models": True})
    return plan_runs("corruptions", base, setting, runs)


def corruptions_analysis(plan: ExperimentPlan, store: RunStore, setting: Setting) -> None:
    """Store the linear-probe accuracies under every corruption as ``corruptions-<setting>``."""
    accuracy = corruption_accuracy(store, plan.manifest, setting, device=plan.configs[0].device)
    store.write_table(f"corruptions-{plan.setting}", accuracy)


def corruptions_section(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame,
                        out_dir: Path, setting: str) -> str:
    if f"corruptions-{setting}" not in store.table_names("corruptions-"):
        return "<p>The corruption analysis has not been computed for these runs.</p>"
    accuracy = store.table(f"corruptions-{setting}")
    accuracy = accuracy[accuracy["run_id"].isin(manifest["run_id"])]
    if accuracy.empty:
        return "<p>No finished runs of the corruption experiment yet.</p>"
    table = corruption_table(accuracy)
    body = table_html(table, out_dir, f"corruptions_{setting}",
                      "Linear-probe test accuracy on frozen encoders at each task's validation-selected checkpoint "
                      "(probe fitted on clean training "
                      "features), per task, encoder (STL or MTL) and corruption, at severities 1-5 and their mean; "
                      "drop = clean - mean_corrupted; mean over seeds.")
    return body + save_figure(_corruption_figure(accuracy), out_dir, f"corruptions_{setting}",
                              "Linear-probe accuracy against corruption severity (0 = clean), STL vs MTL encoder, "
                              "one panel per corruption and task (mean over seeds).")


def _corruption_figure(accuracy: pd.DataFrame) -> "plt.Figure":
    corruptions = [c for c in accuracy["corruption"].unique() if c != "none"]
    tasks = sorted(accuracy["task"].unique())
    fig, axes = plt.subplots(len(tasks), len(corruptions), figsize=(2.2 * len(corruptions), 2.3 * len(tasks)),
                             squeeze=False, sharey=True)
    clean = accuracy[accuracy["corruption"] == "none"]
    for i, task in enumerate(tasks):
        for j, corruption in enumerate(corruptions):
            ax = axes[i][j]
            for mode, style in (("stl", "--"), ("mtl", "-")):
                frame = pd.concat([clean, accuracy[accuracy["corruption"] == corruption]])
                frame = frame[(frame["task"] == task) & (frame["mode"] == mode)]
                curve = frame.groupby("severity")["accuracy"].mean()
                ax.plot(curve.index, curve.to_numpy(), style, marker="o", ms=3, label=mode.upper())
            ax.set_title(f"{corruption}\ntask {task}", fontsize=8)
            ax.set_xticks(range(6))
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("probe accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


register_experiment(Experiment("corruptions", "Assumptions: feature transfer under corruptions",
                               corruptions_experiment, corruptions_section, corruptions_analysis))
