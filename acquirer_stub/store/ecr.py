"""The virtual ECR's sales (`ecr_requests`): the dashboard sends and lists them, the hand-over moves them.

The hand-over's rules (which state may follow which, the events) are acquirer_stub.ecr.handover's; here are only
the reads and the writes of one state change each, so the rules never see a driver's row. Times: `created` and
`updated` are ISO text, `lease_until` and `deadline` unix seconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one, insert, newest


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


_OWN = f"SELECT {columns(EcrRequest)} FROM ecr_requests"


def recent(connection: sqlite3.Connection, limit: int) -> list[EcrRequest]:
    """The newest first."""
    return newest(connection, EcrRequest, "ecr_requests", limit)


def find(connection: sqlite3.Connection, ecr_id: int) -> EcrRequest | None:
    return fetch_one(connection, EcrRequest, f"{_OWN} WHERE id = ?", (ecr_id,))


def add(connection: sqlite3.Connection, tid: str, amount: int, now: str) -> int:
    """A pending sale for the terminal to pick up; its id."""
    return insert(connection, "ecr_requests",
                  {"tid": tid, "amount": amount, "state": "pending", "created": now, "updated": now})


def find_of(connection: sqlite3.Connection, ecr_id: int, tid: str) -> EcrRequest | None:
    """None also when the sale is another terminal's: a terminal cannot tell it from one that does not exist."""
    return fetch_one(connection, EcrRequest, f"{_OWN} WHERE id = ? AND tid = ?", (ecr_id, tid))


def oldest_untaken(connection: sqlite3.Connection, tid: str) -> EcrRequest | None:
    """The terminal's oldest sale pending or offered: the one its next poll is offered."""
    return fetch_one(connection, EcrRequest,
        f"{_OWN} WHERE tid = ? AND state IN ('pending', 'offered') ORDER BY id LIMIT 1", (tid,))


def any_overdue(connection: sqlite3.Connection, now: float) -> bool:
    """Whether an offer's lease or a taken sale's deadline has passed (a read: no write lock for nothing)."""
    return connection.execute(
        "SELECT 1 FROM ecr_requests WHERE (state = 'offered' AND lease_until < ?) OR (state = 'taken' AND deadline < ?)"
        " LIMIT 1", (now, now)).fetchone() is not None


def lapsed_offers(connection: sqlite3.Connection, now: float) -> list[EcrRequest]:
    """Offered sales whose lease ended before `now`."""
    return fetch_all(connection, EcrRequest, f"{_OWN} WHERE state = 'offered' AND lease_until < ?", (now,))


def past_deadline(connection: sqlite3.Connection, now: float) -> list[EcrRequest]:
    """Taken sales whose result did not come by their deadline."""
    return fetch_all(connection, EcrRequest, f"{_OWN} WHERE state = 'taken' AND deadline < ?", (now,))


def offered(connection: sqlite3.Connection, ecr_id: int, token: str, lease_until: float, updated: str) -> None:
    """Offered (again) under a fresh token until `lease_until`."""
    connection.execute("UPDATE ecr_requests SET state = 'offered', offer = ?, lease_until = ?, updated = ?"
                       " WHERE id = ?", (token, lease_until, updated, ecr_id))


def pending_again(connection: sqlite3.Connection, ecr_id: int, updated: str) -> None:
    """A lapsed offer withdrawn: its token is void, the sale waits for the next poll."""
    connection.execute("UPDATE ecr_requests SET state = 'pending', offer = NULL, lease_until = NULL, updated = ?"
                       " WHERE id = ?", (updated, ecr_id))


def taken(connection: sqlite3.Connection, ecr_id: int, deadline: float, updated: str) -> None:
    """The terminal's now, its result due by `deadline`."""
    connection.execute("UPDATE ecr_requests SET state = 'taken', deadline = ?, lease_until = NULL, updated = ?"
                       " WHERE id = ?", (deadline, updated, ecr_id))


def finished(connection: sqlite3.Connection, ecr_id: int, state: str, result: str, updated: str) -> None:
    """`state` done (the terminal's result) or expired (the host's note); `result` is JSON."""
    connection.execute("UPDATE ecr_requests SET state = ?, result = ?, updated = ? WHERE id = ?",
                       (state, result, updated, ecr_id))
