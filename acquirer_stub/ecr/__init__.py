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

The terminal is the one that signed the request: a TID in the URL or body is never used to pick a queue (a
``tid`` query parameter other than the caller's is refused with 403), and another terminal's sale is 404.

``GET /api/v1/ecr/next``
    200 ``{"id": 7, "tid": "QP000001", "amount": 1234, "currency": "156", "created": "…", "offer": "<32 hex>",
    "lease_seconds": 30}``: the oldest sale of this terminal not yet taken (amount in fen), now *offered* to
    it with that token for the lease. It is not the terminal's yet: an answer that never arrives loses
    nothing, the next poll offers it again (new token), and an offer not accepted within the lease goes back
    to pending. 204: nothing to do, poll again (every 1–2 s).

``POST /api/v1/ecr/<id>/accept`` with ``{"offer": "<token>", "seconds": 90}``
    200 ``{"id", "state": "taken"}``: the sale is handed over; run it now, and post its result within
    ``seconds`` (1 to 3600), else the dashboard shows it as expired. A taken sale is never offered again, so
    it runs at most once. The same acceptance again answers 200 again (a retry after a lost answer). 409: the
    offer lapsed or is not the current one (do not run it; poll again), or the sale is finished.

``POST /api/v1/ecr/<id>/result`` with ``{"rc": "00", "text": "APPROVED", "stan": "000123"}``
    ``rc``: the outcome's two-character response code (the host's DE39, or the terminal's own decline);
    ``text``: up to 64 characters for the operator; ``stan``: six digits of the financial request the
    sale produced, or null when none was sent (e.g. no card was presented). 200 ``{"id", "state":
    "done"}``: recorded, also after the sale was shown as expired. Sending the same result again answers 200
    again (a retry after a lost answer); a different result for a finished request, or a result for a request
    not handed over, answers 409; a request of another terminal or an unknown id answers 404; a malformed
    body answers 400.

The states and their events are `acquirer_stub.ecr.handover`.
"""

from __future__ import annotations

import datetime
import re
import sqlite3
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from acquirer_stub.api import security
from acquirer_stub.ecr import handover
from acquirer_stub.store import terminals
from acquirer_stub.store.db import get_db, transaction
from acquirer_stub.web import csrf

bp = Blueprint("ecr", __name__, url_prefix="/api/v1/ecr")
csrf.exempt(bp)

CURRENCY_CNY = "156"
MAX_TEXT = 64
_RC = re.compile(r"[0-9A-Z]{2}")
_STAN = re.compile(r"[0-9]{6}")
_OFFER = re.compile(r"[0-9a-f]{32}")


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@bp.errorhandler(security.ApiError)
def _refused(error: security.ApiError) -> Response:
    return error.response()


@bp.before_request
def _authenticate() -> None:
    """The same check as every /api/v1 call (signature, clock, nonce, active terminal), before the body is read."""
    g.caller = security.authenticate(get_db())


def _spend(connection: sqlite3.Connection) -> None:
    """Inside the request's transaction: the nonce is used up, and a poll counts as the terminal being seen."""
    terminals.seen(connection, g.caller.tid, _now_text())  # first, as the terminal API does (service.open_request)
    security.remember_nonce(connection, g.caller)


@bp.get("/next")
def next_sale() -> Response:
    if any(tid != g.caller.tid for tid in request.args.getlist("tid")):
        return _error(403, "a terminal polls for its own sales only (the signature names it)")
    connection = get_db()
    lease = float(current_app.config.get("ECR_LEASE_SECONDS", handover.LEASE_SECONDS))
    with transaction(connection):  # BEGIN IMMEDIATE: two polls cannot take the same row
        _spend(connection)
        sale = handover.offer(connection, g.caller.tid, lease=lease)
    if sale is None:
        return Response(status=204)
    return jsonify(id=sale.id, tid=sale.tid, amount=sale.amount, currency=CURRENCY_CNY, created=sale.created,
                   offer=sale.offer, lease_seconds=lease)


@bp.post("/<int:ecr_id>/accept")
def accept(ecr_id: int) -> Response:
    data = request.get_json(silent=True)
    token, seconds = (data.get("offer"), data.get("seconds")) if isinstance(data, dict) else (None, None)
    if not isinstance(token, str) or not _OFFER.fullmatch(token):
        return _error(400, "offer: the token of the poll's answer")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= handover.MAX_RUN_SECONDS:
        return _error(400, f"seconds: how long the sale may take, 1 to {handover.MAX_RUN_SECONDS}")
    connection = get_db()
    with transaction(connection):  # a refusal commits too: its nonce is spent, lapsed offers are swept
        _spend(connection)
        try:
            handover.accept(connection, g.caller.tid, ecr_id, token, seconds)
        except handover.Refused as refused:
            return _error(refused.status, refused.message)
    return jsonify(id=ecr_id, state=handover.TAKEN)


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
        try:
            handover.finish(connection, g.caller.tid, ecr_id, parsed)
        except handover.Refused as refused:
            return _error(refused.status, refused.message)
    return jsonify(id=ecr_id, state=handover.DONE)
