"""Probes as plugins: a user's probe in one decorated function, probe_options checked like
method_options, old flat keys mapped without changing run ids, probes usable without a RunConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlens import RunStore, parse_config, train_run
from mtlens.cli import main
from mtlens.errors import ConfigError
from mtlens.models import build_model
from mtlens.probes import PROBES, ProbeContext, gradient_coherence, measure_probes, per_task_quantities, register_probe
from mtlens.tasks import classification_task
from mtlens.training.config import RUN_ENVIRONMENT_KEYS, resolve_config

FIXTURE = Path(__file__).parent / "fixtures" / "compat_store" / "runs"


def test_stored_configs_of_the_old_code_keep_their_run_ids_and_stored_form():
    for run_dir in sorted(FIXTURE.iterdir()):
        raw = json.loads((run_dir / "config.json").read_text())
        config = parse_config(raw)
        assert config.run_id == run_dir.name
        # a resumed run writes the same config.json, plus the environment keys the old code did not store
        # (thread count, pack size: how it runs, outside the run id)
        new_keys = {key: getattr(config, key) for key in RUN_ENVIRONMENT_KEYS if key not in raw}
        assert set(new_keys) == {"threads", "pack_size"}
        assert config.to_dict() == {**raw, **new_keys}


def test_flat_keys_and_probe_options_are_one_config():
    base = {"setting": "digits_pair", "probes": ["fisher", "sharpness_sam"]}
    flat = parse_config({**base, "fisher_batch_size": 8, "sharpness_rho": 0.01})
    nested = parse_config(
        {
            **base,
            "probe_options": {"fisher": {"batch_size": 8}, "sharpness": {"rho": 0.01}, "sharpness_sam": {"rho": 0.01}},
        }
    )
    assert flat.run_id == nested.run_id and flat.to_dict() == nested.to_dict()
    assert flat.probe_settings("fisher") == {"batch_size": 8}
    assert flat.probe_settings("sharpness_sam") == {"rho": 0.01, "batch_size": 128}
    default = parse_config(base)
    assert parse_config({**base, "probe_options": {"fisher": {"batch_size": 16}}}).run_id == default.run_id
    assert flat.run_id != default.run_id
    # Options the flat keys cannot say are stored and hashed as probe_options.
    split = parse_config({**base, "probe_options": {"sharpness_sam": {"rho": 0.05}}})
    assert split.to_dict()["probe_options"] == {"sharpness_sam": {"rho": 0.05}} and split.run_id != default.run_id
    assert parse_config(split.to_dict()).probe_settings("sharpness_sam")["rho"] == 0.05


def test_options_for_a_probe_that_is_not_run_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit A 2026-12-06: ``probe_options`` for a probe not in ``probes`` changed every run id and split
    identical runs into two report configurations; refused like the Recorder refuses it, on the command line
    with one line, exit 2 and nothing written.  Without probes, or for the old flat keys' probes that every
    stored config names, nothing is refused."""
    base = {"setting": "digits_pair", "probes": ["coherence"]}
    with pytest.raises(ConfigError, match=r"probe_options: options for \['tag'\], which are not run"):
        parse_config({**base, "probe_options": {"tag": {"lr": 0.5}}})
    parse_config({**base, "probes": [], "probe_options": {"tag": {"lr": 0.5}}})
    parse_config({**base, "probes": ["coherence", "tag"], "probe_options": {"tag": {"lr": 0.5}}})
    stored = parse_config({**base, "probe_options": {"fisher": {"batch_size": 8}}}).to_dict()
    assert parse_config(stored).run_id == parse_config(stored).run_id
    monkeypatch.chdir(tmp_path)
    argv = ["study", "digits_pair", "--store", "store", "--quiet", "--set", "probes=[coherence]"]
    assert main([*argv, "--set", "probe_options={tag: {lr: 0.5}}"]) == 2
    _, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "probe_options" in err and "tag" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fisher": {"bs": 2}}, r"probe 'fisher' has no option\(s\) \['bs'\]; valid options: \['batch_size'\]"),
        (
            {"fisher": {"batch_size": 0}},
            r"probe .fisher.: invalid option value\(s\): batch_size=0: Input should be greater than 0",
        ),
        ({"snow": {}}, "unknown probe 'snow'; available probes: alignment, coherence"),
    ],
)
def test_bad_probe_options_fail_naming_the_option_and_the_valid_ones(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"setting": "digits_pair", "probe_options": options})


