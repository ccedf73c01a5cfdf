"""Probe math against brute-force references: autograd loops, BackPACK, closed forms, finite differences."""

from __future__ import annotations

import math
from copy import deepcopy
from functools import partial

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from mtlens.models import MultiTaskModel
from mtlens.probes import (
    fisher_trace,
    gradient_coherence,
    per_example_gradient_moments,
    per_example_gradients,
    probe_parameters,
    sharpness_measures,
)
from mtlens.probes.affinity import lookahead_affinity
from mtlens.probes.fisher import sample_model_labels
from mtlens.probes.layerwise import layerwise_moments
from mtlens.probes.per_example import eval_mode
from mtlens.probes.sharpness import _perturbed_loss_and_gradient
from mtlens.tasks import Task, binary_task, classification_task, regression_task

TASKS = {"cls": classification_task("cls", 4), "bin": binary_task("bin"), "reg": regression_task("reg", 2)}


def cnn(batch_norm: bool) -> nn.Module:
    """A tiny CNN on 1x8x8 images -> 8 features (with BatchNorm if asked)."""
    layers = [nn.Conv2d(1, 3, 3, padding=1)] + ([nn.BatchNorm2d(3)] if batch_norm else [])
    return nn.Sequential(*layers, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 8), nn.Tanh())


def cnn_model(batch_norm: bool = True, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    model = MultiTaskModel(cnn(batch_norm), {name: task.head(8) for name, task in TASKS.items()})
    if batch_norm:  # non-trivial running statistics
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(16, 1, 8, 8) * 2 + 1)
    return model


def targets_for(task: Task, n: int, generator: torch.Generator) -> torch.Tensor:
    if task.name == "cls":
        return torch.randint(0, 4, (n,), generator=generator)
    if task.name == "bin":
        return torch.randint(0, 2, (n,), generator=generator).float()
    return torch.randn(n, 2, generator=generator)


def data(task: Task, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=generator), targets_for(task, n, generator)


