"""Output files are written atomically (a kill while writing a report leaves the previous report whole), and
the store's format version: a store without one reads as version 1, the first run written records the current
version, and a store of a newer version is refused with one line by every command that reads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from _cases import directory_in_place, rewrite_rows_validly, truncate

from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import DamagedStoreError
from mtlens.store import FORMAT_VERSION, StoreVersionError
from mtlens.training.handle import clean_complete_run

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


def test_an_old_run_gets_digests_the_first_time_it_verifies_so_later_damage_is_caught(tmp_path, capsys):
    """A run of format version 1 has no digests: a valid rewrite of its trajectory cannot be told (the README
    says so).  Once training opens it and it verifies, its status records its files' digests (keeping its
    ``updated`` time, rewriting no rows), and the same rewrite is named by ``runs --check`` and refused."""
    fixture = _files(COMPAT)
    untouched = RunStore(shutil.copytree(COMPAT, tmp_path / "untouched"))
    run_id = next(r for r in untouched.run_ids() if untouched.status(r)["state"] == "finished")
    rewrite_rows_validly(untouched.run_dir(run_id) / "trajectory.parquet")
    assert untouched.check().empty  # the limit of version 1: schema, columns and CRCs are all it has

    store = RunStore(shutil.copytree(COMPAT, tmp_path / "store"))
    run_dir = store.run_dir(run_id)
    before = _files(run_dir)
    clean_complete_run(store, run_id)  # what RunHandle.open does with a complete run
    status = store.status(run_id)
    assert set(status["digests"]) == {"config.json", "tasks.json", "trajectory.parquet"}
    assert status["updated"] == json.loads(before["status.json"])["updated"]
    assert {n: b for n, b in _files(run_dir).items() if n != "status.json"} == {
        n: b for n, b in before.items() if n != "status.json"
    }
    assert main(["runs", "--store", str(store.root), "--check"]) == 0

    rewrite_rows_validly(run_dir / "trajectory.parquet")
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    assert str(run_dir / "trajectory.parquet") in capsys.readouterr().out
    with pytest.raises(DamagedStoreError) as error:
        store.trajectory(run_id)
    assert "\n" not in str(error.value) and run_id in str(error.value)
    assert _files(COMPAT) == fixture  # the fixture itself is never written


def _flip_first_page_byte(path: Path) -> None:
    """Flip one byte inside the first column's data page (footer and schema stay valid)."""
    column = pq.read_metadata(path).row_group(0).column(0)
    offset = (column.dictionary_page_offset or column.data_page_offset) + column.total_compressed_size - 3
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


TABLE_DAMAGE = {"truncated": truncate, "flipped-byte": _flip_first_page_byte, "directory": directory_in_place}


@pytest.mark.parametrize("case", list(TABLE_DAMAGE))
def test_a_damaged_table_is_named_refused_with_one_line_and_healed_by_rewriting_it(case, tmp_path, capsys):
    """``tables/`` (experiment manifests, analyses of checkpoints): named by ``runs --check``, reading it is
    refused with one line naming it, and the command that wrote it (``write_table`` again) heals it."""
    store = RunStore(tmp_path / "store")
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(50)], "score": [i / 7 for i in range(50)]})
    store.write_table("manifest", frame)
    path = store.root / "tables" / "manifest.parquet"
    TABLE_DAMAGE[case](path)

    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 1
    out, err = capsys.readouterr()
    assert str(path) in out and "Traceback" not in out + err
    with pytest.raises(DamagedStoreError) as error:
        store.table("manifest")
    assert "\n" not in str(error.value) and str(path) in str(error.value)

    store.write_table("manifest", frame)
    pd.testing.assert_frame_equal(store.table("manifest"), frame)
    assert main(["runs", "--store", str(store.root), "--check"]) == 0
