"""The throw-away PostgreSQL cluster (tests/pgcluster.py): it starts, serves two databases on its socket only,
keeps its folder private, and leaves nothing behind."""

from __future__ import annotations

import os
import stat
import subprocess

import pgcluster
import pytest
from pgcluster import Cluster, ClusterError


def psql(cluster: Cluster, dbname: str, sql: str) -> str:
    """psql on the cluster's URL, as a test or the application would connect (no helper in between)."""
    result = subprocess.run([str(cluster.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
                             cluster.url(dbname)], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def test_a_cluster_serves_two_databases_on_a_private_socket_and_leaves_nothing_behind() -> None:
    cluster = Cluster()
    try:
        cluster.start()
        root = cluster.root
        assert root is not None and root.is_dir()
        cluster.create_database("first")
        cluster.create_database("second", template="first")
        for dbname in ("first", "second"):
            assert psql(cluster, dbname, "SELECT 1") == "1"
            assert psql(cluster, dbname, "SELECT current_database()") == dbname
        assert psql(cluster, "first", "SHOW listen_addresses") == ""  # no TCP at all
        assert psql(cluster, "first", "SHOW max_connections") == "200"
        mode = os.stat(root).st_mode
        assert not mode & (stat.S_IWOTH | stat.S_IWGRP), oct(mode)
        assert (root / f".s.PGSQL.{pgcluster.PORT}").is_socket()
        cluster.drop_database("second")
        assert "second" not in psql(cluster, "first", "SELECT datname FROM pg_database")
    finally:
        cluster.stop()
    assert not root.exists()
    cluster.stop()  # idempotent


def test_a_durable_cluster_keeps_postgresqls_durability_settings() -> None:
    """The benchmark's cluster (`durable=True`): a commit is on disk before it returns, as SQLite's
    synchronous=FULL; the test cluster trades that for speed."""
    with Cluster(durable=True, settings={"shared_buffers": "64MB"}) as durable, Cluster() as fast:
        for name in pgcluster.DURABILITY:
            assert psql(durable, "postgres", f"SHOW {name}") == "on", name
            assert psql(fast, "postgres", f"SHOW {name}") == "off", name
        assert psql(durable, "postgres", "SHOW shared_buffers") == "64MB"


def test_missing_binaries_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgcluster.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ClusterError, match="install Debian's package `postgresql`"):
        Cluster()
