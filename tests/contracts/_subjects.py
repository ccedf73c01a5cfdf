"""The three subjects of the contract suite: the trainer, a pack and a Recorder loop, each training one
target run (a pack: the first of two members) into a store, resuming whatever that store holds.

A subject is what a user runs: ``run(store)`` trains (or resumes, or skips) and returns the target run's
final state, ``"finished"`` when it was complete already (a Recorder's :class:`RecordedRunFinishedError`).
Every subject is tiny (8 steps of ``digits_pair`` or of a 2-task MLP), so each contract case costs a
second or two.  :func:`run_slowly` is what a child process runs for the ``kill -9`` cases."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mtlens import Recorder, RunStore, parse_config, train_run
from mtlens.training.config import resolve_config
from mtlens.training.pack import PACK_ATOL, PACK_RTOL, train_pack
from mtlens.training.recorder import RecordedRunFinishedError

TINY = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 64,
    "eval_every_steps": 2,
    "probes": [],
    "setting_options": {"n_train": 128, "n_val": 32, "n_test": 32},
    "tasks": ["a", "b"],
    "method": "sum",
    "save_selected_models": True,
}
"""An MTL run of 8 steps (4 per epoch), rows and a checkpoint every 2 steps, each task's selected model kept."""


@dataclass(frozen=True)
class Subject:
    name: str
    run: Callable[[RunStore], str]
    target: str  # the run id the cases damage and check
    rtol: float = 0.0  # tolerance of a retrained run's values against the reference (packs: PACK_RTOL)
    atol: float = 0.0
    selected: bool = True  # keeps selected models (a Recorder does not)


def _trainer_config(seed: int = 0, **extra: object) -> dict:
    return {**TINY, "seed": seed, **extra}


def _run_id(raw: dict) -> str:
    return resolve_config(parse_config(raw)).run_id


def run_trainer(store: RunStore) -> str:
    return train_run(parse_config(_trainer_config()), store, progress=False)


PACK = [_trainer_config(seed, pack_size=2) for seed in (0, 1)]


def run_pack(store: RunStore) -> str:
    outcomes = train_pack([parse_config(c) for c in PACK], store, progress=False)
    outcome = outcomes[_run_id(PACK[0])]
    if isinstance(outcome, Exception):
        raise outcome
    return str(outcome)


STEPS, EVERY = 8, 2


def _recorder(store: RunStore) -> Recorder:
    return Recorder(store, "toy", ["a", "b"], seed=0, steps_per_epoch=4, hyperparameters={"lr": 0.05, "steps": STEPS})


def run_recorder(store: RunStore) -> str:
    """The README's pattern: a plain loop with ``restore`` at the start and ``checkpoint`` at each record."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=generator)
    targets = {"a": x @ torch.randn(5, generator=generator), "b": x[:, 0] - x[:, 1]}
    torch.manual_seed(0)
    model = nn.ModuleDict({"body": nn.Linear(5, 8), "a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def losses(rows: slice) -> dict[str, torch.Tensor]:
        hidden = torch.tanh(model["body"](x[rows]))
        return {t: ((model[t](hidden).squeeze(-1) - y[rows]) ** 2).mean() for t, y in targets.items()}

    try:
        with _recorder(store) as rec:
            start = 0
            restored = rec.restore()
            if restored is not None:
                start, state = restored
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            for step in range(start, STEPS + 1):
                if step > start:
                    batch = torch.randint(0, 48, (16,))
                    optimizer.zero_grad()
                    sum(losses(batch).values()).backward()  # type: ignore[union-attr]
                    optimizer.step()
                if step % EVERY == 0 and (step > start or restored is None):
                    with torch.no_grad():
                        rec.log(step, "train", {t: float(v) for t, v in losses(slice(0, 48)).items()})
                        rec.log(step, "val", {t: float(v) for t, v in losses(slice(48, 56)).items()})
                        rec.log(step, "test", {t: float(v) for t, v in losses(slice(56, 64)).items()})
                    rec.checkpoint(step, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    except RecordedRunFinishedError:
        return "finished"
    return "finished"


SUBJECTS = {
    "trainer": Subject("trainer", run_trainer, _run_id(_trainer_config())),
    "pack": Subject("pack", run_pack, _run_id(PACK[0]), PACK_RTOL, PACK_ATOL),
    "recorder": Subject("recorder", run_recorder, _recorder(RunStore("/nonexistent")).run_id, selected=False),
}


def _slowly(cls: type, name: str, seconds: float) -> None:
    """Sleep ``seconds`` after every call of ``cls.name`` (so a parent can kill the child between checkpoints)."""
    original = getattr(cls, name)

    def slow(self: object, *args: object, **kwargs: object) -> object:
        result = original(self, *args, **kwargs)
        time.sleep(seconds)
        return result

    setattr(cls, name, slow)


def run_slowly(name: str, store: RunStore) -> str:
    """Run subject ``name`` with 0.3 s after each checkpoint: what a child process to be killed runs (in the
    child only: it patches the classes of the process it runs in)."""
    from mtlens.training.trainer import TrainingRun

    _slowly(TrainingRun, "_checkpoint", 0.3)
    _slowly(Recorder, "checkpoint", 0.3)
    return SUBJECTS[name].run(store)
