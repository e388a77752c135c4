"""The terminal's HTTP client for the acquirer's signed JSON API (`/api/v1`, hostproto.signing).

What a caller most needs from a failed request is not *why* it failed but *whether the host may have acted
on it*, because that decides between "try again" and "reverse it" (acquirer.md §10). The exceptions say so:

* `HostUnavailable` with ``maybe_processed = False``: the request never reached the host (connection refused,
  DNS, connect timeout). Nothing happened there; resending is safe and nothing needs reversing.
* `HostTimeout` (``maybe_processed = True``): the request left but no usable answer came back (read timeout,
  connection reset, garbled answer). The host may have decided; a financial request must be reversed.
* `HostUnavailable` with a 5xx ``status`` (``maybe_processed = True``): the stub answers 500 only when its
  transaction rolled back, but a proxy's 502/504, or a failure after the commit while the answer was being
  written, cannot be told apart from it here. A financial caller must treat any 5xx like a timeout; a reversal
  of a sale the host never recorded is harmless (the host leaves a tombstone and answers 00).
* `HostRejected` (4xx): the host refused the request before storing anything (bad field, signature, terminal
  inactive). Nothing to reverse; resending the same bytes will be refused again.

Logging shows a masked summary of each message (STAN, amount, BIN + last 4), never the PAN, track 2 or ICC data.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from emvcore.tags import mask_pan
from hostproto import signing
from hostproto.responses import MessageError

__all__ = ["HostClient", "HostError", "HostRejected", "HostTimeout", "HostUnavailable", "read_answer", "summarize"]

_Answer = TypeVar("_Answer")

log = logging.getLogger("terminal.host")

_SUMMARY_FIELDS = ("mti", "stan", "local_date", "batch", "amount", "reason", "original_stan", "rc", "outcome",
                   "balanced")


class HostError(Exception):
    """Any failure to get an answer; `maybe_processed` tells whether the host may have acted on the request."""

    maybe_processed: bool = False


class HostTimeout(HostError):
    """The request left but no usable answer came back in time: its effect on the host is unknown."""

    maybe_processed = True


class HostUnavailable(HostError):
    """The host could not be reached (status None), or answered 5xx (status set: effect unknown)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.maybe_processed = status is not None


class _NoContent(Exception):
    """204 to a GET: the host has nothing for us (an empty ECR poll); not an error."""


