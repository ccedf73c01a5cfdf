"""Per-example gradients of a task's loss, exact and batched with ``torch.func``.

Everything here is a pure function of the model: the probe parameters are read, passed
to :func:`torch.func.functional_call` as detached copies, and differentiated with
:func:`torch.func.grad` vectorized by :func:`torch.func.vmap`.  The model runs in
**eval mode** for the duration of a call (:func:`eval_mode`): batch normalization uses
its running statistics and does not update them, dropout is off, and a per-example
gradient therefore does not depend on which other examples share its chunk.  The
train/eval flags of every submodule are restored afterwards; parameters, buffers and
torch's global random state are left untouched.

Sums of gradients and of their squared norms (:func:`gradient_moments`, used by the
coherence and Fisher probes) take a faster path when every probe parameter belongs to a
dense or convolutional layer: :mod:`mtlens.probes.layerwise` gets the squared norms from
layer inputs and output gradients of one ordinary backward pass, never forming ``(N, P)``.

Shapes: ``inputs (N, ...)``, ``targets (N, ...)``; ``P`` is the number of entries of
:func:`probe_parameters`, flattened and concatenated in their fixed order.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtlens.probes.layerwise import layerwise_moments
from mtlens.probes.protocol import ProbedModel, ProbedModule
from mtlens.tasks import Task

Params = dict[str, Tensor]


def probe_parameters(model: ProbedModel, task: str) -> dict[str, nn.Parameter]:
    """The parameters ``L_task`` depends on, ``model.task_parameters(task)``: for a
    :class:`~mtlens.models.MultiTaskModel` the shared encoder and head ``task`` (``encoder.*`` then
    ``heads.<task>.*``, trainable ones only; other heads stay constants); for a user's model
    (:class:`~mtlens.probes.loss_model.LossModel`) the parameters its loss reaches."""
    return model.task_parameters(task)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode, then restore every submodule's own train/eval flag.

    Also puts back every module's registered parameter and buffer objects: torch's
    ``functional_call`` leaves a plain tensor in place of a parameter when one module is
    registered under two names (e.g. repeated in an ``nn.Sequential``).
    """
    flags = [(module, module.training) for module in model.modules()]
    registered = [(module, dict(module._parameters), dict(module._buffers)) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
        for module, parameters, buffers in registered:
            for name, value in parameters.items():
                if module._parameters.get(name) is not value or getattr(module, name) is not value:
                    module.__dict__.pop(name, None)
                    module._parameters[name] = value
            for name, buffer in buffers.items():
                if module._buffers.get(name) is not buffer or getattr(module, name) is not buffer:
                    module.__dict__.pop(name, None)
                    module._buffers[name] = buffer


def detached_parameters(model: ProbedModule, task: str) -> Params:
    """:func:`probe_parameters` as detached tensors (sharing storage; never written)."""
    return {name: p.detach() for name, p in probe_parameters(model, task).items()}


def summed_loss(model: ProbedModule, task: Task) -> Callable[[Params, Tensor, Tensor], Tensor]:
    """``f(params, x (n, ...), y (n, ...)) = sum_i task.loss(model_params(x), y)_i``, a scalar.

    ``params`` replaces the probe parameters by name; every other parameter and buffer of
    the model is used as it is.
    """

    def loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        outputs = functional_call(model, params, (x, [task.name]))[task.name]
        return task.loss(outputs, y).sum()

    return loss


def flatten_params(tensors: Params, leading: int = 0) -> Tensor:
    """Concatenate a name -> tensor dict (in its order) into ``(*shape[:leading], P)``."""
    return torch.cat([t.reshape(*t.shape[:leading], -1) for t in tensors.values()], dim=leading)


def group_gradients(
    model: ProbedModule, task: Task, inputs: Tensor, targets: Tensor, group_size: int = 1, chunk_size: int = 256
) -> Iterator[tuple[Tensor, int]]:
    """Yield blocks ``(G (k, P), n)``: ``G[j] = grad_theta sum_{i in group j} loss(x_i, y_i)``.

    Groups are consecutive runs of ``group_size`` examples (the last one may be shorter);
    ``n`` is the number of examples in the block.  ``group_size=1`` gives per-example
    gradients.  Each block covers about ``chunk_size`` examples, computed by one
    ``vmap(grad(summed_loss))`` call over the groups; the caller must hold :func:`eval_mode`.
    """
    if len(inputs) != len(targets):
        raise ValueError(f"inputs have {len(inputs)} rows but targets have {len(targets)}")
    if group_size < 1 or chunk_size < 1:
        raise ValueError(f"group_size and chunk_size must be >= 1, got {group_size} and {chunk_size}")
    params = detached_parameters(model, task.name)
    batched = vmap(grad(summed_loss(model, task)), in_dims=(None, 0, 0))
    n_full = len(inputs) // group_size * group_size
    step = max(1, chunk_size // group_size) * group_size
    for start in range(0, n_full, step):
        stop = min(start + step, n_full)
        x = inputs[start:stop].reshape(-1, group_size, *inputs.shape[1:])
        y = targets[start:stop].reshape(-1, group_size, *targets.shape[1:])
        yield flatten_params(batched(params, x, y), leading=1), stop - start
    if n_full < len(inputs):
        x, y = inputs[n_full:].unsqueeze(0), targets[n_full:].unsqueeze(0)
        yield flatten_params(batched(params, x, y), leading=1), len(inputs) - n_full


def per_example_gradients(
    model: ProbedModule, task: Task, inputs: Tensor, targets: Tensor, chunk_size: int = 256
) -> Tensor:
    """``G (N, P)`` with ``G[i] = grad_theta task.loss(x_i, y_i)`` on :func:`probe_parameters`.

    Computed by ``vmap(grad(...))`` over chunks of ``chunk_size`` examples, in eval mode.
    """
    with eval_mode(model):
        return torch.cat([block for block, _ in group_gradients(model, task, inputs, targets, 1, chunk_size)])


LAYERWISE_RTOL = 1e-3
"""Relative tolerance of :func:`_layerwise_holds` (float32 sums of squares agree to about 1e-6)."""

_LAYERWISE_CHECKED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], bool]] = weakref.WeakKeyDictionary()
""":func:`_layerwise_holds`' answers per model, by task and example shape (the layers' structure, not their
values, decides it): checked once per run, not at every probe step."""


