"""The virtual ECR's sales (`ecr_requests`) as the dashboard sends and lists them.

The hand-over to the terminal (acquirer_stub.ecr.handover) still keeps its own SQL; a later step of issue 13
moves it here.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, newest


@dataclass(frozen=True)
class EcrRequest:
    id: int
    tid: str
    amount: int  # fen
    state: str  # pending, offered, taken, done, expired
    result: str | None  # JSON: what the terminal reported
    created: str
    updated: str
    offer: str | None
    lease_until: float | None
    deadline: float | None


def recent(connection: sqlite3.Connection, limit: int) -> list[EcrRequest]:
    """The newest first."""
    return newest(connection, EcrRequest, "ecr_requests", limit)


def find(connection: sqlite3.Connection, ecr_id: int) -> EcrRequest | None:
    return fetch_one(connection, EcrRequest, f"SELECT {columns(EcrRequest)} FROM ecr_requests WHERE id = ?", (ecr_id,))


def add(connection: sqlite3.Connection, tid: str, amount: int, now: str) -> int:
    """A pending sale for the terminal to pick up; its id."""
    cursor = connection.execute(
        "INSERT INTO ecr_requests (tid, amount, state, created, updated) VALUES (?, ?, 'pending', ?, ?)",
        (tid, amount, now, now))
    assert cursor.lastrowid is not None
    return cursor.lastrowid
