"""The training loop never synchronises host and device between records: divergence is
accumulated on the device and read at record steps."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mtlens import RunStore, parse_config, regression_task, train_run
from mtlens.settings import Setting, Split, TaskData, register_setting
from mtlens.training import trainer
from mtlens.training.batches import BatchStream
from mtlens.training.config import resolve_config

# Operators that make the host wait for the device: reading a scalar (item, float, bool, int),
# data-dependent shapes, whole-tensor comparisons returning a Python bool.
SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.equal.default,
}


class SyncCounter(TorchDispatchMode):
    """Counts syncing operators and host copies (``tolist``, ``numpy``, ``cpu``) while ``counting``.

    Reads of the optimizer's step counters are not counted: PyTorch keeps them on the host
    (``capturable=False``), so reading them never waits for the device.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counting, self.outside, self.inside = False, [], 0  # counting starts once a run is built
        self.runs: list[trainer.TrainingRun] = []

    def host_counter(self, tensor: object) -> bool:
        return any(tensor is state.get("step") for run in self.runs for state in run.optimizer.state.values())

    def note(self, name: str) -> None:
        if self.counting:
            self.outside.append(name)
        else:
            self.inside += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS and not self.host_counter(args[0]):
            self.note(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def sync_counter(monkeypatch):
    """Counts syncs during training, except inside records, checkpoints and the divergence check."""
    counter = SyncCounter()
    for name in ("tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counter.note(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    original_init = trainer.TrainingRun.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        counter.runs.append(self)
        counter.counting = True

    monkeypatch.setattr(trainer.TrainingRun, "__init__", init)
    for name in ("_record", "_checkpoint", "finalize_if_diverged", "start"):
        original = getattr(trainer.TrainingRun, name)

        def paused(self, *args, _original=original, **kwargs):
            counter.counting = False
            try:
                return _original(self, *args, **kwargs)
            finally:
                counter.counting = True

        monkeypatch.setattr(trainer.TrainingRun, name, paused)
    return counter


@pytest.mark.parametrize("tasks", [["a"], ["a", "b"]])
def test_no_host_sync_between_records(tmp_path, tiny, sync_counter, tasks):
    # 8 steps per epoch, records at step 0, 3, 6, 8, 9, 12, 15, 16.
    config = resolve_config(parse_config({**tiny, "tasks": tasks, "eval_every_steps": 3}))
    with sync_counter:
        assert train_run(config, RunStore(tmp_path), progress=False) == "finished"
    assert sync_counter.outside == []
    assert sync_counter.inside > 0  # the counter does see the records' reads


N_TRAIN, BAD_ROW = 96, 5


@register_setting("test_late_divergence")
def _late_divergence_setting() -> Setting:
    """A regression task whose training row ``BAD_ROW`` has a target that overflows float32 when
    squared: the loss becomes infinite at the first step whose batch holds that row."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N_TRAIN, 4, generator=g), torch.randn(N_TRAIN, 1, generator=g)
    y[BAD_ROW] = 1e30
    held_out = Split(torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g))
    return Setting(
        name="test_late_divergence",
        tasks=(regression_task("r"),),
        data={"r": TaskData("late", Split(x, y), held_out, held_out)},
        encoder=lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()),
        feature_dim=8,
    )


def test_divergence_is_marked_at_its_step_and_no_later_row_is_kept(store):
    raw = {"setting": "test_late_divergence", "batch_size": 8, "epochs": 3, "eval_every_steps": 5, "probes": []}
    config = resolve_config(parse_config(raw))
    stream = BatchStream(_late_divergence_setting(), ["r"], 8, config.seed)
    first_bad = next(step for step in range(1, 37) if BAD_ROW in _rows_of(stream.next(), "late"))
    assert first_bad % 5 != 0 and first_bad % 12 != 0  # it falls between records
    assert train_run(config, store, progress=False) == "diverged"
    status = store.status(config.run_id)
    assert status["state"] == "diverged" and status["step"] == first_bad
    assert "non-finite loss" in status["message"] and "'r': inf" in status["message"]
    steps = sorted(set(store.trajectory(config.run_id)["step"]))
    assert steps and max(steps) < first_bad
    records = [s for s in range(first_bad) if s == 0 or s % 5 == 0 or s % 12 == 0]
    assert steps == records


def _rows_of(batches, source: str) -> set[int]:
    """Training-row indices of one step's batch, recovered from its inputs."""
    setting = _late_divergence_setting()
    x = setting.data["r"].train.inputs
    return {int((x == row).all(dim=1).nonzero()) for row in batches[source].inputs}
