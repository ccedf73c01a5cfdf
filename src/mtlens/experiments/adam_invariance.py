r"""Adam's partial invariance to a per-task loss scale, checked numerically.

Train on ``L_a + c * L_b`` (task ``b``'s loss scaled by ``c``).  Adam's update of a
parameter ``theta_j`` is ``-lr * m_hat_j / (sqrt(v_hat_j) + eps)`` with ``m`` and ``v`` the
running means of its gradient ``g_j`` and of ``g_j^2``.

* Head of task ``b``: it only sees ``L_b``, so its gradient is ``c * g_j``; then ``m`` scales
  by ``c`` and ``sqrt(v)`` by ``|c|``, and the update does not depend on ``c`` (exactly,
  up to ``eps`` relative to ``sqrt(v_hat)``).
* Head of task ``a``: its gradient does not contain ``c`` at all.
* Shared parameters see ``g_a + c * g_b``: the direction of that sum, and so the update,
  changes with ``c``; Adam is *not* invariant there.

SGD's update ``-lr * g`` scales with ``c`` on head ``b`` and is not invariant.  These
statements hold exactly for a step from a common state with a common loss history.  After
several steps the encoder has moved differently for different ``c``, so the heads see
different features and their updates drift apart too: the invariance is per step, and
over training it is partial.

:func:`update_invariance` measures this: from one model and fixed batches it takes
``steps`` optimizer steps on ``L_a + c * L_b`` for each ``c`` and compares the total
parameter change of every parameter group with that at ``c = 1``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mtlens.models import MultiTaskModel, build_model
from mtlens.settings import Setting
from mtlens.training.config import ResolvedRunConfig

LossFunction = Callable[[MultiTaskModel, int], dict[str, Tensor]]
"""``(model, step index) -> {task: mean loss}`` on the step's (fixed) batches."""


def parameter_groups(model: MultiTaskModel, task_a: str, task_b: str) -> dict[str, list[torch.nn.Parameter]]:
    """``shared`` (the encoder), ``head_a`` and ``head_b`` parameters of a two-head model."""
    return {
        "shared": model.shared_parameters(),
        "head_a": model.head_parameters(task_a),
        "head_b": model.head_parameters(task_b),
    }


def scaled_updates(
    model: MultiTaskModel,
    losses: LossFunction,
    task_a: str,
    task_b: str,
    scale: float,
    optimizer: str = "adam",
    lr: float = 1e-3,
    steps: int = 1,
    momentum: float = 0.0,
    eps: float = 1e-8,
) -> dict[str, Tensor]:
    """Total parameter change per group after ``steps`` steps on ``L_a + scale * L_b``.

    Runs on a deep copy of ``model`` with a fresh optimizer (Adam with ``eps``, or SGD with
    ``momentum``); ``model`` is not changed.  Returns ``{group: flat change vector}``.
    """
    work = copy.deepcopy(model)
    work.train()
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(work.parameters(), lr=lr, eps=eps)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(work.parameters(), lr=lr, momentum=momentum)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    groups = parameter_groups(work, task_a, task_b)
    before = {g: torch.cat([p.detach().reshape(-1).clone() for p in ps]) for g, ps in groups.items()}
    for step in range(steps):
        task_losses = losses(work, step)
        opt.zero_grad(set_to_none=True)
        (task_losses[task_a] + scale * task_losses[task_b]).backward()
        opt.step()
    return {g: torch.cat([p.detach().reshape(-1) for p in ps]) - before[g] for g, ps in groups.items()}


def update_invariance(
    model: MultiTaskModel,
    losses: LossFunction,
    task_a: str,
    task_b: str,
    scales: Sequence[float],
    optimizers: Sequence[tuple[str, float]] = (("adam", 1e-3), ("sgd", 1e-2)),
    steps: Sequence[int] = (1, 5),
    eps: float = 1e-8,
) -> pd.DataFrame:
    """How much each group's update changes with the scale ``c`` of task ``b``'s loss.

    For every ``(optimizer, lr)``, number of ``steps`` and ``c`` in ``scales``, the change
    ``delta_c`` of each parameter group (see :func:`scaled_updates`) is compared with
    ``delta_1``: ``relative_difference = ||delta_c - delta_1|| / ||delta_1||`` (0 means
    invariant).  Returns one row per (optimizer, steps, group, scale) with columns
    ``optimizer, lr, eps (Adam only), steps, group, scale, update_norm, relative_difference``.
    """
    records = []
    for optimizer, lr in optimizers:
        for n_steps in steps:
            reference = scaled_updates(model, losses, task_a, task_b, 1.0, optimizer, lr, n_steps, eps=eps)
            for scale in scales:
                update = (
                    reference
                    if scale == 1.0
                    else scaled_updates(model, losses, task_a, task_b, scale, optimizer, lr, n_steps, eps=eps)
                )
                for group, delta in update.items():
                    base = reference[group].norm()
                    records.append(
                        {
                            "optimizer": optimizer,
                            "lr": lr,
                            "eps": eps if optimizer == "adam" else np.nan,
                            "steps": n_steps,
                            "group": group,
                            "scale": scale,
                            "update_norm": float(delta.norm()),
                            "relative_difference": float((delta - reference[group]).norm() / base.clamp(min=1e-30)),
                        }
                    )
    return pd.DataFrame.from_records(records)


def invariance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, steps, group): the largest relative difference over the scales."""
    return (
        table.groupby(["optimizer", "lr", "eps", "steps", "group"], as_index=False, dropna=False)["relative_difference"]
        .max()
        .rename(columns={"relative_difference": "max_relative_difference"})
    )


def setting_invariance(
    setting: Setting,
    config: ResolvedRunConfig,
    scaled_task: str,
    scales: Sequence[float],
    lrs: dict[str, float],
    steps: Sequence[int] = (1, 10),
    eps: Sequence[float] = (1e-8, 1e-16),
) -> pd.DataFrame:
    """:func:`update_invariance` on a setting's MTL model at initialization (seed ``config.seed``),
    with task ``a`` the first other task, the run's batch size and fixed batches per step, for
    each Adam ``eps`` (PyTorch's default 1e-8, and a negligible one that shows the exact
    invariance; SGD once)."""
    from mtlens.training.batches import BatchStream

    other = [t for t in config.tasks if t != scaled_task]
    if not other:
        raise ValueError(f"the invariance check needs a task besides {scaled_task!r}; the run has {config.tasks}")
    pair = [other[0], scaled_task]
    tasks = setting.select(pair)
    model = build_model(setting.encoder, setting.feature_dim, tasks, config.seed)
    stream = BatchStream(setting, pair, config.batch_size, config.seed)
    batches = [stream.next() for _ in range(max(steps))]

    def losses(m: MultiTaskModel, step: int) -> dict[str, Tensor]:
        out = {}
        for batch in batches[step].values():
            outputs = m(batch.inputs, list(batch.targets))
            for name, targets in batch.targets.items():
                out[name] = setting.task(name).loss(outputs[name], targets).mean()
        return out

    tables = [
        update_invariance(
            model,
            losses,
            pair[0],
            pair[1],
            scales,
            [(o, lr) for o, lr in lrs.items() if o == "adam" or k == 0],
            steps,
            e,
        )
        for k, e in enumerate(eps)
    ]
    table = pd.concat(tables, ignore_index=True)
    return table.assign(setting=setting.name, task_a=pair[0], task_b=pair[1])
