"""Packs: several compatible runs trained together as one ``torch.func`` computation.

A pack trains M runs at once, each kept exactly as it is unpacked: its own
:class:`~mtlens.training.trainer.TrainingRun` (run id, store directory, rows, checkpoints,
resume, divergence handling, probes), its own model and its own ``torch.optim`` optimizer (so
checkpoints and state dicts are those of the unpacked run), its own :class:`BatchStream` (so
member ``m`` sees exactly the batches, and starts from exactly the initialization, of the
unpacked run with its seed: STL/MTL pairing holds).  Only the step's arithmetic is shared:

1. every member draws its next batches; per input source they are stacked to ``(M, B, ...)``;
2. the members' parameters are stacked with ``torch.stack`` over their live leaves (``(M, ...)``
   per parameter, so gradients flow back into each member's own parameters);
3. ``vmap(functional_call)`` over the members gives each member's task losses ``L_{m,t}``;
4. ``sum_m objective_m`` -- ``objective_m = sum_t C_m s_{m,t} L_{m,t}`` (or the mean over tasks:
   :meth:`~mtlens.aggregators.LinearScalarization.objective`) -- is back-propagated
   once: members share no parameter, so member ``m``'s gradient is that of its own objective;
5. each member's optimizer steps; at record and probe steps each member checks its divergence,
   writes its rows and its checkpoint (:meth:`TrainingRun.end_step`) under its own global RNG
   state (swapped in and out; a step draws no random number, ``vmap(randomness="error")``).

Compatible runs (:func:`pack_key`) share the setting and its options, the task set, the batch
size, the number of epochs, the evaluation schedule, the device, the thread count, the mixed
precision and ``pack_size``, and use linear scalarization (``sum`` or ``mean``; every STL run
does).  They may differ in anything else: seed, learning rate, optimizer and momentum, loss
scales, probes.  Update methods that need per-task gradients or weights learned from the
losses (gradient aggregators such as ``pcgrad`` or ``mgda``, loss weightings such as ``uw``,
``mgda_ub``) have no single objective per member and are never packed: their runs train one at
a time.  So are models with buffers (batch norm's running statistics) or dropout
(:func:`unpackable_reason`): a pack of such runs trains its members one after another.

Tolerance.  Batched kernels (grouped convolutions, batched matrix products) sum in another
order than the unbatched ones: a member's gradients differ from the unpacked run's by about 1e-6
relative per step, and training amplifies that where it is chaotic (a ReLU or max-pool tie
flipping).  Every recorded value of the short runs of ``tests/test_packs.py`` (digits_pair MTL,
16 steps, Adam and SGD with momentum) agrees within ``rtol = PACK_RTOL`` and ``atol = PACK_ATOL``
(``numpy.testing.assert_allclose``; measured: about 2e-8); after one epoch of ``mnist_pair`` the
largest difference over all rows was 2-3e-3 (``benchmarks/packing.py``: a few test examples
flipping their prediction).  So a packed run is the unpacked run up to float rounding, like a run
under another thread count -- not bit for bit.

Resume and failures.  A member resumes from its own checkpoint.  Members are checkpointed at the
same steps, but a kill can fall between two members' checkpoints; the pack starts at the
smallest restored step and each step stacks only the members that have not done it yet, so every
member resumes exactly where it stopped.  A member may be resumed in another pack, or unpacked
(``pack_size`` is not part of the run identity); its status records the size of the pack it last
trained in.  A diverging member is finalized ``diverged`` (at its first non-finite step, as
unpacked) and dropped, and so is a member whose recording raises (its error is returned); the
others go on.  An error in the shared step ends the pack: members that diverged are finalized,
the others get the error (and stay resumable).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from mtlens.aggregators import LinearScalarization, make_method
from mtlens.errors import ConfigError
from mtlens.settings import Setting
from mtlens.store import RunState, RunStore
from mtlens.training.batches import SourceBatch
from mtlens.training.config import ResolvedRunConfig, RunConfig, load_configured_setting, resolve_config
from mtlens.training.trainer import TrainingRun, open_run, task_losses, torch_threads

PACK_RTOL = 1e-3
"""Relative tolerance of a packed member's recorded values against the unpacked run's (module docstring)."""
PACK_ATOL = 1e-4
"""Absolute tolerance of a packed member's recorded values against the unpacked run's (module docstring)."""

PackOutcome = str | Exception
"""A member's outcome: its final state (``finished``/``diverged``, or the stored state of a complete
run), or the error that stopped it (:class:`~mtlens.store.RunLockedError`: another process holds it)."""


def pack_key(config: ResolvedRunConfig) -> tuple[Any, ...] | None:
    """What runs must share to be trained in one pack (module docstring); ``None`` for a run that is
    never packed: ``pack_size`` 1, or an update method other than linear scalarization."""
    if config.pack_size < 2:
        return None
    if not isinstance(make_method(config.method, config.method_options, config.seed), LinearScalarization):
        return None
    return (
        config.setting,
        json.dumps(config.setting_options, sort_keys=True, default=str),
        tuple(config.tasks),
        config.batch_size,
        config.epochs,
        config.eval_every_steps,
        config.eval_dense_until_epoch,
        config.device,
        config.threads,
        config.mixed_precision,
        config.pack_size,
    )


def unpackable_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stepped under ``vmap`` as a pack member, or ``None`` if it can: buffers
    (batch norm's running statistics are updated in place) and dropout (random numbers per member)."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model has buffers ({', '.join(buffers[:3])}{', ...' if len(buffers) > 3 else ''})"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return "the model has dropout"
    return None


def train_pack(
    configs: Sequence[RunConfig], store: RunStore, setting: Setting | None = None, progress: bool = True
) -> dict[str, PackOutcome]:
    """Train (or resume, or skip where complete) the runs of ``configs`` as one pack; ``{run_id: outcome}``.

    The configs must be compatible (one :func:`pack_key`; :class:`ConfigError` otherwise).  Complete
    runs are skipped, and a run another process holds is left alone (outcome
    :class:`~mtlens.store.RunLockedError`); a run that cannot be opened or resumed gets its error,
    the others go on.  If the model cannot be packed (:func:`unpackable_reason`), the members train
    one after another, exactly as unpacked runs."""
    setting = setting or load_configured_setting(configs[0])
    resolved = list({c.run_id: c for c in (resolve_config(c, setting) for c in configs)}.values())
    keys = {pack_key(c) for c in resolved}
    if len(keys) != 1 or None in keys:
        raise ConfigError(
            f"runs {[c.run_id for c in resolved]} cannot be packed together: a pack needs pack_size > 1, a "
            f"linear-scalarization method (sum, mean) and one setting, task set, batch size, schedule, device, "
            f"thread count and mixed precision"
        )
    outcomes: dict[str, PackOutcome] = {}
    with ExitStack() as held, torch_threads(resolved[0].threads):
        members: list[tuple[TrainingRun, int, tuple[Tensor, list[Tensor] | None]]] = []
        for config in resolved:
            try:
                opened = open_run(config, store, setting, held)
                if isinstance(opened, str):
                    outcomes[config.run_id] = opened
                    continue
                run = TrainingRun(config, setting, opened)  # seeds the global RNG: start it before the next one
                reason = unpackable_reason(run.model)
                if reason is not None:
                    if not outcomes:
                        warnings.warn(f"{config.setting}: {reason}, so its runs train one at a time", stacklevel=2)
                    outcomes[config.run_id] = run.train(progress)
                    continue
                run.pack_size = len(resolved)  # until RunPack counts the members that did open
                members.append((run, run.start(), _rng_state(run.device)))  # its stream, before the next seeds
            except Exception as err:  # this member only (RunLockedError: another process trains it)
                outcomes[config.run_id] = err
        if members:
            runs, steps, streams = (list(column) for column in zip(*members, strict=True))
            outcomes.update(RunPack(runs, steps, streams).train(progress))
    return outcomes


class RunPack:
    """Started runs of one pack (``members``, each at its restored step in ``steps`` with the global random
    state ``streams`` it had right after it started), trained together to their end; see the module
    docstring."""

    def __init__(
        self,
        members: Sequence[TrainingRun],
        steps: Sequence[int],
        streams: Sequence[tuple[Tensor, list[Tensor] | None]],
    ):
        self.members = list(members)
        for m in members:
            m.pack_size = len(members)
        self.steps = {m.run_id: step for m, step in zip(members, steps, strict=True)}
        # each member's own stream: captured when it started, before the next member's start re-seeded it
        self.rng = {m.run_id: stream for m, stream in zip(members, streams, strict=True)}
        self.template = members[0].model
        self.setting = members[0].setting
        self.names = [name for name, _ in self.template.named_parameters()]
        self.parameters = {m.run_id: dict(m.model.named_parameters()) for m in members}

    def train(self, progress: bool) -> dict[str, PackOutcome]:
        """Step the live members to the end; ``{run_id: outcome}`` of every member."""
        outcomes: dict[str, PackOutcome] = {}
        live = list(self.members)
        total = live[0].total_steps
        step = min(self.steps.values())
        with tqdm(
            total=total,
            initial=step,
            desc=f"pack of {len(live)}",
            disable=None if progress else True,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            while live and step < total:
                step += 1
                active = [m for m in live if self.steps[m.run_id] < step]
                try:
                    self._step(active, step)
                except Exception as err:
                    for m in live:
                        with self._own_rng(m):
                            outcomes[m.run_id] = RunState.DIVERGED if m.finalize_if_diverged() else err
                    return outcomes
                bar.update(1)
                for m in active:
                    self.steps[m.run_id] = step
                    ended: PackOutcome | None
                    try:
                        with self._own_rng(m):
                            ended = m.end_step(step)
                    except Exception as err:  # this member's recording failed: drop it, the rest go on
                        ended = err
                    if ended is not None:
                        outcomes[m.run_id] = ended
                        live.remove(m)
        for m in live:
            try:
                outcomes[m.run_id] = m.finish()
            except Exception as err:
                outcomes[m.run_id] = err
        return outcomes

    def _step(self, active: list[TrainingRun], step: int) -> None:
        """One optimizer step of every member in ``active`` (module docstring, steps 1-5 up to the records)."""
        params = {name: torch.stack([self.parameters[m.run_id][name] for m in active]) for name in self.names}
        drawn = [m.stream.next() for m in active]
        batches = {
            source: (
                torch.stack([d[source].inputs for d in drawn]),
                {task: torch.stack([d[source].targets[task] for d in drawn]) for task in first.targets},
            )
            for source, first in drawn[0].items()
        }
        for m in active:
            m.model.train()
        with active[0].autocast():
            losses = vmap(self._member_losses, randomness="error")(params, batches)
        objective = torch.zeros((), device=active[0].device)
        for i, m in enumerate(active):
            own = {task: values[i] for task, values in losses.items()}
            m.watch_divergence(own, step)
            m.optimizer.zero_grad(set_to_none=True)
            assert isinstance(m.method, LinearScalarization)  # pack_key admits nothing else
            objective = objective + m.method.objective(m.scaled(own))
        objective.backward()
        for m in active:
            m.accumulate({})  # what LinearScalarization.backward reports: no diagnostics
            m.optimizer.step()

    def _member_losses(
        self, params: dict[str, Tensor], batches: dict[str, tuple[Tensor, dict[str, Tensor]]]
    ) -> dict[str, Tensor]:
        """One member's task losses (inside ``vmap``: ``params`` and ``batches`` are its slices)."""

        def forward(inputs: Tensor, tasks: list[str]) -> dict[str, Tensor]:
            return functional_call(self.template, params, (inputs, tasks))

        return task_losses(
            self.setting, forward, {s: SourceBatch(inputs, targets) for s, (inputs, targets) in batches.items()}
        )

    @contextmanager
    def _own_rng(self, member: TrainingRun) -> Iterator[None]:
        """Run the body under ``member``'s global RNG state, and keep the state it leaves."""
        _set_rng_state(member.device, self.rng[member.run_id])
        try:
            yield
        finally:
            self.rng[member.run_id] = _rng_state(member.device)


def _rng_state(device: torch.device) -> tuple[Tensor, list[Tensor] | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[Tensor, list[Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(state[1])
