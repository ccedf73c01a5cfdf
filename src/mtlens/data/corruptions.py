r"""Procedurally generated common corruptions (ImageNet-C style, Hendrycks & Dietterich 2019).

Every corruption is a pure function ``(images, severity, generator) -> corrupted``:

* ``images``: a float tensor ``(N, C, H, W)`` with values in ``[0, 1]``;
* ``severity``: an integer 1..5;
* ``generator``: a ``torch.Generator`` (on the images' device) that is the *only* source of
  randomness, so the same seed gives the same corrupted images;

and returns a tensor of the same shape, dtype and device, clipped to ``[0, 1]``.  All are
written with torch ops, so they run on the GPU as well.

A corruption draws its random pattern (noise, blur direction, displacement field, fog) the same way at
every severity, and the severity only sets its strength, so with one seed the distance to the clean image
grows with severity on average (``tests/test_corruptions.py``: the mean over 8 MNIST images of 28 x 28).  Not
per image, and not for every image size: ``pixelate``'s block sizes do not nest and leave partial blocks at the
border, so a larger block can distort less (audit, 2026-12-06, 500 images each: 117 of 500 MNIST images
and 470 of 500 8 x 8 scikit-learn digits not monotone; on the digits severities 4 and 5 distort less than 3
on average), and ``motion_blur`` is not monotone for 11 of 500 digits.

=================  ==========================================================================
name               ``x -> x'`` (``s`` = the severity's strength parameter)
=================  ==========================================================================
gaussian_noise     ``x + s * z``, ``z ~ N(0, 1)`` per pixel
shot_noise         ``x + sqrt(x / s) * z``: the Gaussian form of ``Poisson(s x) / s``
                   (photon count ``s``; fewer photons = more noise)
impulse_noise      a fraction ``s`` of the pixels set to 0 or 1 (salt and pepper); the corrupted
                   pixels at a lower severity are a subset of those at a higher one
gaussian_blur      convolution with a Gaussian of std ``s`` pixels (reflect padding)
motion_blur        the mean of the image shifted along a random direction by ``0 .. s`` pixels
contrast           ``(x - mean) * s + mean`` with the per-image mean, ``s < 1``
brightness         ``x + s``
pixelate           the mean over blocks of ``s x s`` pixels (anchored at the top left; partial
                   blocks at the border), each pixel replaced by its block's mean
elastic            ``grid_sample`` with a random displacement field (uniform noise smoothed by a
                   Gaussian of std 4 pixels, normalized to max 1) scaled to ``s`` pixels
fog                ``(x + s * f) / (1 + s)``, ``f`` a smooth random field in ``[0, 1]`` built
                   from bilinearly upsampled noise octaves (a plasma-fractal-like field)
=================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

Corruption = Callable[[Tensor, int, torch.Generator], Tensor]
"""``(images (N, C, H, W) in [0, 1], severity 1..5, generator) -> corrupted images``."""

SEVERITIES = (1, 2, 3, 4, 5)

STRENGTH: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (0.5, 0.8, 1.1, 1.5, 2.0),
    "motion_blur": (2.0, 3.0, 4.5, 6.0, 8.0),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "pixelate": (2, 3, 4, 5, 6),
    "elastic": (0.5, 1.0, 1.5, 2.0, 2.5),
    "fog": (0.4, 0.7, 1.0, 1.5, 2.0),
}
"""Per corruption, the strength parameter ``s`` at severities 1..5 (see the module table)."""


def _strength(name: str, severity: int) -> float:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return STRENGTH[name][severity - 1]


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"corruptions take float images (N, C, H, W), got {tuple(images.shape)} {images.dtype}")


def _randn(images: Tensor, generator: torch.Generator, shape: tuple[int, ...] | None = None) -> Tensor:
    shape = tuple(images.shape) if shape is None else shape
    return torch.randn(shape, generator=generator, device=images.device, dtype=images.dtype)


def _rand(images: Tensor, generator: torch.Generator, shape: tuple[int, ...] | None = None) -> Tensor:
    shape = tuple(images.shape) if shape is None else shape
    return torch.rand(shape, generator=generator, device=images.device, dtype=images.dtype)


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    return (images + _strength("gaussian_noise", severity) * _randn(images, generator)).clamp(0, 1)


def shot_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    photons = _strength("shot_noise", severity)
    return (images + torch.sqrt(images.clamp(min=0) / photons) * _randn(images, generator)).clamp(0, 1)


def impulse_noise(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    amount = _strength("impulse_noise", severity)
    hit = _rand(images, generator) < amount
    salt = (_rand(images, generator) < 0.5).to(images.dtype)
    return torch.where(hit, salt, images).clamp(0, 1)


def _gaussian_kernel(sigma: float, like: Tensor) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _separable_blur(images: Tensor, sigma: float) -> Tensor:
    """Per-channel Gaussian blur with reflect padding (replicate where the image is too small)."""
    n, c, h, w = images.shape
    kernel = _gaussian_kernel(sigma, images)
    radius = (len(kernel) - 1) // 2
    mode = "reflect" if radius < min(h, w) else "replicate"
    flat = images.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode=mode), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    del generator  # deterministic
    return _separable_blur(images, _strength("gaussian_blur", severity)).clamp(0, 1)


def _identity_grid(images: Tensor) -> Tensor:
    """``(N, H, W, 2)`` sampling grid of the identity in ``grid_sample``'s normalized coordinates."""
    n, _, h, w = images.shape
    theta = torch.eye(2, 3, device=images.device, dtype=images.dtype).expand(n, 2, 3)
    return F.affine_grid(theta, [n, 1, h, w], align_corners=False)


