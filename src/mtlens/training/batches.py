"""Deterministic, checkpointable training batches.

Tasks are grouped by input source.  Each source walks through its own random
permutation of its training rows (a fresh permutation every pass, the last partial
batch dropped) with its own ``torch.Generator`` seeded from ``(seed, source)``.  So
task ``t`` sees the same sequence of batches in its STL run and in the MTL run of the
same seed, and tasks sharing a source (single-input MTL) share every batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtlens.seeding import derived_seed
from mtlens.settings import Setting
from mtlens.settings.base import Indexable


@dataclass
class SourceBatch:
    """One step's batch of one source: inputs and the targets of each task reading it."""

    inputs: Tensor
    targets: dict[str, Tensor]


class _SourceCursor:
    def __init__(self, n_rows: int, batch_size: int, seed: int):
        if n_rows < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {n_rows} training examples of a task")
        self.n_rows, self.batch_size = n_rows, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n_rows, generator=self.generator)
        self.position = 0

    def next_rows(self) -> Tensor:
        if self.position + self.batch_size > self.n_rows:
            self.order = torch.randperm(self.n_rows, generator=self.generator)
            self.position = 0
        rows = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


class BatchStream:
    """Yields ``{source: SourceBatch}`` for the run's tasks, one dict per optimizer step."""

    def __init__(
        self, setting: Setting, tasks: Sequence[str], batch_size: int, seed: int, device: torch.device | str = "cpu"
    ):
        self.device = torch.device(device)
        self._inputs: dict[str, Indexable] = {}
        self._targets: dict[str, dict[str, Indexable]] = {}
        for task in tasks:
            data = setting.data[task]
            self._inputs.setdefault(data.source, data.train.inputs)
            self._targets.setdefault(data.source, {})[task] = data.train.targets
        self._cursors = {
            source: _SourceCursor(len(inputs), batch_size, derived_seed(seed, "batches", source))
            for source, inputs in self._inputs.items()
        }

    def next(self) -> dict[str, SourceBatch]:
        batches = {}
        for source, cursor in self._cursors.items():
            rows = cursor.next_rows()
            batches[source] = SourceBatch(
                inputs=_to(self._inputs[source][rows], self.device),
                targets={t: _to(y[rows], self.device) for t, y in self._targets[source].items()},
            )
        return batches

    def state_dict(self) -> dict[str, Any]:
        return {source: cursor.state_dict() for source, cursor in self._cursors.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for source, cursor in self._cursors.items():
            cursor.load_state_dict(state[source])


def _to(tensor: Tensor, device: torch.device) -> Tensor:
    return tensor.to(device, non_blocking=True)
