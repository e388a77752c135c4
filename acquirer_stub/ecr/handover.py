"""The virtual-ECR queue's hand-over rules over `ecr_requests` (acquirer_stub.store.ecr); callers hold the write
transaction.

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

from acquirer_stub.store import ecr as store
from acquirer_stub.store import events
from acquirer_stub.store.ecr import EcrRequest
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


def _event(connection: sqlite3.Connection, body: dict[str, Any]) -> None:
    events.record(connection, "ecr", body)


def overdue(connection: sqlite3.Connection, now: float | None = None) -> bool:
    """Whether `expire_overdue` has anything to do (a read, so a page view takes no write lock for nothing)."""
    return store.any_overdue(connection, time.time() if now is None else now)


def expire_overdue(connection: sqlite3.Connection, now: float | None = None) -> None:
    """Lapsed offers back to pending; taken sales past their deadline to expired (shown as failed)."""
    now = time.time() if now is None else now
    changed = _now_text()
    for sale in store.lapsed_offers(connection, now):
        store.pending_again(connection, sale.id, changed)
        text = f"ECR sale #{sale.id}: {sale.tid} did not take the offer in time; pending again"
        _event(connection, {"ecr_id": sale.id, "tid": sale.tid, "state": PENDING, "text": text})
    for sale in store.past_deadline(connection, now):
        text = (f"no result from {sale.tid} in time: the sale may have run, check its transactions before sending "
                "it again")
        store.finished(connection, sale.id, EXPIRED, json.dumps({"text": text}), changed)
        _event(connection, {"ecr_id": sale.id, "tid": sale.tid, "state": EXPIRED,
                            "text": f"ECR sale #{sale.id}: {text}"})


def offer(connection: sqlite3.Connection, tid: str, *, lease: float = LEASE_SECONDS,
          now: float | None = None) -> EcrRequest | None:
    """Offer `tid` its oldest sale not yet taken (again, with a new token, if an earlier offer went unanswered)."""
    now = time.time() if now is None else now
    expire_overdue(connection, now)
    sale = store.oldest_untaken(connection, tid)
    if sale is None:
        return None
    store.offered(connection, sale.id, secrets.token_hex(16), now + lease, _now_text())
    again = " again" if sale.state == OFFERED else ""
    _event(connection, {"ecr_id": sale.id, "tid": tid, "state": OFFERED,
                        "text": f"ECR sale #{sale.id} offered to {tid}{again}"})
    return store.find(connection, sale.id)


def _own(connection: sqlite3.Connection, tid: str, ecr_id: int) -> EcrRequest:
    if not 0 < ecr_id <= MAX_ROW_ID:  # SQLite cannot even compare a larger number
        raise Refused(404, "no such ECR request for this terminal")
    sale = store.find_of(connection, ecr_id, tid)
    if sale is None:
        raise Refused(404, "no such ECR request for this terminal")
    return sale


def accept(connection: sqlite3.Connection, tid: str, ecr_id: int, token: str, seconds: int, *,
           now: float | None = None) -> None:
    """Hand the sale over to `tid` for its current offer; the same acceptance again is answered the same way."""
    now = time.time() if now is None else now
    expire_overdue(connection, now)
    sale = _own(connection, tid, ecr_id)
    if sale.offer is None or not secrets.compare_digest(sale.offer, token):
        raise Refused(409, "this offer has lapsed: poll /api/v1/ecr/next again")
    if sale.state == TAKEN:
        return  # a retry after a lost answer: it is this terminal's already
    if sale.state != OFFERED:
        raise Refused(409, f"this sale is {sale.state}: it cannot be taken")
    store.taken(connection, ecr_id, now + seconds, _now_text())
    _event(connection, {"ecr_id": ecr_id, "tid": tid, "state": TAKEN, "text": f"ECR sale #{ecr_id} taken by {tid}"})


def finish(connection: sqlite3.Connection, tid: str, ecr_id: int, result: dict[str, Any], *,
           now: float | None = None) -> None:
    """Record the terminal's result of a sale it took (even after it was shown expired); the same result again
    is answered the same way, a different one is refused."""
    expire_overdue(connection, now)
    sale = _own(connection, tid, ecr_id)
    if sale.state == DONE:
        if sale.result is not None and json.loads(sale.result) == result:
            return
        raise Refused(409, "this request already has a different result")
    if sale.state not in (TAKEN, EXPIRED):
        raise Refused(409, "this sale was not handed over: accept its offer first")
    store.finished(connection, ecr_id, DONE, json.dumps(result), _now_text())
    late = " (late)" if sale.state == EXPIRED else ""
    text = f"ECR sale #{ecr_id} done on {tid}{late}: {result['rc']} {result['text']}".strip()
    body = {"ecr_id": ecr_id, "tid": tid, "state": DONE, "text": text}
    if result["stan"]:
        body["stan"] = result["stan"]
    _event(connection, body)