def _tiny_model_and_sample():
    torch.manual_seed(0)
    tasks = [classification_task("a", 3), classification_task("b", 3)]
    model = build_model(lambda: nn.Sequential(nn.Linear(5, 6), nn.Tanh()), 6, tasks, seed=0)
    x, y = torch.randn(12, 5), torch.randint(0, 3, (12,))
    return model, tasks, {"a": (x, y), "b": (x, (y + 1) % 3)}


def test_tag_probe_needs_a_learning_rate_and_changes_nothing():
    model, tasks, samples = _tiny_model_and_sample()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="probe_options.tag.lr"):
        measure_probes(ProbeContext(model, tasks, samples), ["tag"])
    rng = torch.get_rng_state()
    rows = measure_probes(ProbeContext(model, tasks, samples, lr=0.1), ["tag"])
    assert [r["task"] for r in rows] == ["a>b", "b>a"]
    assert rows == measure_probes(ProbeContext(model, tasks, samples), ["tag"], {"tag": {"lr": 0.1}})
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


def test_probes_run_on_a_model_and_a_sample_without_a_run_config_and_change_nothing():
    model, tasks, samples = _tiny_model_and_sample()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    rows = measure_probes(
        ProbeContext(model, tasks, samples, step=3, seed=1),
        ["conflict", "coherence", "fisher"],
        {"fisher": {"batch_size": 4}},
    )
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    # Per-task probes task by task (built-in order: coherence before fisher), then the per-run conflict rows.
    assert [r["quantity"] for r in rows[:3]] == ["probe/grad_coherence", "probe/m_coherence", "probe/fisher_trace"]
    assert rows[3]["task"] == "b" and rows[-1]["quantity"] == "probe/conflict_fraction"
    model.eval()
    expected = gradient_coherence(model, tasks[0], *samples["a"])["grad_coherence"]
    assert rows[0]["value"] == pytest.approx(expected, rel=1e-6)


@pytest.fixture
def head_norm_probe(request):
    """A user's probe, registered for one test: the squared norm of the task's head weights."""

    @register_probe("head_norm", quantities=("probe/head_norm",))
    def head_norm(context: ProbeContext, task, power: float = 2.0) -> dict[str, float]:
        return {"head_norm": float(sum(p.detach().norm() ** power for p in context.model.head_parameters(task.name)))}

    request.addfinalizer(lambda: PROBES.unregister("head_norm"))
    return head_norm


def test_a_users_probe_is_one_decorated_function_trained_stored_and_reported(head_norm_probe, tmp_path, tiny):
    assert "probe/head_norm" in per_task_quantities()
    config = parse_config(
        {
            **tiny,
            "probes": ["head_norm", "coherence"],
            "probe_sample_size": 16,
            "probe_options": {"head_norm": {"power": 1.0}},
        }
    )
    with pytest.raises(ConfigError, match=r"probe 'head_norm' has no option\(s\) \['p'\]; valid options: \['power'\]"):
        parse_config({**tiny, "probes": ["head_norm"], "probe_options": {"head_norm": {"p": 1}}})
    store = RunStore(tmp_path / "store")
    assert train_run(config, store, progress=False) == "finished"
    run_id = resolve_config(config).run_id
    assert json.loads((store.run_dir(run_id) / "config.json").read_text())["probe_options"] == {
        "head_norm": {"power": 1.0}
    }
    rows = store.trajectory(run_id)
    norms = rows[rows["quantity"] == "probe/head_norm"]
    assert set(norms["task"]) == {"a", "b"} and set(norms["step"]) == set(
        rows.loc[rows["quantity"] == "probe/grad_coherence", "step"]
    )
    start = norms[(norms["step"] == 0) & (norms["task"] == "a")]["value"].iloc[0]
    assert start > 0 and (norms["value"] > 0).all()
    # The report plots the user's quantity with the built-in ones (its figure lists the quantities).
    assert main(["report", "--store", str(store.root), "--out", str(tmp_path / "report")]) == 0
    assert "probe/head_norm" in (tmp_path / "report" / "report.html").read_text()


def _no_task(context, power: float = 2.0):
    return {"no_task": power}


def _per_run_with_task(context, task, power: float = 2.0):
    return []


def _positional_options(context, task, /, power, *rest):
    return {"positional_options": power}


