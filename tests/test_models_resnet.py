"""The one ResNet: both configurations the settings use (small-stem ResNet-18, dilated DeepLab encoder)."""

from __future__ import annotations

import pytest
import torch

from mtlens.models.deeplab import dilated_resnet
from mtlens.models.encoders import ResNet18Encoder
from mtlens.models.resnet import resnet, resnet_channels


@pytest.mark.parametrize("depth, width", [(18, 4), (50, 2)])
def test_dilated_resnet_has_output_stride_8_and_the_stated_channels(depth, width):
    features = dilated_resnet(depth, width).eval()(torch.randn(1, 3, 32, 48))
    assert features.shape == (1, resnet_channels(depth, width), 4, 6)
    assert resnet_channels(depth, width) == width * (32 if depth >= 50 else 8)


def test_small_stem_resnet18_keeps_resolution_until_stage_two_and_pools():
    encoder = ResNet18Encoder(in_channels=1, width=4).eval()
    assert encoder(torch.randn(2, 1, 16, 16)).shape == (2, encoder.feature_dim) == (2, 32)
    assert resnet(18, 4, 1, stem="small").eval()(torch.randn(1, 1, 16, 16)).shape == (1, 32, 2, 2)
    assert resnet(18, 4, 1, stem="imagenet").eval()(torch.randn(1, 1, 64, 64)).shape == (1, 32, 2, 2)


def test_state_dict_names_are_those_of_stored_checkpoints():
    """Checkpoints written before the two ResNets were merged must load: the parameter names stay."""
    names = list(ResNet18Encoder(3, 2).state_dict())
    assert names[:2] == ["features.0.weight", "features.1.weight"]
    assert "features.3.body.0.weight" in names and "features.3.body.4.running_var" in names
    assert "features.5.shortcut.0.weight" in names and "features.4.shortcut.0.weight" not in names
    deeplab = list(dilated_resnet(50, 2).state_dict())
    assert deeplab[0] == "0.weight" and "4.body.7.bias" in deeplab and "4.shortcut.1.weight" in deeplab


def test_kaiming_init_is_fan_out_normal_and_same_seed_same_weights():
    torch.manual_seed(0)
    a = resnet(18, 16, kaiming_init=True)
    torch.manual_seed(0)
    b = resnet(18, 16, kaiming_init=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    conv = a[4].body[3].weight  # a 3x3 convolution with 16 output channels: fan_out = 16 * 9
    assert abs(conv.std().item() - (2 / (16 * 9)) ** 0.5) < 0.1 * (2 / (16 * 9)) ** 0.5
    with pytest.raises(ValueError, match="depth"):
        resnet(20)
