"""Readers of Cityscapes (Cordts et al. 2016): 7-class segmentation and depth at a fixed size.

Two on-disk layouts are read into the same in-memory form
(``images`` uint8 ``(N, 3, H, W)``, ``labels`` int8 ``(N, H, W)`` with ``-1`` = ignore,
``depth`` float32 ``(N, 1, H, W)`` with ``0`` = missing):

Official layout (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``,
``disparity_trainvaltest.zip`` unpacked into one directory)::

    leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png
    gtFine/{split}/{city}/{stem}_gtFine_labelIds.png
    disparity/{split}/{city}/{stem}_disparity.png

Images are resized bilinearly, label and disparity maps with nearest neighbour.  Label ids
map to the 7 classes :data:`LABEL_ID_TO_CLASS` (the Cityscapes *categories* flat,
construction, object, nature, sky, human, vehicle as classes 0-6; category *void*, ids 0-6,
and the license plate id -1 are ignored).  Disparity PNGs store ``p = 256 d + 1`` (16 bit) for
a disparity of ``d`` pixels and ``p = 0`` where unknown; depth in metres is
``baseline * focal / d`` with the Cityscapes stereo rig's :data:`BASELINE_M` and
:data:`FOCAL_PX` (``p <= 1``, i.e. ``d <= 0``, is missing: 0).

Preprocessed layout (the 128x256 ``.npy`` release used by MTAN (Liu et al. 2019) and LibMTL)::

    {split}/image/{i}.npy   float (H, W, 3) in [0, 1]
    {split}/label/{i}.npy   float (H, W), classes 0-6, -1 = ignore   (``label_7/`` also accepted)
    {split}/depth/{i}.npy   float (H, W, 1), 0 = missing

with ``split`` in ``train`` (2,975 images) and ``val`` (500); files are read in the numeric
order of ``i``, depths are used as stored, images quantized to uint8 (``round(255 x)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mtlens.data.registry import DatasetSpec, register_dataset

BASELINE_M = 0.209313
"""Stereo baseline of the Cityscapes cameras in metres (the per-city camera files list ~0.21)."""

FOCAL_PX = 2262.52
"""Horizontal focal length of the Cityscapes cameras in pixels at 2048x1024."""

CLASS_NAMES = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")

LABEL_ID_TO_CLASS = {
    # void: unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground
    **{i: -1 for i in range(7)},
    **{i: 0 for i in (7, 8, 9, 10)},  # flat: road, sidewalk, parking, rail track
    **{i: 1 for i in (11, 12, 13, 14, 15, 16)},  # construction: building, wall, fence, guard rail, bridge, tunnel
    **{i: 2 for i in (17, 18, 19, 20)},  # object: pole, polegroup, traffic light, traffic sign
    **{i: 3 for i in (21, 22)},  # nature: vegetation, terrain
    23: 4,  # sky
    **{i: 5 for i in (24, 25)},  # human: person, rider
    **{i: 6 for i in range(26, 34)},  # vehicle: car, truck, bus, caravan, trailer, train, motorcycle, bicycle
}
"""Cityscapes label id (``*_labelIds.png``) -> 7-class index (-1 = ignore); ids not listed are ignored."""

OFFICIAL_SPLITS = ("train", "val")

OFFICIAL = register_dataset(
    DatasetSpec(
        name="cityscapes",
        description="Cityscapes, official layout: left images, fine labels, disparity",
        files=tuple(f"{top}/{split}" for top in ("leftImg8bit", "gtFine", "disparity") for split in ("train", "val")),
        size_bytes=11_600_000_000 + 241_000_000 + 3_500_000_000,
        instructions=(
            "Cityscapes needs a (free) login: register at https://www.cityscapes-dataset.com/register/, "
            "download leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip and disparity_trainvaltest.zip from "
            "https://www.cityscapes-dataset.com/downloads/ and unzip all three into this directory (so that "
            "leftImg8bit/, gtFine/ and disparity/ are its subdirectories). Alternatively put the preprocessed "
            "128x256 .npy version (MTAN/LibMTL: train/{image,label,depth}/*.npy, val/...) in the "
            "'cityscapes_npy' dataset directory."
        ),
    )
)

PREPROCESSED = register_dataset(
    DatasetSpec(
        name="cityscapes_npy",
        description="Cityscapes preprocessed to 128x256 .npy (MTAN/LibMTL layout, 7 classes + depth)",
        files=("train/image", "train/depth", "val/image", "val/depth"),
        size_bytes=2_700_000_000,
        instructions=(
            "Put the preprocessed Cityscapes of MTAN (https://github.com/lorenmt/mtan, 'cityscapes' download "
            "link in its README) or LibMTL here, unpacked so that train/image/0.npy, train/label/0.npy "
            "(or train/label_7/), train/depth/0.npy and the same under val/ exist. The raw dataset "
            "(login at https://www.cityscapes-dataset.com) works too, in the 'cityscapes' directory."
        ),
    )
)


@dataclass(frozen=True)
class CityscapesArrays:
    """One split in memory: images uint8 ``(N, 3, H, W)``, labels int8 ``(N, H, W)``, depth ``(N, 1, H, W)``."""

    images: Tensor
    labels: Tensor
    depth: Tensor

    def __len__(self) -> int:
        return len(self.images)


def map_label_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids -> 7-class indices with -1 for ignored pixels (int8)."""
    lookup = np.full(256, -1, dtype=np.int8)
    for label_id, cls in LABEL_ID_TO_CLASS.items():
        lookup[label_id] = cls
    return lookup[label_ids.astype(np.uint8)]


