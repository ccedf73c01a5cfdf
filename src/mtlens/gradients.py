"""Gradients shared by training methods and probes.

``task_gradients`` gives the (K x P) matrix whose row ``k`` is ``nabla_theta L_k`` on the
given parameters (flattened and concatenated in parameter order), from one forward
pass: the K losses share their graph and each is differentiated with
``torch.autograd.grad`` (K backward passes, one forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def flatten(tensors: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    """Concatenate gradients into one vector, with zeros (shaped like ``like``) where a tensor got no gradient."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(tensors, like)])


def task_gradients(losses: Sequence[Tensor], params: Sequence[nn.Parameter], retain_graph: bool = False) -> Tensor:
    """``G (K, P)`` with ``G[k] = d losses[k] / d params`` (flattened); the graph is kept
    until the last loss unless ``retain_graph``."""
    rows = []
    for k, loss in enumerate(losses):
        keep = retain_graph or k < len(losses) - 1
        grads = torch.autograd.grad(loss, list(params), retain_graph=keep, allow_unused=True)
        rows.append(flatten(grads, params))
    return torch.stack(rows)


def assign_flat_gradient(params: Sequence[nn.Parameter], vector: Tensor, accumulate: bool = False) -> None:
    """Write the P-vector ``vector`` into ``p.grad`` of ``params`` (adding to it if ``accumulate``)."""
    offset = 0
    for p in params:
        n = p.numel()
        chunk = vector[offset : offset + n].view_as(p).to(p.dtype)
        p.grad = chunk.clone() if (p.grad is None or not accumulate) else p.grad + chunk
        offset += n
    if offset != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries but the parameters have {offset}")


__all__ = ["assign_flat_gradient", "flatten", "task_gradients"]
