"""Experiments of the assumptions study (Elich et al. 2023) as vertical slices.

Each experiment is one module holding its plan (which runs), its analysis step (if it analyses
checkpoints) and its report section, and registers one :class:`~mtlens.experiments.base.Experiment`:

* :mod:`~mtlens.experiments.optimizers` -- Adam vs SGD vs SGD with momentum, each over its own lr grid;
* :mod:`~mtlens.experiments.loss_scale` -- one task's loss scaled by ``c``, Adam vs SGD, with the
  numerical invariance check of :mod:`~mtlens.experiments.adam_invariance`;
* :mod:`~mtlens.experiments.alignment` -- inter-task vs intra-task gradient alignment;
* :mod:`~mtlens.experiments.corruptions` -- linear probes on frozen STL and MTL encoders under
  corruptions (:mod:`~mtlens.experiments.corruption_transfer`, :mod:`~mtlens.experiments.linear_probe`);
* :mod:`~mtlens.experiments.grouping` -- which tasks to train together: measured pairwise transfer, affinity
  predictors and the groupings they choose (its analysis step trains the chosen groupings).

:mod:`~mtlens.experiments.base` has the registry, planning helpers, :func:`run_experiment` and the
report's :func:`experiment_sections`; the table computations are in :mod:`mtlens.analysis.assumptions`.
"""

from mtlens.experiments.base import (
    EXPERIMENT_SEEDS,
    EXPERIMENTS,
    Experiment,
    ExperimentPlan,
    TrainFunction,
    available_experiments,
    experiment_plan,
    experiment_sections,
    manifest_table_name,
    plan_runs,
    register_experiment,
    run_experiment,
    stl_and_mtl,
)

__all__ = [
    "EXPERIMENTS",
    "EXPERIMENT_SEEDS",
    "Experiment",
    "ExperimentPlan",
    "TrainFunction",
    "available_experiments",
    "experiment_plan",
    "experiment_sections",
    "manifest_table_name",
    "plan_runs",
    "register_experiment",
    "run_experiment",
    "stl_and_mtl",
]
