"""Invalid configs fail before any training, naming the offending key and the valid choices."""

from __future__ import annotations

import pytest

from mtlens import ConfigError, RunStore, parse_config
from mtlens.cli import main
from mtlens.orchestration import study_configs
from mtlens.training.config import ResolvedRunConfig, RunConfig, resolve_config


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"setting": "nope"}, ["setting", "unknown setting 'nope'", "digits_pair", "mnist_pair"]),
        ({"setting": "digits_pair", "lrr": 0.1}, ["lrr: unknown key", "lr,"]),
        ({"setting": "digits_pair", "lr": -1.0}, ["lr=-1.0", "greater than 0"]),
        ({"setting": "digits_pair", "batch_size": 0}, ["batch_size=0"]),
        ({"setting": "digits_pair", "optimizer": "rmsprop"}, ["optimizer='rmsprop'", "'adam'", "'sgd'"]),
        ({"setting": "digits_pair", "method": "magic"}, ["method='magic'", "unknown method 'magic'", "sum"]),
        ({"setting": "digits_pair", "device": "tpu"}, ["device='tpu'"]),
        ({"setting": "digits_pair", "setting_options": {"varient": "same"}}, ["setting_options", "varient", "variant"]),
        ({"setting": "digits_pair", "method_options": {"alpha": 1.0}}, ["method_options", "alpha"]),
        ({"setting": "digits_pair", "task_loss_scales": {"a": 0.0}}, ["task_loss_scales"]),
        ({"setting": "../../escaped"}, ["setting='../../escaped'", "setting name '../../escaped' contains '/'"]),
        ({"setting": ""}, ["setting=''", "setting name '': ", "non-empty string"]),
        ({"setting": "digits_pair", "method": "a/b"}, ["method='a/b'", "method name 'a/b' contains '/'"]),
    ],
)
def test_invalid_config_names_the_key(raw, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    for fragment in expected:
        assert fragment in str(info.value)


def test_unknown_task_and_bad_option_value_fail_at_resolution():
    with pytest.raises(ConfigError, match=r"tasks: \['c'\].*its tasks are \['a', 'b'\]"):
        resolve_config(parse_config({"setting": "digits_pair", "tasks": ["c"]}))
    with pytest.raises(ConfigError, match=r"task_loss_scales: \['c'\] are not tasks of setting 'digits_pair'"):
        resolve_config(parse_config({"setting": "digits_pair", "tasks": ["a"], "task_loss_scales": {"c": 2.0}}))
    with pytest.raises(
        ConfigError, match="setting 'digits_pair'.*variant='shuffled': Input should be 'permuted' or 'same'"
    ):
        resolve_config(parse_config({"setting": "digits_pair", "setting_options": {"variant": "shuffled"}}))


def test_a_probe_declares_the_smallest_batch_size_it_measures_with(request):
    """The probe owns its batch-size requirement (``register_probe(min_batch_size=...)``); a config naming it
    with a smaller batch is refused when resolved, naming the probe and the smallest valid batch size."""
    from mtlens.probes import PROBES, register_probe

    assert PROBES.get("alignment").min_batch_size == 2 and PROBES.get("fisher").min_batch_size == 1

    @register_probe("quartets", quantities=("probe/quartets",), min_batch_size=4)
    def quartets(context, task):  # type: ignore[no-untyped-def]
        return {"quartets": 0.0}

    request.addfinalizer(lambda: PROBES.unregister("quartets"))
    raw = {"setting": "digits_pair", "batch_size": 3, "probes": ["fisher", "quartets"]}
    with pytest.raises(ConfigError, match=r"batch_size=3: probe 'quartets' needs a training batch of at least 4"):
        resolve_config(parse_config(raw))
    assert resolve_config(parse_config({**raw, "batch_size": 4})).batch_size == 4
    assert resolve_config(parse_config({**raw, "batch_size": 1, "probes": []})).batch_size == 1


def test_eval_dense_until_epoch_without_eval_every_steps_is_refused_in_new_requests_only(tiny):
    """The trainer ignores it without dense evaluation, yet it changed the run id; a stored config that has it
    still resolves to the run id it was stored under."""
    raw = {**tiny, "epochs": 1, "eval_dense_until_epoch": 0.5}
    with pytest.raises(ConfigError, match="eval_dense_until_epoch=0.5: .*eval_every_steps"):
        study_configs(raw, [0])
    old = resolve_config(parse_config({**raw, "tasks": ["a"]}))  # as an earlier version stored it
    assert "eval_dense_until_epoch" in old.identity()
    assert resolve_config(parse_config(old.to_dict())).run_id == old.run_id
    assert study_configs({**raw, "eval_every_steps": 2}, [0])  # with dense evaluation it is what it says


def test_momentum_with_adam_is_refused_in_new_requests_but_old_stored_configs_load_and_resume(tmp_path, tiny, capsys):
    """Adam ignores momentum, which earlier versions accepted (a different run id, the same run): a new request
    is refused, while a store holding such a run still lists, and its config resolves to the same run id
    and trains (what a resume does: the trainer resolves the stored config)."""
    from mtlens.training.trainer import train_run

    raw = {**tiny, "tasks": ["a"], "epochs": 1, "momentum": 0.5}
    with pytest.raises(ConfigError, match="momentum=0.5: optimizer 'adam' does not use momentum"):
        study_configs({k: v for k, v in raw.items() if k != "tasks"}, [0])
    old = resolve_config(parse_config(raw))  # as an earlier version stored it
    store = RunStore(tmp_path / "store")
    store.write_config(old.run_id, old.to_dict())
    store.set_status(old.run_id, "running", 0)
    assert main(["runs", "--store", str(store.root)]) == 0 and old.run_id in capsys.readouterr().out
    stored = parse_config(store.config(old.run_id))
    assert resolve_config(stored).run_id == old.run_id
    assert train_run(stored, store, progress=False) == "finished"
    assert study_configs({k: v for k, v in raw.items() if k != "tasks"} | {"optimizer": "sgd"}, [0])


def test_a_study_with_task_loss_scales_scales_its_mtl_runs_and_the_scaled_tasks_stl_runs():
    """``task_loss_scales={b: 2}`` could never work in a study (its STL run of task a refused the key b); a
    scale of a task a run does not train changes nothing, so it is dropped there, and that run keeps the
    run id it has without scales (the same run)."""
    plain = {c.run_id: c for c in study_configs({"setting": "digits_pair"}, [0])}
    scaled = study_configs({"setting": "digits_pair", "task_loss_scales": {"b": 2.0}}, [0])
    by_mode = {(c.mode, c.tasks[0] if c.mode == "stl" else "all"): c for c in scaled}
    assert by_mode["stl", "a"].task_loss_scales == {} and by_mode["stl", "a"].run_id in plain
    assert by_mode["stl", "b"].task_loss_scales == {"b": 2.0} and by_mode["stl", "b"].run_id not in plain
    assert by_mode["mtl", "all"].task_loss_scales == {"b": 2.0} and by_mode["mtl", "all"].run_id not in plain


def test_defaults_are_resolved_from_the_setting_and_stored_concretely():
    config = resolve_config(parse_config({"setting": "digits_pair"}))
    assert (config.lr, config.batch_size, config.epochs, config.tasks) == (3e-3, 32, 6, ["a", "b"])
    assert config.mode == "mtl"
    stl = resolve_config(parse_config({"setting": "digits_pair", "tasks": ["b"]}))
    assert stl.mode == "stl" and "-stl-b-" in stl.run_id
    # The run id depends on everything that changes the trajectory, not on the device.
    assert parse_config({"setting": "digits_pair", "seed": 1}).run_id != parse_config({"setting": "digits_pair"}).run_id
    assert (
        parse_config({"setting": "digits_pair", "device": "cpu"}).identity()
        == parse_config({"setting": "digits_pair"}).identity()
    )


def test_resolving_changes_neither_the_stored_form_nor_the_run_id():
    """``resolve_config`` returns a :class:`ResolvedRunConfig` (typing only): a config that already
    names every resolved field keeps its stored form and run id, and resolving is idempotent."""
    raw = {"setting": "digits_pair", "tasks": ["a", "b"], "lr": 3e-3, "batch_size": 32, "epochs": 6}
    config = parse_config(raw)
    resolved = resolve_config(config)
    assert isinstance(resolved, ResolvedRunConfig) and isinstance(resolved, RunConfig)
    assert resolved.to_dict() == config.to_dict() and resolved.run_id == config.run_id
    assert resolve_config(parse_config({"setting": "digits_pair"})).run_id == resolved.run_id
    again = resolve_config(resolved.model_copy(update={"seed": 1}))
    assert again.to_dict() == {**config.to_dict(), "seed": 1}
    assert again.run_id == parse_config({**raw, "seed": 1}).run_id
    assert parse_config(resolved.to_dict()).run_id == resolved.run_id


def test_study_builds_stl_per_task_and_mtl_per_method_per_seed():
    configs = study_configs({"setting": "digits_pair", "epochs": 1}, seeds=[0, 1])
    assert [(c.seed, c.mode, tuple(c.tasks)) for c in configs] == [
        (0, "stl", ("a",)),
        (0, "stl", ("b",)),
        (0, "mtl", ("a", "b")),
        (1, "stl", ("a",)),
        (1, "stl", ("b",)),
        (1, "mtl", ("a", "b")),
    ]
    assert len({(c.optimizer, c.lr, c.batch_size, c.epochs) for c in configs}) == 1
    with pytest.raises(ConfigError, match="seed: set by the study"):
        study_configs({"setting": "digits_pair", "seed": 3}, seeds=[0])


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["study", "nope"], "unknown setting 'nope'"),
        (["study", "digits_pair", "--option", "varient=same"], "has no option(s) ['varient']"),
        (["study", "digits_pair", "--set", "epocs=2"], "epocs: unknown key"),
        (["study", "digits_pair", "--methods", "sum,nope"], "unknown method 'nope'"),
        (["study", "digits_pair", "--option", "novalue"], "--option: expects key=value"),
    ],
)
def test_cli_rejects_bad_input_before_training(tmp_path, capsys, argv, fragment):
    store = tmp_path / "store"
    assert main([*argv, "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert RunStore(store).run_ids() == []
