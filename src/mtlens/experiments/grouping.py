"""The grouping experiment: which tasks should train together?  (Issue 27; TAG, Fifty et al. 2021;
Standley et al. 2020.)

Per seed (all runs paired by seed: same initialization and batches):

* every task alone (STL, ``role = stl``);
* every group of ``2 .. max_group`` tasks (default: every pair, the measured pairwise transfer) and
  every group of at least two tasks of ``subset`` (default: the setting's first ``subset_size``
  tasks), so that every grouping of ``subset`` is trained and the exhaustive best can be found
  (``role = group``);
* every task together with the affinity probes ``tag`` (TAG's lookahead affinity) and ``conflict``
  (gradient cosine), from which TAG chooses its groups (``role = all``).

After these are trained, the analysis step (:func:`grouping_analysis`) computes every predictor's
affinities from the stored rows, chooses each predictor's grouping of *all* tasks into at most
``budget`` networks on every seed and on each half of the seeds (the report reads each half's test Δm
of the grouping chosen on the other half: :func:`~mtlens.analysis.grouping.cross_fit`), and trains the
groups of those groupings that are not trained yet (the grouping on every seed on every seed, a half's
grouping on the other half's seeds only, where the report reads it;
``role = chosen``), so each predictor's grouping of every task is measured too (against STL and
all-together; the exhaustive best is only known on ``subset``).  They are trained through
:func:`~mtlens.experiments.run_experiment`'s ``train``: their outcomes are in its results, so a chosen
run that fails makes ``mtlens study --experiment grouping`` exit 1 naming it.  Rerunning the command after a kill
re-plans, skips complete runs and repeats this step, which is deterministic given the stored rows.

All runs use the ``sum`` method; the probes change no trajectory bit, so the all-task run is the
all-together MTL run.  The report section (:func:`grouping_section`) is computed from the stored rows
by :mod:`mtlens.analysis.grouping`: the measured pairwise transfer matrix with the transfer table's
tests, the affinity matrices, each predictor's rank correlation with the measured transfer, and the
grouping of ``subset`` into at most ``budget`` networks that each predictor chooses, measured
against all-together, STL and the exhaustive best (each choice cross-fitted over two halves of the seeds:
:func:`~mtlens.analysis.grouping.cross_fit`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field

from mtlens.analysis.grouping import (
    PREDICTORS,
    SEPARATOR,
    affinity_table,
    best_grouping,
    group_label,
    grouping_results,
    higher_order_results,
    missing_pairs,
    pairwise_transfer,
    predictor_correlations,
    predictor_sources,
    seed_halves,
)
from mtlens.errors import ConfigError
from mtlens.experiments.base import Experiment, ExperimentPlan, TrainFunction, plan_runs, register_experiment
from mtlens.render import save_figure, table_html
from mtlens.render.charts import Spec, inline_data, tip
from mtlens.render.tables import confidence, interval_confidences
from mtlens.settings import Setting
from mtlens.store import RunState, RunStore

AFFINITY_PROBES = ["tag", "conflict"]
"""Probes of the all-task run: TAG's lookahead affinity and the gradient cosine."""


NOTE = (
    "note: how the row's grouping was chosen (on which half of the seeds, and the grouping chosen on every seed), "
    "why a row is not tested (fewer than 2 seeds with every value: no interval or p-value) or not chosen "
    "(a predictor with a missing or non-finite affinity between two of the tasks chooses nothing rather than "
    "counting it as 0; one seed cannot be split into halves), which comparison is of a grouping with itself "
    "(the same runs: difference 0, no test), and the tasks its Δm leaves out (mean STL metric 0 over seeds: "
    "relative difference undefined)."
)
"""The report's words on the grouping tables' ``note`` column (:func:`~mtlens.analysis.grouping.grouping_table`)."""


