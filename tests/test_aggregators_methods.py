"""Update methods on a small model: the gradients they leave on the parameters, checked
against separate per-task forward/backward passes, their state and the registry."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn

from mtlens import aggregators as agg
from mtlens.aggregators import (
    GradientAggregation,
    MGDAUpperBound,
    NonFiniteGradientError,
    available_methods,
    check_method_options,
    make_method,
    method_factory,
)
from mtlens.models import MultiTaskModel

TASKS = ("a", "b", "c")


def tiny_model(seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(5, 4), nn.Tanh())
    return MultiTaskModel(encoder, {t: nn.Linear(4, 2) for t in TASKS}).double()


def batch(seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    return x, {t: torch.randn(8, 2, generator=g, dtype=torch.float64) for t in TASKS}


def losses(model: MultiTaskModel, seed: int, scale: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    x, targets = batch(seed)
    outputs = model(x)
    scale = scale or {"a": 1.0, "b": 3.0, "c": 0.5}
    return {t: scale[t] * ((outputs[t] - targets[t]) ** 2).mean() for t in TASKS}


def flat_grads(params) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in params])


def separate_passes(model: MultiTaskModel, seed: int, transform=lambda loss: loss):
    """Per task: a fresh forward pass and backward of ``transform(L_t)``; returns the shared
    gradient matrix and each task's head gradient."""
    rows, heads = [], {}
    for t in TASKS:
        model.zero_grad(set_to_none=True)
        transform(losses(model, seed)[t]).backward()
        rows.append(flat_grads(model.shared_parameters()))
        heads[t] = flat_grads(model.head_parameters(t))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows), heads


def run_method(method, model: MultiTaskModel, seed: int) -> dict[str, float]:
    model.zero_grad(set_to_none=True)
    return method.backward(losses(model, seed), model)


@pytest.mark.parametrize(
    "aggregator",
    [agg.Sum(), agg.PCGrad(torch.Generator().manual_seed(0)), agg.MGDA(), agg.CAGrad(), agg.IMTLG(), agg.UPGrad()],
    ids=lambda a: type(a).__name__,
)
def test_gradient_aggregation_sets_shared_update_and_own_head_gradients(aggregator):
    model = tiny_model()
    matrix, heads = separate_passes(model, seed=1)
    expected = copy.deepcopy(aggregator).aggregate(matrix)
    diagnostics = run_method(GradientAggregation(aggregator), model, seed=1)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), expected.update)
    for t in TASKS:
        torch.testing.assert_close(flat_grads(model.head_parameters(t)), heads[t])
    assert diagnostics == pytest.approx({f"weight/{t}": w for t, w in zip(TASKS, expected.weights.tolist())})


def test_sum_aggregation_equals_plain_backward_of_the_sum():
    model, reference = tiny_model(), tiny_model()
    run_method(GradientAggregation(agg.Sum()), model, seed=2)
    run_method(make_method("sum", {}, 0), reference, seed=2)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    run_method(make_method("mean", {}, 0), reference, seed=2)
    torch.testing.assert_close(
        flat_grads(reference.shared_parameters()), flat_grads(model.shared_parameters()) / len(TASKS)
    )


def test_mgda_ub_weighs_tasks_by_mgda_on_representation_gradients():
    model = tiny_model()
    x, targets = batch(3)
    features = model.encoder(x).detach().requires_grad_(True)
    rows = []
    for t in TASKS:
        loss = {"a": 1.0, "b": 3.0, "c": 0.5}[t] * ((model.heads[t](features) - targets[t]) ** 2).mean()
        rows.append(torch.autograd.grad(loss, features)[0].reshape(-1))
    weights = agg.MGDA().aggregate(torch.stack(rows)).weights
    matrix, heads = separate_passes(model, seed=3)

    method = make_method("mgda_ub", {}, 0)
    method.attach(model)
    diagnostics = run_method(method, model, seed=3)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), weights @ matrix)
    for t in TASKS:
        torch.testing.assert_close(flat_grads(model.head_parameters(t)), heads[t])
    assert [diagnostics[f"weight/{t}"] for t in TASKS] == pytest.approx(weights.tolist())
    with torch.no_grad():  # evaluation passes are not recorded
        model(x)
    assert method._features == []


