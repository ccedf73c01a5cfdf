"""The loss-scale experiment (Elich et al. 2023): is the optimizer invariant to a task's loss scale?

MTL (``sum``) with task ``scaled_task``'s loss scaled by ``c`` in ``scales`` (``task_loss_scales``),
with Adam and with SGD, each at one learning rate tuned at ``c = 1`` (:data:`LOSS_SCALE_LRS`).
The analysis also stores the numerical check of Adam's per-parameter-group invariance
(:mod:`mtlens.experiments.adam_invariance`) on the setting's model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.assumptions import loss_scale_table  # noqa: E402
from mtlens.errors import ConfigError  # noqa: E402
from mtlens.experiments.adam_invariance import invariance_summary, setting_invariance  # noqa: E402
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment  # noqa: E402
from mtlens.experiments.optimizers import OPTIMIZER_VARIANTS  # noqa: E402
from mtlens.render import save_figure, table_html  # noqa: E402
from mtlens.settings import Setting  # noqa: E402
from mtlens.store import RunStore  # noqa: E402

LOSS_SCALES = (1e-3, 1e-1, 1.0, 1e1, 1e3)
"""Default scales ``c`` of the loss-scale experiment (every two orders of magnitude; ``scales`` for more)."""


LOSS_SCALE_LRS: dict[str, float] = {"adam": 1e-3, "sgd": 3e-2}
"""Learning rates of the loss-scale experiment (tuned at ``c = 1`` on the embedded settings)."""


def loss_scale_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int],
                          scales: Sequence[float] = LOSS_SCALES, scaled_task: str | None = None,
                          lrs: dict[str, float] | None = None) -> ExperimentPlan:
    """MTL (``sum``) runs for each seed, optimizer (Adam, SGD) and scale ``c`` of ``scaled_task``
    (default: the setting's last task)."""
    if "lr" in base:
        raise ConfigError("lr: the loss-scale experiment sets one lr per optimizer; remove lr")
    task = scaled_task or setting.task_names[-1]
    if task not in setting.task_names:
        raise ConfigError(f"scaled_task: {task!r} is not a task of {setting.name!r} ({setting.task_names})")
    if not scales or any(not c > 0 for c in scales):
        raise ConfigError(f"scales: need positive loss scales, got {list(scales)}")
    rates = {**LOSS_SCALE_LRS, **(lrs or {})}
    runs = []
    for seed in seeds:
        for variant in ("adam", "sgd"):
            for scale in scales:
                runs.append(({**OPTIMIZER_VARIANTS[variant], "lr": rates[variant], "seed": seed, "method": "sum",
                              "task_loss_scales": {task: float(scale)}, "probes": []},
                             {"optimizer": variant, "scale": float(scale), "scaled_task": task}))
    return plan_runs("loss-scale", base, setting, runs)


def loss_scale_analysis(plan: ExperimentPlan, store: RunStore, setting: Setting) -> None:
    """Store the numerical check of Adam's invariance on the setting's model as ``adam_invariance-<setting>``."""
    scaled = plan.manifest["scaled_task"].iloc[0]
    lrs = plan.manifest.groupby("optimizer")["lr"].first().to_dict()
    table = setting_invariance(setting, plan.configs[0], scaled, sorted(plan.manifest["scale"].unique()), lrs)
    store.write_table(f"adam_invariance-{plan.setting}", table)


def loss_scale_section(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame,
                       out_dir: Path, setting: str) -> str:
    states = index.set_index("run_id")["state"]
    table = loss_scale_table(manifest, rows, store.task_info(), states)
    parts = []
    if not table.empty:
        parts.append(table_html(table, out_dir, f"loss_scale_{setting}",
                                f"MTL (sum) with task {table['scaled_task'].iloc[0]!r}'s loss scaled by c: test value "
                                "at the validation-selected checkpoint per optimizer, c and task (mean, std over "
                                "seeds); diverged = runs stopped by a non-finite loss."))
        parts.append(save_figure(_loss_scale_figure(manifest, rows), out_dir, f"loss_scale_{setting}",
                                 "Validation error by epoch per optimizer (rows) and task (columns), one line per "
                                 "scale c (mean over seeds). Adam's curves stay together over many orders of "
                                 "magnitude of c; SGD's change with c (its effective lr for the scaled task is c*lr)."))
    if f"adam_invariance-{setting}" in store.table_names("adam_invariance-"):
        check = store.table(f"adam_invariance-{setting}")
        parts.append(table_html(
            invariance_summary(check), out_dir, f"adam_invariance_{setting}",
            f"Numerical check on the {setting} model at initialization: the largest relative difference "
            f"||delta_c - delta_1|| / ||delta_1|| over c in {sorted(check['scale'].unique())} of the parameter change "
            f"after 'steps' steps on L_{check['task_a'].iloc[0]} + c L_{check['task_b'].iloc[0]}. Adam: ~0 on both "
            "heads after one step with a negligible eps (1e-16; exact invariance), large on the shared encoder; with "
            "PyTorch's default eps = 1e-8 the head_b update at small c differs by the eps effect (eps is no longer "
            "small against |c g|); after several steps the heads drift too because the encoder moved differently. "
            "SGD: head_b's change scales with c."))
    return "".join(parts) or "<p>No finished runs of the loss-scale experiment yet.</p>"


def _loss_scale_figure(manifest: pd.DataFrame, rows: pd.DataFrame) -> "plt.Figure":
    labelled = rows[rows["quantity"] == "val/error"].merge(manifest[["run_id", "optimizer", "scale"]], on="run_id")
    optimizers, tasks = sorted(labelled["optimizer"].unique()), sorted(labelled["task"].unique())
    scales = sorted(manifest["scale"].unique())
    colors = plt.cm.viridis(np.linspace(0, 1, len(scales)))
    fig, axes = plt.subplots(len(optimizers), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(optimizers)),
                             squeeze=False)
    for i, optimizer in enumerate(optimizers):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for scale, color in zip(scales, colors):
                frame = labelled[(labelled["optimizer"] == optimizer) & (labelled["task"] == task)
                                 & (labelled["scale"] == scale)]
                curve = frame.groupby("epoch")["value"].mean()
                ax.plot(curve.index, curve.to_numpy(), color=color, label=f"c={scale:g}")
            ax.set_title(f"{optimizer}, task {task}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("val/error")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


register_experiment(Experiment("loss-scale", "Assumptions: loss-scale invariance", loss_scale_experiment,
                               loss_scale_section, loss_scale_analysis))
