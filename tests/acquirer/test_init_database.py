"""`acquirer-stub init --database`: a PostgreSQL database chosen by URL, and what `init` says when it cannot use one
(issue #13 §2). The password of a URL is never printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pgcluster import Cluster

from acquirer_stub.cli import main
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World


def _init(world: World, root: Path, *extra: str) -> list[str]:
    return ["init", "--world", str(world.root), "--instance", str(root), *extra]


def test_init_loads_the_world_into_postgresql_and_refuses_to_load_it_twice(
        world: World, tmp_path: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    url = pg_cluster.create_database("init_cli")
    assert main(_init(world, tmp_path / "one", "--database", url)) == 0
    out = capsys.readouterr().out
    assert f"(database: {url})" in out and "terminals" in out
    assert Instance.open(tmp_path / "one").database == url
    assert not (tmp_path / "one" / "acquirer.sqlite3").exists()

    assert main(_init(world, tmp_path / "two", "--database", url)) == 1
    assert capsys.readouterr().err == (f"acquirer-stub: the database {url} already holds an acquirer; "
                                       "use --force to replace it\n")
    assert main(_init(world, tmp_path / "two", "--database", url, "--force")) == 0
    capsys.readouterr()


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://db/acquirer", "acquirer-stub: --database mysql:…: give a postgresql:// URL, or none for SQLite\n"),
])
def test_a_database_that_is_not_postgresql_is_one_line(world: World, tmp_path: Path, url: str, message: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_init(world, tmp_path / "acquirer", "--database", url)) == 1
    assert capsys.readouterr().err == message


def test_an_unreachable_database_is_one_line_without_its_password(world: World, tmp_path: Path) -> None:
    """In a process of its own, as a person runs it: no traceback, the URL without the password."""
    socket_folder = tmp_path / "nothing-listens-here"
    socket_folder.mkdir()
    url = f"postgresql://acquirer:s3cret-Pa55@/acquirer?host={socket_folder}"
    run = subprocess.run([sys.executable, "-m", "acquirer_stub.cli", *_init(world, tmp_path / "acquirer",
                                                                          "--database", url)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("acquirer-stub: cannot reach the database postgresql://acquirer:***@/acquirer?host=")
    assert "s3cret" not in run.stderr and "Traceback" not in run.stderr and run.stderr.count("\n") == 1
