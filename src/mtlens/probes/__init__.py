"""Trajectory probes: numbers measured on a model during training, without changing it.

Probes are plugins (:mod:`~mtlens.probes.base`): each is a function registered with
:func:`register_probe`, with its own options (its keyword parameters) and the quantities it writes
(``probe/<name>`` rows).  The math lives in pure functions of ``(model, task, inputs, ...)``:
:mod:`~mtlens.probes.per_example` (per-example gradients with ``torch.func``),
:mod:`~mtlens.probes.coherence`, :mod:`~mtlens.probes.fisher`, :mod:`~mtlens.probes.sharpness`,
:mod:`~mtlens.probes.conflict` (inter-task gradient conflict on the shared parameters) and
:mod:`~mtlens.probes.alignment` (intra-task alignment, Elich et al., and the inter-task cosine at its noise); each
module registers its probes.
Every probe runs the model in eval mode and leaves its parameters, buffers, train/eval flags and
torch's global random state unchanged (:func:`measure_probes`).  Configs name probes in ``probes``
and set their options in ``probe_options``; the trainer runs them through
:class:`mtlens.training.probe_runner.ProbeRunner` on the schedule of
:func:`~mtlens.training.probe_runner.probe_steps`.
"""

from mtlens.probes.alignment import inter_task_alignment, intra_task_alignment
from mtlens.probes.base import (
    BUILTIN_PROBES,
    DEFAULT_PROBES,
    PROBES,
    Probe,
    ProbeContext,
    check_required_probe_options,
    measure_probes,
    ordered_probes,
    per_task_quantities,
    register_probe,
    validate_probe_options,
)
from mtlens.probes.coherence import gradient_coherence
from mtlens.probes.conflict import conflict_measures, mean_task_gradients
from mtlens.probes.fisher import fisher_trace
from mtlens.probes.per_example import per_example_gradient_moments, per_example_gradients, probe_parameters
from mtlens.probes.sharpness import sharpness_measures

__all__ = [
    "BUILTIN_PROBES",
    "DEFAULT_PROBES",
    "PROBES",
    "Probe",
    "ProbeContext",
    "check_required_probe_options",
    "conflict_measures",
    "fisher_trace",
    "gradient_coherence",
    "inter_task_alignment",
    "intra_task_alignment",
    "mean_task_gradients",
    "measure_probes",
    "ordered_probes",
    "per_example_gradient_moments",
    "per_example_gradients",
    "per_task_quantities",
    "probe_parameters",
    "register_probe",
    "sharpness_measures",
    "validate_probe_options",
]
