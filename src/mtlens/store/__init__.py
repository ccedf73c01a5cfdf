"""The run store: configs, trajectories as tidy tables, status, atomic writes."""

from mtlens.store.atomic import atomic_write, atomic_write_json, read_json
from mtlens.store.run_store import DONE_STATES, ROW_COLUMNS, RunLockedError, RunStore

__all__ = ["DONE_STATES", "ROW_COLUMNS", "RunLockedError", "RunStore", "atomic_write", "atomic_write_json", "read_json"]
