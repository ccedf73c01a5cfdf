"""DeepLabV3 building blocks: a dilated ResNet encoder (output stride 8) and an ASPP head.

``dilated_resnet(depth, width)`` is ResNet-``depth`` (He et al. 2016; basic blocks for 18/34,
bottlenecks for 50/101) whose last two stages replace stride 2 by dilation 2 and 4
(Chen et al. 2017), so an ``(N, 3, H, W)`` image maps to ``(N, C, H/8, W/8)`` features with
``C = 8 * width`` (basic) or ``32 * width`` (bottleneck); ``width = 64`` is the standard
ResNet.  Weights are randomly initialised (Kaiming normal convolutions, BN weight 1 and bias 0).

``ASPPHead(in_channels, out_channels, output_size)`` is DeepLabV3's head: atrous spatial
pyramid pooling (a 1x1 convolution, three 3x3 convolutions with dilation ``rates`` and
global average pooling, each to 256 channels with BN and ReLU), a 1x1 projection, a 3x3
convolution, a 1x1 classifier to ``out_channels`` and bilinear upsampling to ``output_size``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
"""Residual blocks per stage of each ResNet depth."""


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    return [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(out_channels)]


class _Residual(nn.Module):
    """``relu(body(x) + shortcut(x))``; basic: 3x3-3x3, bottleneck: 1x1-3x3-1x1 (expansion 4)."""

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, bottleneck: bool):
        super().__init__()
        out_channels = planes * (4 if bottleneck else 1)
        if bottleneck:
            layers = [*_conv_bn(in_channels, planes, 1), nn.ReLU(inplace=True),
                      *_conv_bn(planes, planes, 3, stride, dilation), nn.ReLU(inplace=True),
                      *_conv_bn(planes, out_channels, 1)]
        else:
            layers = [*_conv_bn(in_channels, planes, 3, stride, dilation), nn.ReLU(inplace=True),
                      *_conv_bn(planes, planes, 3, 1, dilation)]
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and in_channels == out_channels
                         else nn.Sequential(*_conv_bn(in_channels, out_channels, 1, stride)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def dilated_resnet(depth: int = 50, width: int = 64) -> nn.Sequential:
    """ResNet-``depth`` with output stride 8 (stages 3 and 4 dilated 2 and 4); see the module doc."""
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
    bottleneck = depth >= 50
    layers: list[nn.Module] = [*_conv_bn(3, width, 7, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    channels = width
    for stage, (blocks, stride, dilation) in enumerate(zip(STAGE_BLOCKS[depth], (1, 2, 1, 1), (1, 1, 2, 4))):
        planes = width * 2**stage
        for block in range(blocks):
            layers.append(_Residual(channels, planes, stride if block == 0 else 1, dilation, bottleneck))
            channels = planes * (4 if bottleneck else 1)
    encoder = nn.Sequential(*layers)
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return encoder


def resnet_channels(depth: int, width: int = 64) -> int:
    """Channels of :func:`dilated_resnet`'s output."""
    return width * 8 * (4 if depth >= 50 else 1)


class ASPPHead(nn.Module):
    """DeepLabV3 head ``(N, in_channels, h, w) -> (N, out_channels, *output_size)``; see the module doc."""

    def __init__(self, in_channels: int, out_channels: int, output_size: Sequence[int],
                 rates: Sequence[int] = (12, 24, 36), channels: int = 256):
        super().__init__()
        self.output_size = tuple(output_size)
        self.branches = nn.ModuleList(
            [nn.Sequential(*_conv_bn(in_channels, channels, 1), nn.ReLU(inplace=True))]
            + [nn.Sequential(*_conv_bn(in_channels, channels, 3, dilation=r), nn.ReLU(inplace=True)) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn(in_channels, channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(*_conv_bn(channels * (len(rates) + 2), channels, 1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(*_conv_bn(channels, channels, 3), nn.ReLU(inplace=True),
                                        nn.Conv2d(channels, out_channels, 1))

    def forward(self, features: Tensor) -> Tensor:
        size = features.shape[-2:]
        pooled = F.interpolate(self.pool(features), size=size, mode="bilinear", align_corners=False)
        pyramid = torch.cat([branch(features) for branch in self.branches] + [pooled], dim=1)
        logits = self.classifier(self.project(pyramid))
        return F.interpolate(logits, size=self.output_size, mode="bilinear", align_corners=False)
