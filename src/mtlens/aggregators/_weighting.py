r"""Loss weightings: per-task weights from the losses and the method's own state.

A loss weighting back-propagates ``sum_k w_k L_k`` (or its own objective of the losses)
with weights that depend on the loss history or on learned parameters; GradNorm and
DB-MTL also use the task gradients of the shared parameters.  All state (learned
parameters with their own Adam state, loss histories, gradient buffers, generators)
is in :meth:`state_dict`, so a resumed run continues exactly.  The task list is fixed at
the first step; a later step with other tasks is an error.

Learned weights (uncertainty weighting, IMTL-L, GradNorm) have their own Adam optimizer
with learning rate ``lr``: the papers train them with the network's optimizer, which the
method does not own; Adam acts per coordinate, so setting ``lr`` to the run's learning
rate gives exactly the joint-optimizer update.  ``backward`` returns the task weights
(``weight/<task>``) as diagnostics.  Formulas, defaults and costs: ``docs/methods.md``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import NonNegativeFloat, PositiveFloat
from torch import Tensor

from mtlens.aggregators._gradient_aggregation import weight_diagnostics
from mtlens.aggregators.base import UpdateMethod
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options

LOG_EPS = 1e-8
"""Added to losses before taking logs (DB-MTL, FAMO), as in the authors' code."""


def require_positive_losses(values: Tensor, tasks: Sequence[str], method: str) -> None:
    """Raise ``ValueError`` if a loss is too negative for ``log(L + 1e-8)``."""
    bad = [t for t, v in zip(tasks, values.detach().cpu().tolist()) if not v + LOG_EPS > 0]
    if bad:
        raise ValueError(
            f"{method} takes log(L_t + {LOG_EPS}) and needs losses > -{LOG_EPS}; "
            f"task(s) {bad} have losses {values.detach().cpu().tolist()}"
        )


class LossWeighting(UpdateMethod):
    """Binds to the run's task list at the first step and keeps its state per task."""

    def __init__(self) -> None:
        self.tasks: list[str] | None = None

    def _bind(self, losses: dict[str, Tensor]) -> tuple[list[str], Tensor]:
        tasks = list(losses)
        values = torch.stack([losses[t] for t in tasks])
        if not bool(torch.isfinite(values).all()):
            raise FloatingPointError(f"{type(self).__name__}: non-finite loss in {values.detach().cpu().tolist()}")
        if self.tasks is None:
            self.tasks = tasks
            self._init_state(values)
        elif tasks != self.tasks:
            raise ValueError(f"{type(self).__name__} was set up for tasks {self.tasks}, got {tasks}")
        return tasks, values

    @abstractmethod
    def _init_state(self, values: Tensor) -> None:
        """Create the state for ``len(values)`` tasks, on the losses' device."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The state besides the task list."""

    @abstractmethod
    def _load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_state`'s output."""

    def state_dict(self) -> dict[str, Any]:
        return {} if self.tasks is None else {"tasks": list(self.tasks), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.tasks = list(state["tasks"])
            self._load(state)


class LearnedWeights(LossWeighting):
    """A weighting with a learned vector ``s`` (K,) trained by its own Adam."""

    initial_value = 0.0

    @validate_options
    def __init__(self, lr: PositiveFloat = 1e-3, weight_decay: NonNegativeFloat = 0.0) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.params: Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _init_state(self, values: Tensor) -> None:
        self._make(torch.full_like(values.detach(), self.initial_value))

    def _make(self, params: Tensor) -> None:
        self.params = params.detach().clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.params], lr=self.lr, weight_decay=self.weight_decay)

    def _state(self) -> dict[str, Any]:
        assert self.params is not None and self.optimizer is not None
        return {"params": self.params.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def _load(self, state: dict[str, Any]) -> None:
        self._make(state["params"])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])


class LearnedObjective(LearnedWeights):
    """Back-propagates ``objective(s, L)`` into the model and ``s``, then steps ``s``."""

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        weights = self.loss_weights(self.params.detach())
        self.objective(self.params, values).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return weight_diagnostics(tasks, weights)

    @abstractmethod
    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        """The scalar back-propagated into model and ``params``."""

    @abstractmethod
    def loss_weights(self, params: Tensor) -> Tensor:
        """``d objective / d L_k``: the weight each loss gets in the model update."""
