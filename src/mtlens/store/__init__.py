"""The run store: configs, trajectories as tidy tables, status, atomic writes."""

from mtlens.store.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from mtlens.store.run_store import (
    DONE_STATES,
    FORMAT_VERSION,
    ROW_COLUMNS,
    STORE_FILE,
    RunLockedError,
    RunState,
    RunStore,
    StoreNotWritableError,
    StoreVersionError,
    enclosing_store,
)

__all__ = [
    "DONE_STATES",
    "FORMAT_VERSION",
    "ROW_COLUMNS",
    "STORE_FILE",
    "RunLockedError",
    "RunState",
    "RunStore",
    "StoreNotWritableError",
    "StoreVersionError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "enclosing_store",
    "read_json",
]
