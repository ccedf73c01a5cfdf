r"""Loss weightings: per-task weights from the losses and the method's own state.

A loss weighting back-propagates ``sum_k w_k L_k`` (or its own objective of the losses)
with weights that depend on the loss history or on learned parameters; GradNorm and
DB-MTL also use the task gradients of the shared parameters.  All state (learned
parameters with their own Adam state, loss histories, gradient buffers, generators)
is in :meth:`state_dict`, so a resumed run continues exactly.  The task list is fixed at
the first step; a later step with other tasks is an error.

Learned weights (uncertainty weighting, IMTL-L, GradNorm) have their own Adam optimizer
with learning rate ``lr``: the papers train them with the network's optimizer, which the
method does not own; Adam acts per coordinate, so setting ``lr`` to the run's learning
rate gives exactly the joint-optimizer update.  ``backward`` returns the task weights
(``weight/<task>``) as diagnostics.  Formulas, defaults and costs: ``docs/methods.md``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import Tensor

from mtlens.aggregators.aggregation import set_head_gradients, shared_gradient_matrix, weight_diagnostics
from mtlens.aggregators.base import UpdateMethod
from mtlens.aggregators.matrix import check_gradient_matrix
from mtlens.gradients import assign_flat_gradient
from mtlens.models import MultiTaskModel
from mtlens.registry import UnitInterval, validate_options

LOG_EPS = 1e-8
"""Added to losses before taking logs (DB-MTL, FAMO), as in the authors' code."""


def require_positive_losses(values: Tensor, tasks: Sequence[str], method: str) -> None:
    """Raise ``ValueError`` if a loss is too negative for ``log(L + 1e-8)``."""
    bad = [t for t, v in zip(tasks, values.detach().cpu().tolist()) if not v + LOG_EPS > 0]
    if bad:
        raise ValueError(
            f"{method} takes log(L_t + {LOG_EPS}) and needs losses > -{LOG_EPS}; "
            f"task(s) {bad} have losses {values.detach().cpu().tolist()}"
        )


