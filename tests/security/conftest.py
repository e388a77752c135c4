"""The attack list of issue #11 (tests/security): an acquirer app per test on a private copy of the test world."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance


@pytest.fixture
def app(instance: Instance) -> Flask:
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
