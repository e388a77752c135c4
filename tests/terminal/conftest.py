"""The real acquirer stub served over HTTP in this process, so the terminal's host link talks to it for real."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance, create_instance
from acquirer_stub.loader import load_world
from acquirer_stub.store import db
from firmware.world.layout import World


@pytest.fixture
def instance(world: World, tmp_path: Path) -> Instance:
    instance = create_instance(tmp_path / "acquirer", world)
    connection = db.connect(instance.database)
    try:
        db.migrate(connection)
        load_world(connection, world, instance.vault(), today=datetime.date.today())
    finally:
        connection.close()
    return instance


@pytest.fixture
def acquirer_app(instance: Instance) -> Flask:
    return create_app(instance.root, overrides={"TESTING": True})


class HostServer:
    """The acquirer app on a real port; stop() and start() again keep the port, so a terminal can see its host
    go down and come back at the same address."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        assert self._server is None, "already running"
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="acquirer-stub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None, "not running"
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None


@pytest.fixture
def host_server(acquirer_app: Flask) -> Iterator[HostServer]:
    server = HostServer(acquirer_app)
    server.start()
    yield server
    if server.running:
        server.stop()
