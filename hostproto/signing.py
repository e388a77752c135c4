"""HMAC-SHA256 request signing between a terminal and the acquirer (acquirer.md §12).

The signature covers the method, the path, the timestamp, the nonce and a hash of the body, so a captured
request can be neither altered, nor sent to another endpoint, nor replayed: the timestamp bounds how long
the host must remember nonces. A retransmission is a new signature (new timestamp and nonce) over the
same body; the host's idempotency key, not the nonce, makes it harmless.

String to sign (UTF-8, "\\n"-separated, no trailing newline)::

    METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TID",
    "HEADER_TIMESTAMP",
    "SignatureError",
    "Verified",
    "compute_signature",
    "new_nonce",
    "sign",
    "string_to_sign",
    "verify",
]

HEADER_TID = "X-Terminal-Id"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
DEFAULT_WINDOW_SECONDS = 300

_TID = re.compile(r"[0-9A-Za-z]{8}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(Exception):
    """A request the host must refuse before reading its body; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str, *, tid: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # missing_header, malformed_header, unknown_terminal, bad_signature, clock_skew
        self.message = message
        self.tid = tid


@dataclass(frozen=True)
class Verified:
    """Who sent a request whose signature checked out, and the values the host needs for replay checks."""

    tid: str
    timestamp: int
    nonce: str


def new_nonce() -> str:
    return secrets.token_hex(16)


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join((method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest())).encode()


def compute_signature(key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(key, string_to_sign(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def sign(key: bytes, tid: str, method: str, path: str, body: bytes, *, now: float,
         nonce: str | None = None) -> dict[str, str]:
    """The four headers a terminal sends with `body`; `now` is passed in so clocks stay testable."""
    timestamp = str(int(now))
    nonce = new_nonce() if nonce is None else nonce
    return {
        HEADER_TID: tid,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: compute_signature(key, method, path, timestamp, nonce, body),
    }


def verify(headers: Mapping[str, str], method: str, path: str, body: bytes, *, keys: Mapping[str, bytes],
           now: float, window: int = DEFAULT_WINDOW_SECONDS) -> Verified:
    """Check the signature (constant time), then the clock; raises SignatureError. Nonce reuse is the
    caller's check, because only the caller has somewhere to remember nonces."""
    values = {}
    for name in (HEADER_TID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE):
        value = headers.get(name)
        if not value:
            raise SignatureError("missing_header", f"missing {name} header")
        values[name] = value
    tid = values[HEADER_TID]
    if not _TID.fullmatch(tid):
        raise SignatureError("malformed_header", f"{HEADER_TID} must be 8 letters or digits")
    for name, pattern, what in ((HEADER_TIMESTAMP, _TIMESTAMP, "unix seconds"),
                                (HEADER_NONCE, _NONCE, "32 lowercase hex digits"),
                                (HEADER_SIGNATURE, _SIGNATURE, "64 hex digits")):
        if not pattern.fullmatch(values[name]):
            raise SignatureError("malformed_header", f"{name} must be {what}", tid=tid)
    key = keys.get(tid)
    if key is None:
        raise SignatureError("unknown_terminal", "unknown terminal", tid=tid)
    timestamp, nonce = values[HEADER_TIMESTAMP], values[HEADER_NONCE]
    expected = compute_signature(key, method, path, timestamp, nonce, body)
    if not hmac.compare_digest(expected, values[HEADER_SIGNATURE].lower()):
        raise SignatureError("bad_signature", "signature does not match", tid=tid)
    if abs(now - int(timestamp)) > window:
        raise SignatureError("clock_skew", f"{HEADER_TIMESTAMP} is more than {window} s away from the host's clock",
                             tid=tid)
    return Verified(tid, int(timestamp), nonce)