def loop_gradients(model: MultiTaskModel, task: Task, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Reference: one autograd.grad call per example, model in eval mode."""
    params = list(probe_parameters(model, task.name).values())
    was_training = model.training
    model.eval()
    rows = []
    for i in range(len(x)):
        loss = task.loss(model(x[i : i + 1], [task.name])[task.name], y[i : i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    model.train(was_training)
    return torch.stack(rows)


def linear_model(task: Task, in_features: int, out_features: int, bias: bool = True, seed: int = 0) -> MultiTaskModel:
    """``f(x) = W x (+ b)``: an encoder without parameters and one linear head."""
    torch.manual_seed(seed)
    return MultiTaskModel(nn.Identity(), {task.name: nn.Linear(in_features, out_features, bias=bias)})


# ---------------------------------------------------------------- per-example gradients


def test_probe_parameters_are_encoder_and_own_head_in_model_order():
    model = cnn_model()
    names = list(probe_parameters(model, "bin"))
    expected = [n for n, _ in model.named_parameters() if n.startswith(("encoder.", "heads.bin."))]
    assert names == expected and any(n.startswith("heads.bin.") for n in names)
    assert not any(n.startswith(("heads.cls.", "heads.reg.")) for n in names)
    with pytest.raises(KeyError, match="no head"):
        probe_parameters(model, "nope")


@pytest.mark.parametrize("batch_norm", [True, False], ids=["vmap", "layerwise"])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_per_example_gradients_match_autograd_loop(name, batch_norm):
    task, model = TASKS[name], cnn_model(batch_norm)
    x, y = data(task, 19)
    reference = loop_gradients(model, task, x, y)
    grads = per_example_gradients(model, task, x, y, chunk_size=7)  # chunks of 7, 7, 5
    assert grads.shape == reference.shape
    torch.testing.assert_close(grads, reference, rtol=1e-4, atol=1e-6)
    total, sum_sq, n = per_example_gradient_moments(model, task, x, y, chunk_size=4)
    assert n == 19
    torch.testing.assert_close(total, reference.sum(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sum_sq, reference.pow(2).sum(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["cls", "reg"])
def test_per_example_gradients_match_backpack(name):
    import backpack  # test-only dependency, installed with --no-deps by the Makefile
    from backpack.extensions import BatchGrad, SumGradSquared

    task, model = TASKS[name], cnn_model(batch_norm=False)
    x, y = data(task, 13)
    grads = per_example_gradients(model, task, x, y, chunk_size=5)
    _, sum_sq, _ = per_example_gradient_moments(model, task, x, y, chunk_size=5)
    extended = backpack.extend(model)
    params = list(probe_parameters(model, task.name).values())
    loss = task.loss(extended(x, [task.name])[task.name], y).sum()
    with backpack.backpack(BatchGrad(), SumGradSquared()):
        loss.backward()
    batch_grads = torch.cat([p.grad_batch.reshape(len(x), -1) for p in params], dim=1)
    sum_grad_squared = torch.cat([p.sum_grad_squared.reshape(-1) for p in params])
    torch.testing.assert_close(grads, batch_grads, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads.pow(2).sum(0), sum_grad_squared, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sum_sq, sum_grad_squared.sum(), rtol=1e-4, atol=1e-6)


class SequenceEncoder(nn.Module):
    """Conv1d, then a Linear applied at every position (3-d input), then a Linear on the flattened result."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3, padding=2, stride=2, dilation=2)
        self.per_position = nn.Linear(3, 4)
        self.out = nn.Linear(4 * 5, 6, bias=False)

    def forward(self, x):
        h = torch.tanh(self.conv(x)).transpose(1, 2)  # (N, 5, 3)
        return self.out(torch.tanh(self.per_position(h)).flatten(1))


@pytest.mark.parametrize("group_size", [1, 4])
def test_layerwise_squared_norms_match_brute_force_on_conv1d_and_sequence_linear(group_size):
    task = classification_task("cls", 4)
    torch.manual_seed(0)
    model = MultiTaskModel(SequenceEncoder(), {"cls": nn.Linear(6, 4)})
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(11, 2, 10, generator=generator), torch.randint(0, 4, (11,), generator=generator)
    params = probe_parameters(model, "cls")
    with eval_mode(model):
        fast = layerwise_moments(model, task, params, x, y, group_size, chunk_size=5)
    assert fast is not None
    g = loop_gradients(model, task, x, y)
    sums = torch.stack([g[i : i + group_size].sum(0) for i in range(0, 11, group_size)])
    torch.testing.assert_close(fast[0], g.sum(0), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast[1], sums.pow(2).sum(), rtol=1e-4, atol=1e-6)


def test_layerwise_path_is_taken_only_when_every_parameter_is_a_dense_or_conv_layer():
    task = TASKS["cls"]
    x, y = data(task, 4)
    for batch_norm, supported in ((False, True), (True, False)):
        model = cnn_model(batch_norm)
        with eval_mode(model):
            result = layerwise_moments(model, task, probe_parameters(model, "cls"), x, y, 1, 4)
        assert (result is not None) == supported
    shared = nn.Linear(8, 8)  # one layer called twice: per-example norms need vmap
    model = MultiTaskModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 8), shared, shared), {"cls": nn.Linear(8, 4)})
    with eval_mode(model):
        assert layerwise_moments(model, task, probe_parameters(model, "cls"), x, y, 1, 4) is None
    weight = shared.weight
    _, sum_sq, _ = per_example_gradient_moments(model, task, x, y)
    torch.testing.assert_close(sum_sq, loop_gradients(model, task, x, y).pow(2).sum(), rtol=1e-4, atol=1e-6)
    # torch's functional_call leaves a plain tensor on a module registered twice; the probes put the parameter back
    assert model.encoder[2].weight is weight and model.encoder[3].weight is weight


class TimeDistributed(nn.Module):
    """Positions folded into the batch dimension: the Linear's input has N * L rows."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x):
        n, length, d = x.shape
        return torch.tanh(self.lin(x.reshape(n * length, d))).reshape(n, length, -1).mean(1)


class SequenceFirst(nn.Module):
    """A sequence-first Linear: its input is (L, N, d), rows are positions, not examples."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x):
        return torch.tanh(self.lin(x.transpose(0, 1))).mean(0)