class HostRejected(HostError):
    """4xx: the host refused the request and stored nothing of it."""

    def __init__(self, status: int, error: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {error}")
        self.status = status
        self.error = error
        self.details = dict(details or {})

    @property
    def reason(self) -> str | None:
        """The machine-readable 401/403 reason (bad_signature, clock_skew, …), when the host gave one."""
        value = self.details.get("reason")
        return str(value) if value is not None else None


def summarize(body: Mapping[str, Any]) -> str:
    """A log line's worth of a request or answer that is safe to write anywhere: no PAN, track 2 or ICC data."""
    parts = [f"{name}={body[name]}" for name in _SUMMARY_FIELDS if body.get(name) is not None]
    pan = body.get("pan")
    if isinstance(pan, str):
        parts.append(f"pan={mask_pan(pan)}")
    return " ".join(parts)


def read_answer(parse: Callable[[object], _Answer], answer: Mapping[str, Any], what: str) -> _Answer:
    """`answer` read with a `hostproto.responses` parser; a malformed one is a garbled answer (`HostTimeout`:
    the host may have acted on the request), its error naming the field, never a value."""
    try:
        return parse(answer)
    except MessageError as error:
        log.warning("host: malformed answer to %s (%s)", what, error)
        raise HostTimeout(f"malformed answer to {what}: {error}") from None


class HostClient:
    """Signs and posts one JSON message per call; one short-lived connection each, so that a broken link never
    leaves a half-read answer waiting on a kept-alive socket for the next message."""

    def __init__(self, url: str, tid: str, key: bytes, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("url must be http:// or https:// with a host name")
        self.url = url
        self.tid = tid
        self.timeout = timeout
        self._key = key
        self._clock = clock
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port
        self._prefix = parsed.path.rstrip("/")  # the host signs the full path it was addressed with
        self.clock_offset = 0.0  # host time − our time, learnt from a clock_skew refusal
        self.last_contact: float | None = None  # when (our clock) the host last answered anything at all

    def __repr__(self) -> str:  # never the key
        return f"HostClient({self.url!r}, tid={self.tid!r}, timeout={self.timeout})"

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send `body` to `path` (``/api/v1/...``) and return the answer; raises a `HostError` otherwise.

        A clock_skew refusal stored nothing on the host, so it is retried once with the host's clock.
        """
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            return self._exchange(path, raw, body)
        except HostRejected as refused:
            host_time = refused.details.get("host_time")
            if refused.reason != "clock_skew" or not isinstance(host_time, int):
                raise
            self.clock_offset = host_time - self._clock()
            log.warning("host: clock off by %.0f s, resynchronised and retrying %s", self.clock_offset, path)
            return self._exchange(path, raw, body)

    def get(self, path: str) -> dict[str, Any] | None:
        """Signed GET of `path` (may carry a query string, which the host does not sign); None on 204.

        Only the virtual ECR's poll needs it; a poll is safe to repeat, so a clock_skew refusal is retried
        once with the host's clock, as in `post`.
        """
        try:
            return self._get_once(path)
        except HostRejected as refused:
            host_time = refused.details.get("host_time")
            if refused.reason != "clock_skew" or not isinstance(host_time, int):
                raise
            self.clock_offset = host_time - self._clock()
            log.warning("host: clock off by %.0f s, resynchronised and retrying %s", self.clock_offset, path)
            return self._get_once(path)

    def _get_once(self, path: str) -> dict[str, Any] | None:
        try:
            return self._exchange(path, b"", {}, method="GET")
        except _NoContent:
            return None

    def _connection(self) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _exchange(self, path: str, raw: bytes, body: Mapping[str, Any], *, method: str = "POST") -> dict[str, Any]:
        full = self._prefix + path
        signed_path = full.partition("?")[0]  # the host signs the path without its query string
        headers = signing.sign(self._key, self.tid, method, signed_path, raw, now=self._clock() + self.clock_offset)
        headers.update({"Accept": "application/json", "Connection": "close"})
        if raw:
            headers["Content-Type"] = "application/json"
        summary = summarize(body)
        started = time.perf_counter()
        connection = self._connection()
        try:
            try:
                connection.connect()
            except OSError as error:  # refused, DNS, unreachable, connect timeout: nothing was sent
                log.warning("host: %s not reachable (%s) for %s", self.url, type(error).__name__, summary)
                raise HostUnavailable(f"host not reachable: {type(error).__name__}") from None
            try:
                connection.request(method, full, body=raw or None, headers=headers)
                answer = connection.getresponse()
                status, data = answer.status, answer.read()
                self.last_contact = self._clock()
            except TimeoutError:
                log.warning("host: no answer within %.1f s to %s %s", self.timeout, path, summary)
                raise HostTimeout(f"no answer within {self.timeout} s") from None
            except (OSError, http.client.HTTPException) as error:
                log.warning("host: connection lost (%s) during %s %s", type(error).__name__, path, summary)
                raise HostTimeout(f"connection lost: {type(error).__name__}") from None
        finally:
            connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        decoded = _decode(data)
        if status >= 500:
            log.warning("host: HTTP %d to %s %s after %.0f ms", status, path, summary, elapsed)
            raise HostUnavailable(f"HTTP {status} from the host", status=status)
        if status >= 400:
            error = str(decoded.get("error", "refused")) if decoded is not None else "refused"
            log.warning("host: HTTP %d (%s) to %s %s", status, error, path, summary)
            raise HostRejected(status, error, decoded)
        if status == 204 and method == "GET":
            raise _NoContent
        if status != 200 or decoded is None:
            log.warning("host: unreadable answer (HTTP %d) to %s %s", status, path, summary)
            raise HostTimeout(f"unreadable answer (HTTP {status})")
        log.info("host: %s %s -> %s in %.0f ms", path, summary, summarize(decoded), elapsed)
        return decoded


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
