"""One ResNet (He et al. 2016) with the options the settings need: stem, strides, dilations, init.

``resnet(depth, width, in_channels, stem, strides, dilations, kaiming_init)`` is a
``nn.Sequential`` of a stem and four stages of residual blocks (no pooling head):

* blocks: basic (3x3-3x3) for depth 18/34, bottleneck (1x1-3x3-1x1, expansion 4) for 50/101,
  ``relu(body(x) + shortcut(x))`` with a strided 1x1 convolution + BN as shortcut where the
  shape changes; stage ``s`` has ``width * 2**s`` planes, so the output has
  :func:`resnet_channels` ``= 8 * width`` (basic) or ``32 * width`` (bottleneck) channels;
* ``stem="imagenet"``: 7x7 convolution with stride 2, BN, ReLU, 3x3 max-pool with stride 2 (the
  original ResNet); ``stem="small"``: 3x3 convolution with stride 1, BN, ReLU and no max-pool
  (the usual choice for small images such as CIFAR or CelebA at 64x64);
* ``strides``/``dilations`` per stage: ``(1, 2, 2, 2)``/``(1, 1, 1, 1)`` is the classification
  ResNet; ``(1, 2, 1, 1)``/``(1, 1, 2, 4)`` replaces the last two strides by dilation (output
  stride 8, DeepLab, Chen et al. 2017);
* weights: PyTorch's default initialization, then, with ``kaiming_init``, Kaiming-normal
  convolutions (``fan_out``, ReLU gain); BN weight 1 and bias 0; no convolution has a bias.

Modules are created in forward order, so the same options and torch seed give the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn
from torch.nn import functional as F

ResNetDepth = Literal[18, 34, 50, 101]
"""The ResNet depths :data:`STAGE_BLOCKS` defines."""

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
"""Residual blocks per stage of each ResNet depth."""


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    """A bias-free ``kernel x kernel`` convolution ("same" padding for stride 1) and BatchNorm."""
    padding = dilation * (kernel - 1) // 2
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``; basic: 3x3-3x3, bottleneck: 1x1-3x3-1x1 (expansion 4)."""

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, bottleneck: bool):
        super().__init__()
        out_channels = planes * (4 if bottleneck else 1)
        if bottleneck:
            layers = [
                *conv_bn(in_channels, planes, 1),
                nn.ReLU(inplace=True),
                *conv_bn(planes, planes, 3, stride, dilation),
                nn.ReLU(inplace=True),
                *conv_bn(planes, out_channels, 1),
            ]
        else:
            layers = [
                *conv_bn(in_channels, planes, 3, stride, dilation),
                nn.ReLU(inplace=True),
                *conv_bn(planes, planes, 3, 1, dilation),
            ]
        self.body = nn.Sequential(*layers)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def resnet(
    depth: int = 18,
    width: int = 64,
    in_channels: int = 3,
    stem: Literal["imagenet", "small"] = "imagenet",
    strides: Sequence[int] = (1, 2, 2, 2),
    dilations: Sequence[int] = (1, 1, 1, 1),
    kaiming_init: bool = False,
) -> nn.Sequential:
    """The ResNet of the module docstring: ``(N, in_channels, H, W) -> (N, resnet_channels(depth, width), h, w)``."""
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
    if stem not in ("imagenet", "small"):
        raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
    bottleneck = depth >= 50
    layers: list[nn.Module] = (
        [*conv_bn(in_channels, width, 7, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        if stem == "imagenet"
        else [*conv_bn(in_channels, width, 3), nn.ReLU(inplace=True)]
    )
    channels = width
    for stage, (blocks, stride, dilation) in enumerate(zip(STAGE_BLOCKS[depth], strides, dilations, strict=True)):
        planes = width * 2**stage
        for block in range(blocks):
            layers.append(ResidualBlock(channels, planes, stride if block == 0 else 1, dilation, bottleneck))
            channels = planes * (4 if bottleneck else 1)
    network = nn.Sequential(*layers)
    if kaiming_init:
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return network


def resnet_channels(depth: int, width: int = 64) -> int:
    """Channels of :func:`resnet`'s output."""
    return width * 8 * (4 if depth >= 50 else 1)
