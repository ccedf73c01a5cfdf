"""Tasks: losses are negative log-likelihoods and label samplers draw from the model."""

from __future__ import annotations

import math
import re

import pytest
import torch

from mtlens import Recorder
from mtlens.quantities import TASK_NAME_FORBIDDEN, check_task_name
from mtlens.tasks import binary_task, classification_task, regression_task


def test_classification_loss_is_nll_of_softmax_and_metrics_are_per_example():
    task = classification_task("c", 3)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([0, 2])
    expected = -torch.log_softmax(logits, dim=1)[torch.arange(2), targets]
    assert torch.allclose(task.loss(logits, targets), expected)
    assert task.metrics["accuracy"](logits, targets).tolist() == [1.0, 0.0]
    assert task.is_lower_better("error") and not task.is_lower_better("accuracy") and task.is_lower_better("loss")


def test_binary_loss_is_bernoulli_nll():
    task = binary_task("b")
    z = torch.tensor([[0.3], [-2.0]])
    y = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(z.squeeze(1))
    expected = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert torch.allclose(task.loss(z, y), expected)


def test_regression_loss_is_gaussian_nll_up_to_a_constant():
    task = regression_task("r", dim=2)
    f = torch.tensor([[1.0, 2.0]])
    y = torch.tensor([[0.0, 4.0]])
    normal = torch.distributions.Normal(f, 1.0)
    nll = -normal.log_prob(y).sum() - 2 * 0.5 * math.log(2 * math.pi)
    assert task.loss(f, y).item() == pytest.approx(nll.item())


@pytest.mark.parametrize("kind", ["classification", "binary", "regression"])
def test_sampled_labels_follow_the_model_distribution(kind):
    generator = torch.Generator().manual_seed(0)
    n = 40000
    if kind == "classification":
        task, outputs = classification_task("c", 3), torch.tensor([[1.0, 0.0, -1.0]]).expand(n, 3)
        freq = torch.bincount(task.sample_labels(outputs, generator), minlength=3).float() / n
        assert torch.allclose(freq, torch.softmax(outputs[0], 0), atol=0.01)
    elif kind == "binary":
        task, outputs = binary_task("b"), torch.full((n, 1), 0.7)
        assert task.sample_labels(outputs, generator).mean().item() == pytest.approx(
            torch.sigmoid(torch.tensor(0.7)).item(), abs=0.01
        )
    else:
        task, outputs = regression_task("r"), torch.full((n, 1), 2.0)
        samples = task.sample_labels(outputs, generator)
        assert samples.mean().item() == pytest.approx(2.0, abs=0.02)
        assert samples.std().item() == pytest.approx(1.0, abs=0.02)


def test_task_validation_names_the_problem():
    with pytest.raises(ValueError, match="'a/b' contains '/'"):
        classification_task("a/b", 2)
    with pytest.raises(ValueError, match="non-empty string"):
        classification_task("", 2)


@pytest.mark.parametrize("char", list(TASK_NAME_FORBIDDEN))
def test_a_task_name_holding_a_separator_is_refused_by_task_and_recorder(char, tmp_path):
    """``x+y`` would be read as the group of x and y, ``x>y`` as an affinity pair (its TAG value NaN), ``x|y``
    as a conflict pair, ``x,y`` as two tasks of the run index: Task and Recorder refuse every one, naming
    the character and the task, from the one declaration."""
    name = f"x{char}y"
    message = re.escape(f"task name {name!r} contains {char!r}")
    with pytest.raises(ValueError, match=message):
        binary_task(name)
    with pytest.raises(ValueError, match=message):
        Recorder(tmp_path / "store", "toy", [name, "z"], 0)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


def test_every_builtin_task_name_is_valid():
    from mtlens.data.glue import GLUE_TASKS
    from mtlens.settings.digit_attributes import TASK_NAMES
    from mtlens.settings.fashion_mtl import TASKS
    from paper_files import CELEBA_ATTRIBUTES, CIFAR100_SUPERCLASSES

    for name in [*GLUE_TASKS, *TASK_NAMES, *TASKS, *CIFAR100_SUPERCLASSES, *CELEBA_ATTRIBUTES]:
        check_task_name(name)
