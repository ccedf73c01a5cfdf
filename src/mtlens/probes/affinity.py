"""Inter-task affinity of TAG (Fifty et al., NeurIPS 2021): the lookahead loss change of one task
after a step on another task's gradient.

With ``theta_s`` the shared parameters, ``g_i = nabla_theta_s L_i(theta)`` the gradient of task
``i``'s mean loss over its fixed probe sample (:func:`~mtlens.probes.conflict.mean_task_gradients`)
and ``L_j`` the mean loss of task ``j`` over *its* probe sample (the same inputs for single-input
settings: TAG's "same batch")::

    Z_{i -> j} = 1 - L_j(theta_s - eta g_i, theta_rest) / L_j(theta)          (TAG, eq. 3)

``Z > 0``: a step on task ``i`` lowers task ``j``'s loss (``i`` helps ``j``); ``Z < 0``: it raises it.
One row per ordered pair ``i != j`` with task ``"i>j"`` and quantity ``probe/lookahead_affinity``
(``K (K - 1)`` rows); the grouping analysis averages them over the probe steps of training, as TAG
averages over training steps.

**Step-size rule.** The lookahead is a plain SGD step ``-eta g_i`` on the shared parameters only
(heads and buffers stay), with ``eta`` = the option ``lr`` or, by default, the run's learning rate
(:attr:`ProbeContext.lr`), for every optimizer including Adam: the paper's definition is the SGD
lookahead at the current learning rate.  Its reference implementation (google-research ``tag/``,
CelebA notebook; optimizer SGD with momentum 0.9) differs in two ways that this probe leaves out:
after the first step it adds the optimizer's momentum term (``mu m - lr g_i``), and it divides
``Z`` by the current learning rate (a constant factor within a run without a schedule; neither
changes the ranking of pairs at one learning rate).  A probe sees no optimizer state, so Adam's
preconditioned step is not used.  The model is measured in eval mode (batch-norm running
statistics), as every probe is; the reference uses batch statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor
from torch.func import functional_call

from mtlens.errors import ConfigError
from mtlens.probes.base import ProbeContext, Row, register_probe
from mtlens.probes.conflict import mean_task_gradients
from mtlens.probes.per_example import eval_mode
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import DIRECTED_PAIR, LOOKAHEAD_AFFINITY
from mtlens.tasks import Task


def mean_task_losses(
    model: ProbedModule,
    tasks: Sequence[Task],
    samples: Mapping[str, tuple[Tensor, Tensor]],
    parameters: Mapping[str, Tensor] | None = None,
    chunk_size: int = 512,
) -> dict[str, float]:
    """``{t: mean_i loss_t(x_i, y_i)}`` over task ``t``'s sample, in float64, with the model's
    parameters replaced by ``parameters`` (name -> tensor, others kept) when given; no gradients."""
    groups: dict[int, list[Task]] = {}
    for task in tasks:
        groups.setdefault(id(samples[task.name][0]), []).append(task)
    losses: dict[str, float] = {}
    with torch.no_grad():
        for group in groups.values():
            inputs = samples[group[0].name][0]
            totals = dict.fromkeys([t.name for t in group], 0.0)
            for start in range(0, len(inputs), chunk_size):
                chunk = (inputs[start : start + chunk_size], [t.name for t in group])
                outputs = model(*chunk) if parameters is None else functional_call(model, dict(parameters), chunk)
                for t in group:
                    targets = samples[t.name][1][start : start + chunk_size]
                    totals[t.name] += float(t.loss(outputs[t.name], targets).double().sum())
            losses.update({name: total / len(inputs) for name, total in totals.items()})
    return losses


def lookahead_affinity(
    model: ProbedModule, tasks: Sequence[Task], samples: Mapping[str, tuple[Tensor, Tensor]], lr: float
) -> dict[tuple[str, str], float]:
    """``{(i, j): Z_{i -> j}}`` of the module docstring for every ordered pair ``i != j``, with step
    size ``lr``, measured in eval mode (:func:`~mtlens.probes.per_example.eval_mode`: every flag and
    registered tensor put back afterwards)."""
    shared = model.shared_parameters()
    names = {id(p): name for name, p in model.named_parameters()}
    affinity: dict[tuple[str, str], float] = {}
    with eval_mode(model):
        base = mean_task_losses(model, tasks, samples)
        gradients = mean_task_gradients(model, tasks, samples)
        for source in tasks:
            stepped, start = {}, 0
            for p in shared:
                step = gradients[source.name][start : start + p.numel()].reshape(p.shape)
                stepped[names[id(p)]] = p.detach() - lr * step
                start += p.numel()
            after = mean_task_losses(model, tasks, samples, stepped)
            for target in tasks:
                if target.name != source.name:
                    affinity[(source.name, target.name)] = 1.0 - after[target.name] / base[target.name]
    return affinity


@register_probe("tag", per_task=False, quantities=(LOOKAHEAD_AFFINITY,), task_quantities=())
def tag_probe(context: ProbeContext, lr: Annotated[float, Field(gt=0)] | None = None) -> list[Row]:
    """The probe ``tag``: :func:`lookahead_affinity` on the probe samples, one row per ordered pair
    ``"i>j"`` (:data:`~mtlens.quantities.DIRECTED_PAIR`); ``lr`` defaults to the run's learning rate (required
    where the context has none)."""
    eta = lr if lr is not None else context.lr
    if eta is None:
        raise ConfigError("probe_options.tag.lr: the context has no learning rate; set lr")
    affinity = lookahead_affinity(context.model, context.tasks, context.samples, eta)
    return [
        {"task": f"{i}{DIRECTED_PAIR}{j}", "quantity": LOOKAHEAD_AFFINITY, "value": z} for (i, j), z in affinity.items()
    ]
