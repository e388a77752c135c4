"""Shared fixtures: one test world per session, copied per test that changes it; an acquirer loaded from it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from pgcluster import pg_cluster  # noqa: F401 - the session's PostgreSQL cluster, started when a test asks
from robustness import secret_scan

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from firmware.pn532.rig import SoftwareRig
from firmware.world.build import create_world
from firmware.world.layout import World


def pytest_addoption(parser: pytest.Parser) -> None:
    """The hardware-in-the-loop rig's options (tests/hil/README.md); here because pytest reads options only
    from the conftest files it loads first."""
    group = parser.getgroup("hil", "hardware-in-the-loop rig (tests/hil)")
    group.addoption("--rig", choices=("sim", "hw"), default="sim",
                    help="sim: two software PN532s in one virtual field (default); hw: two real PN532s")
    group.addoption("--reader-port", default=None, help="hw: the terminal's PN532 (e.g. /dev/ttyAMA0)")
    group.addoption("--card-port", default=None, help="hw: the card-emulating PN532 (e.g. /dev/ttyUSB0)")
    group.addoption("--hil-report", default="var/hil-report", metavar="DIR",
                    help="where junit.xml and report.html go (default var/hil-report)")


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world-template") / "world"
    create_world(root)
    return World.open(root)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SoftwareRig]:
    """A software PN532 on a pseudo-terminal at tmp_path/pos, with an empty field."""
    rig = SoftwareRig([tmp_path / "pos"])
    yield rig
    rig.close()


@pytest.fixture
def world(world_template: World, tmp_path: Path) -> World:
    """A private copy: tests tap its cards and change counters freely."""
    root = tmp_path / "world"
    shutil.copytree(world_template.root, root)
    return World.open(root)


@pytest.fixture
def database_url() -> str:
    """The acquirer's database: "" = the SQLite file in its instance folder (tests/acquirer run on PostgreSQL too)."""
    return ""


@pytest.fixture
def instance(world: World, tmp_path: Path, database_url: str) -> Instance:
    """An acquirer instance folder with the private world copy loaded into its database."""
    return init_instance(tmp_path / "acquirer", world, database=database_url)[0]


@pytest.fixture
def app(instance: Instance) -> Flask:
    """The acquirer's Flask app on that instance, for the test client."""
    return create_app(instance.root, overrides={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- robustness (tests/robustness/README.md): hypothesis profiles and the end-of-session secret scan ----------------
# "ci" is the default; `pytest tests/robustness --hypothesis-profile=long` is the overnight fuzzing run, with
# POS_FUZZ_EXAMPLES examples per test (100 000 unless set; docs/robustness.md ran it in seeded chunks).
settings.register_profile("ci", max_examples=100)
settings.register_profile("long", max_examples=int(os.environ.get("POS_FUZZ_EXAMPLES", "100000")), deadline=None)
settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(secret_scan.SessionScan(config), "quickpass-secret-scan")
