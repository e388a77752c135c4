"""Issue #11 §5, the limits one by one: request sizes (a 100 MB body grew the server by a gigabyte), the live-feed
budget (8 streams took every thread), stalled connections (held a slot for two minutes), a 30-digit Last-Event-ID
(500), and which requests draw on which budget. Real servers on 127.0.0.1: `acquirer-stub serve` in a child
process where its memory or its production settings are the point, waitress in this process where a test needs
short timeouts or small budgets.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hostserver import ServedAcquirer, process_memory_mb, served_in_thread
from siege import Probe, log_in

from acquirer_stub import limits
from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.serving import Admission, Serving
from firmware.issuing.layout import World
from terminal.host.client import HostClient

HOST = "127.0.0.1"
HUNDRED_MB = 100 * 1024 * 1024
CHUNK = 1024 * 1024
ANSWER_SECONDS = 10.0
FEED = "/dashboard/feed"


@pytest.fixture
def web_port(served: ServedAcquirer) -> int:
    assert served.web_port is not None
    return served.web_port


def _head(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status (0: no answer), headers (lower-case names) and the body bytes received so far, of a raw HTTP answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines[1:])
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    status = lines[0].split()[1] if lines[0].startswith("HTTP/") and len(lines[0].split()) > 1 else "0"
    return int(status), headers, body


def _receive_answer(sock: socket.socket) -> bytes:
    """What the server sent until the end of its headers (and of the body, when it has a Content-Length), its
    close, or 10 s of silence."""
    sock.settimeout(ANSWER_SECONDS)
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while not _complete(data):
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    return data


def _complete(data: bytes) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    _, headers, body = _head(data)
    return len(body) >= int(headers.get("content-length", 0))


def _json_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least 16)."""
    return b'{"username": "' + b"a" * (size - 16) + b'"}'


def _upload(port: int, path: str, claim: int) -> tuple[bytes, int]:
    """A JSON body claimed by Content-Length, sent only if the server has not answered the headers within 10 s:
    the server's answer and how many body bytes went out."""
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {claim}\r\n\r\n").encode())
        sent = 0
        if not select.select([sock], [], [], ANSWER_SECONDS)[0]:
            body = _json_body(claim)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for start in range(0, claim, CHUNK):
                    sock.sendall(body[start:start + CHUNK])
                    sent += len(body[start:start + CHUNK])
        return _receive_answer(sock), sent


def _get(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=ANSWER_SECONDS)
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", *(f"{name}: {value}" for name, value in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


# -- sizes ---------------------------------------------------------------------------------------------------------


def test_100_mb_bodies_to_the_token_service_are_refused_from_their_headers_and_the_server_does_not_grow(
        served: ServedAcquirer, web_port: int) -> None:
    port, pid = web_port, served.web_pid()
    peak_before = process_memory_mb(pid, "VmHWM")
    answers = [_upload(port, "/tsp/v1/sessions", HUNDRED_MB) for _ in range(4)]
    grown = process_memory_mb(pid, "VmHWM") - peak_before
    assert grown < 25, f"the server's peak memory grew by {grown:.0f} MB"
    for answer, sent in answers:
        assert _head(answer)[0] == 413 and sent == 0, (answer[:200], sent)


def test_any_body_over_the_servers_limit_is_refused_from_its_headers(served: ServedAcquirer, web_port: int) -> None:
    for port, path in ((web_port, "/login"), (served.port, "/api/v1/echo"), (web_port, "/dashboard/ecr")):
        answer, sent = _upload(port, path, limits.MAX_REQUEST_BYTES + 1)
        assert _head(answer)[0] == 413 and sent == 0, (path, answer[:200])


