"""`acquirer-stub serve` refuses a listen address it cannot use with one line naming it (issue #12 §5)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from acquirer_stub.cli import main
from acquirer_stub.instance import Instance


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--listen", "foo", "acquirer-stub: listen 'foo' is not HOST:PORT (e.g. 127.0.0.1:8380)"),
    ("--listen", "127.0.0.1:99999", "acquirer-stub: listen '127.0.0.1:99999' is not HOST:PORT (e.g. 127.0.0.1:8380)"),
    ("--web-listen", "127.0.0.1:x", "acquirer-stub: web listen '127.0.0.1:x' is not HOST:PORT (e.g. 127.0.0.1:8380)"),
])
def test_a_malformed_listen_address_is_one_line(instance: Instance, option: str, value: str, message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--instance", str(instance.root), option, value]) == 1
    captured = capsys.readouterr()
    assert captured.err == message + "\n" and captured.out == ""


def test_a_busy_port_is_named(instance: Instance) -> None:
    """In a process of its own, as a person runs it (waitress leaves the failed listener's socket to the exit)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "acquirer_stub.cli", "serve", "--instance", str(instance.root),
                              "--listen", f"127.0.0.1:{port}", "--web-listen", ""],
                             capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == f"acquirer-stub: listen on 127.0.0.1:{port}: Address already in use\n"
