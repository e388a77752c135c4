"""The availability attack of issue #11 (§5) against a served acquirer, and a terminal probing it meanwhile.

The attack: live-feed streams logged in as the operator, stalled connections (half-sent headers, and uploads that
claim 100 MB and send 1 KiB), and a login flood on /login with the operator's name and wrong passwords. Each part
runs on one thread of its own until `stop()`: the feeds and the stalled connections are a selector loop each (few
threads, so the probe measured beside them is not slowed down by this process), the login flood a few clients
sending back to back. A connection the server closes or refuses is opened again after `REOPEN_SECONDS`, so the
attack keeps its size. Every socket is closed when the attack stops.

Used by tests/security/test_availability_attack.py (the terminal API must keep answering) and by
bench/availability.py (how fast it answers).
"""

from __future__ import annotations

import collections
import datetime
import http.client
import selectors
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from posdemo.story import csrf_token
from terminal.host.client import HostClient

HOST = "127.0.0.1"
REOPEN_SECONDS = 1.0
CONNECT_SECONDS = 5.0
UPLOAD_CLAIM = 100 * 1024 * 1024


def _set_cookie(answer: http.client.HTTPResponse) -> str:
    header = answer.getheader("Set-Cookie") or ""
    return header.split(";", 1)[0]


def log_in(port: int, username: str, password: str) -> str:
    """The login form as a browser sends it; returns the session cookie (``session=…``) of the logged-in user."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/login")
        page = connection.getresponse()
        html = page.read().decode()
        form = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": csrf_token(html)})
        connection.request("POST", "/login", body=form, headers={
            "Cookie": _set_cookie(page), "Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        answer.read()
        if answer.status != 302 or not _set_cookie(answer):
            raise AssertionError(f"login as {username} answered {answer.status}")
        return _set_cookie(answer)
    finally:
        connection.close()


@dataclass
class Tally:
    """What the attack saw, by outcome (e.g. ``feed 200``, ``stalled closed``, ``login 503``); thread-safe."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    most_stalled_open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def stalled_open(self, n: int) -> None:
        with self._lock:
            self.most_stalled_open = max(self.most_stalled_open, n)

    def __getitem__(self, what: str) -> int:
        with self._lock:
            return self.counts[what]

    def snapshot(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(self.counts)

    def answered_logins(self) -> int:
        """Login requests the server answered, whatever the answer (a page, 503, a rate limit)."""
        with self._lock:
            return sum(n for what, n in self.counts.items() if what.startswith("login ") and what[-3:].isdigit())


def _status(data: bytes) -> str:
    parts = data.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) > 1 and parts[0].startswith(b"HTTP/") else "?"


class _Sockets:
    """A set of raw client connections, each opened with its request bytes, watched by one selector loop."""

    def __init__(self, port: int, requests: list[bytes], name: str, tally: Tally, stop: threading.Event) -> None:
        self._port, self._requests, self._name, self._tally, self._stop = port, requests, name, tally, stop
        self._selector = selectors.DefaultSelector()
        self._open: dict[int, socket.socket] = {}  # slot → socket
        self._answered: set[int] = set()
        self.opened = threading.Event()  # every slot opened once

    def _connect(self, slot: int) -> None:
        sock = socket.create_connection((HOST, self._port), timeout=CONNECT_SECONDS)
        sock.sendall(self._requests[slot])
        sock.setblocking(False)
        self._open[slot] = sock
        self._answered.discard(slot)
        self._selector.register(sock, selectors.EVENT_READ, slot)

    def _drop(self, slot: int) -> None:
        sock = self._open.pop(slot)
        self._selector.unregister(sock)
        sock.close()

    def on_data(self, slot: int, data: bytes) -> bool:
        """The server sent something: count the answer's status once; False to close the connection."""
        if slot not in self._answered:
            self._answered.add(slot)
            status = _status(data)
            self._tally.add(f"{self._name} {status}")
            return status == "200"
        return True

    def run(self) -> None:
        due = dict.fromkeys(range(len(self._requests)), 0.0)  # slot → when to (re)open it
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                for slot in [s for s, when in due.items() if when <= now]:
                    del due[slot]
                    try:
                        self._connect(slot)
                        self._tally.add(f"{self._name} opened")
                    except OSError:
                        self._tally.add(f"{self._name} connect failed")
                        due[slot] = now + REOPEN_SECONDS
                if not due:
                    self.opened.set()
                if self._name == "stalled":
                    self._tally.stalled_open(len(self._open))
                for key, _ in self._selector.select(timeout=0.1):
                    slot = key.data
                    try:
                        data = self._open[slot].recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._tally.add(f"{self._name} closed by the server")
                    if not data or not self.on_data(slot, data):
                        self._drop(slot)
                        due[slot] = time.monotonic() + REOPEN_SECONDS
        finally:
            for slot in list(self._open):
                self._drop(slot)
            self._selector.close()


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def feed_requests(cookie: str, count: int) -> list[bytes]:
    return [_request("GET", "/dashboard/feed", {"Cookie": cookie, "Accept": "text/event-stream"})] * count


