"""Probes in training: no side effects on the trajectory, schedule, resume, conflict and alignment
against brute-force loops, config errors."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from mtlens import RunStore, parse_config, train_run
from mtlens.errors import ConfigError
from mtlens.models import build_model
from mtlens.probes import (
    DEFAULT_PROBES,
    PROBES,
    ProbeContext,
    conflict_measures,
    inter_task_alignment,
    intra_task_alignment,
    mean_task_gradients,
)
from mtlens.settings import load_setting
from mtlens.tasks import classification_task
from mtlens.training.config import resolve_config
from mtlens.training.handle import Checkpoint
from mtlens.training.probe_runner import ProbeRunner, probe_steps

CHEAP = ["conflict", "alignment"]


def _rows(store: RunStore, config) -> pd.DataFrame:
    return store.trajectory(resolve_config(config).run_id)


def _probed(tiny: dict, probes=CHEAP, **extra) -> dict:
    return {**tiny, "probes": probes, "probe_sample_size": 64, "probe_first_epoch": 0.25, **extra}


def _state(store: RunStore, config) -> dict:
    checkpoint = Checkpoint.load(store.checkpoint_path(resolve_config(config).run_id))
    return {**checkpoint.state, "torch_rng": checkpoint.torch_rng}


@pytest.mark.parametrize("method", ["sum", "pcgrad"])
def test_probes_leave_the_trajectory_and_final_state_bitwise_unchanged(tmp_path, tiny, method):
    off, on = RunStore(tmp_path / "off"), RunStore(tmp_path / "on")
    plain = parse_config({**tiny, "method": method})
    probed = parse_config(_probed({**tiny, "method": method}, probes=[*CHEAP, "tag"]))
    train_run(plain, off, progress=False)
    train_run(probed, on, progress=False)
    a = _rows(off, plain).drop(columns="run_id")
    b = _rows(on, probed)
    b = b[~b["quantity"].str.startswith("probe/")].drop(columns="run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    first, second = _state(off, plain), _state(on, probed)
    for part in ("model", "optimizer", "method", "stream"):
        assert repr(first[part]) == repr(second[part]) or all(
            torch.equal(x, y)
            for x, y in zip(first[part].values(), second[part].values())
            if isinstance(x, torch.Tensor)
        ), part
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    assert torch.equal(first["torch_rng"], second["torch_rng"])
    for (k1, s1), (k2, s2) in zip(first["optimizer"]["state"].items(), second["optimizer"]["state"].items()):
        assert k1 == k2 and all(torch.equal(s1[n], s2[n]) for n in s1)


def test_probe_rows_cover_every_task_and_step_of_the_schedule(store, tiny):
    config = parse_config(_probed(tiny, epochs=3))
    train_run(config, store, progress=False)
    rows = _rows(store, config)
    probe = rows[rows["quantity"].str.startswith("probe/")]
    steps = probe_steps(24, 8, 0.25, 2.0)
    assert steps == [0, 2, 4, 8, 16, 24]
    assert sorted(probe["step"].unique()) == steps
    per_task = {
        "probe/grad_norm",
        "probe/update_cosine",
        "probe/intra_cosine_subbatch",
        "probe/intra_cosine_classgroup",
    }
    for step in steps:
        at = probe[probe["step"] == step]
        expected_task = per_task - ({"probe/update_cosine"} if step == 0 else set())
        for task in ("a", "b"):
            assert set(at.loc[at["task"] == task, "quantity"]) == expected_task
        assert set(at.loc[at["task"] == "a|b", "quantity"]) == {
            "probe/conflict_cosine",
            "probe/magnitude_similarity",
            "probe/magnitude_ratio",
        }
        assert set(at.loc[at["task"] == "*", "quantity"]) == (
            {"probe/conflict_fraction"} | (set() if step == 0 else {"probe/update_norm"})
        )
    assert not rows.duplicated(["task", "step", "quantity"]).any()
    assert probe["value"].notna().all()
    # Probe steps that are no evaluation steps (2, 4) hold probe rows only.
    assert set(rows.loc[rows["step"] == 2, "quantity"].str.split("/").str[0]) == {"probe"}


def test_stl_runs_have_no_pair_rows(store, tiny):
    config = parse_config(_probed({**tiny, "tasks": ["a"]}))
    train_run(config, store, progress=False)
    rows = _rows(store, config)
    probe = rows[rows["quantity"].str.startswith("probe/")]
    assert set(probe["task"]) == {"a", "*"}
    assert set(probe.loc[probe["task"] == "*", "quantity"]) == {"probe/update_norm"}
    assert "probe/update_cosine" in set(probe["quantity"])


def test_crash_after_probe_rows_before_checkpoint_resumes_to_identical_rows(tmp_path, tiny, monkeypatch):
    from mtlens.training import trainer

    config = parse_config(_probed(tiny))
    reference = RunStore(tmp_path / "reference")
    train_run(config, reference, progress=False)
    crashing = RunStore(tmp_path / "crashing")
    original = trainer.TrainingRun._checkpoint

    def checkpoint_then_crash(self, step):
        if step == 4:  # a probe step: its rows are written, its checkpoint is not
            raise KeyboardInterrupt
        original(self, step)

    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", checkpoint_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, crashing, progress=False)
    assert 4 in crashing.part_steps(resolve_config(config).run_id)
    monkeypatch.setattr(trainer.TrainingRun, "_checkpoint", original)
    assert train_run(config, crashing, progress=False) == "finished"
    pd.testing.assert_frame_equal(_rows(crashing, config), _rows(reference, config))


def test_probes_off_keeps_the_run_id_of_a_config_without_probe_keys(tiny):
    plain = parse_config(tiny)
    changed = parse_config({**tiny, "probe_sample_size": 17})
    assert plain.run_id == changed.run_id  # probe keys are no part of a probe-less identity
    on = parse_config(_probed(tiny))
    assert on.run_id != parse_config({**_probed(tiny), "probe_sample_size": 17}).run_id


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"probes": ["coherence", "curvature"]},
            "probes=['coherence', 'curvature']: unknown probe(s) ['curvature']",
        ),
        ({"probes": ["fisher", "fisher"]}, "name a probe twice"),
        ({"probe_growth": 1.0}, "probe_growth"),
        ({"probe_sample_size": 1}, "probe_sample_size"),
    ],
)
def test_bad_probe_config_fails_naming_the_key(tiny, raw, message):
    with pytest.raises(ConfigError) as info:
        parse_config({**tiny, **raw})
    assert message in str(info.value)
    if "curvature" in message:
        assert f"valid probes are: {', '.join(sorted(PROBES.names()))}" in str(info.value)


# -- conflict and alignment against brute force ---------------------------------------------------
@pytest.fixture
def model_and_data(tiny):
    setting = load_setting("digits_pair", **tiny["setting_options"])
    model = build_model(setting.encoder, setting.feature_dim, setting.tasks, seed=5).double()
    samples = {t: (setting.data[t].train.inputs[:40].double(), setting.data[t].train.targets[:40]) for t in ("a", "b")}
    return setting, model, samples


def _brute_gradient(model, task, x, y) -> torch.Tensor:
    """Mean loss gradient on the shared parameters from per-example backward passes."""
    params = model.shared_parameters()
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        model.zero_grad()
        task.loss(model(x[i : i + 1], [task.name])[task.name], y[i : i + 1]).sum().backward()
        total = [t + (p.grad if p.grad is not None else 0) for t, p in zip(total, params)]
    return torch.cat([t.reshape(-1) for t in total]) / len(x)


def test_conflict_measures_match_a_brute_force_loop(model_and_data):
    setting, model, samples = model_and_data
    gradients = mean_task_gradients(model, setting.tasks, samples, chunk_size=16)
    brute = {t.name: _brute_gradient(model, t, *samples[t.name]) for t in setting.tasks}
    for t in brute:
        torch.testing.assert_close(gradients[t], brute[t], rtol=1e-9, atol=1e-12)
    update = torch.randn(len(brute["a"]), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = {(r["task"], r["quantity"]): r["value"] for r in conflict_measures(gradients, update)}
    a, b = brute["a"], brute["b"]
    cos = float(a @ b / (a.norm() * b.norm()))
    assert rows[("a|b", "probe/conflict_cosine")] == pytest.approx(cos, rel=1e-9)
    assert rows[("a|b", "probe/magnitude_ratio")] == pytest.approx(float(a.norm() / b.norm()), rel=1e-9)
    assert rows[("a|b", "probe/magnitude_similarity")] == pytest.approx(
        float(2 * a.norm() * b.norm() / (a.norm() ** 2 + b.norm() ** 2)), rel=1e-9
    )
    assert rows[("a", "probe/grad_norm")] == pytest.approx(float(a.norm()), rel=1e-9)
    assert rows[("b", "probe/update_cosine")] == pytest.approx(float(b @ update / (b.norm() * update.norm())), rel=1e-9)
    assert rows[("*", "probe/update_norm")] == pytest.approx(float(update.norm()), rel=1e-12)
    assert rows[("*", "probe/conflict_fraction")] == float(cos < 0)


def test_identical_tasks_have_cosine_one_and_opposite_gradients_conflict():
    torch.manual_seed(0)
    task, twin = classification_task("a", 3), classification_task("b", 3)
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh())
    from mtlens.models import MultiTaskModel

    head = torch.nn.Linear(5, 3)
    twin_head = torch.nn.Linear(5, 3)
    twin_head.load_state_dict(head.state_dict())
    model = MultiTaskModel(encoder, {"a": head, "b": twin_head})
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    g = mean_task_gradients(model, [task, twin], {"a": (x, y), "b": (x, y)})
    rows = {(r["task"], r["quantity"]): r["value"] for r in conflict_measures(g)}
    assert rows[("a|b", "probe/conflict_cosine")] == pytest.approx(1.0, abs=1e-6)
    assert rows[("a|b", "probe/magnitude_similarity")] == pytest.approx(1.0, abs=1e-6)
    assert rows[("*", "probe/conflict_fraction")] == 0.0
    flipped = conflict_measures({"a": g["a"], "b": -g["a"], "c": g["a"]})
    fraction = [r["value"] for r in flipped if r["quantity"] == "probe/conflict_fraction"]
    assert fraction == [pytest.approx(2 / 3)]  # pairs a|b and b|c conflict, a|c does not


def test_intra_task_alignment_matches_a_brute_force_loop(model_and_data):
    setting, model, samples = model_and_data
    task = setting.task("a")
    x, y = samples["a"]
    result = intra_task_alignment(
        model, task, x, y, batch_size=10, n_batches=3, generator=torch.Generator().manual_seed(1)
    )
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    sub, group = [], []
    for k in range(3):
        rows = order[10 * k : 10 * (k + 1)]
        first, second = (
            _brute_gradient(model, task, x[rows[:5]], y[rows[:5]]),
            _brute_gradient(model, task, x[rows[5:]], y[rows[5:]]),
        )
        sub.append(float(first @ second / (first.norm() * second.norm())))
        even, odd = rows[y[rows] % 2 == 0], rows[y[rows] % 2 == 1]
        ge, go = _brute_gradient(model, task, x[even], y[even]), _brute_gradient(model, task, x[odd], y[odd])
        group.append(float(ge @ go / (ge.norm() * go.norm())))
    assert result["intra_cosine_subbatch"] == pytest.approx(sum(sub) / 3, rel=1e-9)
    assert result["intra_cosine_classgroup"] == pytest.approx(sum(group) / 3, rel=1e-9)


@pytest.mark.parametrize("shared_inputs", [False, True], ids=["own-inputs", "shared-inputs"])
def test_inter_task_alignment_matches_a_brute_force_loop(model_and_data, shared_inputs):
    """Per pair and batch, (cos(g_a(H1), g_b(H2)) + cos(g_a(H2), g_b(H1))) / 2 of per-example mean gradients; tasks
    reading one inputs tensor take their halves from the same rows (one permutation per inputs tensor)."""
    setting, model, samples = model_and_data
    if shared_inputs:
        samples = {"a": samples["a"], "b": (samples["a"][0], samples["b"][1][: len(samples["a"][0])])}
    result = inter_task_alignment(model, setting.tasks, samples, 10, 3, torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    orders = {"a": torch.randperm(40, generator=generator)}
    orders["b"] = orders["a"] if shared_inputs else torch.randperm(40, generator=generator)
    values = []
    for k in range(3):
        halves = {}
        for task in setting.tasks:
            x, y = samples[task.name]
            rows = orders[task.name][10 * k : 10 * (k + 1)]
            halves[task.name] = [_brute_gradient(model, task, x[h], y[h]) for h in (rows[:5], rows[5:])]
        (a1, a2), (b1, b2) = halves["a"], halves["b"]
        values.append(float((a1 @ b2 / (a1.norm() * b2.norm()) + a2 @ b1 / (a2.norm() * b1.norm())) / 2))
    assert result == {("a", "b"): pytest.approx(sum(values) / 3, rel=1e-9)}


def test_inter_task_alignment_of_a_task_and_its_twin_is_its_intra_task_alignment():
    """Like for like: a task and a copy of it (the same data and head) give, on the same batches, exactly the
    intra-task sub-batch cosine; the conflict probe's cosine of the two is 1, far above it."""
    torch.manual_seed(0)
    from mtlens.models import MultiTaskModel

    task, twin = classification_task("a", 3), classification_task("b", 3)
    head = torch.nn.Linear(5, 3)
    twin_head = torch.nn.Linear(5, 3)
    twin_head.load_state_dict(head.state_dict())
    model = MultiTaskModel(torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh()), {"a": head, "b": twin_head})
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    inter = inter_task_alignment(
        model, [task, twin], {"a": (x, y), "b": (x, y)}, 16, 4, torch.Generator().manual_seed(3)
    )
    intra = intra_task_alignment(model, task, x, y, 16, 4, torch.Generator().manual_seed(3))
    assert inter[("a", "b")] == pytest.approx(intra["intra_cosine_subbatch"], abs=1e-6)
    assert intra["intra_cosine_subbatch"] < 0.99  # the halves' noise: the comparison the probe exists for
    g = mean_task_gradients(model, [task, twin], {"a": (x, y), "b": (x, y)})
    cosine = next(r["value"] for r in conflict_measures(g) if r["quantity"] == "probe/conflict_cosine")
    assert cosine == pytest.approx(1.0, abs=1e-6)


