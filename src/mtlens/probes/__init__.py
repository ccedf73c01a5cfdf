"""Trajectory probes: measurements of the model taken during training that never change it.

Per task: gradient coherence, the Fisher-information trace, sharpness (adaptive worst-case and
first-order SAM), intra-task alignment; across tasks: gradient conflict on the shared
parameters and the cosine of each task's gradient with the applied update.  Configs name them
in ``probes`` (:data:`PROBE_NAMES`); the trainer runs them through :class:`ProbeRunner` on the
schedule of :func:`probe_steps` and stores rows with quantities ``probe/<name>``.
"""

from mtlens.probes.alignment import intra_task_alignment
from mtlens.probes.conflict import conflict_measures, mean_task_gradients
from mtlens.probes.names import DEFAULT_PROBES, PROBE_NAMES
from mtlens.probes.runner import ProbeRunner, probe_rows, probe_steps

__all__ = ["DEFAULT_PROBES", "PROBE_NAMES", "ProbeRunner", "conflict_measures", "intra_task_alignment",
           "mean_task_gradients", "probe_rows", "probe_steps"]