class LossWeighting(UpdateMethod):
    """Binds to the run's task list at the first step and keeps its state per task."""

    def __init__(self) -> None:
        self.tasks: list[str] | None = None

    def _bind(self, losses: dict[str, Tensor]) -> tuple[list[str], Tensor]:
        tasks = list(losses)
        values = torch.stack([losses[t] for t in tasks])
        if not bool(torch.isfinite(values).all()):
            raise FloatingPointError(f"{type(self).__name__}: non-finite loss in {values.detach().cpu().tolist()}")
        if self.tasks is None:
            self.tasks = tasks
            self._init_state(values)
        elif tasks != self.tasks:
            raise ValueError(f"{type(self).__name__} was set up for tasks {self.tasks}, got {tasks}")
        return tasks, values

    @abstractmethod
    def _init_state(self, values: Tensor) -> None:
        """Create the state for ``len(values)`` tasks, on the losses' device."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The state besides the task list."""

    @abstractmethod
    def _load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_state`'s output."""

    def state_dict(self) -> dict[str, Any]:
        return {} if self.tasks is None else {"tasks": list(self.tasks), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.tasks = list(state["tasks"])
            self._load(state)


class _LearnedWeights(LossWeighting):
    """A weighting with a learned vector ``s`` (K,) trained by its own Adam."""

    initial_value = 0.0

    @validate_options
    def __init__(self, lr: PositiveFloat = 1e-3, weight_decay: NonNegativeFloat = 0.0) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.params: Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    def _init_state(self, values: Tensor) -> None:
        self._make(torch.full_like(values.detach(), self.initial_value))

    def _make(self, params: Tensor) -> None:
        self.params = params.detach().clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.params], lr=self.lr, weight_decay=self.weight_decay)

    def _state(self) -> dict[str, Any]:
        assert self.params is not None and self.optimizer is not None
        return {"params": self.params.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def _load(self, state: dict[str, Any]) -> None:
        self._make(state["params"])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])


class _LearnedObjective(_LearnedWeights):
    """Back-propagates ``objective(s, L)`` into the model and ``s``, then steps ``s``."""

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        weights = self.loss_weights(self.params.detach())
        self.objective(self.params, values).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return weight_diagnostics(tasks, weights)

    @abstractmethod
    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        """The scalar back-propagated into model and ``params``."""

    @abstractmethod
    def loss_weights(self, params: Tensor) -> Tensor:
        """``d objective / d L_k``: the weight each loss gets in the model update."""


class UncertaintyWeighting(_LearnedObjective):
    r"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning
    Using Uncertainty to Weigh Losses for Scene Geometry and Semantics").

    Objective ``sum_k exp(-s_k) L_k / 2 + s_k / 2`` with learned ``s_k = log sigma_k^2``
    (start 0), i.e. the Gaussian-likelihood form for every task (as LibMTL); loss
    weights ``exp(-s_k) / 2``.  ``lr``: Adam learning rate of ``s`` (default 1e-3).
    """

    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        return (0.5 * torch.exp(-params) * values + 0.5 * params).sum()

    def loss_weights(self, params: Tensor) -> Tensor:
        return 0.5 * torch.exp(-params)


class IMTLL(_LearnedObjective):
    r"""IMTL-L (Liu et al., ICLR 2021, "Towards Impartial Multi-task Learning", loss
    balance): objective ``sum_k exp(s_k) L_k - s_k`` with learned ``s_k`` (start 0), whose
    optimum makes every scaled loss ``exp(s_k) L_k`` equal to 1; loss weights ``exp(s_k)``.
    ``lr``: Adam learning rate of ``s`` (default 1e-3).
    """

    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        return (torch.exp(params) * values - params).sum()

    def loss_weights(self, params: Tensor) -> Tensor:
        return torch.exp(params)


class GradNorm(_LearnedWeights):
    r"""GradNorm (Chen et al., ICML 2018, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks").

    The model gets ``nabla sum_k w_k L_k``.  Then, with ``G_k = w_k ||g_k||`` (``g_k`` the
    gradient of ``L_k`` on all shared parameters, LibMTL's choice for the paper's "last
    shared layer"), ``r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))`` (``L_k(0)`` the first
    step's losses) and the target ``mean_j(G_j) r_k^alpha`` held constant, ``w`` takes one Adam
    step on ``sum_k |G_k - target_k|`` and is renormalised to ``sum_k w_k = K`` (negative
    weights are clipped to 0 first — our choice; the paper does not say).  Start ``w = 1``.
    ``alpha = 1.5`` (the paper's NYUv2 value, LibMTL's default); ``lr``: Adam learning rate
    of ``w`` (default 1e-3).  Cost: K backward passes for the task gradients.
    """

    initial_value = 1.0

    @validate_options
    def __init__(self, alpha: NonNegativeFloat = 1.5, lr: PositiveFloat = 1e-3) -> None:
        super().__init__(lr)
        self.alpha = alpha
        self.initial_losses: Tensor | None = None

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        shared = model.shared_parameters()
        matrix = shared_gradient_matrix(list(values.unbind()), shared)
        check_gradient_matrix(matrix, tasks)
        weights = self.params.detach().clone()
        if shared:
            assign_flat_gradient(shared, weights.to(matrix.dtype) @ matrix)
        set_head_gradients(list(values.unbind()), tasks, model, weights)

        current = values.detach()
        if self.initial_losses is None:
            self.initial_losses = current.clone()
        ratio = current / self.initial_losses.clamp_min(torch.finfo(current.dtype).tiny)
        relative_rate = ratio / ratio.mean().clamp_min(torch.finfo(current.dtype).tiny)
        scaled_norms = self.params * matrix.norm(dim=1).to(self.params.dtype)
        target = (scaled_norms.mean() * relative_rate**self.alpha).detach()
        self.params.grad = torch.autograd.grad((scaled_norms - target).abs().sum(), self.params)[0]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.params.clamp_(min=0.0)
            total = self.params.sum()
            if total > 0:
                self.params.mul_(len(tasks) / total)
            else:
                self.params.fill_(1.0)
        return weight_diagnostics(tasks, weights)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "initial_losses": self.initial_losses}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self.initial_losses = state["initial_losses"]


class FAMO(_LearnedWeights):
    r"""FAMO (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization").

    Logits ``xi`` (start 0), ``z = softmax(xi)``.  The model gets the gradient of
    ``sum_k z_k log(L_k + 1e-8) / c`` with ``c = sum_k z_k / (L_k + 1e-8)`` (held constant),
    i.e. loss weights ``z_k / (c (L_k + 1e-8))``; the shared gradient is then clipped to
    norm ``max_norm`` (``0`` disables).  The logits take an Adam step (``w_lr``, weight
    decay ``gamma``) on ``J_softmax(xi)^T delta`` with ``delta_k = log L_k(before) -
    log L_k(after)`` — the decrease of log-loss over one update.  The authors measure
    "after" on the same batch with an extra forward pass; here it is the next step's
    loss on the next batch (no extra pass; an approximation noted in ``docs/methods.md``).
    Minimum losses are taken as 0 (the authors' default).  Defaults ``w_lr = 0.025``,
    ``gamma = 0.01``, ``max_norm = 1.0`` (the authors' ``famo.py``).  Cost: one backward.
    """

    @validate_options
    def __init__(
        self, w_lr: PositiveFloat = 0.025, gamma: NonNegativeFloat = 0.01, max_norm: NonNegativeFloat = 1.0
    ) -> None:
        super().__init__(w_lr, weight_decay=gamma)
        self.max_norm = max_norm
        self.previous_losses: Tensor | None = None

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        require_positive_losses(values, tasks, "famo")
        current = values.detach()
        if self.previous_losses is not None:
            decrease = torch.log(self.previous_losses + LOG_EPS) - torch.log(current + LOG_EPS)
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(
                    torch.softmax(self.params, dim=0), self.params, grad_outputs=decrease.to(self.params.dtype)
                )
            self.params.grad = gradient
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.previous_losses = current.clone()
        z = torch.softmax(self.params.detach(), dim=0).to(values.dtype)
        shifted = values + LOG_EPS
        normalizer = (z / shifted.detach()).sum()
        (z * torch.log(shifted) / normalizer).sum().backward()
        shared = model.shared_parameters()
        if self.max_norm > 0 and shared:
            torch.nn.utils.clip_grad_norm_(shared, self.max_norm)
        return weight_diagnostics(tasks, z / (normalizer * shifted.detach()))

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "previous_losses": self.previous_losses}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self.previous_losses = state["previous_losses"]


class DWA(LossWeighting):
    r"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task
    Learning with Attention").

    ``w_k = K softmax_k(r / T)`` with ``r_k = Lbar_k(t-1) / Lbar_k(t-2)``, ``Lbar(t)`` the mean
    training loss of window ``t``; ``w = 1`` until two windows are complete.  The paper's
    window is one epoch; the method sees steps only, so ``window`` is a number of steps
    (default 1: per-step losses) — set it to the setting's steps per epoch to reproduce the
    paper.  ``temperature = 2`` (the paper's ``T``).  Cost: one backward.
    """

    @validate_options
    def __init__(self, temperature: PositiveFloat = 2.0, window: PositiveInt = 1) -> None:
        super().__init__()
        self.temperature, self.window = temperature, window
        self.window_sum: Tensor | None = None
        self.window_steps = 0
        self.history: list[Tensor] = []

    def _init_state(self, values: Tensor) -> None:
        self.window_sum = torch.zeros_like(values.detach())

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        tasks, values = self._bind(losses)
        assert self.window_sum is not None
        if len(self.history) < 2:
            weights = torch.ones_like(values.detach())
        else:
            rate = self.history[1] / self.history[0].clamp_min(torch.finfo(values.dtype).tiny)
            weights = len(tasks) * torch.softmax(rate / self.temperature, dim=0)
        (weights * values).sum().backward()
        self.window_sum = self.window_sum + values.detach()
        self.window_steps += 1
        if self.window_steps == self.window:
            self.history = [*self.history, self.window_sum / self.window][-2:]
            self.window_sum = torch.zeros_like(self.window_sum)
            self.window_steps = 0
        return weight_diagnostics(tasks, weights)

    def _state(self) -> dict[str, Any]:
        return {"window_sum": self.window_sum, "window_steps": self.window_steps, "history": list(self.history)}

    def _load(self, state: dict[str, Any]) -> None:
        self.window_sum, self.window_steps = state["window_sum"], int(state["window_steps"])
        self.history = list(state["history"])


class RLW(LossWeighting):
    r"""Random loss weighting (Lin et al., TMLR 2022, "Reasonable Effectiveness of Random
    Weighting: A Litmus Test for Multi-Task Learning", Alg. 1): ``w = softmax(z)``,
    ``z ~ N(0, I_K)`` drawn from ``generator`` every step; back-propagates ``sum_k w_k L_k``.
    No hyperparameters (the paper's default normal distribution).  Cost: one backward.
    """

    @validate_options
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def _init_state(self, values: Tensor) -> None:
        del values

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        tasks, values = self._bind(losses)
        z = torch.randn(len(tasks), generator=self.generator, dtype=torch.float64)
        weights = torch.softmax(z, dim=0).to(values.dtype).to(values.device)
        (weights * values).sum().backward()
        return weight_diagnostics(tasks, weights)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), **super().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.generator.set_state(state["generator"].cpu())
            super().load_state_dict({k: v for k, v in state.items() if k != "generator"})

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        del state


class DBMTL(LossWeighting):
    r"""DB-MTL (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning").

    Loss-scale balance: task gradients of ``log(L_k + 1e-8)``.  Gradient-magnitude balance:
    an EMA ``h_k <- g_k + beta_t (h_k - g_k)`` (``h = 0`` at the start,
    ``beta_t = beta / t^beta_sigma`` at step ``t``), then the shared update
    ``sum_k (max_j ||h_j|| / (||h_k|| + 1e-8)) h_k``; heads get ``nabla log(L_k + 1e-8)``.
    ``beta = 0.9``, ``beta_sigma = 0`` (the authors' LibMTL defaults).  State: the
    (K x P) buffer ``h``.  Cost: K backward passes.  Diagnostics: the scale factors.
    """

    @validate_options
    def __init__(self, beta: UnitInterval = 0.9, beta_sigma: NonNegativeFloat = 0.0) -> None:
        super().__init__()
        self.beta, self.beta_sigma = beta, beta_sigma
        self.buffer: Tensor | None = None
        self.steps = 0

    def _init_state(self, values: Tensor) -> None:
        del values

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        require_positive_losses(values, tasks, "db_mtl")
        log_losses = list(torch.log(values + LOG_EPS).unbind())
        shared = model.shared_parameters()
        matrix = shared_gradient_matrix(log_losses, shared)
        check_gradient_matrix(matrix, tasks)
        self.steps += 1
        decay = self.beta / self.steps**self.beta_sigma
        previous = torch.zeros_like(matrix) if self.buffer is None else self.buffer
        self.buffer = matrix + decay * (previous - matrix)
        norms = self.buffer.norm(dim=1)
        scales = norms.max() / (norms + LOG_EPS)
        if shared:
            assign_flat_gradient(shared, scales @ self.buffer)
        set_head_gradients(log_losses, tasks, model)
        return weight_diagnostics(tasks, scales)

    def _state(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "steps": self.steps}

    def _load(self, state: dict[str, Any]) -> None:
        self.buffer, self.steps = state["buffer"], int(state["steps"])
