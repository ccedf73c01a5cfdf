r"""Gradient aggregators: pure maps from the (K x P) task-gradient matrix ``G`` to a P-vector.

Row ``k`` of ``G`` is ``g_k = nabla_theta L_k`` on the shared parameters.  Most methods
return a linear combination ``G^T w`` whose task weights ``w`` depend on ``G`` only through
its Gram matrix ``M = G G^T`` (``M_ij = g_i . g_j``); they subclass
:class:`GramianAggregator` and report ``w``.  GradDrop mixes coordinates and has no
weights.  Each class states its formula, its hyperparameters with the source paper's
defaults, and how it treats degenerate input.  Formulas, costs and references are
collected in ``docs/methods.md``.

Every aggregator raises :class:`NonFiniteGradientError` on a NaN/inf entry (naming the
rows) instead of returning a NaN update, and returns a defined finite update for zero,
identical and single (K = 1) gradients.  Random aggregators draw from the explicit
``torch.Generator`` they are given (PCGrad, GradVac, GradDrop, RGW); stateful ones
(GradVac, Nash-MTL, and the random ones' generators) expose ``state_dict`` /
``load_state_dict`` so a resumed run continues exactly.

Each class also declares what it guarantees (:attr:`Aggregator.scale_degree`,
:attr:`Aggregator.permutation_invariant`, :attr:`Aggregator.task_scale_invariant`,
:meth:`Aggregator.conflict_bound`); ``tests/test_aggregator_properties.py`` checks these
claims for every method in the registry, so a newly registered aggregator is tested for
what it declares.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlens.registry import validate_options


class NonFiniteGradientError(FloatingPointError):
    """A task gradient contains NaN or inf; no update is computed from it."""


@dataclass(frozen=True)
class Aggregate:
    """``update`` (P,) to apply to the shared parameters, and the task ``weights`` (K,)
    with ``update = weights @ G`` where the method is a linear combination (else ``None``)."""

    update: Tensor
    weights: Tensor | None


def check_gradient_matrix(matrix: Tensor, task_names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` unless ``matrix`` is (K >= 1, P), and
    :class:`NonFiniteGradientError` naming the tasks whose rows are not finite."""
    if matrix.dim() != 2 or matrix.shape[0] == 0:
        raise ValueError(f"expected a (K, P) task-gradient matrix with K >= 1, got shape {tuple(matrix.shape)}")
    finite_rows = torch.isfinite(matrix).all(dim=1)
    if not bool(finite_rows.all()):
        bad = [int(k) for k in (~finite_rows).nonzero().flatten()]
        names = [task_names[k] for k in bad] if task_names is not None else bad
        raise NonFiniteGradientError(f"non-finite (NaN or inf) gradient for task(s) {names}; refusing to aggregate")


class Aggregator(ABC):
    """Maps ``G (K, P)`` to an update ``(P,)``; call it, or :meth:`aggregate` for the weights too.

    The attributes below state the method's guarantees (up to rounding; random methods for
    equal generator states; a subclass whose guarantee depends on its options sets them in
    ``__init__``), checked for every registered method by the property tests:
    """

    scale_degree: int | None = 1
    """``update(a G) = a ** scale_degree * update(G)`` for every ``a > 0`` (``None``: no claim)."""

    permutation_invariant: bool = True
    """Reordering the tasks (rows of ``G``) leaves the update unchanged and permutes the weights."""

    task_scale_invariant: bool = False
    """Scaling each task's gradient by its own factor ``s_k > 0`` leaves the update unchanged."""

    def __call__(self, matrix: Tensor) -> Tensor:
        return self.aggregate(matrix).update

    def aggregate(self, matrix: Tensor) -> Aggregate:
        check_gradient_matrix(matrix)
        return self._aggregate(matrix)

    @abstractmethod
    def _aggregate(self, matrix: Tensor) -> Aggregate:
        """The method itself, on a checked finite matrix."""

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
        """A guaranteed lower bound ``(K,)`` on ``g_k . update`` given the Gram matrix and the
        weights the method returned (up to rounding), or ``None`` if the method does not
        claim to avoid conflicts.  ``0`` means the update never conflicts with a task."""
        del gram, weights
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class GramianAggregator(Aggregator):
    """``update = G^T w`` with weights ``w = weights(M)`` from the Gram matrix ``M = G G^T``.

    ``M`` is computed in ``G``'s dtype on its device (one K x K product, ``O(K^2 P)``), then
    the weights in float64 on the CPU; ``eps`` is the machine epsilon of ``G``'s dtype,
    for rank decisions.
    """

    def _aggregate(self, matrix: Tensor) -> Aggregate:
        gram = (matrix @ matrix.T).detach().to("cpu", torch.float64).numpy()
        weights = self.weights(gram, torch.finfo(matrix.dtype).eps)
        w = torch.as_tensor(weights, dtype=matrix.dtype).to(matrix.device)
        return Aggregate(w @ matrix, w)

    @abstractmethod
    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        """Task weights ``(K,)`` from the Gram matrix ``(K, K)``."""


class RandomAggregator(Aggregator):
    """An aggregator that draws from ``generator`` (a CPU ``torch.Generator``) and saves its state."""

    @validate_options
    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
