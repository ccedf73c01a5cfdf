"""The linear probe against scikit-learn's logistic regression and its optimality conditions."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from mtlens.experiments.linear_probe import encode, fit_linear_probe


def _problem(n=120, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0]) + 2.0
    true_w = torch.randn(k, d, generator=g)
    y = ((x - 2.0) @ true_w.T + 0.5 * torch.randn(n, k, generator=g)).argmax(dim=1)
    assert set(y.tolist()) == set(range(k))
    return x, y


def test_probe_matches_sklearn_logistic_regression():
    x, y = _problem()
    l2 = 0.05
    probe = fit_linear_probe(x, y, 3, l2=l2)
    z = ((x.double() - x.double().mean(0)) / x.double().std(0)).numpy()
    reference = LogisticRegression(C=1.0 / (len(x) * l2), tol=1e-12, max_iter=10_000).fit(z, y.numpy())
    # Softmax parameters are unique up to a shift shared by all classes; the L2 term fixes
    # the weights' shift to zero (sum over classes = 0); compare the centred biases.
    np.testing.assert_allclose(probe.weight.numpy(), reference.coef_, atol=1e-5)
    centred = probe.bias - probe.bias.mean()
    np.testing.assert_allclose(centred.numpy(), reference.intercept_ - reference.intercept_.mean(), atol=1e-5)
    np.testing.assert_allclose(probe.logits(x).argmax(1).numpy(), reference.predict(z))


def test_probe_is_a_stationary_point_of_its_objective():
    x, y = _problem(seed=1)
    l2 = 1e-2
    probe = fit_linear_probe(x, y, 3, l2=l2)
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    z = (x.double() - probe.mean) / probe.std
    loss = nn.functional.cross_entropy(z @ w.T + b, y) + 0.5 * l2 * w.pow(2).sum()
    grad_w, grad_b = torch.autograd.grad(loss, [w, b])
    assert float(grad_w.abs().max()) < 1e-7 and float(grad_b.abs().max()) < 1e-7
    assert probe.accuracy(x, y) > 0.8


def test_encode_is_frozen_and_batched():
    encoder = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.ReLU())
    encoder.train()
    x = torch.randn(37, 4)
    features = encode(encoder, x, batch_size=8)
    assert encoder.training  # restored
    encoder.eval()
    torch.testing.assert_close(features, encoder(x).detach())  # dropout off, all rows, in order
    assert not features.requires_grad
