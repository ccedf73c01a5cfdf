"""Tiny datasets written in each dataset's published file format, for the readers' and settings' tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# The 20 CIFAR-100 superclasses and their fine classes as published on
# https://www.cs.toronto.edu/~kriz/cifar.html, spelled as in the dataset's meta pickle.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file of unsigned bytes: magic ``00 00 08 NDIM``, big-endian int32 sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_dataset(root: Path, n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """The four IDX files of an MNIST-like dataset in ``root``; images encode their row (pixel 0,0 = row % 256)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels
    return out


def write_notmnist(root: Path, per_letter: int) -> None:
    """``root/notMNIST_large/{A..J}/*.png``: grey images whose pixels equal 20 * letter index except the
    bottom-right one (200 + image number, so images differ), every second one 32x32 (resized by the
    reader), plus one unreadable file per letter."""
    for k, letter in enumerate("ABCDEFGHIJ"):
        folder = root / "notMNIST_large" / letter
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_letter):
            side = 32 if i % 2 else 28
            pixels = np.full((side, side), 20 * k, dtype=np.uint8)
            pixels[-1, -1] = 200 + i
            Image.fromarray(pixels).save(folder / f"img{i}.png")
        (folder / "broken.png").write_bytes(b"not a png")


def write_cifar100(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> None:
    """``root/cifar-100-python/{train,test,meta}`` with the published keys; pixel 0 of each image = its fine label."""
    fine_names = sorted(name for names in CIFAR100_SUPERCLASSES.values() for name in names)
    coarse_names = sorted(CIFAR100_SUPERCLASSES)
    coarse_of = {fine: coarse_names.index(c) for c, names in CIFAR100_SUPERCLASSES.items() for fine in names}
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = np.repeat(np.arange(100), per_class)
        rng.shuffle(fine)
        data = rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8)
        data[:, 0] = fine
        batch = {
            b"filenames": [f"{i}.png".encode() for i in range(len(fine))],
            b"batch_label": split.encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": [coarse_of[fine_names[f]] for f in fine],
            b"data": data,
        }
        (folder / split).write_bytes(pickle.dumps(batch))
    meta = {
        b"fine_label_names": [n.encode() for n in fine_names],
        b"coarse_label_names": [n.encode() for n in coarse_names],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))


def write_celeba(root: Path, partition: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Tiny 30x40 JPEGs in ``img_align_celeba/``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``
    in the published layout (count line, attribute-name line, then ``FILE  v1 ... v40`` with v in {-1, 1}).
    Returns the attributes (N, 40) in {-1, 1}."""
    rng = np.random.default_rng(seed)
    n = len(partition)
    attributes = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRIBUTES)))
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)).save(folder / name)
    rows = [f"{name} " + " ".join(f"{v:2d}" for v in attrs) for name, attrs in zip(names, attributes)]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("".join(f"{name} {k}\n" for name, k in zip(names, partition)))
    return attributes


def set_celeba_attribute(root: Path, row: int, column: int, value: str) -> None:
    """Write ``value`` as attribute ``column`` of image ``row`` (0-based: file line ``row + 3``) in ``root``'s
    ``list_attr_celeba.txt``, for damaged-file tests."""
    path = root / "list_attr_celeba.txt"
    lines = path.read_text().split("\n")
    fields = lines[row + 2].split()
    fields[column + 1] = value
    lines[row + 2] = " ".join(fields)
    path.write_text("\n".join(lines))
