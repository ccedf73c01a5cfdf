"""Output files are written atomically (a kill while writing a report leaves the previous report whole), and
the store's format version: a store without one reads as version 1, the first run written records the current
version, and a store of a newer version is refused with one line by every command that reads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtlens import RunStore
from mtlens.cli import main
from mtlens.store import FORMAT_VERSION, StoreVersionError

pytestmark = pytest.mark.integration
COMPAT = Path(__file__).resolve().parents[1] / "fixtures" / "compat_store"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_report_killed_while_writing_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    store = shutil.copytree(COMPAT, tmp_path / "store")
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    before = _files(out)
    writes = {"n": 0}
    real = Path.write_text

    def killed_on_the_second_write(self: Path, text: str, *args, **kwargs) -> int:
        writes["n"] += 1
        if writes["n"] == 2:
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt  # the process dies half-way through this file
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", killed_on_the_second_write)
    with pytest.raises(KeyboardInterrupt):
        from mtlens.report.study_report import write_report

        write_report(RunStore(store), out)
    monkeypatch.undo()
    assert writes["n"] == 2
    assert _files(out) == before  # every file whole: the old one (nothing here changes between the two reports)


def test_store_without_version_reads_as_version_1_and_records_the_current_one_when_written(tmp_path):
    store = RunStore(shutil.copytree(COMPAT, tmp_path / "store"))
    assert store.format_version() == 1 and len(store.run_ids()) == 3
    with store.lock(store.run_ids()[0]):
        pass
    assert json.loads((store.root / "store.json").read_text()) == {"format_version": FORMAT_VERSION}
    assert store.format_version() == FORMAT_VERSION


@pytest.mark.parametrize("argv", [["runs"], ["runs", "--check"], ["report", "--out", "{tmp}/report"]])
def test_store_of_a_newer_version_is_refused_with_one_line(tmp_path, capsys, argv):
    store = shutil.copytree(COMPAT, tmp_path / "store")
    (store / "store.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(StoreVersionError):
        RunStore(store).run_ids()
    capsys.readouterr()
    code = main([argv[0], "--store", str(store), *[a.format(tmp=tmp_path) for a in argv[1:]]])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert f"format version {FORMAT_VERSION + 1}" in line and "upgrade mtlens" in line
    assert not (tmp_path / "report").exists()
