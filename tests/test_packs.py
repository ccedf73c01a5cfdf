"""Packs of runs (mtlens.training.pack): every member's rows equal its unpacked run's within the documented
tolerance, members keep their own ids, divergence, checkpoints and resume; what cannot be packed is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mtlens import RunStore, parse_config
from mtlens.errors import ConfigError
from mtlens.orchestration.packs import group_into_packs
from mtlens.settings import Setting, Split, TaskData, register_setting
from mtlens.tasks import regression_task
from mtlens.training.config import resolve_config
from mtlens.training.handle import Checkpoint, RunHandle
from mtlens.training.pack import PACK_ATOL, PACK_RTOL, pack_key, train_pack
from mtlens.training.trainer import train_run

TINY = {
    "setting": "digits_pair",
    "epochs": 2,
    "batch_size": 32,
    "train_eval_size": 256,
    "probes": [],
    "setting_options": {"n_train": 256, "n_val": 64, "n_test": 64},
    "pack_size": 3,
}
# Three compatible MTL runs that differ in seed, learning rate and optimizer (each member has its own).
MEMBERS = [
    {**TINY, "seed": 0, "lr": 1e-3},
    {**TINY, "seed": 1, "lr": 3e-3},
    {**TINY, "seed": 2, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9},
]
DIVERGING = {**TINY, "seed": 1, "lr": 1e6, "optimizer": "sgd"}  # non-finite losses from step 3


def configs(raws: list[dict]) -> list:
    return [resolve_config(parse_config(raw)) for raw in raws]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """The members and the diverging run trained one by one, unpacked (shared by the tests of this module)."""
    store = RunStore(tmp_path_factory.mktemp("reference"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLENS_DATA", str(tmp_path_factory.getbasetemp() / "data"))
        for config in configs([*MEMBERS, DIVERGING]):
            train_run(config, store, progress=False)
    return store


def assert_rows_match(packed: RunStore, reference: RunStore, run_id: str) -> None:
    """The same rows (run id, task, step, quantity, ...) with values within the pack tolerance."""
    keys = ["task", "step", "quantity"]
    got = packed.trajectory(run_id).sort_values(keys).reset_index(drop=True)
    want = reference.trajectory(run_id).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
    np.testing.assert_allclose(got["value"], want["value"], rtol=PACK_RTOL, atol=PACK_ATOL)


def test_packed_members_have_the_rows_of_their_unpacked_runs(store, reference):
    members = configs(MEMBERS)
    outcomes = train_pack(members, store, progress=False)
    assert outcomes == {c.run_id: "finished" for c in members}
    for config in members:
        assert_rows_match(store, reference, config.run_id)
        status = store.status(config.run_id)
        assert (status["state"], status["step"], status["pack_size"]) == ("finished", 16, 3)
        assert store.config(config.run_id) == {**reference.config(config.run_id), "pack_size": 3}
    # The members' values differ from one another (each trained on its own seed, lr and optimizer).
    finals = [store.trajectory(c.run_id).query("step == 16")["value"].to_numpy() for c in members]
    assert not np.allclose(finals[0], finals[1]) and not np.allclose(finals[1], finals[2])
    # Complete members are skipped: training the pack again changes nothing.
    assert train_pack(members, store, progress=False) == outcomes


def test_a_diverging_member_is_finalized_and_dropped_while_the_others_go_on(store, reference):
    healthy0, diverging, healthy2 = configs([MEMBERS[0], DIVERGING, MEMBERS[2]])
    outcomes = train_pack([healthy0, diverging, healthy2], store, progress=False)
    assert outcomes == {healthy0.run_id: "finished", diverging.run_id: "diverged", healthy2.run_id: "finished"}
    for config in (healthy0, healthy2):
        assert_rows_match(store, reference, config.run_id)
    packed, unpacked = store.status(diverging.run_id), reference.status(diverging.run_id)
    assert (packed["state"], packed["step"], packed["message"]) == ("diverged", 3, unpacked["message"])
    assert "non-finite loss at step 3" in packed["message"]
    assert_rows_match(store, reference, diverging.run_id)  # only the rows before step 3 (step 0)
    assert set(store.trajectory(diverging.run_id)["step"]) == {0}


def test_a_partly_trained_member_resumes_from_its_checkpoint_inside_the_pack(store, reference, kill_during_training):
    members = configs(MEMBERS)
    kill_during_training(store, MEMBERS[1], after_step=8)  # member 1 is one record ahead of the others
    assert store.status(members[1].run_id)["step"] >= 8
    outcomes = train_pack(members, store, progress=False)
    assert outcomes == {c.run_id: "finished" for c in members}
    for config in members:
        assert_rows_match(store, reference, config.run_id)


def test_pack_key_groups_compatible_runs_only():
    base = resolve_config(parse_config(MEMBERS[0]))
    key = pack_key(base)
    assert key is not None
    for compatible in (MEMBERS[1], MEMBERS[2], {**MEMBERS[0], "loss_scale": 2.0}, {**MEMBERS[0], "method": "mean"}):
        assert pack_key(resolve_config(parse_config(compatible))) == key
    stl = pack_key(resolve_config(parse_config({**MEMBERS[0], "tasks": ["a"]})))
    assert stl is not None and stl != key
    for other in ({"batch_size": 16}, {"epochs": 3}, {"eval_every_steps": 4}, {"threads": 2}, {"pack_size": 4}):
        assert pack_key(resolve_config(parse_config({**MEMBERS[0], **other}))) not in (None, key), other
    for never in ({"pack_size": 1}, {"method": "pcgrad"}, {"method": "uw"}, {"method": "mgda_ub"}):
        assert pack_key(resolve_config(parse_config({**MEMBERS[0], **never}))) is None, never


def test_incompatible_runs_are_refused_before_any_training(store):
    for raws in ([MEMBERS[0], {**MEMBERS[1], "batch_size": 16}], [MEMBERS[0], {**MEMBERS[1], "method": "pcgrad"}]):
        with pytest.raises(ConfigError, match="cannot be packed together"):
            train_pack(configs(raws), store, progress=False)
    assert not (store.root / "runs").exists()


@register_setting("test_batchnorm")
def _batchnorm_setting() -> Setting:
    """One regression task on an encoder with batch norm (running statistics: buffers)."""
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator)
    split = Split(x, y)
    return Setting(
        name="test_batchnorm",
        tasks=(regression_task("r"),),
        data={"r": TaskData("test_batchnorm", split, split, split)},
        encoder=lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU()),
        feature_dim=8,
    )


def test_a_model_that_cannot_be_packed_trains_its_members_one_by_one(tmp_path: Path):
    raws = [{"setting": "test_batchnorm", "batch_size": 16, "epochs": 2, "pack_size": 2, "seed": s} for s in (0, 1)]
    packed, unpacked = RunStore(tmp_path / "packed"), RunStore(tmp_path / "unpacked")
    members = configs(raws)
    with pytest.warns(UserWarning, match=r"model has buffers \(encoder.1.running_mean.*one at a time"):
        assert train_pack(members, packed, progress=False) == {c.run_id: "finished" for c in members}
    for config in members:
        train_run(config, unpacked, progress=False)
        pd.testing.assert_frame_equal(packed.trajectory(config.run_id), unpacked.trajectory(config.run_id))
        assert "pack_size" not in packed.status(config.run_id)


def test_runs_are_grouped_into_packs_of_compatible_runs_in_their_order():
    mtl = configs([{**MEMBERS[0], "seed": s} for s in range(5)])
    stl = configs([{**MEMBERS[0], "seed": s, "tasks": ["a"]} for s in range(2)])
    alone = configs([{**MEMBERS[0], "method": "pcgrad"}, {**MEMBERS[0], "pack_size": 1, "seed": 9}])
    unresolved = parse_config({**MEMBERS[0], "seed": 7})  # tasks unknown until resolved: never packed
    order = [mtl[0], stl[0], alone[0], mtl[1], mtl[2], mtl[3], stl[1], alone[1], mtl[4], unresolved]
    ids = [[c.run_id for c in group] for group in group_into_packs(order)]
    assert ids == [
        [mtl[0].run_id, mtl[1].run_id, mtl[2].run_id],  # pack_size 3
        [stl[0].run_id, stl[1].run_id],
        [alone[0].run_id],
        [mtl[3].run_id, mtl[4].run_id],
        [alone[1].run_id],
        [unresolved.run_id],
    ]


def test_each_member_checkpoints_its_own_random_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The global random state a member checkpoints is its unpacked run's at the same step: each member's
    stream is taken when it starts (taken after every member had started, all checkpointed the last one's;
    a user's probe drawing from the global generator would then differ from its unpacked run)."""
    saved: dict[str, dict[tuple[str, int], torch.Tensor]] = {}
    original = RunHandle.save_checkpoint

    def recording(self: RunHandle, checkpoint: Checkpoint, keep_selected: object = None) -> None:
        saved.setdefault(self.store.root.name, {})[(self.run_id, checkpoint.step)] = checkpoint.torch_rng.clone()
        original(self, checkpoint, keep_selected)  # type: ignore[arg-type]

    monkeypatch.setattr(RunHandle, "save_checkpoint", recording)
    members = configs([{**TINY, "epochs": 1, "seed": seed} for seed in (0, 1, 2)])
    train_pack(members, RunStore(tmp_path / "packed"), progress=False)
    for config in members:
        train_run(config, RunStore(tmp_path / "alone"), progress=False)
    assert saved["packed"].keys() == saved["alone"].keys() and len(saved["alone"]) >= 3
    assert all(torch.equal(saved["packed"][key], state) for key, state in saved["alone"].items())
