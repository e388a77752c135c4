"""One SQLite file, opened with the settings that keep every committed decision through a power cut.

WAL with synchronous=FULL: a commit is on disk before the answer leaves. `transaction()` takes the write
lock at BEGIN (IMMEDIATE), so two requests never decide on the same account at once.

Threads of one process first queue on an in-process lock per database file: SQLite's own busy handler waits
for a held write lock by sleeping in growing steps (up to 100 ms each), so under load a waiting thread slept on
long after the lock was free (p99 of hundreds of ms at 10 terminals); a mutex hands it over at once. BEGIN
IMMEDIATE and busy_timeout still guard against other processes.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from flask import current_app

from acquirer_stub.store.schema import MIGRATIONS
from firmware.privatefiles import private_database

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()
_local = threading.local()


class Connection(sqlite3.Connection):
    """A connection that knows the in-process write lock of its database file."""

    write_lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()


def _write_lock(path: Path) -> threading.RLock:
    key = str(Path(path).resolve())
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.RLock())


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create, 0600: SQLite gives the -wal and -shm files the main file's mode) the database."""
    private_database(Path(path))
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False, factory=Connection)
    connection.write_lock = _write_lock(path)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def get_db() -> sqlite3.Connection:
    """The request's connection (one per worker thread, reused: opening costs more than a decision)."""
    path = str(current_app.config["DATABASE"])
    connections: dict[str, sqlite3.Connection] = _local.__dict__.setdefault("connections", {})
    if path not in connections:
        connections[path] = connect(Path(path))
    return connections[path]


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version now in force."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema version {version} is newer than this program ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(connection):
            for statement in _statements(script):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    with getattr(connection, "write_lock", contextlib.nullcontext()):
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
