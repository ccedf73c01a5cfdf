r"""Linear probes on frozen encoder features.

:func:`encode` runs a frozen encoder (eval mode, no gradients) over inputs in batches and
returns features ``Z (N, D)``.  :func:`fit_linear_probe` fits a multinomial logistic
regression on ``Z`` by minimizing

    J(W, b) = (1/N) sum_i CE(W z_i + b, y_i) + (l2 / 2) ||W||_F^2

(the bias is not penalized) with full-batch L-BFGS in float64 on standardized features
(mean and std of the training features, stored in the probe).  ``l2 > 0`` makes ``J``
strictly convex, so the solution is unique; it equals scikit-learn's
``LogisticRegression(C = 1 / (N * l2))`` on the same standardized features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlens.settings.base import Indexable


@dataclass(frozen=True)
class LinearProbe:
    """``logits = ((z - mean) / std) @ weight.T + bias`` with ``weight (K, D)``, ``bias (K,)``."""

    weight: Tensor
    bias: Tensor
    mean: Tensor
    std: Tensor

    def logits(self, features: Tensor) -> Tensor:
        z = (features.to(self.weight) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def accuracy(self, features: Tensor, labels: Tensor) -> float:
        return float((self.logits(features).argmax(dim=1) == labels.to(self.weight.device)).double().mean())


@torch.no_grad()
def encode(
    encoder: nn.Module, inputs: Indexable | Tensor, device: torch.device | str = "cpu", batch_size: int = 512
) -> Tensor:
    """Features ``(N, D)`` of ``inputs`` under the frozen ``encoder`` (eval mode, restored after)."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [
            encoder(inputs[torch.arange(lo, min(lo + batch_size, len(inputs)))].to(device)).cpu()
            for lo in range(0, len(inputs), batch_size)
        ]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)


def fit_linear_probe(
    features: Tensor, labels: Tensor, n_classes: int, l2: float = 1e-3, max_iter: int = 500, tol: float = 1e-10
) -> LinearProbe:
    """The minimizer of ``J`` in the module docstring (float64, L-BFGS with strong Wolfe search)."""
    if l2 <= 0:
        raise ValueError(f"l2 must be > 0 (it makes the problem strictly convex), got {l2}")
    x = features.detach().to(torch.float64)
    y = labels.detach().to(device=x.device, dtype=torch.int64)
    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-8)
    z = (x - mean) / std
    weight = torch.zeros(n_classes, z.shape[1], dtype=torch.float64, device=x.device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=x.device, requires_grad=True)
    solver = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tol,
        tolerance_change=tol * 1e-3,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def objective() -> Tensor:
        solver.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    solver.step(objective)
    return LinearProbe(weight.detach(), bias.detach(), mean, std)
