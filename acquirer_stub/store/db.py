"""The database: one SQLite file (the embedded default) or a PostgreSQL server, chosen by the instance's target.

SQLite: WAL with synchronous=FULL, so a commit is on disk before the answer leaves. `transaction()` takes the
write lock at BEGIN (IMMEDIATE): one writer at a time, across threads and processes. Threads of one process first
queue on an in-process lock per database file: SQLite's own busy handler waits for a held write lock by sleeping
in growing steps (up to 100 ms each), so under load a waiting thread slept on long after the lock was free (p99 of
hundreds of ms at 10 terminals); a mutex hands it over at once. The terminal API's decisions (`serial=False`)
group-commit instead: several per fsync, on one connection per file and process (`_Group`).

PostgreSQL (`acquirer_stub.store.postgres`): several processes on one database. A `transaction()` is serial by
default, as on SQLite (a transaction-scoped advisory lock, one for the whole database): pages, the token service,
the loader, anything rare. The terminal API's decisions ask for `serial=False`: they lock only the rows they change
(the terminal's row when it is seen, the account's before its money is read: `rows.for_update`; a transit card's
name, which may have no row yet: `rows.lock_name`), so decisions on
different terminals and accounts run in parallel, and the unique keys (TID, STAN, date) keep one sale one row. Two
deciders that meet anyway get `Conflict` and run the request again (`retrying`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
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
    path: Path | None = None  # the database file (None: not opened by `connect`)
    group: _Group | None = None  # the group commit its decisions joined (kept alive by the connections using it)

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
    connection.path = path
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
    """One transaction, rolled back if the block raises; the block works on the connection it yields.

    `serial=False` is for the terminal API's decisions. PostgreSQL: the decision locks the rows it changes itself
    (no advisory lock). SQLite: it joins this process's group commit for the file (`_Group`), and the yielded
    connection is the group's, not `connection`."""
    postgres = connection.dialect == "postgresql"
    if not postgres and not serial and connection.path is not None:
        if connection.group is None:
            connection.group = _group(connection.path)
        with connection.group.decision() as grouped:
            yield grouped
        return
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


class _Group:
    """Group commit for one SQLite file in this process: several decisions per fsync.

    Requests that decide at the same time take turns on one connection inside one transaction, each decision in
    a savepoint (a decision that raises is rolled back alone). A decision that ends while others wait for their
    turn leaves the COMMIT to them; the last of a batch (or the MAX_BATCH-th) commits for all, and every one of
    them returns only after that COMMIT: no answer leaves before its decision is on disk, and a failed COMMIT
    fails the whole batch. Decisions of one batch read each other's writes, as if each had committed in turn."""

    MAX_BATCH = 32

    def __init__(self, path: Path) -> None:
        self.connection = connect(path)
        self.turn = threading.Condition()
        self.busy = False  # a decision or the COMMIT is using the connection
        self.waiting = 0  # decisions waiting for their turn: they will join the open batch
        self.open = False
        self.batch = 0  # the open (or last) batch's number
        self.size = 0  # decisions in the open batch
        self.committed = 0  # the last batch that ended (committed, or failed: then in `failed`)
        self.failed: dict[int, BaseException] = {}

    @contextlib.contextmanager
    def decision(self) -> Iterator[Any]:
        mine = self._enter()
        try:
            yield self.connection
            self.connection.execute("RELEASE decision")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK TO decision")
                self.connection.execute("RELEASE decision")
            self._finish(mine)
            raise
        self._finish(mine)

    def _enter(self) -> int:
        with self.turn:
            self.waiting += 1
            self.turn.wait_for(lambda: not self.busy)
            self.waiting -= 1
            self.busy = True
        try:
            if not self.open:
                self.connection.execute("BEGIN IMMEDIATE")
                self.open, self.batch, self.size = True, self.batch + 1, 0
        except BaseException:
            self._end_batch(None, None)
            raise
        mine, self.size = self.batch, self.size + 1
        try:
            self.connection.execute("SAVEPOINT decision")
        except BaseException:
            self._finish(mine)
            raise
        return mine

    def _finish(self, mine: int) -> None:
        """Leave the COMMIT to a decision waiting for its turn, or make it; either way return once it is done."""
        with self.turn:
            if self.waiting and self.size < self.MAX_BATCH:
                self.busy = False
                self.turn.notify_all()
                self.turn.wait_for(lambda: self.committed >= mine)
                error = self.failed.get(mine)
                if error is not None:
                    raise error
                return
        error: BaseException | None = None
        try:
            self.connection.execute("COMMIT")
        except BaseException as failed:
            error = failed
            with contextlib.suppress(sqlite3.Error):
                self.connection.execute("ROLLBACK")
        self._end_batch(mine, error)
        if error is not None:
            raise error

    def _end_batch(self, batch: int | None, error: BaseException | None) -> None:
        with self.turn:
            if batch is not None:
                self.open = False
                self.committed = batch
                if error is not None:
                    self.failed[batch] = error
                for old in [number for number in self.failed if number < batch - 1000]:
                    del self.failed[old]
            self.busy = False
            self.turn.notify_all()


_groups: weakref.WeakValueDictionary[tuple[int, str], _Group] = weakref.WeakValueDictionary()
_groups_guard = threading.Lock()


def _group(path: Path) -> _Group:
    """This process's group for the file (a forked worker makes its own: a connection is not shared across fork).
    It lives as long as a request connection holds it: a test's database, gone, takes its group with it."""
    key = (os.getpid(), str(Path(path).resolve()))
    with _groups_guard:
        group = _groups.get(key)
        if group is None:
            group = _groups[key] = _Group(Path(path))
        return group


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
