"""`pos-terminal run`: the service against a software PN532 holding a plain card and the real acquirer stub.

The main test runs the service as a subprocess, so that SIGTERM, the exit code and the sd_notify datagrams
are the real ones (a socket bound here is its NOTIFY_SOCKET); a second runs it in a thread to see a host
that is down at start and a stop that abandons a sale waiting for a card.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hostserver import HostServer, free_port
from waits import until

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.assemble import terminal
from terminal.config import load_config
from terminal.service import TerminalService, notify

ISSUER = "icbc-debit"  # a plain debit card, ¥5,000.00 in its account; above ¥2,000.00 a sale goes online
STAN = re.compile(r"[0-9]{6}")


# -- helpers ---------------------------------------------------------------------------------------------------



def _write_config(world: World, tmp_path: Path, host_url: str, port: int) -> Path:
    """The world's terminal and keys, this test's software PN532, journal, acquirer and ECR port."""
    data = tomllib.loads(world.path(Path("terminal.toml")).read_text())
    terminal_section, host = data["terminal"], data["host"]
    path = tmp_path / "terminal.toml"
    path.write_text(
        "[terminal]\n" + "".join(f'{key} = "{value}"\n' for key, value in terminal_section.items())
        + f'\n[host]\nurl = "{host_url}"\nkey = "{host["key"]}"\ntimeout = 3.0\n'
        + f'\n[capk]\nfile = "{world.path(Path(data["capk"]["file"]))}"\n'
        + f'\n[reader]\nport = "{tmp_path / "pos"}"\n'
        + f'\n[journal]\npath = "{tmp_path / "journal.sqlite3"}"\n'
        + f'\n[ecr]\nlisten = "127.0.0.1:{port}"\nsecret = "{data["ecr"]["secret"]}"\n'
    )
    return path


def _http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 15,
          secret: str = "") -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _datagram(sock: socket.socket, wanted: str, seconds: float) -> list[str]:
    """Datagrams received until one has the line `wanted`; all of them, for the assertion message."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if wanted in seen[-1].split("\n"):
            return seen
    raise AssertionError(f"no {wanted} datagram within {seconds} s; got {seen}")


def _in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    return thread, box


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _dashboard_sale(app: Flask, tid: str, amount: str, world: World) -> None:
    """What an operator does on /dashboard/ecr: log in through the form, then send the amount."""
    client = app.test_client()
    user = next(u for u in world.users() if u["role"] == "operator")
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    assert found is not None
    token = found.group(1)
    login = client.post("/login", data={"username": user["username"], "password": user["password"],
                                        "csrf_token": token})
    assert login.status_code == 302
    assert client.post("/dashboard/ecr", data={"csrf_token": token, "tid": tid, "amount": amount}).status_code == 302


def _ecr_row(instance: Instance) -> dict[str, Any] | None:
    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT state, result FROM ecr_requests ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        connection.close()
    return None if row is None else {"state": row["state"], "result": json.loads(row["result"] or "null")}


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A real AF_UNIX datagram socket, in a short folder (socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            yield sock, path


# -- sd_notify -------------------------------------------------------------------------------------------------


def test_notify_sends_the_documented_datagrams(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pos-terminal-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())  # the abstract namespace: NOTIFY_SOCKET starts with "@"
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.ready("idle") and notify.watchdog() and notify.status("busy") and notify.stopping()
        assert [sock.recv(4096) for _ in range(4)] == [b"READY=1\nSTATUS=idle", b"WATCHDOG=1", b"STATUS=busy",
                                                       b"STOPPING=1"]
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)  # nobody listens any more: logged, not raised
    assert notify.watchdog() is False
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify.ready() is False  # not started by systemd: nothing to tell


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert notify.watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert notify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}) == 0.2
    assert notify.watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert notify.watchdog_interval({}) is None and notify.watchdog_interval({"WATCHDOG_USEC": "x"}) is None


# -- the service -----------------------------------------------------------------------------------------------


