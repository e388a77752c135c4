"""Fixtures for the deployment tests: the units' folder, a software PN532, the acquirer stub as a process."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployhelp import VENV_BIN
from hostserver import free_port

from acquirer_stub.instance import Instance


@pytest.fixture
def acquirer(instance: Instance, tmp_path: Path) -> Iterator[str]:
    """`acquirer-stub serve` on a free port (its web listener on another), as acquirer-stub.service runs it; yields
    the terminal API's URL."""
    port = free_port()
    with (tmp_path / "acquirer.log").open("w") as log:
        process = subprocess.Popen([str(VENV_BIN / "acquirer-stub"), "serve", "--instance", str(instance.root),
                                    "--listen", f"127.0.0.1:{port}", "--web-listen", "127.0.0.1:0"],
                                   stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("acquirer-stub serve did not start: " + (tmp_path / "acquirer.log").read_text())
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
