"""Trajectory probes: numbers measured on a model at a checkpoint, without changing it.

The math lives in pure functions of ``(model, task, inputs, ...)``:
:mod:`~mtlens.probes.per_example` (per-example gradients with ``torch.func``),
:mod:`~mtlens.probes.coherence`, :mod:`~mtlens.probes.fisher` and
:mod:`~mtlens.probes.sharpness`.  Every probe runs the model in eval mode and leaves its
parameters, buffers, train/eval flags and torch's global random state unchanged.
"""

from mtlens.probes.coherence import gradient_coherence
from mtlens.probes.fisher import fisher_trace
from mtlens.probes.per_example import per_example_gradient_moments, per_example_gradients, probe_parameters
from mtlens.probes.sharpness import adaptive_sharpness, sam_sharpness

__all__ = [
    "adaptive_sharpness",
    "fisher_trace",
    "gradient_coherence",
    "per_example_gradient_moments",
    "per_example_gradients",
    "probe_parameters",
    "sam_sharpness",
]
