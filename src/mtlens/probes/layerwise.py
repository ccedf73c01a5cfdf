"""Squared norms of per-example (or per-group) gradients from layer inputs and output gradients.

For a layer whose weight gradient is a sum over positions of outer products -- ``nn.Linear``
(positions: the extra dimensions of its input) and zero-padded ``nn.Conv1d``/``nn.Conv2d``
with ``groups=1`` (positions: output pixels, inputs unfolded into patches) -- the gradient
of a group ``B`` of examples is ``G_B = Delta_B^T A_B`` with ``A_B (M, d_in)`` the inputs and
``Delta_B (M, d_out)`` the output gradients at the ``M`` positions of the group's examples,
and the bias gradient is ``sum_M Delta_B``.  Then (Goodfellow 2015; BackPACK's
``SumGradSquared``/``BatchL2Grad`` use the same identities)::

    ||G_B||^2 = sum_{p,q} (A A^T)_{pq} (Delta Delta^T)_{pq}    (Gram form, cost M^2 (d_in + d_out))
              = ||Delta^T A||^2                                (materialized, cost M d_in d_out)

whichever is cheaper.  For a dense layer and one example (``M = 1``) this is
``||a||^2 ||delta||^2``: the ``(N, P)`` per-example gradients are never formed.

``Delta`` comes from one ordinary backward pass of the summed loss; because the model is
in eval mode, examples do not interact, and where a layer's input has one row per example, row ``i`` of
its output gradient is example ``i``'s own.  A model can break that: an encoder that folds positions into
the batch dimension (``x.reshape(N * L, d)`` into a Linear), runs sequence-first (``(L, N, d)``) or stacks
a siamese pair along dimension 0; the identities then give wrong per-example norms (audit, 2026-12-06:
coherence 0.188 for 0.156).  :func:`layerwise_moments` therefore requires every hooked layer's input to
have one row per example of its chunk, and :func:`~mtlens.probes.per_example.gradient_moments` checks it
against ``vmap`` on the first two examples (which catches a sequence-first layer whose length equals the
chunk's size).  Forward hooks are registered on the layers for the duration of the call and
removed afterwards.  :func:`layerwise_moments` returns ``None`` when some probe parameter
is not the weight or bias of exactly one supported layer, a layer runs more than once
per forward (shared weights) or a layer's input rows are not the chunk's examples; callers then fall back
to ``vmap``.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlens.probes.protocol import ProbedModule
from mtlens.tasks import Task


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return False


def _positions(module: nn.Module, inputs: Tensor, output_grad: Tensor) -> tuple[Tensor, Tensor]:
    """``A (N, T, d_in)`` and ``Delta (N, T, d_out)`` at the ``T`` positions of each example."""
    n = len(inputs)
    if isinstance(module, nn.Linear):
        return inputs.reshape(n, -1, inputs.shape[-1]), output_grad.reshape(n, -1, output_grad.shape[-1])
    if isinstance(module, nn.Conv1d):  # as a 2-d convolution of height 1
        inputs = inputs.unsqueeze(2)
        kernel, dilation, padding, stride = (
            (1, *module.kernel_size),
            (1, *module.dilation),
            (0, *module.padding),
            (1, *module.stride),
        )
    else:
        conv = cast(nn.Conv2d, module)  # the only other layer _supported admits, and not with string padding
        kernel, dilation, stride = conv.kernel_size, conv.dilation, conv.stride
        padding = cast(tuple[int, ...], conv.padding)
    patches = F.unfold(inputs, kernel, dilation=dilation, padding=padding, stride=stride)
    return patches.transpose(1, 2), output_grad.reshape(n, output_grad.shape[1], -1).transpose(1, 2)


def _group_weight_sq_norms(a: Tensor, delta: Tensor) -> Tensor:
    """``||Delta_B^T A_B||^2`` for each group; ``a (k, M, d_in)``, ``delta (k, M, d_out)``."""
    m, d_in, d_out = a.shape[1], a.shape[2], delta.shape[2]
    if m == 1:  # one example at one position: ||delta a^T||^2 = ||a||^2 ||delta||^2
        return a.pow(2).sum(dim=(1, 2)) * delta.pow(2).sum(dim=(1, 2))
    if m * (d_in + d_out) < d_in * d_out:
        return (a @ a.transpose(1, 2) * (delta @ delta.transpose(1, 2))).sum(dim=(1, 2))
    return (delta.transpose(1, 2) @ a).pow(2).sum(dim=(1, 2))


def _groups(t: Tensor, group_size: int) -> list[Tensor]:
    """``t (n, T, d)`` -> ``(k, group_size * T, d)`` for the full groups, then ``(1, r * T, d)`` for a short one."""
    n_full = len(t) // group_size * group_size
    pieces = [t[:n_full].reshape(n_full // group_size, -1, t.shape[-1])] if n_full else []
    return pieces + ([t[n_full:].reshape(1, -1, t.shape[-1])] if n_full < len(t) else [])


def _layers(model: ProbedModule, params: dict[str, nn.Parameter]) -> dict[nn.Module, tuple[bool, bool]] | None:
    """Supported layers owning the probe parameters -> (weight probed, bias probed), or ``None``."""
    wanted = {id(p) for p in params.values()}
    layers, owned = {}, []
    for module in model.modules():
        if not _supported(module):
            continue
        flags = (id(module.weight) in wanted, module.bias is not None and id(module.bias) in wanted)
        if any(flags):
            layers[module] = flags
            owned += [id(p) for p, flag in zip((module.weight, module.bias), flags) if flag]
    return layers if sorted(owned) == sorted(wanted) else None


def layerwise_moments(
    model: ProbedModule,
    task: Task,
    params: dict[str, nn.Parameter],
    inputs: Tensor,
    targets: Tensor,
    group_size: int,
    chunk_size: int,
) -> tuple[Tensor, Tensor] | None:
    """``(sum_i g_i (P,), sum_groups ||sum_{i in group} g_i||^2)`` or ``None`` if unsupported.

    Groups are consecutive runs of ``group_size`` examples (the last may be shorter); the
    caller must hold eval mode.  Chunks hold about ``chunk_size`` examples.
    """
    layers = _layers(model, params)
    if layers is None:
        return None
    records: dict[nn.Module, list[Tensor]] = {module: [] for module in layers}

    def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        records[module].append(args[0].detach())
        output.register_hook(lambda grad: records[module].append(grad.detach()))

    handles = [module.register_forward_hook(hook) for module in layers]
    total, sum_sq = None, None
    step = max(1, chunk_size // group_size) * group_size
    try:
        for start in range(0, len(inputs), step):
            x, y = inputs[start : start + step], targets[start : start + step]
            for record in records.values():
                record.clear()
            loss = task.loss(model(x, [task.name])[task.name], y).sum()
            grads = torch.autograd.grad(loss, list(params.values()))
            if any(len(record) != 2 for record in records.values()):
                return None  # a layer ran twice (shared weights) or its output was not used
            if any(len(record[0]) != len(x) for record in records.values()):
                return None  # a layer's input rows are not the chunk's examples (module docstring)
            block_sq = torch.zeros((), dtype=loss.dtype, device=loss.device)
            for module, (weight, bias) in layers.items():
                a, delta = _positions(module, *records[module])
                for ga, gd in zip(_groups(a, group_size), _groups(delta, group_size)):
                    if weight:
                        block_sq = block_sq + _group_weight_sq_norms(ga, gd).sum()
                    if bias:
                        block_sq = block_sq + gd.sum(dim=1).pow(2).sum()
            block_total = torch.cat([g.reshape(-1) for g in grads])
            total = block_total if total is None else total + block_total
            sum_sq = block_sq if sum_sq is None else sum_sq + block_sq
    finally:
        for handle in handles:
            handle.remove()
    assert total is not None and sum_sq is not None  # the caller passes at least one example
    return total, sum_sq
