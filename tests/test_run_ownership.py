"""One owner of a run's life (issue 24): no module outside the run handle (``training/handle.py``) and the
store (``store/``) opens, locks, checkpoints, restores or writes a run's files, and run states appear only
as :class:`~mtlens.states.RunState` members, never as text.

Both are AST scans of ``src/mtlens`` (module-level and nested code alike); each scanner is also run on a
snippet that breaks its rule, so the scans themselves can fail."""

from __future__ import annotations

import ast
from pathlib import Path

import mtlens
from mtlens.states import RunState

SRC = Path(mtlens.__file__).parent
OWNERS = ("training/handle.py", "store/", "states.py")
"""Where run files may be touched and run states spelled (relative to ``src/mtlens``)."""

STATE_NAMES = frozenset(state.value for state in RunState)
RUN_FILE_CALLS = frozenset({"torch.load", "torch.save", "fcntl.flock"})
"""Calls that read or write a checkpoint or selected model, or take a lock."""
RUN_FILE_METHODS = frozenset(
    {
        "lock",
        "checkpoint_path",
        "selected_model_path",
        "set_status",
        "write_part",
        "reset_run",
        "remove_leftovers",
        "keep_selected_models",
        "discard_parts_after",
        "write_config",
        "write_task_info",
        "remove_file",
        "pending_checkpoint_path",
        "committed_checkpoint",
        "commit_checkpoint",
        "settle_checkpoint",
    }
)
"""Store methods that lock a run, locate its checkpoint or models, or write its files: the handle's to call
(``finalize`` is left out: a corpus metric has one too; it writes nothing without ``set_status``'s states)."""
RUN_FILE_NAMES = frozenset({"checkpoint.pt", ".lock", "status.json"})
STATE_CALLS = frozenset({"eq", "ne", "isin", "set_status", "finish", "fail", "close", "RunState"})
"""Calls whose string arguments are states when they spell one (``frame.eq("failed")``, ``close("diverged")``)."""


def _owned(path: Path) -> bool:
    relative = path.relative_to(SRC).as_posix()
    return any(relative == owner or (owner.endswith("/") and relative.startswith(owner)) for owner in OWNERS)


def _state_literals(node: ast.AST) -> list[ast.Constant]:
    """String constants in ``node`` (itself, or elements of a tuple/list/set) that spell a run state."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i for i in items if isinstance(i, ast.Constant) and i.value in STATE_NAMES]


def state_literals(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every run state spelled as text where a state is used: compared (``==``, ``in``),
    passed to a state call (:data:`STATE_CALLS`) or as ``state=``, stored under the key ``"state"``, or the
    default of a parameter named ``state``.  Docstrings, messages and column names do not count."""
    found: list[ast.Constant] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                found += _state_literals(operand)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in STATE_CALLS:
                for arg in node.args:
                    found += _state_literals(arg)
            found += [c for k in node.keywords if k.arg == "state" for c in _state_literals(k.value)]
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "state":
                    found += _state_literals(value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args
            for arg, default in zip(arguments[len(arguments) - len(node.args.defaults) :], node.args.defaults):
                if arg.arg == "state":
                    found += _state_literals(default)
            for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults):
                if arg.arg == "state" and default is not None:
                    found += _state_literals(default)
    return sorted({(c.lineno, c.value) for c in found})


def run_file_access(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` of every call that locks, checkpoints, restores or writes a run's files
    (:data:`RUN_FILE_CALLS`, :data:`RUN_FILE_METHODS`) and every run file name spelled in code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in RUN_FILE_CALLS or method in RUN_FILE_METHODS:
                found.append((node.lineno, f"calls {name}"))
        elif isinstance(node, ast.Constant) and node.value in RUN_FILE_NAMES:
            found.append((node.lineno, f"spells {node.value!r}"))
    return found


def _scan(check) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        f"{path.relative_to(SRC)}:{line}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        if not _owned(path)
        for line, what in check(path.read_text())
    ]


def test_run_states_appear_only_as_the_enum():
    spelled = _scan(state_literals)
    assert not spelled, "run states spelled as text (use mtlens.states.RunState):\n" + "\n".join(spelled)


def test_no_module_but_the_handle_and_the_store_touches_a_run_s_files():
    touching = _scan(run_file_access)
    assert not touching, "run files touched outside training/handle.py and store/:\n" + "\n".join(touching)


def test_the_state_scanner_finds_states_spelled_as_text():
    source = '''
def close(self, state="finished"):
    """Docstrings may say finished, failed or diverged."""
    if status["state"] == "failed" or state in ("diverged", "interrupted"):
        frame["state"].eq("running")
        store.set_status(run_id, "finished", 0)
        write(state="pending")
    record = {"state": "damaged", "diverged": 3}
    message = f"the run diverged"
    table.assign(diverged=table["n"] > 0)
'''
    assert state_literals(source) == [
        (2, "finished"),
        (4, "diverged"),
        (4, "failed"),
        (4, "interrupted"),
        (5, "running"),
        (6, "finished"),
        (7, "pending"),
        (8, "damaged"),
    ]


def test_the_file_scanner_finds_run_file_access():
    source = """
weights = torch.load(path)
with store.lock(run_id):
    store.set_status(run_id, RunState.FAILED, 0)
path = run_dir / "checkpoint.pt"
frame = store.trajectory(run_id)
"""
    assert run_file_access(source) == [
        (2, "calls torch.load"),
        (3, "calls store.lock"),
        (4, "calls store.set_status"),
        (5, "spells 'checkpoint.pt'"),
    ]