def test_inter_alignment_probe_writes_one_row_per_pair_and_none_for_one_task(model_and_data):
    setting, model, samples = model_and_data
    probe = PROBES.get("inter_alignment")
    assert "inter_alignment" not in DEFAULT_PROBES and probe.min_batch_size == 2 and probe.plotted_per_task == ()
    context = ProbeContext(model, setting.tasks, samples, batch_size=8)
    rows = probe.measure(context, batches=2)
    assert [(r["task"], r["quantity"]) for r in rows] == [("a|b", "probe/inter_cosine_subbatch")]
    assert -1 <= rows[0]["value"] <= 1
    assert probe.measure(ProbeContext(model, setting.tasks[:1], {"a": samples["a"]}, batch_size=8)) == []


def test_probe_runner_restores_grads_mode_and_state_with_batch_norm(tiny):
    """A batch-norm model: probes run in eval mode, so running statistics stay untouched."""
    setting = load_setting("digits_pair", **tiny["setting_options"])
    config = resolve_config(parse_config(_probed(tiny)), setting)

    def encoder():
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU()
        )

    model = build_model(encoder, 16, setting.tasks, seed=0)
    model.train()
    x = setting.data["a"].train.inputs[:32]
    sum(v.sum() for v in model(x).values()).backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    rows = ProbeRunner(config, setting, setting.tasks, torch.device("cpu")).rows(model, step=3)
    assert len(rows) > 0 and model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((32, 8, 0.5, 1), "growth=1: Input should be greater than 1"),
        ((32, 8, 0.5, 0.5), "growth=0.5: Input should be greater than 1"),
        ((32, 8, 0, 2), "first_epoch=0: Input should be greater than 0"),
        ((32, 8, -0.5, 2), "first_epoch=-0.5: Input should be greater than 0"),
        ((32, 0, 0.5, 2), "steps_per_epoch=0: Input should be greater than or equal to 1"),
        ((-1, 8, 0.5, 2), "total_steps=-1: Input should be greater than or equal to 0"),
        ((32, 8, 0.5, True), "growth=True: expected a number or text, not a boolean"),
    ],
    ids=["growth-1", "growth-0.5", "first-0", "first-negative", "steps-per-epoch-0", "total-negative", "growth-bool"],
)
def test_probe_steps_refuses_a_schedule_that_never_ends(args, message):
    """``probe_steps(32, 8, first_epoch=0.5, growth=1)`` (or ``first_epoch=0``, ``steps_per_epoch=0``) looped
    forever: refused in one line, from the declarations RunConfig's ``probe_growth`` and ``probe_first_epoch``
    are checked against."""
    with pytest.raises(ConfigError, match=f"^probe_steps: invalid option value.*{re.escape(message)}"):
        probe_steps(*args)
    assert probe_steps(32, 8, first_epoch=0.5, growth=2) == [0, 4, 8, 16, 32]