def grouping_experiment(
    base: dict[str, Any],
    setting: Setting,
    seeds: Sequence[int],
    budget: Annotated[int, Field(ge=1)] = 2,
    max_group: Annotated[int, Field(ge=2)] = 2,
    subset: Sequence[str] | None = None,
    subset_size: Annotated[int, Field(ge=2)] = 4,
) -> ExperimentPlan:
    """The runs of the module docstring, per seed; ``budget`` is read by the report section (stored
    in the manifest).  A :class:`ConfigError` before any training with fewer than 3 tasks, a bad ``subset``
    or fewer than 2 distinct ``seeds`` (every test of the section pairs runs by seed)."""
    names = setting.task_names
    if len(names) < 3:
        raise ConfigError(f"the grouping experiment needs at least 3 tasks; {setting.name!r} has {names}")
    chosen = list(subset) if subset is not None else names[: min(subset_size, len(names))]
    unknown = [t for t in chosen if t not in names]
    if unknown or len(set(chosen)) < 2:
        raise ConfigError(f"subset: need at least 2 distinct tasks of {setting.name!r} ({names}), got {chosen}")
    chosen = [t for t in names if t in chosen]  # setting order
    if len(set(seeds)) < 2:
        raise ConfigError(
            "seeds: the grouping experiment needs at least 2 distinct seeds (every test pairs runs by seed), "
            f"got {list(seeds)}"
        )
    groups = [g for size in range(2, min(max_group, len(names)) + 1) for g in combinations(names, size)]
    groups += [g for size in range(2, len(chosen) + 1) for g in combinations(chosen, size) if g not in groups]
    groups = [g for g in groups if len(g) < len(names)]  # every task together is the affinity run
    labels = {"budget": budget, "subset": group_label(chosen)}
    runs = []
    for seed in seeds:
        common = {"seed": seed, "method": "sum"}
        runs += [({**common, "tasks": [t], "probes": []}, {**labels, "role": "stl", "group": t}) for t in names]
        runs += [
            ({**common, "tasks": list(g), "probes": []}, {**labels, "role": "group", "group": group_label(g)})
            for g in groups
        ]
        runs.append(({**common, "probes": AFFINITY_PROBES}, {**labels, "role": "all", "group": group_label(names)}))
    return plan_runs("grouping", base, setting, runs)


