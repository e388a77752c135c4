"""The `events` table: one line of the dashboard's feed per decision, written in the decision's transaction.

One writer for everyone (the terminal API, the token service, the web pages), so every row has the same format:
`created` is ISO 8601 with its offset, `body` compact JSON.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from acquirer_stub.store.rows import columns, fetch_all, newest


@dataclass(frozen=True)
class Event:
    id: int
    created: str
    kind: str
    body: str  # JSON as stored; the feed whitelists what of it leaves the server


def record(connection: sqlite3.Connection, kind: str, body: dict[str, Any], *,
           at: datetime.datetime | None = None) -> None:
    """A JSON body with a human `text`; never a full PAN, a code or a password (the feed shows it).

    `at` is the decision's time (the API passes the request's); when None, now. Either way the host's local time
    with its offset, as the transactions' rows have it: the date is the business day, and the feed's times compare.
    """
    connection.execute(INSERT, values(kind, body, at=at))


INSERT = "INSERT INTO events (created, kind, body, tid, stan, transaction_id) VALUES (?, ?, ?, ?, ?, ?)"
"""The statement `record` runs, with `values` as its parameters (for a repository that sends it with its own)."""


def values(kind: str, body: dict[str, Any], *, at: datetime.datetime | None = None) -> tuple[object, ...]:
    """`INSERT`'s parameters for the event `record` describes."""
    if at is None:
        at = datetime.datetime.now().astimezone().replace(microsecond=0)
    if at.tzinfo is None:
        raise ValueError("an event's time carries its offset")
    reference = body.get("transaction_id")
    if not isinstance(reference, int) or isinstance(reference, bool):
        reference = None
    return (at.isoformat(), kind, json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            _text(body.get("tid")), _text(body.get("stan")), reference)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def latest_id(connection: sqlite3.Connection) -> int:
    """0 when there is none yet."""
    return int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])


def after(connection: sqlite3.Connection, event_id: int, limit: int) -> list[Event]:
    """The next events after `event_id`, oldest first: the feed resumes there."""
    return fetch_all(connection, Event,
        f"SELECT {columns(Event)} FROM events WHERE id > ? ORDER BY id LIMIT ?", (event_id, limit))


def recent(connection: sqlite3.Connection, limit: int) -> list[Event]:
    """The newest first."""
    return newest(connection, Event, "events", limit)


def of_transaction(connection: sqlite3.Connection, transaction_id: int, tid: str, stan: str) -> list[Event]:
    """The events that name a transactions row: by its id, or by (TID, STAN) as the API's bodies do."""
    return fetch_all(connection, Event,
        f"SELECT {columns(Event)} FROM events WHERE transaction_id = ? OR (tid = ? AND stan = ?) ORDER BY id",
        (transaction_id, tid, stan))
