"""An acquirer instance per test, loaded from a private copy of the session's test world."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

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
def app(instance: Instance) -> Flask:
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def user_password(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]
