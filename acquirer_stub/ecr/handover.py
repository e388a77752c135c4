"""The virtual-ECR queue's hand-over rules, as SQL on `ecr_requests`; callers hold the write transaction.

A sale moves pending → offered → taken → done. A poll only *offers* the oldest open sale, with a fresh offer
token and a lease; the sale is the terminal's (taken) once it accepts that offer. So an answer to a poll that
never reaches the terminal loses nothing: the next poll offers the sale again, and an offer nobody accepts
goes back to pending when its lease ends. A taken sale is never offered again (it may have run: money may have
moved), so it runs at most once; if its result does not come by the deadline the terminal gave when it
accepted, it is shown as expired, and a result that comes late still completes it. Every change writes an
`events` row (kind "ecr") in the same transaction, which is how the dashboard follows it live.
"""

from __future__ import annotations

import datetime
import json
import secrets
import sqlite3
import time
from typing import Any

from hostproto.messages import ECR_MAX_RUN_SECONDS

PENDING, OFFERED, TAKEN, DONE, EXPIRED = "pending", "offered", "taken", "done", "expired"
OPEN_STATES = (PENDING, OFFERED, TAKEN)
LEASE_SECONDS = 30.0  # an offer's life: above a terminal's host timeout, so an acceptance in flight still counts
MAX_RUN_SECONDS = ECR_MAX_RUN_SECONDS  # the longest a terminal may ask to have for one sale
MAX_ROW_ID = 2**63 - 1


class Refused(Exception):
    """The request cannot change the sale: `status` is the HTTP answer (404 not this terminal's, 409 state)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def event(connection: sqlite3.Connection, body: dict[str, Any]) -> None:
    connection.execute("INSERT INTO events (created, kind, body) VALUES (?, 'ecr', ?)",
                       (_now_text(), json.dumps(body, ensure_ascii=False)))


def overdue(connection: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether `expire_overdue` has anything to do (a read, so a page view takes no write lock for nothing)."""
    now = time.time() if now is None else now
    return connection.execute(
        "SELECT 1 FROM ecr_requests WHERE (state = 'offered' AND lease_until < ?) OR (state = 'taken' AND deadline < ?)"
        " LIMIT 1", (now, now)).fetchone() is not None


def expire_overdue(connection: sqlite3.Connection, now: float | None = None) -> None:
    """Lapsed offers back to pending; taken sales past their deadline to expired (shown as failed)."""
    now = time.time() if now is None else now
    changed = _now_text()
    for row in connection.execute("SELECT id, tid FROM ecr_requests WHERE state = 'offered' AND lease_until < ?",
                                  (now,)).fetchall():
        connection.execute("UPDATE ecr_requests SET state = 'pending', offer = NULL, lease_until = NULL, updated = ?"
                           " WHERE id = ?", (changed, row["id"]))
        text = f"ECR sale #{row['id']}: {row['tid']} did not take the offer in time; pending again"
        event(connection, {"ecr_id": row["id"], "tid": row["tid"], "state": PENDING, "text": text})
    for row in connection.execute("SELECT id, tid FROM ecr_requests WHERE state = 'taken' AND deadline < ?",
                                  (now,)).fetchall():
        text = (f"no result from {row['tid']} in time: the sale may have run, check its transactions before sending "
                "it again")
        connection.execute("UPDATE ecr_requests SET state = 'expired', result = ?, updated = ? WHERE id = ?",
                           (json.dumps({"text": text}), changed, row["id"]))
        event(connection, {"ecr_id": row["id"], "tid": row["tid"], "state": EXPIRED,
                           "text": f"ECR sale #{row['id']}: {text}"})


def offer(connection: sqlite3.Connection, tid: str, *, lease: float = LEASE_SECONDS,
          now: float | None = None) -> sqlite3.Row | None:
    """Offer `tid` its oldest sale not yet taken (again, with a new token, if an earlier offer went unanswered)."""
    now = time.time() if now is None else now
    expire_overdue(connection, now)
    row = connection.execute("SELECT * FROM ecr_requests WHERE tid = ? AND state IN ('pending', 'offered')"
                             " ORDER BY id LIMIT 1", (tid,)).fetchone()
    if row is None:
        return None
    token = secrets.token_hex(16)
    connection.execute("UPDATE ecr_requests SET state = 'offered', offer = ?, lease_until = ?, updated = ?"
                       " WHERE id = ?", (token, now + lease, _now_text(), row["id"]))
    again = " again" if row["state"] == OFFERED else ""
    event(connection, {"ecr_id": row["id"], "tid": tid, "state": OFFERED,
                       "text": f"ECR sale #{row['id']} offered to {tid}{again}"})
    return connection.execute("SELECT * FROM ecr_requests WHERE id = ?", (row["id"],)).fetchone()


def _own(connection: sqlite3.Connection, tid: str, ecr_id: int) -> sqlite3.Row:
    if not 0 < ecr_id <= MAX_ROW_ID:  # SQLite cannot even compare a larger number
        raise Refused(404, "no such ECR request for this terminal")
    row = connection.execute("SELECT * FROM ecr_requests WHERE id = ? AND tid = ?", (ecr_id, tid)).fetchone()
    if row is None:
        raise Refused(404, "no such ECR request for this terminal")
    return row


def accept(connection: sqlite3.Connection, tid: str, ecr_id: int, token: str, seconds: int, *,
           now: float | None = None) -> None:
    """Hand the sale over to `tid` for its current offer; the same acceptance again is answered the same way."""
    now = time.time() if now is None else now
    expire_overdue(connection, now)
    row = _own(connection, tid, ecr_id)
    if row["offer"] is None or not secrets.compare_digest(row["offer"], token):
        raise Refused(409, "this offer has lapsed: poll /api/v1/ecr/next again")
    if row["state"] == TAKEN:
        return  # a retry after a lost answer: it is this terminal's already
    if row["state"] != OFFERED:
        raise Refused(409, f"this sale is {row['state']}: it cannot be taken")
    connection.execute("UPDATE ecr_requests SET state = 'taken', deadline = ?, lease_until = NULL, updated = ?"
                       " WHERE id = ?", (now + seconds, _now_text(), ecr_id))
    event(connection, {"ecr_id": ecr_id, "tid": tid, "state": TAKEN, "text": f"ECR sale #{ecr_id} taken by {tid}"})


def finish(connection: sqlite3.Connection, tid: str, ecr_id: int, result: dict[str, Any], *,
           now: float | None = None) -> None:
    """Record the terminal's result of a sale it took (even after it was shown expired); the same result again
    is answered the same way, a different one is refused."""
    expire_overdue(connection, now)
    row = _own(connection, tid, ecr_id)
    if row["state"] == DONE:
        if json.loads(row["result"]) == result:
            return
        raise Refused(409, "this request already has a different result")
    if row["state"] not in (TAKEN, EXPIRED):
        raise Refused(409, "this sale was not handed over: accept its offer first")
    connection.execute("UPDATE ecr_requests SET state = 'done', result = ?, updated = ? WHERE id = ?",
                       (json.dumps(result), _now_text(), ecr_id))
    late = " (late)" if row["state"] == EXPIRED else ""
    text = f"ECR sale #{ecr_id} done on {tid}{late}: {result['rc']} {result['text']}".strip()
    body = {"ecr_id": ecr_id, "tid": tid, "state": DONE, "text": text}
    if result["stan"]:
        body["stan"] = result["stan"]
    event(connection, body)
