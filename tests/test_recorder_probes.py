"""Probes on a user's model that is not "encoder + heads": two towers on a shared trunk, each with a
task-specific adapter; checked against brute-force per-example autograd loops, and for side effects.
The Fisher probe runs on the model's logits (``outputs=``) with softmax-likelihood tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlens import Recorder, RecorderProbes, RunStore
from mtlens.probes.loss_model import LossModel
from mtlens.seeding import derived_seed
from mtlens.tasks import classification_task

TASKS = ("a", "b")
N, BATCH, SHARP_BATCH, RHO, FISHER_BATCH = 20, 8, 8, 0.05, 8


class TwoTowers(nn.Module):
    """``z = trunk(x)`` (with batch norm and dropout), then per task ``tower_t(z + adapter_t(z))``."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2))
        self.adapters = nn.ModuleDict({t: nn.Linear(8, 8) for t in TASKS})
        self.towers = nn.ModuleDict({t: nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3)) for t in TASKS})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {t: self.towers[t](z + self.adapters[t](z)) for t in TASKS}


def per_example_losses(model: TwoTowers):
    def losses(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = model(batch["x"])
        return {t: F.cross_entropy(outputs[t], batch[t], reduction="none") for t in TASKS}

    return losses


def make_problem():
    torch.manual_seed(0)
    model = TwoTowers()
    sample = {"x": torch.randn(N, 6), "a": torch.randint(0, 3, (N,)), "b": torch.randint(0, 3, (N,))}
    return model, sample


def trained_a_step(model: TwoTowers, sample) -> torch.optim.Optimizer:
    """One Adam step in train mode (batch-norm statistics move, Adam has state, grads are set)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    loss = sum(per_example_losses(model)(sample)[t].mean() for t in TASKS)
    loss.backward()
    optimizer.step()
    return optimizer


def task_params(model: TwoTowers, task: str) -> list[nn.Parameter]:
    return [*model.trunk.parameters(), *model.adapters[task].parameters(), *model.towers[task].parameters()]


def grad_of(loss: torch.Tensor, params) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params))])


def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u.double() @ v.double() / (u.double().norm() * v.double().norm()))


def reference(model: TwoTowers, sample, update: torch.Tensor, step: int) -> dict[tuple[str, str], float]:
    """Every probe by brute force: one autograd call per example (or per batch, half, task)."""
    model.eval()
    x, ys = sample["x"], sample
    loss = lambda t, rows: F.cross_entropy(model(x[rows])[t], ys[t][rows], reduction="none")  # noqa: E731
    out = {}
    shared_grads = {}
    for t in TASKS:
        params = task_params(model, t)
        g = torch.stack([grad_of(loss(t, [i]).sum(), params) for i in range(N)])
        alpha = float(g.mean(0).pow(2).sum() / g.pow(2).sum(1).mean())
        out[(t, "probe/grad_coherence")], out[(t, "probe/m_coherence")] = alpha, N * alpha
        sam = 0.0
        for start in range(0, N, SHARP_BATCH):
            rows = list(range(start, min(start + SHARP_BATCH, N)))
            grad = grad_of(loss(t, rows).mean(), params)
            scale = torch.cat([p.detach().abs().reshape(-1) for p in params])
            sam += RHO * float((scale * grad).norm()) * len(rows) / N
        out[(t, "probe/sharpness_sam")] = sam
        trunk = list(model.trunk.parameters())
        shared_grads[t] = grad_of(loss(t, list(range(N))).mean(), trunk)
        out[(t, "probe/grad_norm")] = float(shared_grads[t].norm())
        out[(t, "probe/update_cosine")] = cosine(shared_grads[t], update)
        order = torch.randperm(N, generator=torch.Generator().manual_seed(derived_seed(0, "alignment", t)))
        cosines = []
        for k in range(N // BATCH):
            rows = order[k * BATCH : (k + 1) * BATCH]
            halves = [
                grad_of(loss(t, rows[: BATCH // 2]).mean(), trunk),
                grad_of(loss(t, rows[BATCH // 2 :]).mean(), trunk),
            ]
            cosines.append(cosine(*halves))
        out[(t, "probe/intra_cosine_subbatch")] = sum(cosines) / len(cosines)
        # Fisher: labels drawn from the eval-mode softmax with the probe's generator (run seed, task,
        # step), then sum over batches B of ||grad sum_B CE(logits, y_hat)||^2 / N (batches 8, 8, 4)
        with torch.no_grad():
            probs = torch.softmax(model(x)[t], dim=-1)
        generator = torch.Generator().manual_seed(derived_seed(0, "fisher", t, str(step)))
        y_hat = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        fisher = 0.0
        for start in range(0, N, FISHER_BATCH):
            rows = list(range(start, min(start + FISHER_BATCH, N)))
            ce = F.cross_entropy(model(x[rows])[t], y_hat[rows], reduction="sum")
            fisher += float(grad_of(ce, params).pow(2).sum()) / N
        out[(t, "probe/fisher_trace")] = fisher
    out[("a|b", "probe/conflict_cosine")] = cosine(shared_grads["a"], shared_grads["b"])
    out[("*", "probe/update_norm")] = float(update.norm())
    out[("*", "probe/conflict_fraction")] = float(out[("a|b", "probe/conflict_cosine")] < 0)
    return out


def recorder(store: RunStore, model, sample, **changes) -> Recorder:
    """Every built-in probe on the two towers; the tasks are 3-way softmax tasks (Fisher's likelihood)."""
    probes = RecorderProbes(
        model=model,
        shared=[n for n, _ in model.named_parameters() if n.startswith("trunk.")],
        losses=per_example_losses(model),
        sample=sample,
        steps=[0, 1],
        probes=("coherence", "sharpness_sam", "conflict", "alignment", "fisher"),
        batch_size=BATCH,
        options={
            "sharpness_sam": {"rho": RHO, "batch_size": SHARP_BATCH},
            "alignment": {"batches": 5},
            "fisher": {"batch_size": FISHER_BATCH},
        },
        outputs=lambda batch: model(batch["x"]),
    )
    tasks = [classification_task(t, 3) for t in TASKS]
    return Recorder(store, "towers", tasks, seed=0, steps_per_epoch=1, probes=probes, **changes)


def test_probes_on_a_two_tower_model_match_brute_force(store):
    model, sample = make_problem()
    optimizer = trained_a_step(model, sample)
    update = torch.cat([p.grad.reshape(-1) for p in model.trunk.parameters()]).clone()
    with recorder(store, model, sample) as rec:
        rec.step(1)
        rec.step(2)  # not on the schedule: no rows
    rows = store.trajectory(rec.run_id)
    assert set(rows["step"]) == {1}
    measured = {(r.task, r.quantity): r.value for r in rows.itertuples()}
    expected = reference(model, sample, update, step=1)
    assert set(expected) <= set(measured)
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert optimizer.state_dict()["state"]  # (used: Adam moved)


def test_each_task_is_probed_on_exactly_the_parameters_its_loss_reaches():
    model, sample = make_problem()
    wrapped = LossModel(model, [p for p in model.trunk.parameters()], per_example_losses(model), sample, TASKS)
    assert list(wrapped.task_parameters("a")) == [
        f"model.{n}" for n, _ in model.named_parameters() if n.startswith(("trunk.", "adapters.a.", "towers.a."))
    ]
    assert [id(p) for p in wrapped.shared_parameters()] == [id(p) for p in model.trunk.parameters()]


class Routed(nn.Module):
    """Two experts chosen per row (data-dependent routing): rows 0 and 1 use expert 0 only."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(3, 3)
        self.experts = nn.ModuleList([nn.Linear(3, 2), nn.Linear(3, 2)])

    def forward(self, x, route):
        h = torch.tanh(self.trunk(x))
        return torch.stack([self.experts[int(r)](row) for row, r in zip(h, route, strict=True)])


def test_parameters_that_only_later_rows_reach_are_probed():
    """Audit F 2026-12-06: the first two rows decided which parameters a task's loss reaches, so an expert that
    only later rows use was left out of every probe (coherence 0.077 for 0.040)."""
    torch.manual_seed(0)
    net = Routed()
    x, y = torch.randn(600, 3), torch.randint(0, 2, (600,))
    route = torch.zeros(600, dtype=torch.long)
    route[599] = 1  # the last row, in the third chunk of 256
    losses = lambda batch: {"t": F.cross_entropy(net(batch["x"], batch["r"]), batch["y"], reduction="none")}  # noqa: E731
    wrapped = LossModel(net, list(net.trunk.parameters()), losses, {"x": x, "y": y, "r": route}, ["t"])
    assert list(wrapped.task_parameters("t")) == [f"model.{name}" for name, _ in net.named_parameters()]


def test_probes_change_no_parameter_buffer_gradient_optimizer_state_or_rng(store):
    model, sample = make_problem()
    optimizer = trained_a_step(model, sample)
    model.train()

    def snapshot() -> tuple:
        return (
            {k: v.clone() for k, v in model.state_dict().items()},
            [p.grad.clone() for p in model.parameters()],
            {
                k: {n: t.clone() for n, t in s.items() if torch.is_tensor(t)}
                for k, s in optimizer.state_dict()["state"].items()
            },
        )

    before = snapshot()
    rng = torch.get_rng_state()
    with recorder(store, model, sample) as rec:
        rec.probe(1)
        assert torch.equal(torch.get_rng_state(), rng)
        after = snapshot()
    for b, a in zip(before[0].values(), after[0].values()):  # parameters and batch-norm buffers
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1]))  # gradients
    assert before[2].keys() == after[2].keys() and all(
        torch.equal(before[2][k][n], after[2][k][n]) for k in before[2] for n in before[2][k]
    )  # optimizer state
    assert model.training and model.trunk[3].training  # train/eval flags restored
    assert len(store.trajectory(rec.run_id)) > 0


def test_training_with_probes_follows_the_trajectory_of_training_without(tmp_path):
    """Same seed, same loop: the losses with probes at every step equal those without (the probes
    disturbed no RNG stream: dropout masks are drawn identically)."""

    def train(with_probes: bool) -> list[float]:
        model, sample = make_problem()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        torch.manual_seed(7)
        losses = []
        store = RunStore(tmp_path / str(with_probes))
        rec = recorder(store, model, sample) if with_probes else None
        if rec:
            rec.open()
        for step in range(1, 4):
            model.train()
            optimizer.zero_grad()
            loss = sum(per_example_losses(model)(sample)[t].mean() for t in TASKS)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if rec:
                rec.probe(step)
        if rec:
            rec.close()
        return losses

    assert train(True) == train(False)


def step_zero_probes(model: TwoTowers, sample, probe: str) -> RecorderProbes:
    """One probe at step 0 on the two towers' trunk."""
    return RecorderProbes(
        model=model,
        shared=list(model.trunk.parameters()),
        losses=per_example_losses(model),
        sample=sample,
        steps=[0],
        probes=(probe,),
    )


def test_fisher_without_the_model_outputs_or_likelihood_tasks_is_a_clear_error(store):
    model, sample = make_problem()
    probes = step_zero_probes(model, sample, "fisher")
    with pytest.raises(ValueError, match=r"probes \['fisher'\] need labels drawn from the model: pass outputs="):
        Recorder(store, "towers", list(TASKS), seed=0, probes=probes)
    with_outputs = RecorderProbes(**{**probes.__dict__, "outputs": lambda batch: model(batch["x"])})
    with pytest.raises(ValueError, match=r"need every task as a Task object .* got task names \['a', 'b'\]"):
        Recorder(store, "towers", list(TASKS), seed=0, probes=with_outputs)
    assert not store.run_ids()


def test_a_stored_run_with_probes_and_a_task_name_refused_since_is_refused_naming_it(store, monkeypatch):
    """A run stored before ``>`` was refused in task names reopens without probes; with probes its pair rows
    (``a>b``) would join an ambiguous name, so it is refused in one line naming the task and the run."""
    model, sample = make_problem()
    probes = step_zero_probes(model, sample, "conflict")
    monkeypatch.setattr(RunStore, "has_run", lambda self, run_id: True)  # as if recorded before 0d03d80
    refused = r"^run \S+ in .* cannot be reopened with probes .*: task name 'x>y' contains '>'"
    with pytest.raises(ValueError, match=refused):
        Recorder(store, "towers", ["x>y", "b"], seed=0, probes=probes)


def test_a_schedule_given_as_a_generator_is_read_once_and_probed(store):
    """``steps=(s for s in ...)``: the run's description consumed the generator, and the schedule the recorder
    probes by was read from the exhausted one, so no probe ever ran.  The steps are read once, as ints."""
    model, sample = make_problem()
    probes = RecorderProbes(
        model,
        shared=list(model.trunk.parameters()),
        losses=per_example_losses(model),
        sample=sample,
        steps=(s for s in [np.int64(2), 0, 2]),
        probes=("coherence",),
    )
    assert probes.steps == (0, 2) and all(type(s) is int for s in probes.steps)
    with Recorder(store, "towers", list(TASKS), seed=0, steps_per_epoch=1, probes=probes) as rec:
        for step in range(3):
            rec.step(step)
    assert store.config(rec.run_id)["probe_steps"] == [0, 2]
    assert sorted(set(store.trajectory(rec.run_id)["step"])) == [0, 2]


@pytest.mark.parametrize("steps", [[0, 2.5], [0, -1], [True], "02"], ids=["2.5", "-1", "True", "str"])
def test_a_schedule_step_that_is_not_a_non_negative_integer_is_refused(steps):
    model, sample = make_problem()
    with pytest.raises(ValueError, match=r"steps=.*: expected an integer step >= 0"):
        RecorderProbes(model, list(model.trunk.parameters()), per_example_losses(model), sample, steps=steps)