def test_mgda_ub_without_attach_is_a_clear_error():
    with pytest.raises(RuntimeError, match="attach"):
        run_method(MGDAUpperBound(), tiny_model(), seed=0)


def test_non_finite_gradient_is_an_error_not_an_update():
    model = tiny_model()
    values = losses(model, 0)
    values["b"] = values["b"] + torch.sqrt(model.encoder[0].weight[0, 0] * 0.0)  # finite loss, inf gradient
    with pytest.raises(NonFiniteGradientError, match=r"\['b'\]"):
        make_method("pcgrad", {}, 0).backward(values, model)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        make_method("uw", {}, 0).backward({"a": torch.tensor(float("nan"), requires_grad=True)}, model)


# -- loss weightings ----------------------------------------------------------------------
def test_uncertainty_weighting_gradients_and_learned_scales():
    model = tiny_model()
    matrix, _ = separate_passes(model, seed=4)
    method = agg.UncertaintyWeighting(lr=0.1)
    diagnostics = run_method(method, model, seed=4)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), 0.5 * matrix.sum(dim=0))  # s = 0
    assert [diagnostics[f"weight/{t}"] for t in TASKS] == pytest.approx([0.5] * 3)
    # d/ds (exp(-s) L / 2 + s / 2) = (1 - L) / 2 at s = 0; Adam's first step moves s by lr * sign
    values = torch.stack([v.detach() for v in losses(model, 4).values()])
    torch.testing.assert_close(method.params.detach(), -0.1 * torch.sign(0.5 * (1 - values)), rtol=1e-6, atol=1e-9)


def test_imtl_l_gradients_and_learned_scales():
    model = tiny_model()
    matrix, _ = separate_passes(model, seed=5)
    method = agg.IMTLL(lr=0.1)
    run_method(method, model, seed=5)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), matrix.sum(dim=0))  # exp(0) = 1
    values = torch.stack([v.detach() for v in losses(model, 5).values()])
    torch.testing.assert_close(method.params.detach(), -0.1 * torch.sign(values - 1), rtol=1e-6, atol=1e-9)


def test_gradnorm_first_step_and_weight_update():
    model = tiny_model()
    matrix, heads = separate_passes(model, seed=6)
    method = agg.GradNorm(alpha=1.5, lr=0.1)
    run_method(method, model, seed=6)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), matrix.sum(dim=0))
    # at the first step r_k = 1: the target is the mean norm, so the largest-gradient task
    # is pushed down and the smallest up; the weights stay normalised to sum K
    norms = matrix.norm(dim=1)
    expected = torch.ones(3, dtype=torch.float64) - 0.1 * torch.sign(norms - norms.mean())
    torch.testing.assert_close(method.params.detach(), 3 * expected / expected.sum(), rtol=1e-6, atol=1e-9)
    matrix7, heads7 = separate_passes(model, seed=7)
    run_method(method, model, seed=7)
    weights = 3 * expected / expected.sum()
    torch.testing.assert_close(flat_grads(model.shared_parameters()), weights @ matrix7, rtol=1e-5, atol=1e-9)
    for k, t in enumerate(TASKS):
        torch.testing.assert_close(flat_grads(model.head_parameters(t)), weights[k] * heads7[t], rtol=1e-5, atol=1e-9)


def test_dwa_weights_follow_window_loss_ratios():
    model = tiny_model()
    method = agg.DWA(temperature=2.0, window=2)
    window_means = []
    for window in range(3):
        values = [torch.stack([v.detach() for v in losses(model, 10 * window + s).values()]) for s in range(2)]
        for seed in (10 * window, 10 * window + 1):
            diagnostics = run_method(method, model, seed=seed)
            got = torch.tensor([diagnostics[f"weight/{t}"] for t in TASKS], dtype=torch.float64)
            if window < 2:
                torch.testing.assert_close(got, torch.ones(3, dtype=torch.float64))
            else:
                rate = window_means[1] / window_means[0]
                torch.testing.assert_close(got, 3 * torch.softmax(rate / 2.0, dim=0))
        window_means.append((values[0] + values[1]) / 2)


