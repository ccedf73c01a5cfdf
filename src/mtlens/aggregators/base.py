"""The interface every update method implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from mtlens.models import MultiTaskModel


class UpdateMethod(ABC):
    """Maps per-task losses of one step to gradients on the model's parameters.

    Stateful methods (loss weightings, random methods' generators) expose their state
    through :meth:`state_dict` / :meth:`load_state_dict`, which checkpoints save, so a
    resumed run continues exactly where it stopped.
    """

    @abstractmethod
    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        """Set ``.grad`` on ``model``'s parameters from ``losses`` (scalar tensors).

        Returns diagnostics (e.g. task weights) as ``name -> value``; may be empty.
        """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state

    def attach(self, model: MultiTaskModel) -> None:
        """Called once by the trainer after building ``model`` and before its first forward
        pass.  Methods that observe the forward pass (MGDA-UB reads the shared
        representation) register their hooks here; the default does nothing."""
        del model
