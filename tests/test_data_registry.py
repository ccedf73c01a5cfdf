"""The dataset registry: presence checks, the missing-dataset message, verified downloads, the CLI."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from mtlens.cli import main
from mtlens.data import registry
from mtlens.data.registry import (
    DatasetMissingError,
    DatasetSpec,
    DownloadError,
    RemoteFile,
    dataset_dir,
    download_dataset,
    register_dataset,
    require_dataset,
)


@pytest.fixture
def archive(tmp_path):
    """A tar.gz holding ``toy/a.txt`` and ``toy/b.txt``, served from a file:// URL."""
    path = tmp_path / "remote" / "toy.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        for name, text in (("toy/a.txt", b"alpha"), ("toy/b.txt", b"beta")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return path


@pytest.fixture
def toy_spec(archive, monkeypatch, tmp_path, request):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path / "root"))
    request.addfinalizer(lambda: registry.DATASETS.unregister("toy"))  # keep the global registry clean
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    return register_dataset(
        DatasetSpec(
            name="toy",
            description="a toy archive",
            files=("toy/a.txt", "toy/b.txt"),
            size_bytes=9,
            downloads=(RemoteFile(archive.as_uri(), checksum=f"sha256:{sha}", extract=True),),
            instructions="Put toy.tar.gz's contents here.",
        )
    )


def test_missing_dataset_error_names_directory_files_and_command(toy_spec, tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        require_dataset("toy")
    message = str(err.value)
    assert str(tmp_path / "root" / "toy") in message
    assert "toy/a.txt" in message and "toy/b.txt" in message
    assert "mtlens data download toy" in message


def test_download_verifies_checksum_and_extracts(toy_spec, tmp_path):
    path = download_dataset("toy")
    assert path == dataset_dir("toy") == tmp_path / "root" / "toy"
    assert (path / "toy" / "a.txt").read_bytes() == b"alpha"
    assert require_dataset("toy") == path


def test_an_interrupted_extraction_leaves_no_file_where_the_dataset_is_looked_for(toy_spec, monkeypatch):
    """Killed while unpacking: nothing lands in the dataset folder (a half-unpacked file there would read as
    present); the next download unpacks whole and leaves no staging folder."""
    unpack = tarfile.TarFile.extractall

    def killed(self, path, *args, **kwargs):
        unpack(self, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        download_dataset("toy")
    with pytest.raises(DatasetMissingError):
        require_dataset("toy")
    monkeypatch.setattr(tarfile.TarFile, "extractall", unpack)
    path = download_dataset("toy")
    assert (path / "toy" / "b.txt").exists() and not list(path.glob(".extract-*"))


def test_checksum_mismatch_saves_nothing(toy_spec, archive):
    bad = RemoteFile(archive.as_uri(), checksum="sha256:" + "0" * 64)
    destination = dataset_dir("toy") / "toy.tar.gz"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        registry.download_file(bad, destination)
    assert not destination.exists()
    assert not list(destination.parent.glob("*"))  # no temporary file left behind


def test_md5_checksums_and_unreachable_urls(archive, tmp_path):
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    out = registry.download_file(RemoteFile(archive.as_uri(), checksum=f"md5:{md5}"), tmp_path / "x" / "t.tgz")
    assert out.read_bytes() == archive.read_bytes()
    with pytest.raises(DownloadError, match="could not download"):
        registry.download_file(RemoteFile("http://127.0.0.1:9/none.tgz", checksum=f"md5:{md5}"), tmp_path / "y")
    with pytest.raises(ValueError, match="ALGORITHM:HEXDIGEST"):
        RemoteFile("file:///x", checksum="nohash")


def test_cli_data_status_and_download(toy_spec, capsys):
    assert main(["data", "status"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("toy "))
    assert "missing" in line and "auto" in line
    assert main(["data", "download", "toy"]) == 0
    assert main(["data", "status"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("toy "))
    assert "present" in line


def test_manual_dataset_download_says_what_to_do(monkeypatch, tmp_path, capsys, request):
    monkeypatch.setenv("MTLENS_DATA", str(tmp_path))
    request.addfinalizer(lambda: registry.DATASETS.unregister("manual"))
    register_dataset(
        DatasetSpec(
            name="manual",
            description="by hand",
            files=("f.bin",),
            size_bytes=1,
            instructions="Ask the authors for f.bin.",
        )
    )
    assert main(["data", "download", "manual"]) == 2
    assert "Ask the authors for f.bin." in capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b"])
def test_a_dataset_name_that_is_no_directory_name_is_refused(name):
    """A dataset's name is its directory under the data root: ``..`` named the data root's parent."""
    with pytest.raises(ValueError, match="dataset name .*: |dataset name .* contains"):
        DatasetSpec(name=name, description="d", files=("f",), size_bytes=1)
