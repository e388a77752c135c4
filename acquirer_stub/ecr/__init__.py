"""The virtual ECR: an operator's sale on the dashboard reaches a terminal, which polls the host for it.

A real electronic cash register pushes the amount to the POS over a local link; here the "register" is
the dashboard page /dashboard/ecr, and the terminal (which may sit behind NAT) pulls work instead of
accepting connections. The protocol, under /api/v1/ecr:

Every request is authenticated exactly like the rest of /api/v1 (`acquirer_stub.api.security` over
`hostproto.signing`): headers ``X-Terminal-Id``, ``X-Timestamp`` (unix seconds, within 300 s of the host's
clock), ``X-Nonce`` (32 lowercase hex digits, never reused) and ``X-Signature`` = hex HMAC-SHA256(terminal
key, ``METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nhex(SHA-256(body))``), where PATH is the request path without the
query string and the body of a GET is empty. A refusal answers 401 ``{"error", "reason"}`` (hostproto's
reason or ``replayed_nonce``), or 403 for an inactive terminal. An accepted call spends its nonce and
updates the terminal's last-seen time, so polling doubles as a heartbeat.

``GET /api/v1/ecr/next?tid=QP000001``
    200 ``{"id": 7, "tid": "QP000001", "amount": 1234, "currency": "156", "created": "…"}``: the
    oldest pending sale for this terminal (amount in fen). It is now *taken* and is never handed out
    again, so two polls cannot run the same sale twice. 204: nothing to do, poll again (every 1–2 s).
    ``tid`` is optional and must equal ``X-Terminal-Id`` (403 otherwise): a terminal only sees its own.

``POST /api/v1/ecr/<id>/result`` with ``{"rc": "00", "text": "APPROVED", "stan": "000123"}``
    ``rc``: the outcome's two-character response code (the host's DE39, or the terminal's own decline);
    ``text``: up to 64 characters for the operator; ``stan``: six digits of the financial request the
    sale produced, or null when none was sent (e.g. no card was presented). 200 ``{"id", "state":
    "done"}``: recorded. Sending the same result again answers 200 again (a retry after a lost answer);
    a different result for a finished request, or a result for a request not taken, answers 409; a
    request of another terminal or an unknown id answers 404; a malformed body answers 400.

Each state change writes an `events` row (kind "ecr") in the same transaction, which is how the ECR page
shows state and result live.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from acquirer_stub.api import security
from acquirer_stub.app import get_db
from acquirer_stub.store.db import transaction
from acquirer_stub.web import csrf

bp = Blueprint("ecr", __name__, url_prefix="/api/v1/ecr")
csrf.exempt(bp)

CURRENCY_CNY = "156"
MAX_TEXT = 64
_RC = re.compile(r"[0-9A-Z]{2}")
_STAN = re.compile(r"[0-9]{6}")


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _event(connection: sqlite3.Connection, body: dict[str, Any]) -> None:
    connection.execute("INSERT INTO events (created, kind, body) VALUES (?, 'ecr', ?)",
                       (_now_text(), json.dumps(body, ensure_ascii=False)))


@bp.errorhandler(security.ApiError)
def _refused(error: security.ApiError) -> Response:
    return error.response()


@bp.before_request
def _authenticate() -> None:
    """The same check as every /api/v1 call (signature, clock, nonce, active terminal), before the body is read."""
    g.caller = security.authenticate(get_db())


def _spend(connection: sqlite3.Connection) -> None:
    """Inside the request's transaction: the nonce is used up, and a poll counts as the terminal being seen."""
    security.remember_nonce(connection, g.caller)
    connection.execute("UPDATE terminals SET last_seen = ? WHERE tid = ?", (_now_text(), g.caller.tid))


@bp.get("/next")
def next_sale() -> Response:
    tid = request.args.get("tid", g.caller.tid)
    if tid != g.caller.tid:
        return _error(403, "a terminal polls for its own sales only (tid must equal X-Terminal-Id)")
    connection = get_db()
    with transaction(connection):  # BEGIN IMMEDIATE: two polls cannot take the same row
        _spend(connection)
        row = connection.execute(
            "SELECT * FROM ecr_requests WHERE tid = ? AND state = 'pending' ORDER BY id LIMIT 1", (tid,),
        ).fetchone()
        if row is None:
            return Response(status=204)
        connection.execute("UPDATE ecr_requests SET state = 'taken', updated = ? WHERE id = ?",
                           (_now_text(), row["id"]))
        _event(connection, {"ecr_id": row["id"], "tid": tid, "state": "taken",
                            "text": f"ECR sale #{row['id']} taken by {tid}"})
    return jsonify(id=row["id"], tid=tid, amount=row["amount"], currency=CURRENCY_CNY, created=row["created"])


def _parse_result(data: Any) -> dict[str, Any] | str:
    """The result object, or what is wrong with it (never echoing a value)."""
    if not isinstance(data, dict):
        return "expected a JSON object"
    rc, text, stan = data.get("rc"), data.get("text", ""), data.get("stan")
    if not isinstance(rc, str) or not _RC.fullmatch(rc):
        return "rc: two digits or capital letters"
    if not isinstance(text, str) or len(text) > MAX_TEXT or not text.isprintable():
        return f"text: printable text of at most {MAX_TEXT} characters"
    if stan is not None and (not isinstance(stan, str) or not _STAN.fullmatch(stan)):
        return "stan: six digits, or null"
    return {"rc": rc, "text": text, "stan": stan}


@bp.post("/<int:ecr_id>/result")
def result(ecr_id: int) -> Response:
    parsed = _parse_result(request.get_json(silent=True))
    if isinstance(parsed, str):
        return _error(400, parsed)
    connection = get_db()
    with transaction(connection):
        _spend(connection)
        row = connection.execute("SELECT * FROM ecr_requests WHERE id = ? AND tid = ?",
                                 (ecr_id, g.caller.tid)).fetchone()
        if row is None:
            return _error(404, "no such ECR request for this terminal")
        if row["state"] == "done":
            if json.loads(row["result"]) == parsed:
                return jsonify(id=ecr_id, state="done")
            return _error(409, "this request already has a different result")
        if row["state"] != "taken":
            return _error(409, "this request was not taken yet: GET /api/v1/ecr/next first")
        connection.execute("UPDATE ecr_requests SET state = 'done', result = ?, updated = ? WHERE id = ?",
                           (json.dumps(parsed), _now_text(), ecr_id))
        event = {"ecr_id": ecr_id, "tid": g.caller.tid, "state": "done",
                 "text": f"ECR sale #{ecr_id} done on {g.caller.tid}: {parsed['rc']} {parsed['text']}".strip()}
        if parsed["stan"]:
            event["stan"] = parsed["stan"]
        _event(connection, event)
    return jsonify(id=ecr_id, state="done")