def disparity_to_depth(raw: np.ndarray) -> np.ndarray:
    """16-bit disparity PNG values -> depth in metres (0 where the disparity is unknown)."""
    disparity = (raw.astype(np.float64) - 1.0) / 256.0
    depth = np.zeros(raw.shape, dtype=np.float32)
    valid = raw > 1
    depth[valid] = BASELINE_M * FOCAL_PX / disparity[valid]
    return depth


def _png(path: Path, size: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
        return np.asarray(image.resize((size[1], size[0]), resample))


def raw_layout_present(root: Path) -> bool:
    return all(
        (root / top / split).is_dir() for top in ("leftImg8bit", "gtFine", "disparity") for split in OFFICIAL_SPLITS
    )


def read_official(root: Path, split: str, size: tuple[int, int]) -> CityscapesArrays:
    """Read official-layout ``split`` (``train`` or ``val``) resized to ``size = (H, W)``, in sorted file order."""
    image_paths = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    if not image_paths:
        raise FileNotFoundError(f"no *_leftImg8bit.png under {root / 'leftImg8bit' / split}")
    images, labels, depths = [], [], []
    for image_path in image_paths:
        city, stem = image_path.parent.name, image_path.name[: -len("_leftImg8bit.png")]
        label_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        disparity_path = root / "disparity" / split / city / f"{stem}_disparity.png"
        images.append(_png(image_path, size, nearest=False)[..., :3].transpose(2, 0, 1))
        labels.append(map_label_ids(_png(label_path, size, nearest=True)))
        depths.append(disparity_to_depth(_png(disparity_path, size, nearest=True))[None])
    return CityscapesArrays(
        torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)), torch.from_numpy(np.stack(depths))
    )


def npy_layout_present(root: Path) -> bool:
    return all(
        (root / split / "image").is_dir()
        and (root / split / "depth").is_dir()
        and _npy_label_dir(root / split) is not None
        for split in OFFICIAL_SPLITS
    )


def _npy_label_dir(split_dir: Path) -> Path | None:
    for name in ("label", "label_7"):
        if (split_dir / name).is_dir():
            return split_dir / name
    return None


def read_npy(root: Path, split: str, size: tuple[int, int]) -> CityscapesArrays:
    """Read the preprocessed ``.npy`` ``split``; resized (bilinear / nearest) only if not already ``size``."""
    split_dir = root / split
    label_dir = _npy_label_dir(split_dir)
    if label_dir is None:
        raise FileNotFoundError(f"no label/ or label_7/ directory in {split_dir}")
    indices = sorted(int(p.stem) for p in (split_dir / "image").glob("*.npy"))
    if not indices:
        raise FileNotFoundError(f"no .npy images in {split_dir / 'image'}")
    images = torch.from_numpy(np.stack([np.load(split_dir / "image" / f"{i}.npy") for i in indices])).float()
    labels = torch.from_numpy(np.stack([np.load(label_dir / f"{i}.npy") for i in indices])).float()
    depth = torch.from_numpy(np.stack([np.load(split_dir / "depth" / f"{i}.npy") for i in indices])).float()
    images = images.permute(0, 3, 1, 2)
    depth = depth.reshape(len(depth), *depth.shape[1:3], -1).permute(0, 3, 1, 2)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        labels = F.interpolate(labels[:, None], size=size, mode="nearest")[:, 0]
        depth = F.interpolate(depth, size=size, mode="nearest")
    return CityscapesArrays(
        (images * 255).round().clamp(0, 255).to(torch.uint8), labels.round().to(torch.int8), depth.contiguous()
    )
