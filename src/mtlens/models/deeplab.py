"""DeepLabV3 building blocks: a dilated ResNet encoder (output stride 8) and an ASPP head.

``dilated_resnet(depth, width)`` is ResNet-``depth`` (:func:`mtlens.models.resnet.resnet`; basic
blocks for 18/34, bottlenecks for 50/101) whose last two stages replace stride 2 by dilation 2 and 4
(Chen et al. 2017), so an ``(N, 3, H, W)`` image maps to ``(N, C, H/8, W/8)`` features with
``C = 8 * width`` (basic) or ``32 * width`` (bottleneck); ``width = 64`` is the standard
ResNet.  Weights are randomly initialised (Kaiming normal convolutions, BN weight 1 and bias 0).

``ASPPHead(in_channels, out_channels, output_size)`` is DeepLabV3's head: atrous spatial
pyramid pooling (a 1x1 convolution, three 3x3 convolutions with dilation ``rates`` and
global average pooling, each to 256 channels with BN and ReLU), a 1x1 projection, a 3x3
convolution, a 1x1 classifier to ``out_channels`` and bilinear upsampling to ``output_size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlens.models.resnet import conv_bn, resnet


def dilated_resnet(depth: int = 50, width: int = 64) -> nn.Sequential:
    """ResNet-``depth`` with output stride 8 (stages 3 and 4 dilated 2 and 4); see the module doc."""
    return resnet(depth, width, 3, stem="imagenet", strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), kaiming_init=True)


class ASPPHead(nn.Module):
    """DeepLabV3 head ``(N, in_channels, h, w) -> (N, out_channels, *output_size)``; see the module doc."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        output_size: Sequence[int],
        rates: Sequence[int] = (12, 24, 36),
        channels: int = 256,
    ):
        super().__init__()
        self.output_size = tuple(output_size)
        self.branches = nn.ModuleList(
            [nn.Sequential(*conv_bn(in_channels, channels, 1), nn.ReLU(inplace=True))]
            + [nn.Sequential(*conv_bn(in_channels, channels, 3, dilation=r), nn.ReLU(inplace=True)) for r in rates]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *conv_bn(in_channels, channels, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(*conv_bn(channels * (len(rates) + 2), channels, 1), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(
            *conv_bn(channels, channels, 3), nn.ReLU(inplace=True), nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        size = features.shape[-2:]
        pooled = F.interpolate(self.pool(features), size=size, mode="bilinear", align_corners=False)
        pyramid = torch.cat([branch(features) for branch in self.branches] + [pooled], dim=1)
        logits = self.classifier(self.project(pyramid))
        return F.interpolate(logits, size=self.output_size, mode="bilinear", align_corners=False)
