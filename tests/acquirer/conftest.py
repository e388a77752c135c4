"""An acquirer instance per test, loaded from a private copy of the session's test world, on each database: the
embedded SQLite file and a PostgreSQL database of the session's throw-away cluster (tests/pgcluster.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from pgcluster import Cluster
from webform import post_login, world_login

from acquirer_stub.store import db, postgres
from firmware.issuing.layout import World

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_template(pg_cluster: Cluster) -> str:
    """A database with the schema and nothing in it, copied for each test (a copy is faster than migrating)."""
    connection = db.connect(pg_cluster.create_database("acquirer_template"))
    try:
        db.migrate(connection)
    finally:
        connection.close()
    return "acquirer_template"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """"" for SQLite; a new PostgreSQL database per test (the schema, no data), dropped after it."""
    if request.param == "sqlite":
        yield ""
        return
    cluster = request.getfixturevalue("pg_cluster")
    name = f"test_{secrets.token_hex(6)}"
    url = cluster.create_database(name, template=request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        postgres.close_pool(url, timeout=0.2)  # a browser test's server may still hold one: it is going
        cluster.drop_database(name)


def user_password(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]


@pytest.fixture
def operator(client: FlaskClient, world: World) -> FlaskClient:
    """The test client logged in as the world's operator through the form; `client.csrf` is a token for POSTs."""
    token, answer = post_login(client, *world_login(world, "operator"))
    assert answer.status_code == 302
    client.csrf = token  # type: ignore[attr-defined]
    return client
