"""The `settlements` table: each batch a terminal closed, with both sides' totals, and its stored answer.

The terminal API decides the settlement (balanced or not) and adds its row here; the dashboard reads them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, insert, newest


@dataclass(frozen=True)
class Settlement:
    id: int
    tid: str
    batch: int
    terminal_totals: str  # JSON as the terminal sent them
    host_totals: str  # JSON as the host counted them
    balanced: int
    created: str
    stan: str | None
    local_date: str | None
    request_hash: str | None
    response: str | None
    figures: str | None  # JSON: accepted and exception figures


def recent(connection: sqlite3.Connection, limit: int) -> list[Settlement]:
    """The newest first."""
    return newest(connection, Settlement, "settlements", limit)


def of_terminal(connection: sqlite3.Connection, tid: str, limit: int) -> list[Settlement]:
    """One terminal's batches, the newest first."""
    return fetch_all(connection, Settlement,
                     f"SELECT {columns(Settlement)} FROM settlements WHERE tid = ? ORDER BY id DESC LIMIT ?",
                     (tid, limit))


def add(connection: sqlite3.Connection, values: Mapping[str, object]) -> int:
    """One settlement (column → value) with its answer; its id."""
    return insert(connection, "settlements", values)


def balanced(connection: sqlite3.Connection, tid: str, batch: int) -> bool:
    """Whether the terminal's batch was settled balanced: its money is reconciled and may no longer move."""
    return connection.execute("SELECT 1 FROM settlements WHERE tid = ? AND batch = ? AND balanced = 1",
                              (tid, batch)).fetchone() is not None
