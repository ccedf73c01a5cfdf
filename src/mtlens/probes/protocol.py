"""What the probes need of a model: the interface both the trainer's
:class:`~mtlens.models.MultiTaskModel` and a user's model wrapped in
:class:`~mtlens.probes.loss_model.LossModel` provide."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

from torch import Tensor, nn

from mtlens.models import MultiTaskModel
from mtlens.probes.loss_model import LossModel


class ProbedModel(Protocol):
    """A module whose ``forward(x, tasks)`` returns ``{task: outputs}`` such that
    ``task.loss(outputs, targets)`` is the ``(n,)`` per-example loss of the rows of ``x``."""

    training: bool

    @property
    def task_names(self) -> list[str]: ...

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every task's loss depends on, in a fixed order (conflict and alignment probes)."""

    def task_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """Name -> parameter of everything ``task``'s loss depends on (coherence, Fisher, sharpness)."""

    def __call__(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]: ...


ProbedModule: TypeAlias = MultiTaskModel | LossModel
"""The modules the probes measure: the trainer's model, or a user's model wrapped in a
:class:`~mtlens.probes.loss_model.LossModel` (both :class:`ProbedModel` and ``nn.Module``)."""