class Siamese(nn.Module):
    """Both halves of each example through one Linear, stacked along dimension 0 (2N rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        n = len(x)
        h = torch.tanh(self.lin(torch.cat([x[:, 0], x[:, 1]])))
        return torch.cat([h[:n], h[n:]], dim=1)


@pytest.mark.parametrize(
    ("encoder", "shape", "chunk_size"),
    [
        (TimeDistributed, (10, 5, 4), 256),
        (SequenceFirst, (10, 5, 4), 256),
        (SequenceFirst, (10, 5, 4), 5),  # a chunk of 5 examples of length 5: the row count cannot tell
        (Siamese, (10, 2, 4), 256),
    ],
)
def test_per_example_norms_are_right_where_layer_rows_are_not_examples(encoder, shape, chunk_size):
    """Audit F 2026-12-06: the layer-wise identities took row i of every Linear input as example i, so a model
    that folds positions into the batch, runs sequence-first or stacks a siamese pair got wrong per-example
    norms (coherence 0.188 for 0.156) with no error; such models now take ``vmap``."""
    task = classification_task("cls", 3)
    torch.manual_seed(0)
    model = MultiTaskModel(encoder(), {"cls": nn.Linear(6, 3)})
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(*shape, generator=generator), torch.randint(0, 3, (shape[0],), generator=generator)
    g = loop_gradients(model, task, x, y)
    total, sum_sq, _ = per_example_gradient_moments(model, task, x, y, chunk_size=chunk_size)
    torch.testing.assert_close(total, g.sum(0), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sum_sq, g.pow(2).sum(), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- coherence


def test_coherence_of_identical_gradients_is_m():
    task, model = TASKS["cls"], cnn_model()
    x, y = data(task, 1)
    m = 9
    result = gradient_coherence(model, task, x.expand(m, -1, -1, -1), y.expand(m), chunk_size=4)
    assert result["m_coherence"] == pytest.approx(m, rel=1e-5)
    assert result["grad_coherence"] == pytest.approx(1.0, rel=1e-5)


def test_coherence_of_orthogonal_equal_norm_gradients_is_one():
    # f(x) = w.x without bias, x_i = e_i: g_i = (w_i - y_i) e_i, orthogonal; equal residuals -> equal norms
    task = regression_task("r", 1, head=lambda d: nn.Linear(d, 1, bias=False))
    m = 6
    model = linear_model(task, m, 1, bias=False)
    x = torch.eye(m)
    y = model.heads["r"].weight.detach().reshape(m, 1) - 0.7
    result = gradient_coherence(model, task, x, y)
    assert result["m_coherence"] == pytest.approx(1.0, rel=1e-5)
    assert result["grad_coherence"] == pytest.approx(1 / m, rel=1e-5)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_coherence_matches_loop(name):
    task, model = TASKS[name], cnn_model()
    x, y = data(task, 11)
    g = loop_gradients(model, task, x, y)
    alpha = float(g.mean(0).pow(2).sum() / g.pow(2).sum(1).mean())
    result = gradient_coherence(model, task, x, y, chunk_size=3)
    assert result["grad_coherence"] == pytest.approx(alpha, rel=1e-4)
    assert result["m_coherence"] == pytest.approx(11 * alpha, rel=1e-4)


# ---------------------------------------------------------------- Fisher trace


def linear_fisher_closed_form(name: str, model: MultiTaskModel, x: torch.Tensor) -> torch.Tensor:
    """Per-input Tr F(x) of a linear head f = W x + b (gradient = r(y) (x; 1)^T, r the output residual).

    softmax: E_y ||p - e_y||^2 = 1 - ||p||^2; Bernoulli: E (s - y)^2 = s (1 - s); unit Gaussian
    in d dims: E ||f - y||^2 = d.  Each times ||x||^2 + 1 (weights and bias).
    """
    with torch.no_grad():
        outputs = model(x, [name])[name]
    scale = x.pow(2).sum(1) + 1
    if name == "cls":
        return (1 - torch.softmax(outputs, -1).pow(2).sum(1)) * scale
    if name == "bin":
        s = torch.sigmoid(outputs.squeeze(-1))
        return s * (1 - s) * scale
    return outputs.shape[1] * scale


def brute_force_batch_fisher(model, task, x, labels, batch_size):
    """sum_k |B_k|/N * |B_k| * ||mean_{B_k} grad||^2 with one autograd call per batch; also the batch terms."""
    params = list(probe_parameters(model, task.name).values())
    model.eval()
    terms, weights = [], []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        loss = task.loss(model(xb, [task.name])[task.name], yb).mean()
        g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)])
        terms.append(len(xb) * float(g.pow(2).sum()))
        weights.append(len(xb) / len(x))
    return float(np.dot(terms, weights)), np.array(terms)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["vmap", "layerwise"])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_fisher_batch_estimator_equals_brute_force(name, batch_norm):
    task, model = TASKS[name], cnn_model(batch_norm)
    x, _ = data(task, 37)  # 37 = 2 * 16 + 5: a short last batch
    labels = sample_model_labels(model, task, x, torch.Generator().manual_seed(3))
    expected, _ = brute_force_batch_fisher(model, task, x, labels, 16)
    result = fisher_trace(model, task, x, torch.Generator().manual_seed(3), batch_size=16, chunk_size=20)
    assert set(result) == {"fisher_trace"}
    assert result["fisher_trace"] == pytest.approx(expected, rel=1e-4)
    exact = fisher_trace(model, task, x, torch.Generator().manual_seed(3), estimator="exact", chunk_size=8)
    reference = loop_gradients(model, task, x, labels).pow(2).sum(1).mean()
    assert exact["fisher_trace_exact"] == exact["fisher_trace"] == pytest.approx(float(reference), rel=1e-4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_fisher_estimators_are_unbiased_for_linear_closed_form(name):
    task = TASKS[name]
    out = {"cls": 4, "bin": 1, "reg": 2}[name]
    model = linear_model(task, 3, out)
    base = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))
    x = base.repeat(250, 1)  # 2,000 inputs: 250 label draws per distinct input
    truth = float(linear_fisher_closed_form(name, model, base).mean())
    for estimator in ("exact", "batch"):
        value = fisher_trace(model, task, x, torch.Generator().manual_seed(11), batch_size=16, estimator=estimator)
        labels = sample_model_labels(model, task, x, torch.Generator().manual_seed(11))
        if estimator == "exact":
            samples = per_example_gradients(model, task, x, labels).pow(2).sum(1).numpy()
        else:
            samples = brute_force_batch_fisher(model, task, x, labels, 16)[1]
        standard_error = samples.std() / math.sqrt(len(samples))
        assert abs(value["fisher_trace"] - truth) < 4 * standard_error, (estimator, value, truth)


def test_fisher_rejects_unknown_estimator():
    task, model = TASKS["cls"], cnn_model()
    with pytest.raises(ValueError, match="estimator"):
        fisher_trace(model, task, data(task, 4)[0], torch.Generator(), estimator="empirical")


# ---------------------------------------------------------------- sharpness


def trust_region_maximum(g: np.ndarray, h: np.ndarray, rho: float) -> float:
    """max_{||u|| <= rho} g.u + u.H u / 2 for PSD H: u = (lam I - H)^-1 g with ||u|| = rho, lam > lam_max."""
    eigenvalues, vectors = np.linalg.eigh(h)
    c = vectors.T @ g
    top = eigenvalues.max()

    def excess(lam: float) -> float:
        return np.sum((c / (lam - eigenvalues)) ** 2) - rho**2

    lam = brentq(excess, top + 1e-12 * max(1.0, top), top + np.linalg.norm(g) / rho + 1e-9, xtol=1e-14)
    u = vectors @ (c / (lam - eigenvalues))
    return float(g @ u + 0.5 * u @ h @ u)


def quadratic_batch_maximum(model, task, x, y, rho):
    """Closed form for L_B(theta + |theta| u) - L_B(theta) of least squares ``0.5 ||W x + b - y||^2``
    (exactly quadratic in theta = (W, b), written out by hand in float64)."""
    head = model.heads[task.name]
    weight, bias = head.weight.detach().double(), head.bias.detach().double()
    theta = torch.cat([weight.reshape(-1), bias])
    x, y = x.double(), y.double()

    def loss(flat):
        w, b = flat[: weight.numel()].reshape(weight.shape), flat[weight.numel() :]
        return 0.5 * (x @ w.T + b - y).pow(2).sum(1).mean()

    g = torch.func.grad(loss)(theta)
    h = torch.func.hessian(loss)(theta)
    scale = theta.abs()
    return trust_region_maximum((scale * g).numpy(), (scale[:, None] * h * scale[None, :]).numpy(), rho)


def test_adaptive_sharpness_matches_trust_region_closed_form_on_least_squares():
    task = regression_task("r", 2)
    model = linear_model(task, 3, 2)
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 3, generator=generator), torch.randn(12, 2, generator=generator)
    rho = 0.5
    expected = np.mean([quadratic_batch_maximum(model, task, x[i : i + 6], y[i : i + 6], rho) for i in (0, 6)])
    result = sharpness_measures(model, task, x, y, rho=rho, batch_size=6, steps=60)
    assert result["sharpness"] == pytest.approx(expected, rel=1e-4)
    # plain projected steps approach the same maximum from below
    stepped = sharpness_measures(model, task, x, y, rho=rho, batch_size=6, steps=200, step_size=0.05)
    assert expected * (1 - 1e-3) <= stepped["sharpness"] <= expected * (1 + 1e-5)


def test_sharpness_of_convex_loss_is_at_least_first_order_estimate():
    # logistic regression is convex: L(theta + delta) - L(theta) >= grad . delta, so S_B >= rho || |theta| grad ||
    task = binary_task("b")
    model = linear_model(task, 5, 1)
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 5, generator=generator), torch.randint(0, 2, (40,), generator=generator).float()
    for rho in (1e-3, 0.1):
        worst = sharpness_measures(model, task, x, y, rho=rho, batch_size=16)["sharpness"]
        sam = sharpness_measures(model, task, x, y, rho=rho, batch_size=16, steps=None)["sharpness_sam"]
        assert worst >= sam > 0


@pytest.mark.parametrize("name", sorted(TASKS))
def test_sharpness_is_nonnegative_and_first_order_for_small_rho(name):
    task, model = TASKS[name], cnn_model()
    x, y = data(task, 24)
    worst = sharpness_measures(model, task, x, y, rho=1e-4, batch_size=8, steps=3)["sharpness"]
    sam = sharpness_measures(model, task, x, y, rho=1e-4, batch_size=8, steps=None)["sharpness_sam"]
    params = probe_parameters(model, task.name)
    model.eval()
    loss = lambda xb, yb: task.loss(model(xb, [task.name])[task.name], yb).mean()  # noqa: E731
    reference = 0.0
    for i in range(0, 24, 8):  # the first-order estimate by hand
        g = torch.autograd.grad(loss(x[i : i + 8], y[i : i + 8]), list(params.values()))
        scaled_norm = torch.sqrt(sum((p.detach().abs() * gp).pow(2).sum() for p, gp in zip(params.values(), g)))
        reference += 1e-4 * float(scaled_norm) / 3
    assert sam == pytest.approx(reference, rel=1e-4)
    assert worst >= 0
    assert worst == pytest.approx(sam, rel=2e-2)
    # the single pass for both probes gives the SAM estimate of the SAM-only pass
    both = sharpness_measures(model, task, x, y, rho=1e-4, batch_size=8, steps=3)
    assert both == pytest.approx({"sharpness": worst, "sharpness_sam": sam}, rel=1e-12)


def test_ascent_gradient_matches_finite_differences():
    task, model = TASKS["cls"], cnn_model().double()
    x, y = data(task, 10)
    x = x.double()
    params = {n: p.detach() for n, p in probe_parameters(model, task.name).items()}
    generator = torch.Generator().manual_seed(6)
    u = {n: 0.01 * torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in params.items()}
    v = {n: torch.randn(p.shape, generator=generator, dtype=torch.float64) for n, p in params.items()}
    model.eval()
    gradient, value = _perturbed_loss_and_gradient(model, task, params, x, y, u)

    def f(t: float) -> float:
        perturbed = {n: p + p.abs() * (u[n] + t * v[n]) for n, p in params.items()}
        outputs = torch.func.functional_call(model, perturbed, (x, [task.name]))[task.name]
        return float(task.loss(outputs, y).mean())

    eps = 1e-6
    assert float(value) == pytest.approx(f(0.0), rel=1e-12)
    directional = sum(float((gradient[n] * v[n]).sum()) for n in params)
    assert directional == pytest.approx((f(eps) - f(-eps)) / (2 * eps), rel=1e-6)


# ---------------------------------------------------------------- probes leave the model alone


def test_probes_leave_parameters_buffers_flags_and_global_rng_unchanged():
    model = cnn_model(batch_norm=True)
    model.heads["reg"].eval()  # a submodule with its own flag, restored as it was
    flags = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    for task in TASKS.values():
        x, y = data(task, 20)
        probes = [
            partial(per_example_gradients, model, task, x, y, chunk_size=6),
            partial(gradient_coherence, model, task, x, y),
            partial(fisher_trace, model, task, x, torch.Generator().manual_seed(0)),
            partial(fisher_trace, model, task, x, torch.Generator().manual_seed(0), estimator="exact"),
            partial(sharpness_measures, model, task, x, y, rho=0.05, batch_size=8, steps=2),
            partial(sharpness_measures, model, task, x, y, batch_size=8, steps=None),
            partial(lookahead_affinity, model, list(TASKS.values()), _multi_task_samples(True), 0.5),
        ]
        for probe in probes:
            probe()
            assert {n: m.training for n, m in model.named_modules()} == flags
            current = model.state_dict()
            assert all(torch.equal(current[k], v) for k, v in state.items())  # incl. BN running stats
            assert torch.equal(torch.get_rng_state(), rng)
            assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- TAG lookahead affinity


def _multi_task_samples(shared_inputs: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    samples = {name: data(task, 24, seed=k + 3) for k, (name, task) in enumerate(TASKS.items())}
    if shared_inputs:  # single-input MTL: one inputs tensor for every task
        x = samples["cls"][0]
        samples = {name: (x, y) for name, (_, y) in samples.items()}
    return samples


@pytest.mark.parametrize("shared_inputs", [True, False], ids=["single-input", "multi-input"])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
def test_lookahead_affinity_matches_a_copied_model_that_takes_the_step(shared_inputs, batch_norm):
    model = cnn_model(batch_norm=batch_norm)
    samples, lr = _multi_task_samples(shared_inputs), 0.3
    affinity = lookahead_affinity(model, list(TASKS.values()), samples, lr)
    assert len(affinity) == len(TASKS) * (len(TASKS) - 1)
    for source, task in TASKS.items():
        copy = deepcopy(model).eval()
        x, y = samples[source]
        loss = task.loss(copy(x, [source])[source], y).mean()
        grads = torch.autograd.grad(loss, list(copy.encoder.parameters()))
        before = {t: TASKS[t].loss(copy(samples[t][0], [t])[t], samples[t][1]).mean().item() for t in TASKS}
        with torch.no_grad():
            for p, g in zip(copy.encoder.parameters(), grads):
                p -= lr * g
        for target in TASKS:
            if target != source:
                after = TASKS[target].loss(copy(samples[target][0], [target])[target], samples[target][1]).mean()
                assert affinity[(source, target)] == pytest.approx(1 - after.item() / before[target], abs=1e-6)


def test_lookahead_affinity_is_linear_in_a_small_step_and_signed_by_the_gradient_inner_product():
    # First order: Z_{i->j} ~ eta <g_i, g_j> / L_j; two regression tasks with opposite targets conflict.
    torch.manual_seed(0)
    tasks = [regression_task("up"), regression_task("down")]
    model = MultiTaskModel(nn.Linear(3, 1), {"up": nn.Identity(), "down": nn.Identity()})
    x = torch.randn(32, 3)
    samples = {"up": (x, torch.full((32, 1), 2.0)), "down": (x, torch.full((32, 1), -2.0))}
    small = lookahead_affinity(model, tasks, samples, 1e-4)
    double = lookahead_affinity(model, tasks, samples, 2e-4)
    assert small[("up", "down")] < 0 and small[("down", "up")] < 0
    assert double[("up", "down")] == pytest.approx(2 * small[("up", "down")], rel=1e-3)
    samples["down"] = samples["up"]  # identical tasks help each other
    assert lookahead_affinity(model, [tasks[0], regression_task("down")], samples, 1e-3)[("up", "down")] > 0
