"""An acquirer instance per test, loaded from a private copy of the session's test world."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.world.layout import World


@pytest.fixture
def app(instance: Instance) -> Flask:
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def user_password(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]
