"""The trainer: determinism, STL/MTL comparability, divergence, and exact resume."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mtlens import RunStore, parse_config, regression_task, train_run
from mtlens.models import build_model
from mtlens.orchestration import run_configs
from mtlens.settings import Setting, Split, TaskData, load_setting, register_setting
from mtlens.training.batches import BatchStream
from mtlens.training.config import resolve_config


def _rows(store: RunStore, config) -> pd.DataFrame:
    return store.trajectory(resolve_config(config).run_id)


def test_same_seed_gives_identical_trajectory_and_other_seed_differs(tmp_path, tiny):
    config = parse_config(tiny)
    first, second = RunStore(tmp_path / "one"), RunStore(tmp_path / "two")
    assert train_run(config, first, progress=False) == "finished"
    assert train_run(config, second, progress=False) == "finished"
    a, b = _rows(first, config), _rows(second, config)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)
    other = parse_config({**tiny, "seed": 1})
    train_run(other, first, progress=False)
    c = _rows(first, other)
    assert not (a["value"].to_numpy() == c["value"].to_numpy()).all()


def test_rows_are_tidy_and_cover_every_task_split_and_epoch(store, tiny):
    config = parse_config(tiny)
    train_run(config, store, progress=False)
    rows = _rows(store, config)
    setting = load_setting("digits_pair", **tiny["setting_options"])
    steps_per_epoch = setting.steps_per_epoch(32)
    assert sorted(rows["step"].unique()) == [0, steps_per_epoch, 2 * steps_per_epoch]
    expected = {f"{split}/{m}" for split in ("train", "val", "test") for m in ("loss", "accuracy", "error")}
    for task in ("a", "b"):
        assert set(rows.loc[rows["task"] == task, "quantity"]) == expected
    assert not rows.duplicated(["run_id", "task", "step", "quantity"]).any()
    assert (rows["mode"] == "mtl").all() and (rows["method"] == "sum").all()
    # The training loss at step 0 is the loss of the untrained model: close to log(10).
    start = rows[(rows["step"] == 0) & (rows["quantity"] == "train/loss")]["value"]
    assert ((start > 1.5) & (start < 3.5)).all()
    end = rows[(rows["step"] == 2 * steps_per_epoch) & (rows["quantity"] == "train/loss")]["value"]
    assert (end.to_numpy() < start.to_numpy()).all()


def test_stl_and_mtl_share_initialization_and_data_order(tiny):
    setting = load_setting("digits_pair", **tiny["setting_options"])
    stl = build_model(setting.encoder, setting.feature_dim, setting.select(["a"]), seed=3)
    mtl = build_model(setting.encoder, setting.feature_dim, setting.select(["a", "b"]), seed=3)
    for key, value in stl.state_dict().items():
        assert torch.equal(value, mtl.state_dict()[key]), key
    stl_stream = BatchStream(setting, ["a"], 32, seed=3)
    mtl_stream = BatchStream(setting, ["a", "b"], 32, seed=3)
    for _ in range(20):  # crosses an epoch boundary of task a (256 / 32 = 8 steps)
        s, m = stl_stream.next(), mtl_stream.next()
        source = setting.data["a"].source
        assert torch.equal(s[source].inputs, m[source].inputs)
        assert torch.equal(s[source].targets["a"], m[source].targets["a"])


def test_stl_and_mtl_take_the_same_number_of_steps(store, tiny):
    results = run_configs(
        [resolve_config(parse_config({**tiny, "tasks": ["a"]})), resolve_config(parse_config(tiny))],
        store,
        progress=False,
    )
    assert list(results["state"]) == ["finished", "finished"]
    assert len({store.status(r)["step"] for r in results["run_id"]}) == 1


@register_setting("test_exploding")
def _exploding_setting(scale: float = 1e30) -> Setting:
    """One regression task whose targets overflow float32 when squared (a diverging run)."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = torch.full((64, 1), scale)
    split = Split(x, y)
    return Setting(
        name="test_exploding",
        tasks=(regression_task("r"),),
        data={"r": TaskData("test_exploding", split, split, split)},
        encoder=lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()),
        feature_dim=8,
    )


