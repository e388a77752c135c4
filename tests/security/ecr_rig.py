"""What the ECR attack tests run against: the real terminal service (`pos-terminal run`'s TerminalService, in a
thread of this process) on the software PN532, its local ECR on a real port, the real acquirer over HTTP, and a
proxy that loses the acquirer's answers the way a starved server or a broken link does."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hostserver import free_port
from waits import until

from firmware.issuing.layout import World
from posdemo.story import WebSession, csrf_token
from terminal.assemble import terminal
from terminal.config import load_config
from terminal.service import TerminalService


def write_config(world: World, folder: Path, *, host_url: str, port: int) -> Path:
    """The world's terminal (TID, key, ECR secret) on this test's software PN532, journal, acquirer and port."""
    data = tomllib.loads(world.path(Path("terminal.toml")).read_text())
    path = folder / "terminal.toml"
    path.write_text(
        "[terminal]\n" + "".join(f'{key} = "{value}"\n' for key, value in data["terminal"].items())
        + f'\n[host]\nurl = "{host_url}"\nkey = "{data["host"]["key"]}"\ntimeout = 3.0\n'
        + f'\n[capk]\nfile = "{world.path(Path(data["capk"]["file"]))}"\n'
        + f'\n[reader]\nport = "{folder / "pos"}"\n'
        + f'\n[journal]\npath = "{folder / "journal.sqlite3"}"\n'
        + f'\n[ecr]\nlisten = "127.0.0.1:{port}"\nsecret = "{data["ecr"]["secret"]}"\n'
    )
    return path


class ServiceThread:
    """The terminal service run by a thread of its own, which owns its parts (the journal is single-owner)."""

    def __init__(self, config: Path, **options: Any) -> None:
        self.config = load_config(config)
        self.port = self.config.ecr.listen[1] if self.config.ecr.listen else 0
        self.secret = self.config.ecr.secret or ""
        self._options = {"sale_wait": 20.0, "poll_seconds": 0.2, **options}
        self.service: TerminalService | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="terminal-service", daemon=True)

    def _run(self) -> None:
        try:
            with terminal(self.config) as parts:
                self.service = TerminalService(self.config, parts, **self._options)
                self.service.run()
        except BaseException as error:  # reported by start() and stop()
            self.error = error

    def start(self) -> ServiceThread:
        self._thread.start()
        until(lambda: self.error is not None or (self.service is not None and self.service.state == "idle"), 20,
              "the terminal service to start")
        assert self.error is None, self.error
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        self._thread.join(20)
        assert not self._thread.is_alive(), "the terminal service did not stop"
        assert self.error is None, self.error

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             *, timeout: float = 10.0) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request to the local ECR exactly as given (our own Host header, if any); status, JSON, headers."""
        return http_call(self.port, method, path, body, headers, timeout=timeout)

    def own(self, **headers: str) -> dict[str, str]:
        """What the merchant's register sends: this endpoint's Host, the secret, JSON."""
        return {"Host": f"127.0.0.1:{self.port}", "Authorization": f"Bearer {self.secret}",
                "Content-Type": "application/json", **headers}

    def status(self) -> dict[str, Any]:
        code, body, _ = self.call("GET", "/status", headers={"Host": f"127.0.0.1:{self.port}"})
        assert code == 200, body
        return body


def http_call(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
              *, timeout: float = 10.0) -> tuple[int, dict[str, Any], dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        # a Host among `headers` replaces http.client's own; without one, none is sent
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else {}, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()


class LossyProxy:
    """An HTTP relay in front of the acquirer that forwards every request and loses the answers `lose` picks:
    the acquirer has acted, the terminal sees its connection dropped (as when a starved server's answer comes
    after the terminal gave up)."""

    def __init__(self, upstream_port: int, lose: Callable[[str, str, int], bool]) -> None:
        self.upstream_port = upstream_port
        self.lose = lose
        self.lost: list[str] = []
        self.lost_one = threading.Event()
        proxy = self

        class Relay(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                proxy._relay(self)

            def do_POST(self) -> None:
                proxy._relay(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="lossy-proxy", daemon=True)
        self._thread.start()

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0") or 0))
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            status, data, answer_headers = answer.status, answer.read(), answer.getheaders()
        finally:
            upstream.close()
        if self.lose(handler.command, handler.path, status):
            self.lost.append(f"{handler.command} {handler.path} {status}")
            self.lost_one.set()
            handler.close_connection = True  # nothing written: the terminal's connection just ends
            return
        handler.send_response(status)
        for name, value in answer_headers:
            if name.lower() not in ("connection", "transfer-encoding", "server", "date"):
                handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(RuntimeError):
            self._thread.join(10)


@contextlib.contextmanager
def local_ecr(world: World, folder: Path, **options: Any) -> Iterator[ServiceThread]:
    """The service with its local ECR up and no acquirer behind it (nobody on that port: the link is not what
    these tests attack, and a host that is down does not stop the service)."""
    config = write_config(world, folder, host_url=f"http://127.0.0.1:{free_port()}", port=free_port())
    service = ServiceThread(config, **options).start()
    try:
        yield service
    finally:
        service.stop()


def assert_no_sale(service: ServiceThread) -> None:
    """Nothing was queued or run: the counter is idle and has never had a sale."""
    status = service.status()
    assert (status["state"], status["sale"], status["last_sale"]) == ("idle", None, None), status


def assert_a_sale_starts(service: ServiceThread, headers: dict[str, str], amount: int = 100) -> None:
    """The control: the register's own request does start a sale (it waits for a card; the test's stop()
    cancels it), so a refusal above was the check at work, not a broken endpoint."""
    body = json.dumps({"amount": amount}).encode()
    thread = threading.Thread(target=lambda: service.call("POST", "/sale", body, headers, timeout=60), daemon=True)
    thread.start()
    until(lambda: service.status()["state"] == "waiting for card", 10, "the register's sale to start")


def send_sale(acquirer_url: str, world: World, tid: str, amount: str) -> None:
    """What the operator does on the dashboard's virtual ECR page, over HTTP: log in, send the amount."""
    operator = next(u for u in world.users() if u["role"] == "operator")
    web = WebSession(acquirer_url)
    web.log_in(operator["username"], operator["password"])
    _, page = web.get("/dashboard/ecr")
    web.post("/dashboard/ecr", {"csrf_token": csrf_token(page), "tid": tid, "amount": amount})
