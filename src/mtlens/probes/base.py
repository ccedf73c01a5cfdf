"""Probes as plugins: a probe is a registered function with its own options and quantities.

A probe measures numbers on a model without changing it.  It sees a :class:`ProbeContext`: the
model (shared parameters ``model.shared_parameters()``, one head per task), the tasks (each with
its per-example loss ``task.loss``), one fixed sample per task, the step, the run seed and the
training batch size -- no run config, so the same probes serve mtlens's trainer
(:mod:`mtlens.training.probe_runner`) and a user's own training loop (:func:`measure_probes`).

Two kinds, by ``per_task``:

* per-task (default): ``measure(context, task, **options) -> {name: value}``, called for every
  task in order; each value becomes a row ``(task, "probe/<name>", value)``;
* per-run: ``measure(context, **options) -> [{"task", "quantity", "value"}, ...]`` (e.g. the
  inter-task conflict, whose rows are keyed by task pairs ``"a|b"`` or ``"*"``).

Options are the keyword parameters of ``measure`` after ``context`` (and ``task``), with their
defaults; configs set them as ``probe_options: {probe: {option: value}}``, checked against that
signature; an option without a default is required (a config that does not give it is refused).
:func:`register_probe` refuses a ``measure`` that cannot be called as its kind is.
``quantities`` names every quantity a probe writes (``probe/...``; writing another fails, naming it); those in
``task_quantities`` (default: all of a per-task probe) are rows of one task, which the report plots
per task.  A user's probe is one decorated function::

    from mtlens.probes import register_probe


    @register_probe("head_norm", quantities=("probe/head_norm",))
    def head_norm(context, task, power: float = 2.0) -> dict[str, float]:
        weights = [p for p in context.model.head_parameters(task.name)]
        return {"head_norm": float(sum(p.detach().norm() ** power for p in weights))}

Per-task probes run in :func:`ordered_probes` order (the built-ins first), then per-run probes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_type_hints

import torch
from pydantic import ValidationError, create_model
from torch import Tensor

from mtlens.errors import ConfigError
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import PROBE_PREFIX, probe_quantity
from mtlens.registry import Registry
from mtlens.tasks import Task

Row = dict[str, Any]
"""``{"task": str, "quantity": str, "value": float}``."""


@dataclass(frozen=True)
class ProbeContext:
    """What a probe measures on.

    Attributes:
        model: the multi-task model (shared encoder, one head per task), or a user's model as a
            :class:`~mtlens.probes.loss_model.LossModel`.
        tasks: the tasks of the run, in order (their ``loss`` is per example).
        samples: task name -> its fixed probe sample ``(inputs (N, ...), targets (N, ...))``; tasks
            that read the same inputs share one inputs tensor.
        step: the training step (seeds the random probes, with ``seed``).
        seed: the run seed.
        batch_size: the training batch size (the batch of the alignment probe).
        update: the applied update direction on the shared parameters, flattened ``(P,)``, or ``None``
            (step 0, or not known).
        lr: the run's learning rate (the lookahead step of the ``tag`` probe), or ``None`` (not known).
    """

    model: ProbedModule
    tasks: Sequence[Task]
    samples: Mapping[str, tuple[Tensor, Tensor]]
    step: int = 0
    seed: int = 0
    batch_size: int = 32
    update: Tensor | None = None
    lr: float | None = None


@dataclass(frozen=True)
class Probe:
    """A registered probe: its measure function, the quantities it writes and the smallest training batch size
    it can measure with (see the module docstring and :func:`register_probe`)."""

    name: str
    measure: Callable[..., Any]
    quantities: tuple[str, ...]
    per_task: bool = True
    task_quantities: tuple[str, ...] | None = None
    min_batch_size: int = 1

    @property
    def plotted_per_task(self) -> tuple[str, ...]:
        """The quantities whose rows belong to one task (all of a per-task probe unless declared)."""
        if self.task_quantities is not None:
            return self.task_quantities
        return self.quantities if self.per_task else ()


BUILTIN_PROBES = {
    "coherence": "mtlens.probes.coherence",
    "fisher": "mtlens.probes.fisher",
    "sharpness": "mtlens.probes.sharpness",
    "sharpness_sam": "mtlens.probes.sharpness",
    "conflict": "mtlens.probes.conflict",
    "alignment": "mtlens.probes.alignment",
    "inter_alignment": "mtlens.probes.alignment",
    "tag": "mtlens.probes.affinity",
}
"""The built-in probes in measuring and plotting order, and the module that registers each:
``coherence`` (probe/grad_coherence, probe/m_coherence), ``fisher`` (probe/fisher_trace),
``sharpness`` (probe/sharpness), ``sharpness_sam`` (probe/sharpness_sam), ``conflict``
(probe/grad_norm, probe/update_cosine, probe/conflict_cosine, probe/magnitude_similarity,
probe/magnitude_ratio, probe/conflict_fraction, probe/update_norm) and ``alignment``
(probe/intra_cosine_subbatch, probe/intra_cosine_classgroup), ``inter_alignment``
(probe/inter_cosine_subbatch: the inter-task cosine at the intra-task sub-batch cosine's noise, one row per
task pair; not a default probe) and ``tag`` (probe/lookahead_affinity: TAG's inter-task affinity, one row per
ordered task pair; not a default probe)."""

DEFAULT_PROBES = ("coherence", "fisher", "sharpness_sam", "conflict", "alignment")
"""The probes a config runs unless it says otherwise: all but the adaptive worst-case sharpness,
which costs ``steps + 2`` gradients per batch (about five times any other probe with the default
10 steps); name it in ``probes`` to run it."""

PROBES: Registry[Probe] = Registry(
    "probe",
    builtins=tuple(dict.fromkeys(BUILTIN_PROBES.values())),
    ignored_parameters=("context", "task"),
    signature_of=lambda probe: probe.measure,
)
"""Every probe by name; its options are the keyword parameters of its ``measure``."""


def ordered_probes() -> list[Probe]:
    """Every registered probe: the built-ins in :data:`BUILTIN_PROBES` order, then the others in
    registration order."""
    entries = dict(PROBES.items())
    names = [n for n in BUILTIN_PROBES if n in entries] + [n for n in entries if n not in BUILTIN_PROBES]
    return [entries[n] for n in names]


def check_required_probe_options(name: str, options: Mapping[str, Any] | None = None) -> None:
    """Raise one-line :class:`ConfigError` naming probe ``name`` and each of its options without a default
    that ``options`` does not give: the probe cannot run without them."""
    missing = [option for option in PROBES.required_options(name) if option not in (options or {})]
    if missing:
        raise ConfigError(
            f"probe_options.{name}: option(s) {missing} of probe {name!r} are required (they have no default); "
            f"give them as probe_options: {{{name}: {{{missing[0]}: ...}}}}"
        )


def validate_probe_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Probe ``name``'s options: its defaults with ``options`` on top, validated against the
    annotations of its ``measure`` (e.g. ``Annotated[int, Field(gt=0)]``); a ConfigError naming
    the option otherwise, or the options it requires that ``options`` lacks
    (:func:`check_required_probe_options`)."""
    given = dict(options or {})
    PROBES.check_options(name, given)
    check_required_probe_options(name, given)
    measure = PROBES.get(name).measure
    hints = get_type_hints(measure, include_extras=True)
    fields: dict[str, Any] = {
        option: (hints.get(option, Any), default) for option, default in PROBES.options(name).items()
    }
    try:
        validated = create_model(f"{name}_options", **fields).model_validate(given)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"probe_options.{name}: {problems}") from None
    return validated.model_dump()


