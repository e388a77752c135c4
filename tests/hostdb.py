"""The acquirer's database as the tests read and steer it (a real SQLite file, one short connection each)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from pgcluster import clean_environment, find_bindir

from acquirer_stub.instance import Instance
from acquirer_stub.store import db


def rows(instance: Instance, sql: str, *args: Any) -> list[sqlite3.Row]:
    connection = db.connect(instance.database)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def execute(instance: Instance, sql: str, *args: Any) -> None:
    connection = db.connect(instance.database)
    try:
        connection.execute(sql, args)
    finally:
        connection.close()


def database_bytes(instance: Instance) -> bytes:
    """Everything the database holds as stored: the SQLite file and its WAL, or a PostgreSQL database's dump
    (pg_dump of the cluster the URL names): what a stolen disk or backup would show."""
    target = instance.database
    if db.is_postgres(target):
        return subprocess.run([str(find_bindir() / "pg_dump"), "--dbname", str(target)], check=True,
                              capture_output=True, env=clean_environment()).stdout
    files = [Path(target), Path(f"{target}-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())