def test_diverging_run_is_marked_and_does_not_stop_the_study(store, tiny):
    exploding = resolve_config(parse_config({"setting": "test_exploding", "batch_size": 16, "epochs": 2}))
    healthy = resolve_config(parse_config(tiny))
    results = run_configs([exploding, healthy], store, progress=False)
    assert list(results["state"]) == ["diverged", "finished"]
    status = store.status(exploding.run_id)
    assert status["state"] == "diverged" and status["step"] == 1
    assert "non-finite loss" in status["message"]
    assert len(store.trajectory(exploding.run_id)) > 0  # the step-0 rows survive
    # A diverged run is complete: running it again changes nothing.
    assert train_run(exploding, store, progress=False) == "diverged"
    index = store.runs().set_index("run_id")
    assert index.loc[exploding.run_id, "state"] == "diverged"


def test_a_model_whose_outputs_overflow_after_an_update_is_diverged_not_failed(store):
    """Audit E 2026-12-06: at lr 1e8 the update of step 2 left finite parameters whose outputs overflow, the
    step's Fisher probe sampled labels from NaN probabilities and raised, and the run ended ``failed``: a sweep
    grid's too-large learning rate failed the sweep on every rerun.  It is ``diverged`` at the next step."""
    config = resolve_config(
        parse_config(
            {
                "setting": "digits_pair",
                "tasks": ["a"],
                "epochs": 2,
                "optimizer": "sgd",
                "lr": 1e8,
                "setting_options": {"n_train": 100, "n_val": 50},
            }
        )
    )
    assert run_configs([config], store, progress=False)["state"].tolist() == ["diverged"]
    status = store.status(config.run_id)
    assert status["message"].startswith("non-finite training-split loss after the update at step")
    assert store.trajectory(config.run_id)["step"].max() < status["step"]


def test_failed_run_is_recorded_with_its_error_and_the_study_goes_on(store, tiny):
    def flaky_train(config, store, setting, progress):
        if config.tasks == ["a"]:
            raise RuntimeError("out of memory (simulated)")
        return train_run(config, store, setting=setting, progress=progress)

    configs = [resolve_config(parse_config({**tiny, "tasks": [t]})) for t in ("a", "b")]
    results = run_configs(configs, store, progress=False, train=flaky_train)
    assert list(results["state"]) == ["failed", "finished"]
    assert "out of memory (simulated)" in store.status(configs[0].run_id)["message"]


def _selected_models(store: RunStore, config) -> dict[str, tuple[int, dict[str, torch.Tensor]]]:
    run_id = resolve_config(config).run_id
    steps = store.selected_model_steps(run_id)
    assert all(len(s) == 1 for s in steps.values()), steps  # older selections are pruned
    return {
        task: (s[0], torch.load(store.selected_model_path(run_id, task, s[0]), weights_only=True))
        for task, s in steps.items()
    }


def test_selected_models_hold_the_weights_of_the_validation_selected_step(tmp_path, tiny):
    from mtlens.analysis.transfer import selected_checkpoints
    from mtlens.training.evaluate import evaluate_task

    raw = {**tiny, "epochs": 3, "eval_every_steps": 2, "lr": 0.03}  # a large lr, so val loss rises again
    config, plain = parse_config({**raw, "save_selected_models": True}), parse_config(raw)
    store = RunStore(tmp_path)
    train_run(config, store, progress=False)
    train_run(plain, store, progress=False)
    assert resolve_config(config).run_id != resolve_config(plain).run_id  # the flag is part of the identity
    rows = _rows(store, config)
    pd.testing.assert_frame_equal(rows.drop(columns="run_id"), _rows(store, plain).drop(columns="run_id"))
    assert "save_selected_models" not in resolve_config(plain).identity()

    expected = selected_checkpoints(rows, store.task_info()).set_index("task")["step"]
    saved = _selected_models(store, config)
    assert {task: step for task, (step, _) in saved.items()} == expected.to_dict()
    assert expected.max() < resolve_config(config).epochs * 8  # the selection is not just the last step
    setting = load_setting("digits_pair", n_train=256, n_val=64, n_test=64)
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, 0)
    for task, (step, weights) in saved.items():  # evaluating the saved weights reproduces the recorded score
        model.load_state_dict(weights)
        val = evaluate_task(model, setting.task(task), setting.data[task].val, torch.device("cpu"))
        recorded = rows[(rows["task"] == task) & (rows["step"] == step) & (rows["quantity"] == "val/loss")]
        assert val["loss"] == pytest.approx(recorded["value"].item(), rel=1e-6)


