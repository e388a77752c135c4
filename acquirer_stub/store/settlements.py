"""The `settlements` table as the dashboard reads it: each batch a terminal closed, with both sides' totals.

The terminal API still writes it (a later step of issue 13 moves that here).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import newest


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
