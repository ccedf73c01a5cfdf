"""Shared encoders of the embedded and paper image settings (torchvision-free).

* :func:`conv_encoder` -- a small ``conv3-ReLU-maxpool2`` CNN for images or sequences (the
  embedded settings, Fashion MTL, the MNIST variants).
* :func:`cifar_cnn` -- three ``conv3-BN-ReLU-conv3-BN-ReLU-maxpool2`` blocks, then global
  average pooling and ``Linear -> ReLU`` to ``feature_dim`` (CIFAR-100, 32x32).
* :class:`ResNet18Encoder` -- ResNet-18 (:func:`mtlens.models.resnet.resnet`): a stem, four
  stages of two basic blocks (widths ``w, 2w, 4w, 8w``, stride 2 from the second stage on),
  global average pooling; output ``(N, 8w)``.  The stem is a 3x3 convolution with stride 1 and
  no max-pool (the usual choice for small images such as CelebA at 64x64), so the
  stages see 64, 32, 16 and 8 pixel feature maps.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlens.models.resnet import resnet, resnet_channels


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def conv_encoder(
    in_channels: int, size: int, widths: tuple[int, ...] = (16, 32), feature_dim: int = 64, dims: int = 2
) -> nn.Module:
    """A small CNN: per width ``conv3 -> ReLU -> maxpool2``, then ``Linear -> ReLU`` to ``feature_dim``.

    ``dims`` is 2 for images ``(N, C, size, size)`` and 1 for sequences ``(N, C, size)``.
    """
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if dims == 2 else (nn.Conv1d, nn.MaxPool1d)
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers += [conv(channels, width, 3, padding=1), nn.ReLU(), pool(2)]
        channels, size = width, size // 2
    flat = channels * size**dims
    layers += [nn.Flatten(), nn.Linear(flat, feature_dim), nn.ReLU()]
    return nn.Sequential(*layers)


def cifar_cnn(in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), feature_dim: int = 256) -> nn.Module:
    """The CIFAR CNN described in the module docstring; output ``(N, feature_dim)``."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers += [*_conv_bn_relu(channels, width), *_conv_bn_relu(width, width), nn.MaxPool2d(2)]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, feature_dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ResNet18Encoder(nn.Module):
    """ResNet-18 feature extractor ``(N, C, H, W) -> (N, 8 * width)``; see the module docstring."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        layers = [*resnet(18, width, in_channels, stem="small"), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.feature_dim = resnet_channels(18, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
