"""The damage cases of the contract suite: one named way each in which a file of a run goes bad.

A case damages the file ``path`` (relative to the run directory) of a run that is ``finished``
(``stage="finished"``) or was killed half-way (``stage="interrupted"``) and names the file
``runs --check`` must report.  Every case leaves a file that a careless reader could still take for good: most
still open (a garbled JSON that decodes, a Parquet file with a flipped byte in a page, a checkpoint
whose zip opens but whose CRC does not match, a trajectory without a column), a missing ``config.json``
leaves a folder an index listing runs by their config would not see, and the valid rewrites pass every
check a file carries itself (a row file rewritten with good page checksums, a checkpoint or selected
model saved again with good CRCs, a config with one digit changed): only the digest the run recorded
when it wrote the file tells.  :data:`SELECTED` damages the selected models of subjects that keep them;
the store's ``tables/`` have their own cases in ``test_outputs_and_format.py``."""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mtlens import RunStore


@dataclass(frozen=True)
class Damage:
    name: str
    stage: str  # "finished" or "interrupted": the run the case damages
    path: str  # the damaged file, relative to the run directory ("parts/<first>": the first row part)
    damage: Callable[[Path], None]

    def __str__(self) -> str:
        return self.name


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def remove(path: Path) -> None:
    path.unlink()


def directory_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")


def garble_json(path: Path) -> None:
    """Still a JSON object, with one value changed (a number +1, a string with a character appended)."""
    value = json.loads(path.read_text())
    key = sorted(k for k in value if isinstance(value[k], (int, float, str)) and not isinstance(value[k], bool))[0]
    value[key] = value[key] + 1 if isinstance(value[key], (int, float)) else value[key] + "x"
    path.write_text(json.dumps(value))


def edit_a_digit(path: Path) -> None:
    """The file's first digit changed (one up, a 9 down): still the same JSON object but for one number or name,
    of the same size, so only the digest recorded when the run wrote it tells (``"lr": 0.003`` -> ``0.004``)."""
    data = bytearray(path.read_bytes())
    at = next(i for i, byte in enumerate(data) if chr(byte).isdigit())
    data[at] = data[at] + 1 if data[at] != ord("9") else ord("8")  # never a 0, which could lead a number
    path.write_bytes(bytes(data))
    json.loads(data)  # still valid JSON


def garble_task_info(path: Path) -> None:
    """Still valid task information, with every metric direction flipped (changes every selection)."""
    info = json.loads(path.read_text())
    for task in info.values():
        task["lower_is_better"] = {m: not v for m, v in task["lower_is_better"].items()}
    path.write_text(json.dumps(info))


def status_step_not_integer(path: Path) -> None:
    status = json.loads(path.read_text())
    status["step"] = str(status["step"])
    path.write_text(json.dumps(status))


def flip_page_byte(path: Path) -> None:
    """Flip one byte in the data page of the ``value`` column: the file's footer and schema stay valid."""
    metadata = pq.read_metadata(path)
    column = metadata.row_group(0).column(metadata.schema.names.index("value"))
    start = column.dictionary_page_offset or column.data_page_offset
    offset = start + column.total_compressed_size - 3
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def drop_column(name: str) -> Callable[[Path], None]:
    return lambda path: _rewrite(path, lambda table: table.drop_columns([name]))


def values_as_strings(path: Path) -> None:
    _rewrite(
        path,
        lambda table: table.set_column(
            table.schema.get_field_index("value"), "value", table["value"].cast(pa.string())
        ),
    )


def rewrite_rows_validly(path: Path) -> None:
    """One value changed and the file rewritten as the store writes it (page checksums valid, schema
    intact): it decodes and verifies; only the digest recorded when the run wrote it tells."""
    table = pq.read_table(path)
    values = table["value"].to_pylist()
    values[0] += 1.0
    changed = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values, pa.float64()))
    pq.write_table(changed, path, write_page_checksum=True)


def _bump(obj: Any) -> bool:
    """Add 1 to the first floating-point tensor found in ``obj`` (dicts and lists, depth first), in place."""
    if isinstance(obj, torch.Tensor) and obj.is_floating_point() and obj.numel():
        obj.view(-1)[0] += 1.0
        return True
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return any(_bump(value) for value in values)


def rewrite_torch_file_validly(path: Path) -> None:
    """A weight changed and the file saved again by ``torch.save`` (every zip CRC valid): it loads; only the
    digest recorded when the run wrote it tells."""
    payload = torch.load(path, weights_only=False)
    assert _bump(payload), f"no floating-point tensor in {path}"
    torch.save(payload, path)


