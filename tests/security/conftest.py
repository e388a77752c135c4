"""The attack list of issue #11 (tests/security): an acquirer app per test on a private copy of the test world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from hostserver import ServedAcquirer, free_port, serve_acquirer
from webform import world_login

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World


@pytest.fixture
def served(instance: Instance, tmp_path: Path) -> Iterator[ServedAcquirer]:
    """The acquirer as `acquirer-stub serve` runs it, in a child process: both listeners on free ports."""
    with open(tmp_path / "acquirer.log", "wb") as log:
        served = serve_acquirer(instance.root, free_port(), web_port=free_port(), log=log)
        try:
            yield served
        finally:
            served.stop()


@pytest.fixture
def headers(world: World, client: FlaskClient) -> dict[str, str]:
    """The demo cardholder's wallet-app session (token service bearer token)."""
    username, password = world_login(world, "cardholder")
    answer = client.post("/tsp/v1/sessions", json={"username": username, "password": password})
    assert answer.status_code == 200
    return {"Authorization": f"Bearer {answer.json['token']}"}
