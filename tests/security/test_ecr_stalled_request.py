"""Attack: clients that send half a request and stop, or trickle it a byte at a time, each held one of the local
ECR's threads for ever (the server had no timeout), so enough of them exhaust the process. Now the whole request
must arrive within the endpoint's request time (1 s here; 10 s by default) or the connection is closed, and a
complete request is answered meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecr_rig import ServiceThread, assert_no_sale, local_ecr

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig

STALLED = 20
BOUND = 30.0  # seconds a stalled connection may stay open before the test calls it held for ever


@pytest.fixture
def ecr(world: World, tmp_path: Path, rig: SoftwareRig) -> Iterator[ServiceThread]:
    with local_ecr(world, tmp_path, ecr_request_seconds=1.0) as service:
        yield service


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server ends the connection (EOF or reset) by the deadline; False if it still holds it open."""
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while sock.recv(4096):
            pass  # an error answer may come first
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def _trickle(port: int, cut: list[bool]) -> None:
    """A header line a byte every 0.1 s, for up to BOUND: each recv is short, only the total is long."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"POST /sale HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        deadline = time.monotonic() + BOUND
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"a")
                time.sleep(0.1)
        except OSError:  # reset or broken pipe: the server closed it
            cut.append(True)


def test_a_half_sent_request_is_cut_off_and_blocks_no_other(ecr: ServiceThread) -> None:
    port = ecr.port
    halves = [
        b"POST /sale HTTP/1.1\r\n",  # the request line, then nothing
        f"POST /sale HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n".encode(),
        # every header and the secret, a body announced and never sent
        (f"POST /sale HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {ecr.secret}\r\n"
         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"amount\": ").encode(),
        b"",  # connected, silent
    ]
    stalled = []
    for n in range(STALLED):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(halves[n % len(halves)])
        stalled.append(sock)
    cut: list[bool] = []
    trickler = threading.Thread(target=_trickle, args=(port, cut), daemon=True)
    trickler.start()
    try:
        # the next request is answered while they hang
        assert ecr.status()["state"] == "idle"
        deadline = time.monotonic() + BOUND
        held = [n for n, sock in enumerate(stalled) if not _closed_by_server(sock, deadline)]
        assert held == [], f"connections {held} still open after {BOUND} s"
        trickler.join(BOUND + 10)
        assert cut == [True], "a client trickling its headers was never cut off"
    finally:
        for sock in stalled:
            sock.close()
    assert ecr.status()["state"] == "idle"
    assert_no_sale(ecr)  # the announced-but-unsent sale body started nothing