def test_the_service_takes_sales_from_both_registers_and_stops_on_sigterm(
    rig: SoftwareRig, world: World, tmp_path: Path, host_server: HostServer, acquirer_app: Flask,
    instance: Instance, notify_socket: tuple[socket.socket, str],
) -> None:
    sock, socket_path = notify_socket
    port = free_port()
    config = _write_config(world, tmp_path, host_server.url, port)
    secret = tomllib.loads(config.read_text())["ecr"]["secret"]
    card = next(c for c in world.cards() if c["issuer"] == ISSUER)
    env = {**os.environ, "NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "400000"}
    with (tmp_path / "stderr.txt").open("w+") as stderr:
        service = subprocess.Popen([sys.executable, "-m", "terminal.cli", "--config", str(config), "run",
                                    "--wait", "10"], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        try:
            _datagram(sock, "READY=1", 20)
            _datagram(sock, "WATCHDOG=1", 3)  # every 0.2 s: half of WATCHDOG_USEC
            assert service.stdout is not None
            base = f"http://127.0.0.1:{port}"
            assert service.stdout.readline().strip() == (
                f"ready: sales from the local ECR and the virtual ECR; ECR on {base}/sale, status on {base}/status, "
                f"customer display on {base}/display")
            code, status = _http("GET", f"{base}/status")
            assert code == 200 and status["state"] == "idle" and status["message"] == "Welcome"
            assert "PN532" in status["reader"] and status["host"]["signed_on"] is True

            # a local sale waits for the card; meanwhile a second one is refused, and so is a bad amount
            first, answers = _in_background(lambda: _http("POST", f"{base}/sale", {"amount": 210000}, secret=secret))
            until(lambda: _http("GET", f"{base}/status")[1]["state"] == "waiting for card", 5, "the card wait")
            assert _http("GET", f"{base}/status")[1]["message"] == "Present card"
            assert _http("POST", f"{base}/sale", {"amount": 100}, secret=secret)[0] == 409
            assert _http("POST", f"{base}/sale", {"amount": 0}, secret=secret)[0] == 400
            assert _http("POST", f"{base}/sale", {"amount": "12.34"}, secret=secret)[0] == 400
            rig.present(world.path(Path(card["file"])))
            first.join(15)
            code, sale = answers[0]
            assert code == 200 and sale["outcome"] == "Approved" and sale["rc"] == "00", sale
            assert sale["cryptogram"] == "ARQC" and STAN.fullmatch(sale["stan"]) and "*" in sale["pan_masked"]

            text = json.dumps(_http("GET", f"{base}/status")[1])
            status = json.loads(text)
            last = status["last_sale"]
            assert (last["source"], last["outcome"], last["rc"], last["amount"]) == ("local", "Approved", "00", 210000)
            assert f"Card {sale['pan_masked']}" in last["receipt"] and card["pan"] not in text

            # the operator's virtual ECR: the service polls the acquirer, runs the sale and posts the result
            _dashboard_sale(acquirer_app, status["tid"], "2200.00", world)
            row = until(lambda: (r := _ecr_row(instance)) and r["state"] == "done" and r, 10, "the ECR result")
            assert row["result"]["rc"] == "00" and STAN.fullmatch(row["result"]["stan"]), row
            last = until(lambda: _http("GET", f"{base}/status")[1]["last_sale"], 5, "the status")
            assert (last["source"], last["outcome"], last["amount"]) == ("ecr", "Approved", 220000)
            assert last["stan"] == row["result"]["stan"]

            service.send_signal(signal.SIGTERM)
            assert service.wait(10) == 0
            _datagram(sock, "STOPPING=1", 2)
            assert _port_closed(port)
        finally:
            if service.poll() is None:
                service.kill()
                service.wait(5)
            if service.stdout is not None:
                service.stdout.close()
            stderr.seek(0)
            log = stderr.read()
    assert "Traceback" not in log, log
    sales = [line for line in log.splitlines() if " sale " in line and "rc=" in line]
    assert len(sales) == 2 and all(re.search(r"card=[0-9]{6}\*+[0-9]{4} ", line) for line in sales), log
    assert card["pan"] not in log


def test_a_host_that_is_down_is_not_fatal_and_stop_abandons_the_card_wait(
    rig: SoftwareRig, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    port = free_port()
    config = load_config(_write_config(world, tmp_path, f"http://127.0.0.1:{free_port()}", port))  # nobody there
    secret = config.ecr.secret
    services: list[TerminalService] = []

    def run() -> None:  # the parts belong to the thread that runs the service (the journal is single-owner)
        with terminal(config) as parts:
            service = TerminalService(config, parts, sale_wait=20)
            services.append(service)
            service.run()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    base = f"http://127.0.0.1:{port}"

    def status() -> dict[str, Any] | None:
        with contextlib.suppress(OSError):
            return _http("GET", f"{base}/status", timeout=2)[1]
        return None

    idle = until(lambda: (s := status()) and s["state"] == "idle" and s, 10, "the service to start")
    assert idle["host"]["signed_on"] is False and "not reachable" in idle["host"]["last_error"]
    assert _http("POST", f"{base}/nothing", {"amount": 1}, secret=secret)[0] == 404
    assert _http("POST", f"{base}/sale", {"money": 1}, secret=secret)[0] == 400

    waiting, answers = _in_background(lambda: _http("POST", f"{base}/sale", {"amount": 100}, secret=secret))
    until(lambda: (s := status()) and s["state"] == "waiting for card", 5, "the card wait")
    started = time.monotonic()
    services[0].stop()
    waiting.join(5)
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 3  # the 20 s wait was abandoned
    code, sale = answers[0]
    assert code == 200 and sale["outcome"] == "End Application" and sale["message"].startswith("Cancelled")
    assert sale["stan"] is None and services[0].state == "stopped" and _port_closed(port)