def checkpoint_crc_mismatch(path: Path) -> None:
    """Change one byte inside the largest member of the checkpoint's zip: the archive opens, the member's CRC fails."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    data = bytearray(path.read_bytes())
    header = member.header_offset
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    offset = header + 30 + name_length + extra_length + member.compress_size // 2
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


FINISHED = [
    Damage("config-truncated", "finished", "config.json", truncate),
    Damage("config-garbled", "finished", "config.json", garble_json),
    Damage("config-directory", "finished", "config.json", directory_in_place),
    Damage("config-missing", "finished", "config.json", remove),
    Damage("config-edited-same-size", "finished", "config.json", edit_a_digit),
    Damage("tasks-garbled", "finished", "tasks.json", garble_task_info),
    Damage("status-truncated", "finished", "status.json", truncate),
    Damage("status-mistyped", "finished", "status.json", status_step_not_integer),
    Damage("status-directory", "finished", "status.json", directory_in_place),
    Damage("trajectory-truncated", "finished", "trajectory.parquet", truncate),
    Damage("trajectory-flipped-byte", "finished", "trajectory.parquet", flip_page_byte),
    Damage("trajectory-missing", "finished", "trajectory.parquet", remove),
    Damage("trajectory-without-value", "finished", "trajectory.parquet", drop_column("value")),
    Damage("trajectory-without-epoch", "finished", "trajectory.parquet", drop_column("epoch")),
    Damage("trajectory-value-strings", "finished", "trajectory.parquet", values_as_strings),
    Damage("trajectory-directory", "finished", "trajectory.parquet", directory_in_place),
    Damage("trajectory-rewritten-valid-checksums", "finished", "trajectory.parquet", rewrite_rows_validly),
]
INTERRUPTED = [
    Damage("checkpoint-crc-mismatch", "interrupted", "checkpoint.pt", checkpoint_crc_mismatch),
    Damage("checkpoint-truncated", "interrupted", "checkpoint.pt", truncate),
    Damage("part-flipped-byte", "interrupted", "parts/<first>", flip_page_byte),
    Damage("part-truncated", "interrupted", "parts/<first>", truncate),
    Damage("part-missing", "interrupted", "parts/<first>", remove),
    Damage("part-without-value", "interrupted", "parts/<first>", drop_column("value")),
    Damage("part-rewritten-valid-checksums", "interrupted", "parts/<first>", rewrite_rows_validly),
    Damage("checkpoint-rewritten-valid-crc", "interrupted", "checkpoint.pt", rewrite_torch_file_validly),
    Damage("config-missing-interrupted", "interrupted", "config.json", remove),
    Damage("config-edited-same-size-interrupted", "interrupted", "config.json", edit_a_digit),
]
CASES = FINISHED + INTERRUPTED
SELECTED = [
    Damage(f"selected-{name}-{stage}", stage, "selected/<first>", damage)
    for stage in ("finished", "interrupted")
    for name, damage in (
        ("crc-mismatch", checkpoint_crc_mismatch),
        ("truncated", truncate),
        ("missing", remove),
        ("rewritten-valid-crc", rewrite_torch_file_validly),
    )
]
"""Damage to the selected models (``save_selected_models``: the trainer and packs; a Recorder keeps none)."""


def damage_run(run_dir: Path, case: Damage) -> str:
    """Apply ``case`` to the run in ``run_dir``; the damaged file's name relative to the run directory.  The
    checkpoint is the file the run's status vouches for: the pending one if the kill came inside its
    commit (between the status recording it and its rename; ``RunStore.committed_checkpoint``)."""
    name = case.path
    if name.endswith("/<first>"):
        folder = name.split("/")[0]
        name = f"{folder}/" + sorted(p.name for p in (run_dir / folder).glob("*.p*"))[0]
    if name == "checkpoint.pt":
        name = RunStore(run_dir.parents[1]).committed_checkpoint(run_dir.name).name
    case.damage(run_dir / name)
    return name


def copy_store(source: Path, target: Path) -> Path:
    return Path(shutil.copytree(source, target))


@contextmanager
def read_only(root: Path) -> Iterator[None]:
    """Every write under ``root`` fails with ``EACCES``, as in a store mounted read-only (chmod does
    not stop root, who runs the CI): ``open`` for writing, ``os.open`` creating, ``mkdir``, ``os.replace``."""
    root = root.resolve()

    def inside(path: object) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(root)  # type: ignore[arg-type]
        except TypeError:
            return False

    def denied(path: object) -> PermissionError:
        return PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]

    real_open, real_os_open, real_mkdir, real_replace = builtins.open, os.open, Path.mkdir, os.replace

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+") and inside(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if inside(self) and not self.exists():
            raise denied(self)
        real_mkdir(self, *args, **kwargs)

    def guarded_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if inside(dst):
            raise denied(dst)
        real_replace(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(os, "open", guarded_os_open)
        patch.setattr(Path, "mkdir", guarded_mkdir)
        patch.setattr(os, "replace", guarded_replace)
        yield
