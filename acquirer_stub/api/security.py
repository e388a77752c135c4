"""Who is calling: the request signature, nonce replay and the terminal's registration, checked before the
body is even parsed (acquirer.md §8 step 1), so a forged request costs the host no parsing and leaves no trace
but a log line with its TID."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request

from acquirer_stub.store import nonces, terminals
from hostproto import signing


class ApiError(Exception):
    """An HTTP error answer of the API; nothing of the request has been stored when it is raised."""

    def __init__(self, status: int, error: str, **details: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = {k: v for k, v in details.items() if v is not None}

    def response(self) -> Response:
        body = json.dumps({"error": self.error, **self.details}, ensure_ascii=False, separators=(",", ":"))
        return Response(body, status=self.status, mimetype="application/json")


@dataclass(frozen=True)
class Caller:
    """A terminal whose signature checked out: what the request's transaction needs to record."""

    tid: str
    timestamp: int
    nonce: str
    received: float  # host clock (unix seconds) when the request was checked


def _refuse(status: int, reason: str, message: str, tid: str | None, **details: Any) -> ApiError:
    # the TID for whoever investigates, never the body (it may hold a PAN)
    current_app.logger.warning("api: %s %s refused (%s) for terminal %r", request.method, request.path, reason,
                               (tid or "")[:16])
    return ApiError(status, message, reason=reason, **details)


def authenticate(connection: sqlite3.Connection) -> Caller:
    """Verify the signature over the raw body, refuse a nonce already used, and require an active terminal.

    The body is at most `limits.API_BODY_BYTES` (set for /api/v1 before any view runs), so reading it is bounded.
    """
    body = request.get_data(cache=True)
    now = time.time()
    window = int(current_app.config["SIGNATURE_WINDOW_SECONDS"])
    try:
        # the path as the terminal addressed it, even if the app is mounted below a prefix
        verified = signing.verify(request.headers, request.method, request.script_root + request.path, body,
                                  keys=current_app.config["KEYS"].terminal_keys, now=now, window=window)
    except signing.SignatureError as error:
        tid = error.tid or request.headers.get(signing.HEADER_TID)
        rc = "97" if error.reason == "unknown_terminal" else None
        host_time = int(now) if error.reason == "clock_skew" else None
        raise _refuse(401, error.reason, error.message, tid, rc=rc, host_time=host_time) from None
    status, spent = terminals.admission(connection, verified.tid, verified.nonce)
    if spent:
        raise _refuse(401, "replayed_nonce", "nonce already used", verified.tid)
    if status is None:
        raise _refuse(401, "unknown_terminal", "unknown terminal", verified.tid, rc="97")
    if status != "active":
        raise _refuse(403, "terminal_inactive", "terminal inactive", verified.tid, rc="58")
    return Caller(verified.tid, verified.timestamp, verified.nonce, now)


def remember_nonce(connection: sqlite3.Connection, caller: Caller) -> None:
    """Inside the request's write transaction, so a nonce is spent exactly when the request had an effect.

    A nonce only needs remembering while its timestamp is inside the window; older rows go at the same time.
    """
    window = int(current_app.config["SIGNATURE_WINDOW_SECONDS"])
    if not nonces.spend(connection, caller.tid, caller.nonce, float(caller.timestamp),
                        forget_before=caller.received - window):  # the same request raced itself past the check
        raise _refuse(401, "replayed_nonce", "nonce already used", caller.tid)