@pytest.mark.parametrize(
    ("measure", "per_task", "message"),
    [
        (
            _no_task,
            True,
            r"probe 'bad': a per-task probe is called as measure\(context, task, \*\*options\), but "
            r"_no_task\(context, power: '?float'? = 2\.0\) does not fit: its parameters must start with context, task "
            r"\(or register it with per_task=False if it measures the whole run\)",
        ),
        (
            _per_run_with_task,
            False,
            r"a per-run \(per_task=False\) probe is called as measure\(context, \*\*options\), .*a per-run probe is "
            "given no task",
        ),
        (_positional_options, True, "_positional_options.* does not fit: its options must be keyword parameters"),
        (lambda ctx, task: {}, True, "must start with context, task"),
    ],
    ids=["per-task-without-task", "per-run-with-task", "positional-options", "other-names"],
)
def test_a_measure_that_cannot_be_called_as_its_kind_of_probe_is_refused_at_registration(measure, per_task, message):
    """``no_task(context, power=2.0)`` registered per task failed only in training (``got multiple values for
    argument 'power'``), after its runs' directories were created and marked failed."""
    with pytest.raises(ConfigError, match=message):
        register_probe("bad", quantities=("probe/bad",), per_task=per_task)(measure)
    assert "bad" not in PROBES


@pytest.fixture
def required_option_probe(request):
    """A user's probe whose one option has no default."""

    @register_probe("required_opt", quantities=("probe/required_opt",))
    def required_opt(context: ProbeContext, task, power: float) -> dict[str, float]:
        return {"required_opt": power}

    request.addfinalizer(lambda: PROBES.unregister("required_opt"))
    return required_opt


def test_an_option_without_a_default_is_required_before_any_training(required_option_probe, tiny, tmp_path, capsys):
    """The config was accepted and every run failed with ``invalid option value(s): power=None``: refused now,
    one line naming the probe and the option, before anything is written."""
    message = (
        r"probe_options\.required_opt: option\(s\) \['power'\] of probe 'required_opt' are required \(they have no "
        r"default\); give them as probe_options: \{required_opt: \{power: \.\.\.\}\}"
    )
    with pytest.raises(ConfigError, match=message):
        parse_config({**tiny, "probes": ["required_opt"]})
    with pytest.raises(ConfigError, match=message):  # measuring without the config
        _tiny_context_rows(["required_opt"], {})
    config = parse_config({**tiny, "probes": ["required_opt"], "probe_options": {"required_opt": {"power": 3.0}}})
    assert config.probe_settings("required_opt") == {"power": 3.0}
    assert _tiny_context_rows(["required_opt"], {"required_opt": {"power": 3.0}})[0]["value"] == 3.0
    store = tmp_path / "store"
    argv = ["study", "digits_pair", "--set", "probes=[required_opt]", "--seeds", "1", "--store", str(store), "--quiet"]
    assert main(argv) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not store.exists()


def _tiny_context_rows(names: list[str], options: dict) -> list[dict]:
    model, tasks, samples = _tiny_model_and_sample()
    return measure_probes(ProbeContext(model, tasks, samples), names, options)


@pytest.mark.parametrize(
    ("returned", "per_task", "message"),
    [
        ({"undeclared": 1.0}, True, r"probe 'loose' wrote \['probe/undeclared'\], which it does not declare \(its "),
        ([1.0], True, "probe 'loose' returned list; a per-task probe returns {name: value}"),
        ([{"task": "*", "quantity": "probe/other", "value": 1.0}], False, r"wrote \['probe/other'\], which it does"),
        ({"loose": 1.0}, False, "probe 'loose' returned {'loose': 1.0}; a per-run probe returns a list of rows"),
    ],
    ids=["undeclared-key", "per-task-list", "undeclared-row", "per-run-dict"],
)
def test_a_probe_writing_what_it_does_not_declare_fails_naming_it(request, returned, per_task, message):
    """A key the probe never declared was stored as a quantity no report or analysis knew was the probe's, and a
    list from a per-task probe failed with ``'list' object has no attribute 'items'``."""
    if per_task:

        def loose(context, task):
            return returned
    else:

        def loose(context):
            return returned

    register_probe("loose", quantities=("probe/loose",), per_task=per_task)(loose)
    request.addfinalizer(lambda: PROBES.unregister("loose"))
    with pytest.raises((ValueError, TypeError), match=message):
        _tiny_context_rows(["loose"], {})