def _finished(store: RunStore, manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest rows of finished runs (unfinished, failed and diverged runs never enter the analysis)."""
    return manifest[[store.done_state(r) == RunState.FINISHED for r in manifest["run_id"]]]


def grouping_analysis(plan: ExperimentPlan, store: RunStore, setting: Setting, train: TrainFunction) -> None:
    """Train each predictor's grouping of every task (module docstring) with ``train`` (their outcomes join
    the experiment's results) and add its runs to the manifest.  A predictor without a finite affinity for
    every ordered pair of the tasks (:func:`~mtlens.analysis.grouping.missing_pairs`) chooses nothing: one
    line on stderr names the pairs (a missing pair is not an affinity of 0)."""
    manifest = plan.manifest
    finished = _finished(store, manifest)
    rows = store.trajectories(finished["run_id"].tolist())
    task_info = store.task_info()
    if pairwise_transfer(finished, rows, task_info).empty:
        return
    budget = int(manifest["budget"].iloc[0])
    planned = set(zip(manifest["group"], manifest["seed"].astype(int)))
    templates = {int(c.seed): c for c, role in zip(plan.configs, manifest["role"]) if role == "all"}
    seeds = sorted(int(s) for s in finished["seed"].unique())
    configs, records = [], []
    for name, source in predictor_sources(finished, rows, task_info).items():
        missing = missing_pairs(source(seeds), setting.task_names)
        if missing:  # a missing pair is no evidence of 0 affinity: this predictor chooses nothing
            shown = ", ".join(f"{i} -> {j}" for i, j in missing[:4]) + (", ..." if len(missing) > 4 else "")
            print(
                f"grouping: no {name} affinity for {len(missing)} ordered pair(s) ({shown}): it chooses no "
                "grouping of all tasks (rerun once their runs have finished)",
                file=sys.stderr,
            )
            continue
        # The grouping chosen on every seed (what one would train) is trained on every seed; the grouping chosen on
        # a half of the seeds only on the *other* half, where the report's cross-fitted row reads it
        # (mtlens.analysis.grouping.cross_fit): on its own half nothing would read it
        halves = [half for half in seed_halves(seeds) if half]
        every = sorted(templates)
        for chosen_on, read_on in ((seeds, every), *((h, [s for s in seeds if s not in h]) for h in halves)):
            affinity = source(chosen_on)
            if missing_pairs(affinity, setting.task_names):
                continue
            grouping, _ = best_grouping(setting.task_names, affinity, budget)
            for group in grouping:
                label = group_label(group)
                for seed in read_on:
                    if len(group) < 2 or (label, seed) in planned or seed not in templates:
                        continue
                    planned.add((label, seed))
                    template = templates[seed]
                    config = template.model_copy(update={"tasks": list(group), "probes": []})
                    configs.append(config)
                    records.append(
                        manifest[manifest["run_id"] == template.run_id].iloc[0].to_dict()
                        | {"run_id": config.run_id, "role": "chosen", "group": label, "chosen_by": name, "seed": seed}
                    )
    if configs:
        store.write_table(plan.table_name, pd.concat([manifest, pd.DataFrame.from_records(records)], ignore_index=True))
        tasks = len(setting.task_names)
        print(f"grouping: training {len(configs)} runs of the predictors' groupings of all {tasks} tasks", flush=True)
        train(configs)


def _heatmap(frame: pd.DataFrame, value: str, title: str, facet_by: str | None = None) -> Spec:
    """Source (rows) x target (columns) cells coloured by ``value`` (diverging around 0)."""
    chart: Spec = {
        "mark": "rect",
        "encoding": {
            "x": {"field": "target", "type": "nominal", "title": "target task j"},
            "y": {"field": "source", "type": "nominal", "title": "trained with task i"},
            "color": {
                "field": value,
                "type": "quantitative",
                "title": title,
                "scale": {"scheme": "redblue", "domainMid": 0},
            },
            "tooltip": [tip("source", "nominal"), tip("target", "nominal"), tip(value)]
            + ([tip("verdict", "nominal"), tip("p_adjusted")] if "verdict" in frame else []),
        },
    }
    if facet_by is None:
        return {"data": inline_data(frame), **chart}
    return {
        "data": inline_data(frame),
        "facet": {"field": facet_by, "type": "nominal", "title": None},
        "columns": 3,
        "spec": chart,
        "resolve": {"scale": {"color": "independent"}},
    }


def _scatter(affinities: pd.DataFrame) -> Spec:
    long = affinities.melt(
        id_vars=["source", "target", "transfer_pct"], value_vars=list(PREDICTORS), var_name="predictor"
    )
    long = long.dropna()
    return {
        "data": inline_data(long),
        "facet": {"field": "predictor", "type": "nominal", "title": None},
        "columns": 3,
        "spec": {
            "mark": {"type": "point", "filled": True},
            "encoding": {
                "x": {"field": "value", "type": "quantitative", "title": "predicted affinity i -> j"},
                "y": {"field": "transfer_pct", "type": "quantitative", "title": "measured transfer i -> j (%)"},
                "color": {"field": "target", "type": "nominal"},
                "tooltip": [tip("source", "nominal"), tip("target", "nominal"), tip("value"), tip("transfer_pct")],
            },
        },
        "resolve": {"scale": {"x": "independent"}},
    }


def grouping_section(
    store: RunStore,
    index: pd.DataFrame,
    manifest: pd.DataFrame,
    rows: pd.DataFrame,
    out_dir: Path,
    setting: str,
    alpha: float = 0.05,
) -> str:
    """Which tasks to train together: the tables and figures of the module docstring, every test at the
    report's FDR ``alpha``."""
    task_info = store.task_info()
    all_tasks = (
        str(manifest.loc[manifest["role"] == "all", "group"].iloc[0]).split(SEPARATOR)
        if (manifest["role"] == "all").any()
        else []
    )
    transfer = pairwise_transfer(manifest, rows, task_info, alpha)
    if transfer.empty:
        return "<p>No finished STL and pair runs of the grouping experiment yet.</p>"
    parts = [
        save_figure(
            _heatmap(transfer, "relative_pct", "transfer (%)"),
            out_dir,
            f"grouping_transfer_{setting}",
            "Measured pairwise transfer: task j (column) trained together with task i (row) against j alone, "
            "relative difference of the test selection metric at the validation-selected checkpoint (%; > 0: "
            "i helps j), paired by seed. The tooltip gives the verdict (Benjamini-Hochberg over every ordered pair).",
        ),
        table_html(
            transfer,
            out_dir,
            f"grouping_transfer_{setting}",
            "Pairwise transfer tests (the transfer table's paired test, Hall's skewness-corrected t, and its "
            f"{confidence(alpha)} interval per ordered pair, Benjamini-Hochberg over all pairs at FDR {alpha:g}).",
        ),
    ]
    affinities = affinity_table(manifest, rows, transfer)
    long = affinities.melt(id_vars=["source", "target"], value_vars=list(PREDICTORS), var_name="predictor").dropna()
    if len(long):
        parts.append(
            save_figure(
                _heatmap(long, "value", "affinity", facet_by="predictor"),
                out_dir,
                f"grouping_affinity_{setting}",
                "Affinity i -> j per predictor, averaged over seeds: tag = TAG's lookahead affinity "
                "1 - L_j(after a step on task i) / L_j over the probe steps of the all-task run; cosine = gradient "
                "cosine of the pair (symmetric); early_gap = validation-loss improvement of j in the pair run over "
                "j alone after the first 10% of training (%).",
            )
        )
        parts.append(
            save_figure(
                _scatter(affinities),
                out_dir,
                f"grouping_scatter_{setting}",
                "Predicted affinity against measured pairwise transfer, one point per ordered pair, "
                "coloured by target task.",
            )
        )
    correlations = predictor_correlations(affinities, alpha=alpha)
    if len(correlations):
        parts.append(
            table_html(
                correlations,
                out_dir,
                f"grouping_correlations_{setting}",
                "Does the affinity predict the measured transfer? Pearson r and Spearman rho over the ordered pairs, "
                f"delete-one-task jackknife intervals ({interval_confidences(correlations, alpha)}; columns "
                "pearson_confidence, spearman_confidence) and Mantel p-values (the tasks relabelled in the transfer "
                "matrix: the pairs share their tasks' runs on both sides); Benjamini-Hochberg over the predictors at "
                f"FDR {alpha:g}. pearson_claim / spearman_claim: the report's rule for every "
                "correlation, shown only where the adjusted p-value and the interval agree (test only: the test "
                "rejects but the interval reaches 0; interval only: the reverse; too few clusters: no p-value can "
                f"reach {alpha:g}; not shown: neither).",
            )
        )
    subset = str(manifest["subset"].iloc[0]).split(SEPARATOR)
    budget = int(manifest["budget"].iloc[0])
    predictors = predictor_sources(manifest, rows, task_info)
    results = grouping_results(manifest, rows, task_info, subset, budget, predictors, alpha)
    if len(results):
        parts.append(
            table_html(
                results,
                out_dir,
                f"grouping_results_{setting}",
                f"Groupings of {', '.join(subset)} into at most {budget} networks: each predictor's choice (the "
                "partition maximizing the mean affinity onto each task from its group mates; transfer_pct = the "
                "measured pairwise transfer, Standley et al.'s pairwise approximation), the exhaustive best over "
                "every trained grouping by validation Δm, and all together. Every choice is cross-fitted: each half "
                "of the seeds reads the test Δm of the grouping chosen from the other half's runs alone (the "
                "predictor's affinities, the best's validation Δm on that half; chosen and read on the same seeds, a "
                "choice picks favourable noise); grouping names both halves' groupings where they differ, note the "
                "grouping chosen on every seed. delta_m: mean over tasks of the relative test improvement over the "
                "same-seed STL run (%), with its interval; vs_all / vs_best: paired differences to all-together and "
                "to the exhaustive best; p-values Benjamini-Hochberg adjusted over the table's distinct comparisons "
                f"(two rows with the same grouping, or x vs y and y vs x, are one test). {NOTE}",
            )
        )
    higher = higher_order_results(manifest, rows, task_info, subset, budget)
    if len(higher):
        parts.append(
            table_html(
                higher,
                out_dir,
                f"grouping_higher_order_{setting}",
                f"Standley et al.'s higher-order approximation on {', '.join(subset)}: each trained grouping with a "
                "group of 3 or more tasks, its Δm predicted from the measured pairs alone (a task's test metric in "
                "a group = the mean of its metric in the pair runs with each group mate; alone: its STL metric) "
                "and its measured Δm (mean over seeds, %); error = predicted − measured. Descriptive, no test. "
                "note: the tasks both Δm leave out (mean STL test metric 0: relative difference undefined).",
            )
        )
    every = grouping_results(manifest, rows, task_info, all_tasks, budget, predictors, alpha, exhaustive=False)
    if len(every):
        parts.append(
            table_html(
                every,
                out_dir,
                f"grouping_results_all_{setting}",
                f"Groupings of all {len(all_tasks)} tasks into at most {budget} networks chosen by each predictor "
                "(their groups trained by the experiment's analysis step; cross-fitted: each half of the seeds reads "
                "the grouping chosen from the other half's affinities), against STL (delta_m) and all together "
                "(vs_all); n_seeds = 0 where a grouping's runs are not trained yet (rerun the study). " + NOTE,
            )
        )
    return "".join(parts)


register_experiment(
    Experiment("grouping", "Which tasks to train together?", grouping_experiment, grouping_section, grouping_analysis)
)
