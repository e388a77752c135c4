"""The availability attack of issue #11 (§5) against a served acquirer, and a terminal probing it meanwhile.

The attack: live-feed streams logged in as the operator, stalled connections (half-sent headers, and uploads that
claim 100 MB and send 1 KiB), and a login flood on /login with the operator's name and wrong passwords, all on the
web listener, plus stalled connections on the terminal API's own listener when its port is given. The feeds and
the stalled connections are a selector loop each (few threads, so the probe measured beside them is not slowed
down by this process); the login flood is a few clients sending back to back in a process of their own, as an
attacker's would be (in this one, their HTTP work would hold the probe's interpreter lock: that measures the
attacker's machine, not the server). A connection the server closes or refuses is opened again after
`REOPEN_SECONDS`, so the attack keeps its size. Every socket is closed when the attack stops.

Used by tests/security/test_availability_attack.py (the terminal API must keep answering) and by
bench/availability.py (how fast it answers).
"""

from __future__ import annotations

import collections
import datetime
import http.client
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
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
REPORT_SECONDS = 0.1
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
    _elsewhere: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def set_elsewhere(self, counts: collections.Counter[str]) -> None:
        """The running totals of the part counted in another process."""
        with self._lock:
            self._elsewhere = collections.Counter(counts)

    def stalled_open(self, n: int) -> None:
        with self._lock:
            self.most_stalled_open = max(self.most_stalled_open, n)

    def __getitem__(self, what: str) -> int:
        with self._lock:
            return self.counts[what]

    def snapshot(self) -> collections.Counter[str]:
        with self._lock:
            return self.counts + self._elsewhere

    def answered_logins(self) -> int:
        """Login requests the server answered, whatever the answer (a page, 503, a rate limit)."""
        return sum(n for what, n in self.snapshot().items() if what.startswith("login ") and what[-3:].isdigit())


def _status(data: bytes) -> str:
    parts = data.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) > 1 and parts[0].startswith(b"HTTP/") else "?"


class _Sockets:
    """A set of raw client connections, each opened to its port with its request bytes, watched by one selector
    loop."""

    def __init__(self, requests: list[tuple[int, bytes]], name: str, tally: Tally, stop: threading.Event) -> None:
        self._requests, self._name, self._tally, self._stop = requests, name, tally, stop
        self._selector = selectors.DefaultSelector()
        self._open: dict[int, socket.socket] = {}  # slot → socket
        self._answered: set[int] = set()
        self.opened = threading.Event()  # every slot opened once

    def _connect(self, slot: int) -> None:
        port, request = self._requests[slot]
        sock = socket.create_connection((HOST, port), timeout=CONNECT_SECONDS)
        sock.sendall(request)
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


def feed_requests(port: int, cookie: str, count: int) -> list[tuple[int, bytes]]:
    return [(port, _request("GET", "/dashboard/feed", {"Cookie": cookie, "Accept": "text/event-stream"}))] * count


def stalled_requests(web_port: int, api_port: int | None, count: int) -> list[tuple[int, bytes]]:
    """Half of them stop in the middle of a header; the other half claim a 100 MB JSON body and send 1 KiB of it.
    With `api_port`, half of each kind go to the terminal API's listener (to the API's paths)."""
    headers = {"Content-Type": "application/json", "Content-Length": str(UPLOAD_CLAIM)}

    def stalled(port: int, page: str, upload_path: str) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        half_sent = f"GET {page} HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode()
        return (port, half_sent), (port, _request("POST", upload_path, headers, b'{"username": "' + b"a" * 1024))

    kinds = stalled(web_port, "/dashboard/", "/tsp/v1/sessions")
    if api_port is not None:
        kinds += stalled(api_port, "/api/v1/echo", "/api/v1/authorizations")
    return [kinds[n % len(kinds)] for n in range(count)]


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


def _login_flood_process(port: int, username: str, clients: int, stop: multiprocessing.synchronize.Event,
                         report: multiprocessing.connection.Connection) -> None:
    """The login flood's process: `clients` threads, their running totals sent to `report` until `stop`."""
    tally, stopping = Tally(), threading.Event()
    threads = [threading.Thread(target=_login_flood, args=(port, username, tally, stopping), daemon=True)
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    while not stop.wait(REPORT_SECONDS):
        report.send(tally.snapshot())
    stopping.set()
    for thread in threads:
        thread.join(timeout=15)
    report.send(tally.snapshot())
    report.close()


class _LoginFlood:
    """The login flood in a child process, its totals kept in `tally` by a thread of this one."""

    def __init__(self, port: int, username: str, clients: int, tally: Tally) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: this process runs threads
        self._stop = context.Event()
        self._report, child_end = context.Pipe(duplex=False)
        self._process = context.Process(target=_login_flood_process, name="siege-login",
                                        args=(port, username, clients, self._stop, child_end), daemon=True)
        self._child_end = child_end
        self._tally = tally
        self.clients = clients
        self._reader = threading.Thread(target=self._read, name="siege-login-report", daemon=True)

    def start(self) -> None:
        self._process.start()
        self._child_end.close()
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                self._tally.set_elsewhere(self._report.recv())
        except (EOFError, OSError):
            pass

    def stop(self) -> None:
        self._stop.set()
        self._process.join(timeout=20)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._reader.join(timeout=5)
        self._report.close()


class Siege:
    """The attack on the web listener at `port` (and, with `api_port`, stalled connections on the terminal API's
    too), started by `start()` (or `with`), stopped by `stop()`; `tally` says what it saw."""

    def __init__(self, port: int, operator_cookie: str, operator_name: str, *, api_port: int | None = None,
                 feeds: int = 50, stalled: int = 200, login_clients: int = 4) -> None:
        self.tally = Tally()
        self._stop = threading.Event()
        self._feeds = _Sockets(feed_requests(port, operator_cookie, feeds), "feed", self.tally, self._stop)
        self._stalled = _Sockets(stalled_requests(port, api_port, stalled), "stalled", self.tally, self._stop)
        self._threads = [threading.Thread(target=self._feeds.run, name="siege-feeds", daemon=True),
                         threading.Thread(target=self._stalled.run, name="siege-stalled", daemon=True)]
        self._flood = _LoginFlood(port, operator_name, login_clients, self.tally) if login_clients else None

    def start(self, *, settle_seconds: float = 30.0) -> None:
        """Start every part; return once every feed and stalled connection has been opened at least once and the
        login flood has had an answer per client (its process is up)."""
        for thread in self._threads:
            thread.start()
        if self._flood is not None:
            self._flood.start()
        deadline = time.monotonic() + settle_seconds
        for part in (self._feeds, self._stalled):
            if not part.opened.wait(max(0.0, deadline - time.monotonic())):
                self.stop()
                raise AssertionError(f"the attack did not open its connections: {self.tally.snapshot()}")
        while self._flood is not None and self.tally.answered_logins() < self._flood.clients:
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the login flood did not start: {self.tally.snapshot()}")
            time.sleep(REPORT_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._flood is not None:
            self._flood.stop()
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