def _layerwise_holds(model: ProbedModule, task: Task, params: dict[str, nn.Parameter], x: Tensor, y: Tensor) -> bool:
    """Whether the layer-wise identities (:mod:`mtlens.probes.layerwise`) give ``model``'s per-example
    squared gradient norms: on the examples ``x`` (the first two of the sample) their ``sum_i ||g_i||^2``
    equals ``vmap``'s within :data:`LAYERWISE_RTOL`.  False where a layer's input rows are not one per
    example in a way the row count cannot show (a sequence-first layer whose length equals the chunk's size);
    True where ``vmap`` cannot run the model (then only the row count of :func:`layerwise_moments` checks it).
    Remembered per model, task, probe parameters and example shape (:data:`_LAYERWISE_CHECKED`)."""
    key = (task.name, tuple(params), tuple(x.shape[1:]), x.dtype)
    checked = _LAYERWISE_CHECKED.setdefault(cast(nn.Module, model), {})
    if key not in checked:
        checked[key] = _layerwise_agrees(model, task, params, x, y)
    return checked[key]


def _layerwise_agrees(model: ProbedModule, task: Task, params: dict[str, nn.Parameter], x: Tensor, y: Tensor) -> bool:
    """:func:`_layerwise_holds`, computed."""
    fast = layerwise_moments(model, task, params, x, y, 1, len(x))
    if fast is None:
        return False
    try:
        reference = sum(block.pow(2).sum() for block, _ in group_gradients(model, task, x, y, 1, len(x)))
    except RuntimeError:  # an op vmap cannot batch: the row check of layerwise_moments is all there is
        return True
    return bool(torch.isclose(fast[1], torch.as_tensor(reference, dtype=fast[1].dtype), rtol=LAYERWISE_RTOL))


def gradient_moments(
    model: ProbedModule, task: Task, inputs: Tensor, targets: Tensor, group_size: int = 1, chunk_size: int = 256
) -> tuple[Tensor, Tensor, int]:
    """``(sum_i g_i (P,), sum_k ||sum_{i in group k} g_i||^2 (scalar), N)`` over consecutive groups.

    Groups are runs of ``group_size`` examples (the last may be shorter); ``group_size=1``
    gives ``sum_i ||g_i||^2``.  When every probe parameter is the weight or bias of a dense or
    convolutional layer whose input rows are the examples (checked on the first two,
    :func:`_layerwise_holds`), the squared norms come from layer inputs and output gradients
    without forming per-group gradients (:mod:`mtlens.probes.layerwise`); otherwise from
    ``vmap(grad)`` blocks of :func:`group_gradients`, one ``(chunk, P)`` block at a time.
    """
    if len(inputs) == 0:
        raise ValueError("gradient moments need at least one example")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs have {len(inputs)} rows but targets have {len(targets)}")
    with eval_mode(model):
        params = probe_parameters(model, task.name)
        if _layerwise_holds(model, task, params, inputs[:2], targets[:2]):
            fast = layerwise_moments(model, task, params, inputs, targets, group_size, chunk_size)
            if fast is not None:
                return (*fast, len(inputs))
        total, sum_sq = None, None
        for block, _ in group_gradients(model, task, inputs, targets, group_size, chunk_size):
            block_sum, block_sq = block.sum(dim=0), block.pow(2).sum()
            total = block_sum if total is None else total + block_sum
            sum_sq = block_sq if sum_sq is None else sum_sq + block_sq
    assert total is not None and sum_sq is not None  # inputs is not empty: there was at least one block
    return total, sum_sq, len(inputs)


def per_example_gradient_moments(
    model: ProbedModule, task: Task, inputs: Tensor, targets: Tensor, chunk_size: int = 256
) -> tuple[Tensor, Tensor, int]:
    """``(sum_i g_i (P,), sum_i ||g_i||^2 (scalar), N)`` without materializing ``(N, P)``.

    See :func:`gradient_moments` (``group_size=1``).
    """
    return gradient_moments(model, task, inputs, targets, 1, chunk_size)
