"""How the acquirer is served: waitress, with its threads shared out so that the terminal API always has its own.

What waitress does (3.0, read in its source): one I/O thread reads every request whole — headers, then the body
(in memory up to 512 KiB, then a temporary file) — before a worker thread sees it. So a slow, half-sent or stalled
request costs a connection slot, never a worker thread: it is bounded by `connection_limit` (beyond it waitress
stops accepting, for everyone), by `channel_timeout` (a connection silent that long with no request running is
closed, checked every `cleanup_interval`) and by the size limits (a Content-Length over the body limit is answered
413 from the headers alone, nothing read). What holds a worker thread is the app running: a live-feed stream for
its whole life, a login for its password hash. With `channel_request_lookahead` the I/O thread keeps reading a
connection whose request runs, so it sees a browser go away and the stream ends at its next poll.

`Admission` gives those their own budgets: at most `feed_streams` live feeds and `web_threads` other non-API
requests run at once, and one more is answered at once with 503 and Retry-After. Waitress has `api_threads` more
threads than those budgets, so the terminal API (/api/v1) and /health always find a free one. Pages, logins and
the token service run on a pool of their own at a lower CPU priority (Linux: per-thread nice), so a login flood's
password hashes do not slow the API down either; they get what CPU the API leaves.

That is not enough against a login flood: its requests are cheap (a refused attempt is a read), but a
client that sends them back to back keeps the process's interpreter lock busy, and the API's requests wait for it
(p99 28 × idle, bench/availability.py). So `acquirer-stub serve` splits the app over two listeners in two
processes (`acquirer_stub.webprocess`): the terminal API on one, pages, logins, feeds and the token service on
the other, niced as a whole. A listener answers what it does not serve with 404 and where to go instead; /health
answers on both. `serves="all"` keeps everything on one listener, for tests and tools in one process.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from acquirer_stub import limits

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

FEED_PATH = "/dashboard/feed"
API_PREFIX = "/api/v1/"
HEALTH_PATH = "/health"
SERVES = {"api": ("api", "health"), "web": ("web", "feed", "health"), "all": ("api", "web", "feed", "health")}
"""What each kind of listener answers (kinds: see `request_kind`)."""
OPEN_FILES_MARGIN = 256
"""File descriptors beside the connections: SQLite files (3 per connection in WAL mode), logs, temporary files."""


@dataclass(frozen=True)
class Serving:
    """The serving limits; the defaults are what `acquirer-stub serve` uses (tests may shorten the timeouts)."""

    api_threads: int = 8  # as many as the whole pool had before: the host benchmark's 50 terminals need no more
    web_threads: int = 6  # pages, logins, token service and static files at once (a browser opens up to 6)
    web_niceness: int = 10  # their CPU priority below the API's (0: the same)
    feed_streams: int = 8  # live feeds at once (a dashboard tab holds one)
    retry_after_seconds: int = 5  # in the 503 beyond a budget
    connection_limit: int = 1000  # open connections, stalled ones included; more than any counter has terminals
    channel_timeout: int = 10  # seconds a connection may stay silent before waitress closes it
    cleanup_interval: int = 2  # seconds between waitress's sweeps for silent connections

    def threads(self, serves: str) -> int:
        """Waitress's worker threads for a listener that `serves` "api", "web" or "all"."""
        budgets = self.web_threads + self.feed_streams
        return {"api": self.api_threads, "web": budgets + HEALTH_THREADS, "all": self.api_threads + budgets}[serves]


HEALTH_THREADS = 1
"""A web listener's thread beyond its budgets, so /health answers while pages and feeds take them all."""


def request_kind(path: str) -> str:
    """Which budget a request draws on: "api" or "health" (none, always served), "feed" or "web"."""
    if path.startswith(API_PREFIX):
        return "api"
    if path == HEALTH_PATH:
        return "health"
    return "feed" if path == FEED_PATH else "web"


class _Budget:
    def __init__(self, size: int, what: str, retry_after: int) -> None:
        self._slots = threading.BoundedSemaphore(size)
        self.busy_body = json.dumps({"error": f"busy: at most {size} {what} at once; retry in {retry_after} s"}
                                    ).encode()
        self.retry_after = retry_after

    def try_take(self) -> bool:
        return self._slots.acquire(blocking=False)

    def give_back(self) -> None:
        self._slots.release()

    def busy(self, start_response: Callable[..., Any]) -> list[bytes]:
        start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(self.busy_body))),
            ("Retry-After", str(self.retry_after)), ("Cache-Control", "no-store"),
        ])
        return [self.busy_body]


