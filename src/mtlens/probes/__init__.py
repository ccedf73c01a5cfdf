"""Trajectory probes: numbers measured on a model during training, without changing it.

The math lives in pure functions of ``(model, task, inputs, ...)``:
:mod:`~mtlens.probes.per_example` (per-example gradients with ``torch.func``),
:mod:`~mtlens.probes.coherence`, :mod:`~mtlens.probes.fisher`, :mod:`~mtlens.probes.sharpness`,
:mod:`~mtlens.probes.conflict` (inter-task gradient conflict on the shared parameters) and
:mod:`~mtlens.probes.alignment` (intra-task alignment, Elich et al.).  Every probe runs the model
in eval mode and leaves its parameters, buffers, train/eval flags and torch's global random
state unchanged.  Configs name probes in ``probes`` (:data:`PROBE_NAMES`); the trainer runs them
through :class:`mtlens.training.probe_runner.ProbeRunner` on the schedule of
:func:`~mtlens.training.probe_runner.probe_steps` and stores rows with
quantities ``probe/<name>``.
"""

from mtlens.probes.alignment import intra_task_alignment
from mtlens.probes.coherence import gradient_coherence
from mtlens.probes.conflict import conflict_measures, mean_task_gradients
from mtlens.probes.fisher import fisher_trace
from mtlens.probes.names import DEFAULT_PROBES, PROBE_NAMES
from mtlens.probes.per_example import per_example_gradient_moments, per_example_gradients, probe_parameters
from mtlens.probes.sharpness import sharpness_measures

__all__ = [
    "DEFAULT_PROBES",
    "PROBE_NAMES",
    "conflict_measures",
    "fisher_trace",
    "gradient_coherence",
    "intra_task_alignment",
    "mean_task_gradients",
    "per_example_gradient_moments",
    "per_example_gradients",
    "probe_parameters",
    "sharpness_measures",
]
