"""The assumptions study: Adam's loss-scale invariance, experiment configs, end-to-end sections."""

from __future__ import annotations

import torch
from torch import nn

from mtlens.analysis.adam_invariance import invariance_summary, scaled_updates, update_invariance
from mtlens.models import MultiTaskModel
from mtlens.tasks import classification_task


def _two_head_problem():
    torch.manual_seed(0)
    model = MultiTaskModel(nn.Sequential(nn.Linear(6, 8), nn.Tanh()),
                           {"a": nn.Linear(8, 3), "b": nn.Linear(8, 4)}).double()
    g = torch.Generator().manual_seed(1)
    xa, xb = torch.randn(16, 6, generator=g).double(), torch.randn(16, 6, generator=g).double()
    ya, yb = torch.randint(0, 3, (16,), generator=g), torch.randint(0, 4, (16,), generator=g)
    task_a, task_b = classification_task("a", 3), classification_task("b", 4)

    def losses(m, step):
        del step
        return {"a": task_a.loss(m(xa, ["a"])["a"], ya).mean(), "b": task_b.loss(m(xb, ["b"])["b"], yb).mean()}

    return model, losses


def test_adam_head_update_is_invariant_to_the_loss_scale_shared_update_is_not():
    model, losses = _two_head_problem()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # eps tiny relative to sqrt(v_hat) = |c g| >= 1e-3 * |g|: the head updates agree to ~1e-12.
    small = scaled_updates(model, losses, "a", "b", 1e-3, "adam", lr=1e-2, steps=1, eps=1e-16)
    large = scaled_updates(model, losses, "a", "b", 1e3, "adam", lr=1e-2, steps=1, eps=1e-16)
    torch.testing.assert_close(small["head_b"], large["head_b"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(small["head_a"], large["head_a"], rtol=1e-9, atol=1e-12)
    assert float((small["shared"] - large["shared"]).norm()) > 0.1 * float(small["shared"].norm())
    # SGD: head b's update scales with c exactly (so it is not invariant).
    sgd_small = scaled_updates(model, losses, "a", "b", 1e-3, "sgd", lr=1e-2, steps=1)
    sgd_large = scaled_updates(model, losses, "a", "b", 1e3, "sgd", lr=1e-2, steps=1)
    torch.testing.assert_close(sgd_large["head_b"], 1e6 * sgd_small["head_b"], rtol=1e-9, atol=0)
    # The input model is never changed.
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_invariance_table_and_eps_effect():
    model, losses = _two_head_problem()
    table = update_invariance(model, losses, "a", "b", [1e-3, 1.0, 1e3], optimizers=[("adam", 1e-2), ("sgd", 1e-2)],
                              steps=[1, 3], eps=1e-16)
    summary = invariance_summary(table).set_index(["optimizer", "steps", "group"])["max_relative_difference"]
    assert summary[("adam", 1, "head_b")] < 1e-9 and summary[("adam", 1, "head_a")] < 1e-9
    assert summary[("adam", 1, "shared")] > 0.1 and summary[("adam", 3, "shared")] > 0.1
    assert summary[("sgd", 1, "head_b")] > 100  # ||1e3 d - d|| / ||d||
    # After several steps the heads see a differently moved encoder: only approximately invariant,
    # but far closer than the shared parameters.
    assert summary[("adam", 3, "head_b")] < summary[("adam", 3, "shared")]
    # With Adam's default eps = 1e-8 and a gradient scaled by 1e-3, eps is no longer negligible.
    default_eps = update_invariance(model, losses, "a", "b", [1e-6], optimizers=[("adam", 1e-2)], steps=[1])
    head_b = default_eps[default_eps["group"] == "head_b"]["relative_difference"].iloc[0]
    assert head_b > 1e-4
