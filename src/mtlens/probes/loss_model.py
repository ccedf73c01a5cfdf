"""Probes on any model: a user's module, the parameters they declare shared, and a function from a
batch to per-task per-example losses.

The probes (:mod:`mtlens.probes`) are written against a :class:`~mtlens.probes.protocol.ProbedModel`
called as ``model(x, tasks) -> {task: outputs}`` with ``task.loss(outputs, targets)`` the
per-example loss.  :class:`LossModel` presents a user's model in that form without assuming an
"encoder + heads" architecture:

* ``x`` is a ``(n,)`` tensor of **row indices into the probe sample** (a tensor, or a dict / tuple /
  list of tensors with ``N`` rows each, e.g. a Hugging Face batch); ``forward`` gathers those rows
  of every leaf and returns ``losses(batch)``, the user's ``{task: (n,) per-example losses}``.
  Because the rows are gathered inside ``forward``, ``torch.func.vmap`` over index chunks gives
  per-example (or per-group) gradients of any model, and ``functional_call`` substitutes the
  user's parameters by their ``named_parameters`` names prefixed with ``model.``.
* the tasks are :class:`~mtlens.tasks.Task` objects whose ``loss(outputs, targets)`` returns the
  outputs (they already are the losses); the targets are an unused ``(N, 1)`` float tensor of zeros,
  so no probe mistakes them for class labels.
* ``shared_parameters()`` are the parameters the user declares shared (conflict and alignment
  measure on them); ``task_parameters(task)`` are the trainable parameters that ``task``'s loss
  reaches in the autograd graph (found once, on the first two sample rows, in eval mode):
  the shared trunk, the task's own adapter and tower, never another task's.

Every registered probe that uses only the :class:`~mtlens.probes.protocol.ProbedModel` interface
runs on this view, except those of :data:`PREDICTIVE_PROBES`: the Fisher probe needs labels drawn
from the model's predictive distribution, ``y_hat ~ p_theta(. | x)``, and the gradient of
``-log p_theta(y_hat | x)``, which a loss function evaluated at the data's labels cannot give.  For
those the user also passes ``outputs(batch) -> {task: (n, ...) outputs}`` (e.g. logits) and, per
task, a :class:`~mtlens.tasks.Task` whose ``loss(outputs, y)`` is the per-example negative
log-likelihood of that distribution and whose ``sample_labels(outputs, generator)`` draws from it
(:func:`~mtlens.tasks.classification_task` for softmax logits, :func:`~mtlens.tasks.binary_task`,
:func:`~mtlens.tasks.regression_task`).  :meth:`LossModel.predictive` is then the same model seen
through ``outputs``: ``forward`` returns the outputs of the sample rows ``x``, on the same
parameters, so the Fisher probe draws ``y_hat`` with the task's sampler and differentiates the
task's loss exactly as on the trainer's model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map

from mtlens.tasks import Task

Batch = Tensor | Mapping[str, Any] | Sequence[Any]
"""A batch: a tensor or a (nested) dict / tuple / list of tensors, each with the examples on dim 0."""

PerExampleLosses = Callable[[Batch], Mapping[str, Tensor]]
"""``losses(batch) -> {task: (n,) per-example losses}`` computed with the user's model."""

ModelOutputs = Callable[[Batch], Mapping[str, Tensor]]
"""``outputs(batch) -> {task: (n, ...) outputs}`` (e.g. logits) of the user's model, whose
distribution is the task's likelihood (see the module docstring)."""

PREDICTIVE_PROBES = ("fisher",)
"""Built-in probes that need the model's predictive distribution: ``outputs=`` and likelihood tasks."""


def batch_size_of(batch: Batch) -> int:
    """``N``, the common number of rows of the batch's tensors (raises if they disagree or none)."""
    sizes = {leaf.shape[0] for leaf in tree_flatten(batch)[0] if isinstance(leaf, Tensor)}
    if len(sizes) != 1:
        raise ValueError(f"a batch needs tensors with one common number of rows; got row counts {sorted(sizes)}")
    return sizes.pop()


def _losses_are_the_outputs(outputs: Tensor, targets: Tensor) -> Tensor:
    del targets
    return outputs


def _no_head(feature_dim: int) -> nn.Module:
    raise TypeError("a task of a user's model has no mtlens head")


def _no_label_sampler(outputs: Tensor, generator: torch.Generator) -> Tensor:
    raise TypeError(
        "labels drawn from the model need its outputs and the task's likelihood, not its losses: "
        "run the probe on LossModel.predictive() with the likelihood tasks"
    )


def loss_task(name: str) -> Task:
    """A :class:`~mtlens.tasks.Task` whose loss is the model's output (see the module docstring)."""
    return Task(name=name, head=_no_head, loss=_losses_are_the_outputs, metrics={}, sample_labels=_no_label_sampler)


