"""Helpers for tests of the state store (engine/store/state.py)."""

from __future__ import annotations

from engine.store.db import Database
from engine.store.state import StateStore


def commit(db: Database, store: StateStore, *, write: bool) -> None:
    """Commit the batch under way as the processor does: staged, written to the table with
    ``write``, then marked committed."""
    with db.transaction():
        store.stage()
        if write:
            store.write()
    store.committed(written=write)