@pytest.mark.parametrize("save_selected", [False, True])
def test_crash_between_rows_and_checkpoint_loses_and_duplicates_nothing(tmp_path, tiny, monkeypatch, save_selected):
    """Rows (and selected models) written after the last checkpoint are recomputed on resume."""
    from mtlens.training import trainer

    config = parse_config({**tiny, "eval_every_steps": 3, "save_selected_models": save_selected})
    reference = RunStore(tmp_path / "reference")
    train_run(config, reference, progress=False)

    crashing = RunStore(tmp_path / "crashing")
    original = trainer.TrainingRun._checkpoint

    def checkpoint_then_crash(self, step):
        if step == 9:  # the rows of step 9 are written, its checkpoint is not
            raise KeyboardInterrupt
        original(self, step)

    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", checkpoint_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, crashing, progress=False)
    run_id = resolve_config(config).run_id
    assert 9 in crashing.part_steps(run_id)
    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", original)
    assert train_run(config, crashing, progress=False) == "finished"
    pd.testing.assert_frame_equal(_rows(crashing, config), _rows(reference, config))
    resumed, uninterrupted = _selected_models(crashing, config), _selected_models(reference, config)
    assert len(uninterrupted) == (2 if save_selected else 0)
    for task, (step, weights) in uninterrupted.items():
        assert resumed[task][0] == step
        assert all(torch.equal(resumed[task][1][name], value) for name, value in weights.items())


def test_a_run_that_raises_in_train_run_is_marked_failed_with_its_innermost_frames(tmp_path, tiny, monkeypatch):
    """train_run, not only the study's wrapper, owns the failed state: the error is raised and the status
    says ``failed`` with the error and the frame that raised it (the innermost ones); the run resumes and
    finishes with the rows of an uninterrupted run."""
    from mtlens.training import trainer

    config = parse_config({**tiny, "eval_every_steps": 3})
    reference = RunStore(tmp_path / "reference")
    train_run(config, reference, progress=False)
    store = RunStore(tmp_path / "store")
    original = trainer.TrainingRun._checkpoint

    def checkpoint_then_raise(self, step):
        original(self, step)
        if step == 6:
            raise ValueError("a bug in the loss at step 6")

    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", checkpoint_then_raise)
    with pytest.raises(ValueError, match="a bug in the loss"):
        train_run(config, store, progress=False)
    run_id = resolve_config(config).run_id
    status = store.status(run_id)
    assert status["state"] == "failed" and status["message"].startswith("ValueError: a bug in the loss at step 6")
    assert "checkpoint_then_raise" in status["message"]  # the frame that raised, not only the outer ones
    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", original)
    assert train_run(config, store, progress=False) == "finished"
    pd.testing.assert_frame_equal(_rows(store, config), _rows(reference, config))


PROBES_ON = {
    "probes": ["coherence", "fisher", "sharpness_sam", "conflict", "alignment"],
    "probe_sample_size": 64,
    "probe_first_epoch": 0.25,
}  # probe steps 0, 2, 4, 8, 16, 24: on both sides of the kill


@pytest.mark.parametrize(
    "kill_after_step, probes", [(4, {}), (13, {}), (10, PROBES_ON)], ids=["step4", "step13", "step10-probes"]
)
def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, tiny, kill_during_training, kill_after_step, probes):
    """A real training process is killed with SIGKILL mid-run; the rerun completes the same trajectory,
    probe rows included."""
    raw = {**tiny, "epochs": 3, "eval_every_steps": 2, **probes}
    config = parse_config(raw)
    run_id = resolve_config(config).run_id
    reference = RunStore(tmp_path / "reference")
    train_run(config, reference, progress=False)

    killed = RunStore(tmp_path / "killed")
    kill_during_training(killed, raw, kill_after_step)
    assert 0 < killed.status(run_id)["step"] < resolve_config(config).epochs * 8

    assert train_run(config, killed, progress=False) == "finished"
    resumed, uninterrupted = _rows(killed, config), _rows(reference, config)
    assert len(resumed) == len(uninterrupted)
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    probe_steps = set(resumed.loc[resumed["quantity"].str.startswith("probe/"), "step"])
    assert probe_steps == ({0, 2, 4, 8, 16, 24} if probes else set())
    # A finished run is not trained again.
    before = killed.checkpoint_path(run_id).stat().st_mtime_ns
    assert train_run(config, killed, progress=False) == "finished"
    assert killed.checkpoint_path(run_id).stat().st_mtime_ns == before


def test_dense_early_evaluation_schedule(store, tiny):
    config = parse_config({**tiny, "epochs": 3, "eval_every_steps": 2, "eval_dense_until_epoch": 1.0})
    train_run(config, store, progress=False)
    steps = sorted(_rows(store, config)["step"].unique())
    assert steps == [0, 2, 4, 6, 8, 16, 24]  # 8 steps per epoch: dense in epoch 1, then epoch ends