def _shift(images: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """Images sampled at ``(x + dx, y + dy)`` pixels (bilinear, border padding); ``dx, dy`` of shape ``(N,)``."""
    _, _, h, w = images.shape
    grid = _identity_grid(images) + torch.stack([2 * dx / w, 2 * dy / h], dim=-1).view(-1, 1, 1, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def motion_blur(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    length = _strength("motion_blur", severity)
    angle = _rand(images, generator, (len(images),)) * (2 * math.pi)
    taps = int(math.ceil(length)) * 2 + 1
    shifted = [
        _shift(images, t * torch.cos(angle), t * torch.sin(angle)) for t in torch.linspace(0.0, length, taps).tolist()
    ]
    return torch.stack(shifted).mean(dim=0).clamp(0, 1)


def contrast(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    del generator  # deterministic
    factor = _strength("contrast", severity)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * factor + mean).clamp(0, 1)


def brightness(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    del generator  # deterministic
    return (images + _strength("brightness", severity)).clamp(0, 1)


def pixelate(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    del generator  # deterministic
    _, _, h, w = images.shape
    block = int(_strength("pixelate", severity))
    means = F.avg_pool2d(images, block, ceil_mode=True, count_include_pad=False)
    blocks = means.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    return blocks[:, :, :h, :w].clamp(0, 1)


def elastic(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    n, _, h, w = images.shape
    field = _separable_blur(_rand(images, generator, (n, 2, h, w)) * 2 - 1, sigma=4.0)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
    displacement = _strength("elastic", severity) * field  # pixels
    scale = torch.tensor([2.0 / w, 2.0 / h], device=images.device, dtype=images.dtype)
    grid = _identity_grid(images) + displacement.permute(0, 2, 3, 1) * scale
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


def fog_field(images: Tensor, generator: torch.Generator, octaves: int = 4) -> Tensor:
    """A smooth random field ``(N, 1, H, W)`` in ``[0, 1]``: the sum of noise octaves of sizes
    ``2, 4, 8, ...`` upsampled bilinearly to ``H x W`` with amplitudes ``1, 1/2, 1/4, ...``."""
    n, _, h, w = images.shape
    field = torch.zeros(n, 1, h, w, device=images.device, dtype=images.dtype)
    for octave in range(octaves):
        size = 2 ** (octave + 1)
        noise = _rand(images, generator, (n, 1, size, size))
        field += 0.5**octave * F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=True)
    low = field.amin(dim=(2, 3), keepdim=True)
    high = field.amax(dim=(2, 3), keepdim=True)
    return (field - low) / (high - low).clamp(min=1e-12)


def fog(images: Tensor, severity: int, generator: torch.Generator) -> Tensor:
    strength = _strength("fog", severity)
    return ((images + strength * fog_field(images, generator)) / (1 + strength)).clamp(0, 1)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "contrast": contrast,
    "brightness": brightness,
    "pixelate": pixelate,
    "elastic": elastic,
    "fog": fog,
}
"""Every corruption by name, in the order of the report."""


def corrupt(images: Tensor, name: str, severity: int, seed: int) -> Tensor:
    """Apply corruption ``name`` at ``severity`` with a generator seeded by ``seed``."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; available: {', '.join(CORRUPTIONS)}")
    _check_images(images)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return CORRUPTIONS[name](images, severity, generator)