class _Releasing:
    """The app's response, giving its budget slot back when the server closes it (after the last byte was sent or
    the client went away): a stream holds its slot as long as it holds its thread."""

    def __init__(self, body: Iterable[bytes], release: Callable[[], None]) -> None:
        self._body = body
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def lower_priority(niceness: int) -> None:
    """Run this thread (only: on Linux, nice is per thread) `niceness` steps below the process."""
    if niceness and sys.platform == "linux":
        lower = min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness)  # 19: the lowest there is
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), lower)


def _not_here(start_response: Callable[..., Any], elsewhere: str) -> list[bytes]:
    body = json.dumps({"error": f"not served on this listener: {elsewhere}"}).encode()
    start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                     ("Cache-Control", "no-store")])
    return [body]


class Admission:
    """WSGI middleware: what this listener does not serve, 404; the API and /health straight through; a feed or
    web request only while its budget has a free slot, else 503 with Retry-After. Where the API shares the
    listener ("all"), web requests run on the low-priority pool."""

    def __init__(self, app: WSGIApp, serving: Serving, serves: str = "all",
                 elsewhere: str | Callable[[], str] = "") -> None:
        self.app = app
        self._serves = SERVES[serves]
        self._elsewhere = elsewhere
        self._feed = _Budget(serving.feed_streams, "live-feed streams", serving.retry_after_seconds)
        self._web = _Budget(serving.web_threads, "page or token-service requests", serving.retry_after_seconds)
        self._web_pool = ThreadPoolExecutor(serving.web_threads, "acquirer-web", initializer=lower_priority,
                                            initargs=(serving.web_niceness,)) if serves == "all" else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        kind = request_kind(environ.get("PATH_INFO", ""))
        if kind not in self._serves:
            where = self._elsewhere() if callable(self._elsewhere) else self._elsewhere
            return _not_here(start_response, where or "see `acquirer-stub serve --help`")
        if kind in ("api", "health"):
            return self.app(environ, start_response)
        budget = self._feed if kind == "feed" else self._web
        if not budget.try_take():
            return budget.busy(start_response)
        try:
            if kind == "web" and self._web_pool is not None:
                # the waitress thread waits: it is one of the budget's, and the pool has one thread per slot
                body = self._web_pool.submit(self.app, environ, start_response).result()
            else:
                body = self.app(environ, start_response)
        except BaseException:
            budget.give_back()
            raise
        return _Releasing(body, budget.give_back)


def _open_files_for(connections: int) -> int:
    """Raise the soft limit on open files to what `connections` need (up to the hard limit); the connection limit
    that fits in what the system allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OPEN_FILES_MARGIN
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - OPEN_FILES_MARGIN))


def create_server(app: WSGIApp, host: str, port: int, serving: Serving | None = None, *,
                  ident: str = "acquirer-stub", serves: str = "all", elsewhere: str | Callable[[], str] = "") -> Any:
    """A waitress server for what `app` `serves` ("api", "web" or "all") on host:port (0: a free port, see
    `effective_port`); `elsewhere` (or what it returns when asked) tells a client where to find what this
    listener does not serve. `run()` serves, `close()` stops."""
    from waitress import create_server as waitress_server

    serving = serving or Serving()
    connection_limit = _open_files_for(serving.connection_limit)
    if connection_limit < serving.connection_limit:
        logging.getLogger(__name__).warning("open-file limit: serving at most %d connections instead of %d",
                                            connection_limit, serving.connection_limit)
    return waitress_server(
        Admission(app, serving, serves, elsewhere), host=host, port=port, ident=ident,
        threads=serving.threads(serves),
        connection_limit=connection_limit,
        channel_timeout=serving.channel_timeout,
        cleanup_interval=serving.cleanup_interval,
        asyncore_use_poll=True,  # select() cannot watch file descriptors above 1023
        channel_request_lookahead=1,  # keep reading while a request runs: a closed tab ends its stream at once
        max_request_header_size=limits.MAX_HEADER_BYTES,
        max_request_body_size=limits.MAX_REQUEST_BYTES + 1,  # waitress refuses a body of this size or more
    )
