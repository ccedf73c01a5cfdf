"""The loss-scale experiment (Elich et al. 2023): is the optimizer invariant to a task's loss scale?

MTL (``sum``) with task ``scaled_task``'s loss scaled by ``c`` in ``scales`` (``task_loss_scales``),
with Adam and with SGD, each at one learning rate tuned at ``c = 1`` (:data:`LOSS_SCALE_LRS`).
The analysis also stores the numerical check of Adam's per-parameter-group invariance
(:mod:`mtlens.experiments.adam_invariance`) on the setting's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from annotated_types import MinLen

from mtlens.analysis.assumptions import loss_scale_table
from mtlens.errors import ConfigError
from mtlens.experiments.adam_invariance import invariance_summary, setting_invariance
from mtlens.experiments.base import Experiment, ExperimentPlan, manifest_table_name, plan_runs, register_experiment
from mtlens.experiments.optimizers import OPTIMIZER_VARIANTS
from mtlens.registry import PositiveNumber
from mtlens.render import save_figure, table_html
from mtlens.render.charts import Spec, inline_data, line_chart, tip
from mtlens.settings import Setting
from mtlens.store import RunStore

LOSS_SCALES = (1e-3, 1e-1, 1.0, 1e1, 1e3)
"""Default scales ``c`` of the loss-scale experiment (every two orders of magnitude; ``scales`` for more)."""


LOSS_SCALE_LRS: dict[str, float] = {"adam": 1e-3, "sgd": 3e-2}
"""Learning rates of the loss-scale experiment (tuned at ``c = 1`` on the embedded settings)."""


def loss_scale_experiment(
    base: dict[str, Any],
    setting: Setting,
    seeds: Sequence[int],
    scales: Annotated[Sequence[PositiveNumber], MinLen(1)] = LOSS_SCALES,
    scaled_task: str | None = None,
    lrs: dict[Literal["adam", "sgd"], PositiveNumber] | None = None,
) -> ExperimentPlan:
    """MTL (``sum``) runs for each seed, optimizer (Adam, SGD) and scale ``c`` of ``scaled_task``
    (default: the setting's last task)."""
    if "lr" in base:
        raise ConfigError("lr: the loss-scale experiment sets one lr per optimizer; remove lr")
    task = scaled_task or setting.task_names[-1]
    if task not in setting.task_names:
        raise ConfigError(f"scaled_task: {task!r} is not a task of {setting.name!r} ({setting.task_names})")
    rates: dict[str, float] = {**LOSS_SCALE_LRS, **{str(k): v for k, v in (lrs or {}).items()}}
    runs = []
    for seed in seeds:
        for variant in ("adam", "sgd"):
            for scale in scales:
                runs.append(
                    (
                        {
                            **OPTIMIZER_VARIANTS[variant],
                            "lr": rates[variant],
                            "seed": seed,
                            "method": "sum",
                            "task_loss_scales": {task: float(scale)},
                            "probes": [],
                        },
                        {"optimizer": variant, "scale": float(scale), "scaled_task": task},
                    )
                )
    return plan_runs("loss-scale", base, setting, runs)


def loss_scale_analysis(plan: ExperimentPlan, store: RunStore, setting: Setting) -> None:
    """Store the numerical check of Adam's invariance on the setting's model as ``adam_invariance-<setting>``."""
    scaled = plan.manifest["scaled_task"].iloc[0]
    lrs = plan.manifest.groupby("optimizer")["lr"].first().to_dict()
    table = setting_invariance(setting, plan.configs[0], scaled, sorted(plan.manifest["scale"].unique()), lrs)
    store.write_table(f"adam_invariance-{plan.setting}", table)


def loss_scale_section(
    store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path, setting: str
) -> str:
    """The section of the analysed runs in ``manifest``; the diverged count of each (optimizer, c) is
    over every stored run of the experiment with an analysed optimizer (diverged runs are never analysed)."""
    stored = store.table(manifest_table_name("loss-scale", setting))
    stored = stored[stored["optimizer"].isin(manifest["optimizer"])]
    states = pd.Series({run_id: store.done_state(run_id) for run_id in stored["run_id"]}, dtype=object)
    table = loss_scale_table(stored, rows, store.task_info(), states)
    parts = []
    if not table.empty:
        parts.append(
            table_html(
                table,
                out_dir,
                f"loss_scale_{setting}",
                f"MTL (sum) with task {table['scaled_task'].iloc[0]!r}'s loss scaled by c: test value "
                "at the validation-selected checkpoint per optimizer, c and task (mean, std over "
                "seeds); diverged = runs stopped by a non-finite loss. Descriptive, no test.",
            )
        )
        curves = _loss_scale_curves(manifest, rows)
        parts.append(
            save_figure(_loss_scale_figure(curves), out_dir, f"loss_scale_{setting}", loss_scale_caption(curves))
        )
    if f"adam_invariance-{setting}" in store.table_names("adam_invariance-"):
        check = store.table(f"adam_invariance-{setting}")
        parts.append(
            table_html(
                invariance_summary(check),
                out_dir,
                f"adam_invariance_{setting}",
                invariance_caption(check, setting),
            )
        )
    return "".join(parts) or "<p>No finished runs of the loss-scale experiment yet.</p>"


def _loss_scale_curves(manifest: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Validation error per (optimizer, task, scale c, epoch): mean over seeds and the number of runs."""
    labelled = rows[rows["quantity"] == "val/error"].merge(manifest[["run_id", "optimizer", "scale"]], on="run_id")
    return labelled.groupby(["optimizer", "task", "scale", "epoch"], as_index=False).agg(
        value=("value", "mean"), n=("run_id", "nunique")
    )


def loss_scale_caption(curves: pd.DataFrame) -> str:
    """The loss-scale figure's caption from its own ``curves`` (:func:`_loss_scale_curves`): what it shows,
    the measured spread over c of each optimizer's last-epoch value per task (descriptive, no test) and what
    to look for; it states no finding the numbers do not show."""
    text = (
        "Validation error by epoch per optimizer (rows) and task (columns), one line per scale c (mean over "
        "seeds). An optimizer invariant to c has its lines on top of each other; SGD's step on the scaled "
        "task's head is c·lr·g, so its update rule makes that head's lines move with c."
    )
    if curves.empty:
        return text
    last = curves[curves["epoch"] == curves.groupby(["optimizer", "task", "scale"])["epoch"].transform("max")]
    spread = last.groupby(["optimizer", "task"])["value"].agg(["min", "max", "count"])
    parts = []
    for optimizer, frame in spread.groupby(level="optimizer"):
        tasks = ", ".join(
            f"task {task} {row['min']:.3g} to {row['max']:.3g} (spread {row['max'] - row['min']:.2g} over "
            f"{int(row['count'])} values of c)"
            for (_, task), row in frame.iterrows()
        )
        parts.append(f"{optimizer}: {tasks}")
    return (
        f"{text} Measured at each line's last epoch, lowest to highest over c (descriptive, no test): "
        f"{'; '.join(parts)}."
    )


def invariance_caption(check: pd.DataFrame, setting: str) -> str:
    """The invariance table's caption from the check's own rows (:func:`setting_invariance`): what is
    measured, what the update rules predict, and the measured one-step values, never a finding the
    numbers do not show."""
    summary = invariance_summary(check)
    one = summary[summary["steps"] == summary["steps"].min()]
    measured = []
    for (optimizer, eps), frame in one.groupby(["optimizer", "eps"], dropna=False):
        values = frame.set_index("group")["max_relative_difference"]
        heads = values.drop("shared", errors="ignore")
        label = optimizer if pd.isna(eps) else f"{optimizer} (eps {eps:g})"
        shared = f", shared encoder {values['shared']:.2g}" if "shared" in values else ""
        measured.append(f"{label}: heads up to {heads.max():.2g}{shared}")
    return (
        f"Numerical check on the {setting} model at initialization: the largest relative difference "
        f"||delta_c - delta_1|| / ||delta_1|| over c in {sorted(check['scale'].unique())} of the parameter change "
        f"after 'steps' steps on L_{check['task_a'].iloc[0]} + c L_{check['task_b'].iloc[0]} (0: the update does "
        "not depend on c). Adam's update rule makes each head's one-step update independent of c up to eps (eps "
        "is not small against |c g| at small c; PyTorch's default is 1e-8), not the shared encoder's; after "
        "several steps the heads see a differently moved encoder; SGD's head_b update scales with c. Measured "
        f"after {int(one['steps'].iloc[0])} step(s): {'; '.join(measured)}."
    )


def _loss_scale_figure(curves: pd.DataFrame) -> Spec:
    """Validation error by epoch per optimizer (panel rows) and task (panel columns), one line per
    scale c (mean over seeds, :func:`_loss_scale_curves`), coloured by c."""
    chart = line_chart(
        "epoch",
        "value",
        {"field": "scale", "type": "ordinal", "title": "c", "scale": {"scheme": "viridis"}},
        y_title="val/error",
        tooltip=[
            tip("optimizer", "nominal"),
            tip("task", "nominal"),
            tip("scale"),
            tip("epoch"),
            tip("value"),
            tip("n"),
        ],
    )
    return {
        "data": inline_data(curves),
        "facet": {"row": {"field": "optimizer", "type": "nominal"}, "column": {"field": "task", "type": "nominal"}},
        "spec": chart,
    }


register_experiment(
    Experiment(
        "loss-scale",
        "Assumptions: loss-scale invariance",
        loss_scale_experiment,
        loss_scale_section,
        loss_scale_analysis,
        rerun_keeps=("scale", "task_loss_scales"),  # a rerun with other scales adds them to the table
    )
)