def test_the_token_service_answers_413_as_json_naming_its_limit(web_port: int) -> None:
    port = web_port
    limit = limits.body_limit("/tsp/v1/sessions")
    with socket.create_connection((HOST, port), timeout=ANSWER_SECONDS) as sock:
        body = _json_body(limit + 1)
        sock.sendall((f"POST /tsp/v1/sessions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        data = b""
        while piece := sock.recv(65536):
            data += piece
    status, _, answer = _head(data)
    assert status == 413 and json.loads(answer) == {"error": f"the request body is too large: at most {limit} bytes"
                                                             " here"}


# -- the live feed -----------------------------------------------------------------------------------------------


def test_a_30_digit_last_event_id_is_a_clean_400(web_port: int, world: World) -> None:
    port = web_port
    operator = next(u for u in world.users() if u["role"] == "operator")
    cookie = log_in(port, operator["username"], operator["password"])
    for path, headers in (("/dashboard/feed", {"Last-Event-ID": "9" * 30}), ("/dashboard/feed?after=" + "9" * 30, {}),
                          ("/dashboard/feed", {"Last-Event-ID": "12ab"})):
        with _get(port, path, {"Cookie": cookie, "Connection": "close", **headers}) as sock:
            data = b""
            while piece := sock.recv(65536):
                data += piece
        status, _, body = _head(data)
        assert status == 400 and "event id" in json.loads(body)["error"], (path, headers, data[:300])


def test_beyond_its_budget_a_live_feed_is_refused_503_with_retry_after_and_a_closed_tab_frees_its_slot(
        web_port: int, world: World) -> None:
    port = web_port
    operator = next(u for u in world.users() if u["role"] == "operator")
    cookie = log_in(port, operator["username"], operator["password"])
    headers = {"Cookie": cookie, "Accept": "text/event-stream"}
    streams: list[socket.socket] = []
    try:
        for _ in range(Serving().feed_streams):
            streams.append(_get(port, "/dashboard/feed", headers))
            assert _head(_receive_answer(streams[-1]))[0] == 200
        with _get(port, "/dashboard/feed", headers) as refused:
            status, answer_headers, body = _head(_receive_answer(refused))
        assert status == 503 and answer_headers["retry-after"] == str(Serving().retry_after_seconds)
        assert "busy" in json.loads(body)["error"]

        streams.pop().close()  # the tab goes away: the server sees it and ends that stream
        statuses = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(statuses) < 100 and 200 not in statuses:
            sock = _get(port, "/dashboard/feed", headers)
            statuses.append(_head(_receive_answer(sock))[0])
            (streams.append if statuses[-1] == 200 else lambda s: s.close())(sock)
            time.sleep(0.1)
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
    finally:
        for sock in streams:
            sock.close()


# -- stalled connections ------------------------------------------------------------------------------------------


def test_stalled_requests_and_uploads_are_closed_by_the_server_after_its_timeout(instance: Instance) -> None:
    serving = Serving(channel_timeout=1, cleanup_interval=1)
    stalled = [
        f"GET /dashboard/ HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode(),  # headers never finished
        (f"POST /tsp/v1/sessions HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"  # body never comes
         f"Content-Length: {limits.body_limit('/tsp/v1/sessions')}\r\n\r\n" + '{"username": "').encode(),
        (f"POST /tsp/v1/sessions HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"  # nor its chunks
         "10\r\n{\"username\": \"ab").encode(),
    ]
    with served_in_thread(create_app(instance.root), serving) as port:
        sockets = [socket.create_connection((HOST, port), timeout=ANSWER_SECONDS) for _ in stalled]
        try:
            for sock, request in zip(sockets, stalled, strict=True):
                sock.sendall(request)
            closed = []
            for sock in sockets:  # each read waits at most 10 s: a bound, far above the 1 s timeout
                with contextlib.suppress(ConnectionResetError):
                    closed.append(sock.recv(65536))
            assert closed == [b""] * len(stalled)
        finally:
            for sock in sockets:
                sock.close()


# -- which budget a request draws on ------------------------------------------------------------------------------


class _Gate:
    """A WSGI app that holds each request until released, noting the CPU priority of the thread that runs it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.niceness: dict[str, int] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.niceness[environ["PATH_INFO"]] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.release.wait(ANSWER_SECONDS)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


def _call(app: Any, path: str) -> tuple[str, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response)
    try:
        data = b"".join(body)
    finally:
        getattr(body, "close", lambda: None)()
    return answer["status"], answer["headers"], data


def test_pages_and_feeds_have_budgets_and_the_api_none(tmp_path: Path) -> None:
    gate = _Gate()
    admission = Admission(gate, Serving(web_threads=1, feed_streams=1))
    held = [threading.Thread(target=_call, args=(admission, path), daemon=True) for path in ("/login", FEED)]
    for thread in held:
        thread.start()
    deadline = time.monotonic() + ANSWER_SECONDS
    while len(gate.niceness) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        for path in ("/cardholder/", "/tsp/v1/sessions", "/static/style.css", FEED):
            status, headers, body = _call(admission, path)
            assert status.startswith("503") and headers["Retry-After"] == str(Serving().retry_after_seconds)
            assert json.loads(body)["error"].startswith("busy")
        gate.release.set()  # the API is never held back by them
        assert _call(admission, "/api/v1/echo")[0] == "200 OK" and _call(admission, "/health")[0] == "200 OK"
    finally:
        gate.release.set()
        for thread in held:
            thread.join(timeout=ANSWER_SECONDS)
    assert _call(admission, "/login")[0] == "200 OK" and _call(admission, FEED)[0] == "200 OK"  # slots given back


def test_pages_run_at_a_lower_cpu_priority_than_the_api() -> None:
    if os.getpriority(os.PRIO_PROCESS, 0) >= 19:
        pytest.skip("this process already runs at the lowest priority there is")
    gate = _Gate()
    gate.release.set()
    admission = Admission(gate, Serving())
    for path in ("/login", "/api/v1/authorizations"):
        assert _call(admission, path)[0] == "200 OK"
    api = gate.niceness["/api/v1/authorizations"]
    assert gate.niceness["/login"] == min(19, api + Serving().web_niceness) > api


# -- two listeners, two processes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("serves", "answered", "refused"), [
    ("api", ("/api/v1/echo", "/health"), ("/login", FEED, "/tsp/v1/sessions", "/dashboard/", "/static/style.css")),
    ("web", ("/login", FEED, "/tsp/v1/sessions", "/health"), ("/api/v1/echo", "/api/v1/authorizations")),
])
def test_a_listener_refuses_what_it_does_not_serve_with_404_saying_where_it_is(
        serves: str, answered: tuple[str, ...], refused: tuple[str, ...]) -> None:
    gate = _Gate()
    gate.release.set()
    admission = Admission(gate, Serving(), serves, elsewhere="over there: http://127.0.0.1:9/")
    for path in answered:
        assert _call(admission, path)[0] == "200 OK", path
    for path in refused:
        status, headers, body = _call(admission, path)
        assert status.startswith("404") and headers["Content-Type"] == "application/json", path
        assert json.loads(body) == {"error": "not served on this listener: over there: http://127.0.0.1:9/"}
    assert set(gate.niceness) == set(answered)  # a refused request never reached the app


def test_the_served_acquirer_splits_api_and_pages_over_two_processes_the_pages_at_a_lower_priority(
        served: ServedAcquirer, web_port: int) -> None:
    api_process, web_process = served.process.pid, served.web_pid()
    assert os.getpriority(os.PRIO_PROCESS, web_process) > os.getpriority(os.PRIO_PROCESS, api_process)
    for port, path, status in ((served.port, "/login", 404), (web_port, "/login", 200),
                               (web_port, "/api/v1/echo", 404), (served.port, "/health", 200),
                               (web_port, "/health", 200)):
        with _get(port, path, {"Connection": "close"}) as sock:
            answer = _head(_receive_answer(sock))
        assert answer[0] == status, (port, path)
        if status == 404:  # each names where the other is
            other = web_port if port == served.port else served.port
            assert f"http://127.0.0.1:{other}/" in json.loads(answer[2])["error"], answer


def test_the_terminal_api_answers_while_the_web_process_dies_and_the_web_listener_comes_back(
        served: ServedAcquirer, web_port: int, world: World) -> None:
    terminal = world.terminals()[0]
    probe = Probe(HostClient(f"http://{HOST}:{served.port}", terminal["tid"], bytes.fromhex(terminal["key"]),
                             timeout=ANSWER_SECONDS))
    killed = served.web_pid()
    os.kill(killed, signal.SIGKILL)
    assert probe.echo()["rc"] == "00"  # at once, while the pages are down
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{HOST}:{web_port}/health",
                                                                  timeout=ANSWER_SECONDS) as answer:
            if answer.status == 200:
                break
        assert time.monotonic() < deadline, "the web listener did not come back"
        time.sleep(0.1)
    assert served.web_pid() != killed and served.process.poll() is None
    assert probe.echo()["rc"] == "00"


def test_without_waitress_the_app_still_refuses_a_body_over_its_areas_limit(instance: Instance) -> None:
    """The test client, or another server: the app's own limits (Flask's max_content_length) hold."""
    client = create_app(instance.root, overrides={"TESTING": True}).test_client()
    answer = client.post("/tsp/v1/sessions", data=b"{" + b" " * limits.body_limit("/tsp/v1/") + b"}",
                         content_type="application/json")
    assert answer.status_code == 413 and "at most" in answer.json["error"]
    answer = client.post("/login", data={"username": "x" * limits.MAX_REQUEST_BYTES, "password": "y"})
    assert answer.status_code == 413
