"""Attack: DNS rebinding. A page on a name the attacker controls has that name re-pointed at 127.0.0.1; the
browser then treats the terminal's local ECR as the page's own origin, and the page can read ``GET /status`` and
post sales. The request still carries the attacker's name in ``Host``: anything but this endpoint's own address
(or ``localhost`` on a loopback bind) is now refused with 421, and nothing is started or shown."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecr_rig import ServiceThread, assert_a_sale_starts, assert_no_sale, local_ecr

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig

SALE = json.dumps({"amount": 100}).encode()


@pytest.fixture
def ecr(world: World, tmp_path: Path, rig: SoftwareRig) -> Iterator[ServiceThread]:
    with local_ecr(world, tmp_path) as service:
        yield service


def test_a_foreign_host_header_is_refused(ecr: ServiceThread) -> None:
    port = ecr.port
    foreign = [f"rebind.example:{port}", f"127.0.0.1.nip.io:{port}", f"localhost.example:{port}", "127.0.0.1",
               f"127.0.0.1:{port + 1}", f"[::1]:{port}x", "", f"127.0.0.1:{port}@rebind.example"]
    for host in foreign:
        code, body, _ = ecr.call("GET", "/status", None, {"Host": host}, timeout=5)
        assert code == 421 and "Host" in body["error"] and "tid" not in body, host
        code, _, _ = ecr.call("POST", "/sale", SALE, ecr.own(Host=host), timeout=5)
        assert code == 421, host
    # two Host headers, or none at all (HTTP/1.0 may omit it)
    assert ecr.call("GET", "/status", None, {"Host": f"127.0.0.1:{port}", "host": "rebind.example"})[0] == 421
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /status HTTP/1.0\r\n\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.0 421 ")
    assert_no_sale(ecr)

    for own in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):  # names that cannot be rebound
        assert ecr.call("GET", "/status", None, {"Host": own})[0] == 200, own
    assert_a_sale_starts(ecr, ecr.own(Host=f"localhost:{port}"))
