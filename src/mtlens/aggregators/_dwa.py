"""Dynamic weight average (Liu, Johns & Davison 2019).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor

from mtlens.aggregators._gradient_aggregation import weight_diagnostics
from mtlens.aggregators._weighting import (
    LossWeighting,
)
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


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