def stalled_requests(count: int) -> list[bytes]:
    """Half of them stop in the middle of a header; the other half claim a 100 MB JSON body and send 1 KiB of it."""
    half_sent = f"GET /dashboard/ HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(UPLOAD_CLAIM)}
    upload = _request("POST", "/tsp/v1/sessions", headers, b'{"username": "' + b"a" * 1024)
    return [half_sent if n % 2 == 0 else upload for n in range(count)]


def _login_flood(port: int, username: str, tally: Tally, stop: threading.Event) -> None:
    """One client: fetch the form, then send wrong passwords for `username` back to back until stopped."""
    while not stop.is_set():
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            connection.request("GET", "/login")
            page = connection.getresponse()
            html = page.read().decode(errors="replace")
            if page.status != 200:
                tally.add(f"login form {page.status}")
                continue
            form = urllib.parse.urlencode({"username": username, "password": "not-the-password",
                                           "csrf_token": csrf_token(html)})
            headers = {"Cookie": _set_cookie(page), "Content-Type": "application/x-www-form-urlencoded"}
            while not stop.is_set():
                connection.request("POST", "/login", body=form, headers=headers)
                answer = connection.getresponse()
                answer.read()
                tally.add(f"login {answer.status}")
                if answer.getheader("Connection", "").lower() == "close":
                    break
        except (OSError, http.client.HTTPException):
            tally.add("login connection lost")
        finally:
            connection.close()


class Siege:
    """The attack, started by `start()` (or `with`), stopped by `stop()`; `tally` says what it saw."""

    def __init__(self, port: int, operator_cookie: str, operator_name: str, *, feeds: int = 50, stalled: int = 200,
                 login_clients: int = 4) -> None:
        self.tally = Tally()
        self._stop = threading.Event()
        self._feeds = _Sockets(port, feed_requests(operator_cookie, feeds), "feed", self.tally, self._stop)
        self._stalled = _Sockets(port, stalled_requests(stalled), "stalled", self.tally, self._stop)
        self._threads = [threading.Thread(target=self._feeds.run, name="siege-feeds", daemon=True),
                         threading.Thread(target=self._stalled.run, name="siege-stalled", daemon=True)]
        self._threads += [threading.Thread(target=_login_flood, args=(port, operator_name, self.tally, self._stop),
                                           name=f"siege-login-{n}", daemon=True) for n in range(login_clients)]

    def start(self, *, settle_seconds: float = 30.0) -> None:
        """Start every part; return once every feed and stalled connection has been opened at least once."""
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + settle_seconds
        for part in (self._feeds, self._stalled):
            if not part.opened.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise AssertionError(f"the attack did not open its connections: {self.tally.snapshot()}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=15)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"attack threads still running: {alive}"

    def __enter__(self) -> Siege:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class Probe:
    """A terminal sending signed echoes (0800, a durable write like every accepted request) one after another."""

    client: HostClient
    stan: int = 0
    latencies: list[float] = field(default_factory=list)

    def echo(self) -> dict[str, object]:
        self.stan = self.stan % 999_999 + 1
        body = {"mti": "0800", "tid": self.client.tid, "stan": f"{self.stan:06d}",
                "local_date": f"{datetime.date.today():%m%d}"}
        started = time.perf_counter()
        answer = self.client.post("/api/v1/echo", body)
        self.latencies.append(time.perf_counter() - started)
        return answer

    def run(self, count: int, *, pause: float = 0.0, check: Callable[[dict[str, object]], None] | None = None) -> None:
        for _ in range(count):
            answer = self.echo()
            if check is not None:
                check(answer)
            if pause:
                time.sleep(pause)

