"""Hard parameter sharing: one shared encoder and one head per task.

The single-task (STL) model of task ``t`` is the same architecture with only head
``t``; :func:`build_model` seeds the encoder and every head from the run seed and the
head's task name, so STL and MTL runs of one seed start from identical encoder
weights and identical head ``t`` weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mtlens.seeding import derived_seed
from mtlens.tasks import Task


class MultiTaskModel(nn.Module):
    """``encoder: x -> z (N, feature_dim)`` followed by ``heads[t]: z -> outputs_t``.

    ``forward(x, tasks)`` runs the encoder once and returns ``{task: outputs}``.
    """

    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("a model needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder (shared by every task), in a fixed order."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """The parameters task ``task``'s loss depends on: the encoder's then head ``task``'s, by
        ``named_parameters()`` name, trainable ones only (what the probes differentiate)."""
        if task not in self.heads:
            raise KeyError(f"model has no head {task!r}; heads are {self.task_names}")
        prefixes = ("encoder.", f"heads.{task}.")
        return {name: p for name, p in self.named_parameters() if name.startswith(prefixes) and p.requires_grad}

    def head_parameters(self, task: str) -> list[nn.Parameter]:
        return [p for p in self.heads[task].parameters() if p.requires_grad]

    def forward(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        features = self.encoder(x)
        return {t: self.heads[t](features) for t in (tasks or self.task_names)}


def build_model(
    encoder_factory: Callable[[], nn.Module],
    feature_dim: int,
    tasks: Sequence[Task],
    seed: int,
) -> MultiTaskModel:
    """Build the shared-encoder model for ``tasks`` with seeded, STL/MTL-comparable init."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "encoder"))
        encoder = encoder_factory()
        heads = {}
        for task in tasks:
            torch.manual_seed(derived_seed(seed, "head", task.name))
            heads[task.name] = task.head(feature_dim)
    return MultiTaskModel(encoder, heads)
