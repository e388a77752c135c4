"""The real acquirer stub served over HTTP in this process, so the terminal's host link talks to it for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from hostserver import HostServer

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World


@pytest.fixture
def acquirer_app(instance: Instance) -> Flask:
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def host_server(acquirer_app: Flask) -> Iterator[HostServer]:
    server = HostServer(acquirer_app)
    server.start()
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def config(world: World, tmp_path: Path, host_server: HostServer) -> Path:
    """The world's terminal.toml, pointed at this test's software PN532 and acquirer port."""
    text = (world.path(Path("terminal.toml")).read_text().replace("http://127.0.0.1:8380", host_server.url)
            .replace('"../pn532-pos"', f'"{tmp_path / "pos"}"')
            .replace('"terminal-journal.sqlite3"', f'"{tmp_path / "journal.sqlite3"}"'))
    path = world.path(Path("terminal.toml"))
    path.write_text(text)
    return path