def test_rlw_weights_are_seeded_softmax_normals():
    model = tiny_model()
    matrix, _ = separate_passes(model, seed=8)
    method = make_method("rlw", {}, seed=3)
    twin = make_method("rlw", {}, seed=3)
    diagnostics = run_method(method, model, seed=8)
    z = torch.randn(3, generator=torch.Generator().set_state(twin.generator.get_state()), dtype=torch.float64)
    weights = torch.softmax(z, dim=0)
    assert [diagnostics[f"weight/{t}"] for t in TASKS] == pytest.approx(weights.tolist())
    torch.testing.assert_close(flat_grads(model.shared_parameters()), weights @ matrix)
    assert run_method(make_method("rlw", {}, seed=4), model, seed=8) != diagnostics


def test_famo_model_gradient_and_logit_update():
    model = tiny_model()
    method = agg.FAMO(w_lr=0.025, gamma=0.01, max_norm=0.0)
    first = torch.stack([v.detach() for v in losses(model, 9).values()])
    matrix, _ = separate_passes(model, seed=9)
    run_method(method, model, seed=9)
    # z = 1/3: gradient of sum_k z_k log(L_k) / c with c = sum_k z_k / L_k
    shifted = first + 1e-8
    coefficients = (1 / 3) / shifted / ((1 / 3) / shifted).sum()
    torch.testing.assert_close(flat_grads(model.shared_parameters()), coefficients @ matrix)
    # second step: one Adam step of the logits on J_softmax^T (log L_before - log L_after)
    second = torch.stack([v.detach() for v in losses(model, 10).values()])
    logits = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([logits], lr=0.025, weight_decay=0.01)
    logits.grad = torch.autograd.grad(
        torch.softmax(logits, 0), logits, grad_outputs=torch.log(shifted) - torch.log(second + 1e-8)
    )[0]
    reference.step()
    run_method(method, model, seed=10)
    torch.testing.assert_close(method.params.detach(), logits.detach())


def test_famo_clips_shared_gradient_norm():
    model = tiny_model()
    run_method(agg.FAMO(max_norm=1e-3), model, seed=9)
    # clip_grad_norm_ adds 1e-6 to the norm it divides by
    assert float(flat_grads(model.shared_parameters()).norm()) == pytest.approx(1e-3, rel=1e-5)


def test_db_mtl_first_step():
    model = tiny_model()
    log_matrix, log_heads = separate_passes(model, seed=11, transform=lambda loss: torch.log(loss + 1e-8))
    run_method(agg.DBMTL(beta=0.9), model, seed=11)
    buffer = 0.1 * log_matrix
    norms = buffer.norm(dim=1)
    torch.testing.assert_close(flat_grads(model.shared_parameters()), (norms.max() / (norms + 1e-8)) @ buffer)
    for t in TASKS:
        torch.testing.assert_close(flat_grads(model.head_parameters(t)), log_heads[t])


@pytest.mark.parametrize("name", ["famo", "db_mtl"])
def test_log_loss_methods_reject_negative_losses(name):
    model = tiny_model()
    values = {t: v - 100.0 for t, v in losses(model, 0).items()}
    with pytest.raises(ValueError, match="needs losses > "):
        make_method(name, {}, 0).backward(values, model)


def test_weighting_rejects_a_changed_task_list():
    model = tiny_model()
    method = make_method("dwa", {}, 0)
    run_method(method, model, seed=0)
    with pytest.raises(ValueError, match="was set up for tasks"):
        method.backward({"a": losses(model, 1)["a"]}, model)


# -- state, determinism, registry: every registered method ----------------------------------
def is_random(name: str) -> bool:
    """Random methods take an explicit generator, which make_method seeds from the run's seed."""
    return "generator" in inspect.signature(method_factory(name)).parameters


def steps(method, model: MultiTaskModel, seeds, tasks=TASKS, loss=None) -> list[list[torch.Tensor]]:
    """The parameter gradients ``method`` leaves after each step (one batch seed per step)."""
    grads = []
    for seed in seeds:
        model.zero_grad(set_to_none=True)
        x, targets = batch(seed)
        outputs = model(x)
        task_loss = loss or (lambda t, o, targets=targets: ((o - targets[t]) ** 2).mean())
        values = {t: task_loss(t, outputs[t]) for t in tasks}
        method.backward(values, model)
        grads.append([p.grad.clone() for p in model.parameters()])
    return grads