PARAMETER_CHUNK = 256
"""Rows per backward pass when :meth:`LossModel.task_parameters` finds the parameters a task's loss reaches."""


class LossModel(nn.Module):
    """A user's model as the probes see it; see the module docstring.

    Args:
        model: any ``nn.Module`` (registered as the submodule ``model``).
        shared: the shared parameters, as parameters of ``model`` or as their names in
            ``model.named_parameters()``.
        losses: ``losses(batch) -> {task: (n,) per-example losses}``, computed with ``model``.
        sample: the fixed probe sample (a :data:`Batch` of ``N`` rows), on the model's device.
        tasks: the task names, in the order rows are written.
        outputs: ``outputs(batch) -> {task: outputs}`` for :meth:`predictive` (``None``: no
            predictive view, so no Fisher probe).
    """

    def __init__(
        self,
        model: nn.Module,
        shared: Iterable[nn.Parameter | str],
        losses: PerExampleLosses,
        sample: Batch,
        tasks: Sequence[str],
        outputs: ModelOutputs | None = None,
    ):
        super().__init__()
        self.model = model
        self._function = losses  # outputs, in a predictive view
        self._sample, self._tasks, self._outputs = sample, list(tasks), outputs
        self._n = batch_size_of(sample)
        by_name = dict(model.named_parameters())
        by_id = {id(p): p for p in by_name.values()}
        self._shared: list[nn.Parameter] = []
        for item in shared:
            if isinstance(item, str):
                if item not in by_name:
                    raise KeyError(f"shared parameter {item!r} is not a parameter of the model")
                self._shared.append(by_name[item])
            elif id(item) in by_id:
                self._shared.append(item)
            else:
                raise ValueError("a shared parameter is not a parameter of the model")
        if not self._shared:
            raise ValueError("declare at least one shared parameter")
        self._task_parameters: dict[str, dict[str, nn.Parameter]] = {}

    @property
    def task_names(self) -> list[str]:
        return list(self._tasks)

    def predictive(self) -> LossModel:
        """The same model and parameters seen through ``outputs``: ``forward`` returns
        ``{task: outputs of the sample rows x}`` (for :data:`PREDICTIVE_PROBES`, with likelihood tasks)."""
        if self._outputs is None:
            raise ValueError(
                f"probes {list(PREDICTIVE_PROBES)} need outputs(batch) -> {{task: outputs}} of the model "
                "(e.g. logits), whose likelihood is the task's"
            )
        return LossModel(self.model, self._shared, self._outputs, self._sample, self._tasks)

    @property
    def sample_indices(self) -> Tensor:
        """``arange(N)`` on the sample's device: the probes' "inputs"."""
        device = next(leaf.device for leaf in tree_flatten(self._sample)[0] if isinstance(leaf, Tensor))
        return torch.arange(self._n, device=device)

    def probe_samples(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{task: (indices (N,), unused targets (N, 1))}``, one inputs object shared by every task."""
        indices = self.sample_indices
        targets = torch.zeros(self._n, 1, device=indices.device)
        return {task: (indices, targets) for task in self._tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self._shared if p.requires_grad]

    def task_parameters(self, task: str) -> dict[str, nn.Parameter]:
        """Trainable parameters ``task``'s loss reaches on any row of the sample, by name (``model.<name>``),
        in model order: one backward pass per chunk of :data:`PARAMETER_CHUNK` rows, once per task.  (Until
        2026-12-06 the first two rows decided, so a parameter that only later rows reach, e.g. a per-row
        expert or adapter, was left out of every probe; audit F.)"""
        if task not in self._tasks:
            raise KeyError(f"model has no task {task!r}; tasks are {self._tasks}")
        if task not in self._task_parameters:
            named = {f"model.{name}": p for name, p in self.model.named_parameters() if p.requires_grad}
            reached: set[str] = set()
            was_training = self.training
            self.eval()
            try:
                for start in range(0, len(self.sample_indices), PARAMETER_CHUNK):
                    loss = self(self.sample_indices[start : start + PARAMETER_CHUNK], [task])[task].sum()
                    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
                    reached |= {name for name, g in zip(named, grads, strict=True) if g is not None}
            finally:
                self.train(was_training)
            self._task_parameters[task] = {name: p for name, p in named.items() if name in reached}
        return self._task_parameters[task]

    def forward(self, x: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        """``{task: losses of the sample rows x}`` for ``tasks`` (default: all), each ``(len(x),)``
        (of a :meth:`predictive` view: ``{task: outputs of the rows x}``)."""
        batch = tree_map(lambda leaf: leaf[x] if isinstance(leaf, Tensor) else leaf, self._sample)
        values = self._function(batch)
        wanted = self._tasks if tasks is None else list(tasks)
        missing = [t for t in wanted if t not in values]
        if missing:
            raise KeyError(f"the model's function returned nothing for tasks {missing}; it returned {sorted(values)}")
        return {t: values[t] for t in wanted}
