"""The database: one SQLite file (the embedded default) or a PostgreSQL server, chosen by the instance's target.

SQLite: WAL with synchronous=FULL, so a commit is on disk before the answer leaves. `transaction()` takes the
write lock at BEGIN (IMMEDIATE): one writer at a time, across threads and processes. Threads of one process first
queue on an in-process lock per database file: SQLite's own busy handler waits for a held write lock by sleeping
in growing steps (up to 100 ms each), so under load a waiting thread slept on long after the lock was free (p99 of
hundreds of ms at 10 terminals); a mutex hands it over at once.

PostgreSQL (`acquirer_stub.store.postgres`): several processes on one database. A `transaction()` is serial by
default, as on SQLite (a transaction-scoped advisory lock, one for the whole database): pages, the token service,
the loader, anything rare. The terminal API's decisions ask for `serial=False`: they lock only the rows they change
(the terminal's row when it is seen, the account's before its money is read: `rows.for_update`), so decisions on
different terminals and accounts run in parallel, and the unique keys (TID, STAN, date) keep one sale one row. Two
deciders that meet anyway get `Conflict` and run the request again (`retrying`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from flask import current_app, g

from acquirer_stub.store.schema import MIGRATIONS, SQLITE_ONLY
from firmware.privatefiles import private_database

Target = Path | str
"""Where the database is: a SQLite file's path, or a postgresql:// URL."""

T = TypeVar("T")

_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()
_local = threading.local()
SERIAL_LOCK_KEY = 0x51504F53  # "QPOS": PostgreSQL's advisory lock that makes a transaction serial
CONFLICT_RETRIES = 3


class Conflict(Exception):
    """Another process decided on the same row first: this transaction rolled back and may run again."""


class Connection(sqlite3.Connection):
    """A SQLite connection that knows the in-process write lock of its database file."""

    dialect = "sqlite"
    write_lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()

    def execute_ddl(self, statement: str) -> None:
        """A migration statement: SQLite runs them as written (PostgreSQL's connection maps the types)."""
        self.execute(statement)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: Target) -> bool:
    """Whether the target is a PostgreSQL URL (anything else is a SQLite file's path)."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def _write_lock(path: Path) -> threading.RLock:
    key = str(Path(path).resolve())
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.RLock())


def connect(target: Target) -> Any:
    """A connection of its own. SQLite: opened (or created, 0600: SQLite gives the -wal and -shm files the main
    file's mode) with the settings above."""
    if is_postgres(target):
        from acquirer_stub.store import postgres

        return postgres.connect(str(target))
    path = Path(target)
    private_database(path)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False, factory=Connection)
    connection.write_lock = _write_lock(path)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def get_db() -> Any:
    """The request's connection. SQLite: one per worker thread, reused (opening costs more than a decision).
    PostgreSQL: one from this process's pool, given back when the request ends."""
    target = current_app.config["DATABASE"]
    if is_postgres(target):
        if "db" not in g:
            from acquirer_stub.store import postgres

            source = postgres.pool(str(target), current_app.config.get("DATABASE_POOL_SIZE", 16))
            g.db = postgres.Connection(source.getconn(), source)
        return g.db
    path = str(target)
    connections: dict[str, sqlite3.Connection] = _local.__dict__.setdefault("connections", {})
    if path not in connections:
        connections[path] = connect(Path(path))
    return connections[path]


def close_db(_: BaseException | None = None) -> None:
    """End of a request: a pooled connection goes back to its pool (a SQLite one stays with its thread)."""
    connection = g.pop("db", None)
    if connection is not None:
        connection.close()


def shown(target: Target) -> str:
    """The target as it may be printed or logged (a URL without its password)."""
    if is_postgres(target):
        from acquirer_stub.store.postgres import redacted

        return redacted(str(target))
    return str(target)


def holds_data(connection: Any) -> bool:
    """Whether the database already holds an acquirer (a world loaded into it); an empty schema does not count."""
    if connection.dialect == "postgresql":
        statement = "SELECT count(*) FROM information_schema.tables WHERE table_name = 'issuers'" \
                    " AND table_schema = current_schema()"
    else:
        statement = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'issuers'"
    if not int(connection.execute(statement).fetchone()[0]):
        return False
    return connection.execute("SELECT 1 FROM issuers LIMIT 1").fetchone() is not None


def clear(connection: Any) -> None:
    """Drop every table of the schema (`init --force` on a PostgreSQL database; a SQLite file is simply new)."""
    if connection.dialect != "postgresql":
        raise RuntimeError("a SQLite database is cleared by removing its file")
    with transaction(connection):
        tables = [row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        for table in tables:
            connection.raw.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


def migrate(connection: Any) -> int:
    """Bring the schema up to date; returns the version now in force. One step per transaction, the version read
    inside it: several processes starting at once on one database apply each step once."""
    postgres = connection.dialect == "postgresql"
    if postgres:
        with transaction(connection):
            connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            if connection.execute("SELECT version FROM schema_version").fetchone() is None:
                connection.execute("INSERT INTO schema_version (version) VALUES (0)")
    while True:
        with transaction(connection):
            version = _version(connection)
            if version > len(MIGRATIONS):
                raise RuntimeError(f"database schema version {version} is newer than this program ({len(MIGRATIONS)})")
            if version == len(MIGRATIONS):
                return version
            for statement in _statements(MIGRATIONS[version]):
                if statement.startswith(SQLITE_ONLY):
                    if postgres:
                        continue  # data from before the PostgreSQL backend existed: a new database has none
                    statement = statement.removeprefix(SQLITE_ONLY)
                connection.execute_ddl(statement)
            if postgres:
                connection.execute("UPDATE schema_version SET version = ?", (version + 1,))
            else:
                connection.execute(f"PRAGMA user_version = {version + 1}")


def _version(connection: Any) -> int:
    if connection.dialect == "postgresql":
        return int(connection.execute("SELECT version FROM schema_version").fetchone()[0])
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


@contextlib.contextmanager
def transaction(connection: Any, *, serial: bool = True) -> Iterator[Any]:
    """One transaction; rolled back if the block raises. `serial=False` (PostgreSQL only: SQLite is always
    serial) for a decision that locks the rows it changes itself."""
    postgres = connection.dialect == "postgresql"
    with connection.write_lock:
        connection.execute("BEGIN" if postgres else "BEGIN IMMEDIATE")
        try:
            if postgres and serial:
                connection.execute("SELECT pg_advisory_xact_lock(?)", (SERIAL_LOCK_KEY,))
            yield connection
        except BaseException as error:
            connection.execute("ROLLBACK")
            _raise_if_conflict(error, postgres)
            raise
        try:
            connection.execute("COMMIT")
        except Exception as error:  # PostgreSQL has rolled it back
            _raise_if_conflict(error, postgres)
            raise


def _raise_if_conflict(error: BaseException, postgres: bool) -> None:
    """A PostgreSQL race lost (see `CONFLICTS`) becomes `Conflict`, which `retrying` runs again."""
    if postgres:
        from acquirer_stub.store.postgres import CONFLICTS

        if isinstance(error, CONFLICTS):
            raise Conflict(str(error).splitlines()[0]) from error


def retrying(decide: Callable[[], T]) -> T:
    """Run a request's decision again when it lost a race with another process (`Conflict`): the second run
    finds what the first one's rival committed (the stored answer of the same STAN, a spent nonce)."""
    for _ in range(CONFLICT_RETRIES - 1):
        try:
            return decide()
        except Conflict:
            continue
    return decide()
