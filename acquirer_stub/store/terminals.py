"""The `terminals` table: the list with each terminal's day, one terminal's status, its batch and sign-on.

The terminal API decides sign-on and settlement; these functions read and write what it decided.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one


@dataclass(frozen=True)
class Terminal:
    tid: str
    mid: str
    name: str
    status: str  # active, inactive
    batch: int
    signed_on: int
    last_seen: str | None


@dataclass(frozen=True)
class TerminalActivity(Terminal):
    """A terminal with what the dashboard's terminal list shows of its day."""

    today: int  # authorizations today
    approved: int  # of which approved
    in_batch: int  # rows in its open batch
    last_transaction: str | None
    ecr_open: int  # ECR sales not finished


@dataclass(frozen=True)
class TerminalPage(Terminal):
    """A terminal with what its service last reported with its echo (`hostproto.messages.Health` as JSON), and
    when: the dashboard's page of one terminal."""

    health: str | None
    health_at: str | None


def all_terminals(connection: sqlite3.Connection) -> list[Terminal]:
    """By TID."""
    return fetch_all(connection, Terminal, f"SELECT {columns(Terminal)} FROM terminals ORDER BY tid")


def admission(connection: sqlite3.Connection, tid: str, nonce: str) -> tuple[str | None, bool]:
    """The terminal's status (None: no such terminal) and whether it has spent `nonce` (while it is remembered):
    a signed request's two checks in one statement (one round trip)."""
    row = connection.execute("SELECT (SELECT status FROM terminals WHERE tid = ?) AS status,"
                             " EXISTS (SELECT 1 FROM nonces WHERE tid = ? AND nonce = ?) AS spent",
                             (tid, tid, nonce)).fetchone()
    return (None if row["status"] is None else str(row["status"])), bool(row["spent"])


def find(connection: sqlite3.Connection, tid: str) -> Terminal | None:
    """None: no such terminal."""
    return fetch_one(connection, Terminal, f"SELECT {columns(Terminal)} FROM terminals WHERE tid = ?", (tid,))


def sign_on(connection: sqlite3.Connection, tid: str, batch: int) -> None:
    """The terminal signed on with a new open batch."""
    connection.execute("UPDATE terminals SET batch = ?, signed_on = 1 WHERE tid = ?", (batch, tid))


def sign_off(connection: sqlite3.Connection, tid: str) -> None:
    """A balanced settlement closed the batch: the next sale needs a sign-on (and a new batch) first."""
    connection.execute("UPDATE terminals SET signed_on = 0 WHERE tid = ?", (tid,))


def record_health(connection: sqlite3.Connection, tid: str, health: str, at: str) -> None:
    connection.execute("UPDATE terminals SET health = ?, health_at = ? WHERE tid = ?", (health, at, tid))


def page(connection: sqlite3.Connection, tid: str) -> TerminalPage | None:
    """None: no such terminal."""
    return fetch_one(connection, TerminalPage, f"SELECT {columns(TerminalPage)} FROM terminals WHERE tid = ?", (tid,))


def floor_limits(connection: sqlite3.Connection, tid: str) -> dict[str, int]:
    """The terminal's offline floor limits as AID hex → fen; '' is the one for any other AID."""
    return {row["aid"]: row["floor_limit"] for row in connection.execute(
        "SELECT aid, floor_limit FROM terminal_floor_limits WHERE tid = ?", (tid,))}


def seen(connection: sqlite3.Connection, tid: str, at: str) -> None:
    """Every accepted signed request counts as a heartbeat: the terminal list shows when it last called."""
    connection.execute("UPDATE terminals SET last_seen = ? WHERE tid = ?", (at, tid))


def seen_and_find(connection: sqlite3.Connection, tid: str, at: str) -> Terminal | None:
    """`seen`, and the terminal as that update left it (one statement); None: no such terminal. On PostgreSQL the
    update locks the terminal's row until the transaction ends."""
    return fetch_one(connection, Terminal,
                     f"UPDATE terminals SET last_seen = ? WHERE tid = ? RETURNING {columns(Terminal)}", (at, tid))


def activity(
    connection: sqlite3.Connection, day: datetime.date, ecr_open_states: Sequence[str]
) -> list[TerminalActivity]:
    """Every terminal by TID with its figures of `day` (the date of `created` as stored) and its open ECR sales."""
    marks = ", ".join("?" for _ in ecr_open_states)
    return fetch_all(connection, TerminalActivity,
        f"SELECT {columns(Terminal, 'm')}, (SELECT COUNT(*) FROM transactions t WHERE t.tid = m.tid"
        "  AND t.kind = 'authorization' AND substr(t.created, 1, 10) = ?) AS today,"
        " (SELECT COUNT(*) FROM transactions t WHERE t.tid = m.tid AND t.kind = 'authorization' AND t.rc = '00'"
        "  AND substr(t.created, 1, 10) = ?) AS approved,"
        " (SELECT COUNT(*) FROM transactions t WHERE t.tid = m.tid AND t.batch = m.batch) AS in_batch,"
        " (SELECT MAX(created) FROM transactions t WHERE t.tid = m.tid) AS last_transaction,"
        f" (SELECT COUNT(*) FROM ecr_requests e WHERE e.tid = m.tid AND e.state IN ({marks})) AS ecr_open"
        " FROM terminals m ORDER BY m.tid", (day.isoformat(), day.isoformat(), *ecr_open_states))


def add_terminal(connection: sqlite3.Connection, tid: str, mid: str, name: str,
                 floor_limits: Iterable[tuple[str, int]]) -> None:
    """A terminal, active, with its offline floor limits as (AID hex, fen), '' standing for any other AID."""
    connection.execute("INSERT INTO terminals (tid, mid, name) VALUES (?, ?, ?)", (tid, mid, name))
    connection.executemany("INSERT INTO terminal_floor_limits (tid, aid, floor_limit) VALUES (?, ?, ?)",
                           [(tid, aid, limit) for aid, limit in floor_limits])
