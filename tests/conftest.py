"""Shared fixtures: one test world per session, copied per test that changes it; an acquirer loaded from it."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

from acquirer_stub.instance import Instance, create_instance
from acquirer_stub.loader import load_world
from acquirer_stub.store import db
from firmware.world.build import create_world
from firmware.world.layout import World


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world-template") / "world"
    create_world(root)
    return World.open(root)


@pytest.fixture
def world(world_template: World, tmp_path: Path) -> World:
    """A private copy: tests tap its cards and change counters freely."""
    root = tmp_path / "world"
    shutil.copytree(world_template.root, root)
    return World.open(root)


@pytest.fixture
def instance(world: World, tmp_path: Path) -> Instance:
    """An acquirer instance folder with the private world copy loaded into its database."""
    instance = create_instance(tmp_path / "acquirer", world)
    connection = db.connect(instance.database)
    try:
        db.migrate(connection)
        load_world(connection, world, instance.vault(), today=datetime.date.today())
    finally:
        connection.close()
    return instance