def check_measure_signature(name: str, measure: Callable[..., Any], per_task: bool) -> None:
    """Raise one-line :class:`ConfigError` unless ``measure`` can be called as probe ``name`` is called (module
    docstring): ``measure(context, task, **options)`` for a per-task probe, ``measure(context, **options)`` for a
    per-run one, every option a keyword parameter.  Checked when the probe is registered: a signature that does
    not fit failed only in training, once run directories existed (``got multiple values for argument``)."""
    leading = ("context", "task") if per_task else ("context",)
    shape = f"measure({', '.join(leading)}, **options)"
    kind = "per-task" if per_task else "per-run (per_task=False)"
    if not callable(measure):
        raise ConfigError(f"probe {name!r}: expected a function {shape}, got {measure!r}")
    parameters = list(inspect.signature(measure).parameters.values())
    first = [p.name for p in parameters[: len(leading)] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    options = parameters[len(leading) :]
    problem = None
    if tuple(first) != leading:
        problem = f"its parameters must start with {', '.join(leading)}"
    elif any(p.name == "task" for p in options):
        problem = "a per-run probe is given no task (register it per-task, or rename the option)"
    elif any(p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL) for p in options):
        problem = "its options must be keyword parameters"
    if problem:
        names = [p.name for p in parameters]
        hint = " (or register it with per_task=False if it measures the whole run)" if "task" not in names else ""
        raise ConfigError(
            f"probe {name!r}: a {kind} probe is called as {shape}, but "
            f"{getattr(measure, '__qualname__', 'measure')}{inspect.signature(measure)} does not fit: {problem}{hint}"
        )


