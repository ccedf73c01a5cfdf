"""What a setting is: tasks, their data splits, the shared encoder and default hyperparameters.

A setting is plain data.  Each task owns a :class:`TaskData` with ``train``, ``val`` and
``test`` :class:`Split` objects.  Tasks whose ``TaskData.source`` is the same string read
the *same* inputs (single-input MTL, e.g. CelebA's 40 attributes of one image): the
trainer then draws one batch of inputs and runs the encoder once for all of them.
Tasks with different sources have their own inputs (multi-input MTL, e.g. MNISTS), and
each gets its own batch every step.

``inputs`` and ``targets`` only need ``len()`` and indexing by a ``LongTensor`` of row
indices returning a batched tensor, so an in-memory tensor works as is and a lazy
reader of image files works the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

import torch
from pydantic import Field
from torch import Tensor, nn

from mtlens.tasks import Task

SPLITS = ("train", "val", "test")

Fraction = Annotated[float, Field(gt=0, lt=1)]
"""Annotation of a setting option strictly between 0 and 1 (checked before the setting is built)."""

PairVariant = Literal["permuted", "same"]
"""Task b of a two-task image pair: labels permuted (``LABEL_PERMUTATION``) or the same as task a's."""


class Indexable(Protocol):
    """Rows addressable by a ``LongTensor`` of indices: ``obj[idx] -> Tensor (len(idx), ...)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Split:
    """Inputs and targets of one task in one split; ``len(inputs) == len(targets)``."""

    inputs: Indexable
    targets: Indexable

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.targets):
            raise ValueError(f"split has {len(self.inputs)} inputs but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class TaskData:
    """The three splits of one task and the name of its input source."""

    source: str
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


@dataclass(frozen=True)
class Defaults:
    """Default training hyperparameters of a setting (overridable in every config).

    ``eval_batch_size`` is the batch size of evaluation passes (memory-bound for dense outputs).
    """

    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    eval_batch_size: int = 512


@dataclass(frozen=True)
class Setting:
    """A multi-task setting.

    Attributes:
        name: registry name.
        tasks: the tasks, in a fixed order.
        data: task name -> its splits (none of them empty).
        encoder: builds a fresh shared encoder mapping inputs to ``(N, feature_dim)``.
        feature_dim: width of the encoder output, the input width of every head.
        defaults: default hyperparameters.
        description: one paragraph saying how the tasks are built.
        version: raised (from 1) when a change to how the setting is built changes results for the same
            options; a config records it as ``setting_version`` when above 1 (part of the run id), so the
            new runs get new ids while the runs of earlier versions keep theirs and still load and report.
    """

    name: str
    tasks: tuple[Task, ...]
    data: Mapping[str, TaskData]
    encoder: Callable[[], nn.Module]
    feature_dim: int
    defaults: Defaults = field(default_factory=Defaults)
    description: str = ""
    version: int = 1

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"setting {self.name!r}: version must be an integer >= 1, got {self.version!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"setting {self.name!r} has duplicate task names: {names}")
        if set(names) != set(self.data):
            raise ValueError(f"setting {self.name!r}: tasks {names} but data for {sorted(self.data)}")
        for name in names:  # an empty split fails every run (nothing to train on, or a mean over no examples)
            empty = [split for split in SPLITS if len(self.data[name].split(split)) == 0]
            if empty:
                raise ValueError(
                    f"setting {self.name!r}: task {name!r} has no {' and no '.join(empty)} examples; every run "
                    "would fail (change the options that size its splits)"
                )

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"setting {self.name!r} has no task {name!r}; its tasks are {self.task_names}")

    def select(self, task_names: Sequence[str]) -> list[Task]:
        return [self.task(n) for n in task_names]

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one epoch: one pass over the largest training source.

        Computed over *all* tasks of the setting, so STL runs of any task and the MTL run
        take exactly the same number of steps.
        """
        largest = max(len(d.train) for d in self.data.values())
        return -(-largest // batch_size)


def tensor_split(inputs: Tensor, targets: Tensor) -> Split:
    """A :class:`Split` over in-memory tensors."""
    return Split(inputs=inputs, targets=targets)


def random_partition(n: int, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint random index sets of the given sizes drawn from ``range(n)`` with a fixed seed."""
    if sum(sizes) > n:
        raise ValueError(f"cannot draw {sum(sizes)} examples from {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out, start = [], 0
    for size in sizes:
        out.append(perm[start : start + size])
        start += size
    return out
