"""The crash tests' parts: the acquirer served over real HTTP in this process, a software PN532, and the real
`pos-terminal` run as a child process that a crash point (``POS_TERMINAL_CRASH_AT``) kills with SIGKILL."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import Terminal
from werkzeug.serving import make_server

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig


@pytest.fixture
def acquirer_url(instance: Instance) -> Iterator[str]:
    """The acquirer app on 127.0.0.1:0, threaded, in this process (the terminal is the process that dies)."""
    server = make_server("127.0.0.1", 0, create_app(instance.root, overrides={"TESTING": True}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def terminal(world: World, tmp_path: Path, acquirer_url: str, rig: SoftwareRig) -> Terminal:
    """The world's terminal.toml pointed at this test's reader, acquirer and journal, with a 1 s host timeout."""
    journal = tmp_path / "journal.sqlite3"
    path = world.path(Path("terminal.toml"))
    text = (path.read_text().replace("http://127.0.0.1:8380", acquirer_url)
            .replace('"../pn532-pos"', f'"{tmp_path / "pos"}"')
            .replace('"terminal-journal.sqlite3"', f'"{journal}"'))
    text = re.sub(r'(\[host\]\n(?:.*\n)*?key = "[0-9a-f]+"\n)', r"\1timeout = 1.0\n", text)
    assert "timeout = 1.0" in text
    path.write_text(text)
    return Terminal(path, journal, world)

