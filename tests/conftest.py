"""Shared fixtures: one test world per session, copied per test that changes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