@pytest.mark.parametrize("name", available_methods())
def test_state_dict_resumes_exactly(name):
    model = tiny_model()
    original = make_method(name, {}, seed=5)
    original.attach(model)
    for seed in range(3):
        run_method(original, model, seed)
    restored = make_method(name, {}, seed=99)  # a different seed: the state must carry the generator
    restored.attach(model)
    restored.load_state_dict(copy.deepcopy(original.state_dict()))
    for seed in range(3, 5):
        run_method(original, model, seed)
        expected = [p.grad.clone() for p in model.parameters()]
        run_method(restored, model, seed)
        for p, grad in zip(model.parameters(), expected):
            torch.testing.assert_close(p.grad, grad, rtol=0, atol=0)


@pytest.mark.parametrize("name", [name for name in available_methods() if is_random(name)])
def test_random_methods_are_reproducible_from_their_seed(name):
    """Equal seeds give equal gradients step after step, drawn from the method's own generator
    (another seed leaves it in another state; the global RNG is not used)."""
    runs, states = {}, {}
    for seed in (3, 3, 4):
        model = tiny_model()
        method = make_method(name, {}, seed=seed)
        method.attach(model)
        torch.manual_seed(seed + len(runs.get(seed, [])))  # the global RNG must not matter
        runs.setdefault(seed, []).append(
            torch.cat([g.reshape(-1) for step in steps(method, model, range(3)) for g in step])
        )
        states.setdefault(seed, []).append(method.state_dict()["generator"])
    torch.testing.assert_close(runs[3][0], runs[3][1], rtol=0, atol=0)
    assert torch.equal(states[3][0], states[3][1]) and not torch.equal(states[3][0], states[4][0])


@pytest.mark.parametrize("name", [name for name in available_methods() if not is_random(name)])
def test_deterministic_methods_do_not_depend_on_the_task_order(name):
    """Listing the tasks in another order gives the same parameter gradients (over three steps,
    so stateful methods are covered too)."""
    runs = []
    for tasks in (TASKS, TASKS[::-1]):
        model = tiny_model()
        method = make_method(name, {}, seed=0)
        method.attach(model)
        runs.append(steps(method, model, range(3), tasks=tasks))
    for first, second in zip(*runs):
        for a, b in zip(first, second):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", available_methods())
def test_every_registered_method_handles_a_task_without_gradient_and_identical_tasks(name):
    """A task whose loss does not depend on the model (a zero row of G) and two tasks with
    the same loss: finite gradients, no error."""
    cases = {
        "zero task": lambda t, o: (o**2).mean() if t != "b" else 0.0 * o.sum() + 1.0,
        "identical tasks": lambda t, o: (o**2).mean(),
    }
    for loss in cases.values():
        model = tiny_model()
        with torch.no_grad():  # identical heads, so identical tasks have identical gradients
            for t in TASKS[1:]:
                model.heads[t].load_state_dict(model.heads[TASKS[0]].state_dict())
        method = make_method(name, {}, seed=0)
        method.attach(model)
        for grads in steps(method, model, range(2), loss=loss):
            assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", available_methods())
def test_every_registered_method_trains_a_single_task_and_several(name):
    for tasks in (TASKS[:1], TASKS):
        model = tiny_model()
        method = make_method(name, {}, seed=0)
        method.attach(model)
        for seed in range(2):
            model.zero_grad(set_to_none=True)
            x, targets = batch(seed)
            outputs = model(x)
            method.backward({t: ((outputs[t] - targets[t]) ** 2).mean() for t in tasks}, model)
            grads = flat_grads(model.shared_parameters())
            assert torch.isfinite(grads).all() and grads.norm() > 0


def test_method_options_are_checked_by_name():
    check_method_options("cagrad", {"c": 0.4, "rescale": 0})
    with pytest.raises(ValueError, match=r"method 'cagrad' has no option\(s\) \['alpha'\]; valid options: \['c', "):
        check_method_options("cagrad", {"alpha": 0.4})
    with pytest.raises(ValueError, match="none"):
        check_method_options("imtl_g", {"x": 1})
    assert make_method("cagrad", {"c": 0.2}, 0).aggregator.c == 0.2
