"""The live feed: new `events` rows as Server-Sent Events.

The API and the token service write an event in the same database transaction as each decision, so
streaming rows by id never shows a decision that was rolled back, and `Last-Event-ID` on a reconnect
resumes exactly where the browser stopped. Each poll is one short autocommit read on the stream's own
connection: no transaction stays open between polls, so writers are never held up by a watching browser.
Only whitelisted, masked fields leave the server, never an event body as stored.

A stream holds a server thread for its whole life, so it ends after `MAX_SECONDS` (the browser reconnects with
`Last-Event-ID` and loses nothing) and the server runs only a few at once (`acquirer_stub.serving`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from acquirer_stub.dashboard.charts import response_text
from acquirer_stub.dashboard.present import entry_mode, load_json, reason_text, scrub, when, yuan
from acquirer_stub.store import db, ecr, events, transactions
from acquirer_stub.store.ecr import EcrRequest
from acquirer_stub.store.events import Event
from acquirer_stub.store.transactions import Transaction

BATCH = 200
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
MAX_SECONDS = 60.0
MAX_EVENT_ID = 2**63 - 1  # SQLite's largest row id


def event_id(text: str | None) -> int | None:
    """A resume point from the outside (`Last-Event-ID`, `?after=`): None when absent, ValueError when it is not
    an event id (a browser only echoes the ids the feed sent)."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_EVENT_ID:
        raise ValueError("not an event id")
    return int(text)


def latest_event_id(connection: sqlite3.Connection) -> int:
    return events.latest_id(connection)


EVENT_TRANSACTION_KIND = {"authorization": "authorization", "advice": "advice", "reversal": "reversal",
                          "ecr": "authorization"}
"""Events that stand for a transactions row, found by (kind, TID, STAN): the API's bodies carry no row id."""


def _transaction_for(connection: sqlite3.Connection, kind: str, body: dict[str, Any]) -> Transaction | None:
    reference = body.get("transaction_id")
    if isinstance(reference, int):
        return transactions.find(connection, reference)
    transaction_kind = EVENT_TRANSACTION_KIND.get(kind)
    if transaction_kind and isinstance(body.get("tid"), str) and isinstance(body.get("stan"), str):
        return transactions.latest(connection, transaction_kind, body["tid"], body["stan"])
    return None


def transaction_summary(row: Transaction) -> dict[str, Any]:
    """One feed line; the same fields the server-rendered rows show."""
    return {
        "id": row.id, "kind": row.kind, "mti": row.mti, "tid": row.tid, "stan": row.stan, "rrn": row.rrn or "",
        "auth_code": row.auth_code or "",
        "created": when(row.created), "pan_masked": scrub(row.pan_masked), "entry_mode": entry_mode(row.entry_mode),
        "amount": yuan(row.amount), "charged": yuan(row.charged),
        "discount": yuan(row.discount) if row.discount else "",
        "rc": row.rc, "rc_text": response_text(row.rc), "reason": reason_text(row.reason), "issuer": row.issuer or "",
        "latency_ms": None if row.latency_ms is None else round(float(row.latency_ms), 1),
        "atc": row.atc, "url": f"/dashboard/tx/{row.id}",
    }


def ecr_summary(row: EcrRequest) -> dict[str, Any]:
    result = load_json(row.result) or {}
    return {
        "id": row.id, "tid": row.tid, "amount": yuan(row.amount), "state": row.state,
        "rc": str(result.get("rc", "")), "text": scrub(result.get("text", "")), "stan": str(result.get("stan", "")),
        "created": when(row.created), "updated": when(row.updated),
    }


def event_message(connection: sqlite3.Connection, row: Event) -> dict[str, Any]:
    body = load_json(row.body)
    body = body if isinstance(body, dict) else {}
    message: dict[str, Any] = {"id": row.id, "kind": row.kind, "created": when(row.created)}
    transaction = _transaction_for(connection, row.kind, body)
    if transaction is not None:
        message["transaction"] = transaction_summary(transaction)
    if isinstance(body.get("ecr_id"), int):
        request = ecr.find(connection, body["ecr_id"])
        if request is not None:
            message["ecr"] = ecr_summary(request)
    text = str(body.get("text") or body.get("summary") or body.get("reason") or "")
    if "rc" in body and "stan" in body:  # an API message: say which one and how it ended
        text = f"{body.get('tid', '')} {body.get('mti', '')} STAN {body['stan']}: {body['rc']} {text}"
    message["text"] = scrub(text)[:200]
    return message


def format_sse(event_id: int, data: dict[str, Any]) -> str:
    """One SSE frame; JSON has no raw newlines, so a single `data:` line is always enough."""
    return f"id: {event_id}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n"


def stream(
    database: Path,
    after: int | None,
    *,
    poll_seconds: float = POLL_SECONDS,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    max_seconds: float = MAX_SECONDS,
    client_gone: Callable[[], bool] | None = None,
) -> Iterator[str]:
    """Yields frames until the client goes away or `max_seconds` pass (the browser then reconnects).

    A vanished client is noticed when a write fails (the server closes the generator, which runs the
    `finally`) or, under waitress, through its disconnect flag; the heartbeat bounds how long that takes.
    """
    connection = db.connect(database)
    try:
        if after is None:
            after = latest_event_id(connection)
        yield f"retry: 2000\n: feed from event {after}\n\n"
        started = last_write = time.monotonic()
        while True:
            rows = events.after(connection, after, BATCH)
            for row in rows:
                after = row.id
                yield format_sse(row.id, event_message(connection, row))
            now = time.monotonic()
            if rows:
                last_write = now
                continue
            if (client_gone is not None and client_gone()) or now - started >= max_seconds:
                return
            if now - last_write >= heartbeat_seconds:
                yield ": heartbeat\n\n"
                last_write = now
            time.sleep(poll_seconds)
    finally:
        connection.close()