def register_probe(
    name: str,
    quantities: Iterable[str],
    per_task: bool = True,
    task_quantities: Iterable[str] | None = None,
    min_batch_size: int = 1,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``measure`` as probe ``name``, which no other probe may hold
    (:meth:`~mtlens.registry.Registry.register`); see the module docstring.
    ``min_batch_size``: the smallest training batch size (``context.batch_size``) the probe can measure with;
    a config naming the probe with a smaller ``batch_size`` is refused before any training."""
    names = tuple(quantities)
    bad = [q for q in names if not q.startswith(PROBE_PREFIX)]
    if bad or not names:
        raise ValueError(f"probe {name!r}: quantities must be non-empty names starting with 'probe/', got {names}")
    if min_batch_size < 1:
        raise ValueError(f"probe {name!r}: min_batch_size must be at least 1, got {min_batch_size}")

    def decorator(measure: Callable[..., Any]) -> Callable[..., Any]:
        check_measure_signature(name, measure, per_task)
        per_task_names = None if task_quantities is None else tuple(task_quantities)
        PROBES.register(name, Probe(name, measure, names, per_task, per_task_names, min_batch_size))
        return measure

    return decorator


def measure_probes(
    context: ProbeContext, names: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Row]:
    """Rows of the probes ``names`` on ``context``, with no side effects.

    Runs inside ``torch.random.fork_rng`` (CPU and the model's CUDA device), with the model in eval
    mode (batch norm uses, never updates, its running statistics; dropout is off) and every
    parameter's ``.grad`` put back afterwards.  Per-task probes come first (task by task, each in
    registration order), then per-run probes.
    """
    for name in names:
        PROBES.get(name)  # an unknown name lists the registered probes
    selected = [(probe.name, probe) for probe in ordered_probes() if probe.name in set(names)]
    settings = {name: validate_probe_options(name, (options or {}).get(name)) for name, _ in selected}
    model = context.model
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    devices = sorted({p.device for p in params if p.device.type == "cuda"}, key=str)
    was_training = model.training
    rows: list[Row] = []
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            for task in context.tasks:
                for name, probe in selected:
                    if probe.per_task:
                        values = probe.measure(context, task, **settings[name])
                        if not isinstance(values, Mapping):
                            raise TypeError(
                                f"probe {name!r} returned {type(values).__name__}; a per-task probe returns "
                                "{name: value} for the names of its quantities"
                            )
                        new = [
                            {"task": task.name, "quantity": probe_quantity(key), "value": float(value)}
                            for key, value in values.items()
                        ]
                        rows += _declared(probe, new)
            for name, probe in selected:
                if not probe.per_task:
                    rows += _declared(probe, probe.measure(context, **settings[name]))
    finally:
        model.train(was_training)
        for p, grad in zip(params, saved_grads):
            p.grad = grad
    return rows


def _declared(probe: Probe, rows: list[Row]) -> list[Row]:
    """``rows``, after checking that each is a row of a quantity ``probe`` declares: a quantity written but
    not declared would be stored, yet no report or analysis would know it is the probe's (``ValueError``
    naming it otherwise)."""
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) and "quantity" in row for row in rows):
        raise TypeError(
            f"probe {probe.name!r} returned {rows!r:.80}; a per-run probe returns a list of rows "
            '{"task", "quantity", "value"}'
        )
    undeclared = sorted({str(row["quantity"]) for row in rows} - set(probe.quantities))
    if undeclared:
        raise ValueError(
            f"probe {probe.name!r} wrote {undeclared}, which it does not declare (its quantities: "
            f"{list(probe.quantities)}); name every quantity it writes in register_probe(quantities=...)"
        )
    return rows


def per_task_quantities() -> list[str]:
    """Quantities of one task over every registered probe, in registration order (what the report plots)."""
    return [q for probe in ordered_probes() for q in probe.plotted_per_task]
