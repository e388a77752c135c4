"""From a row to a frozen dataclass: the store's repositories hand out these, never a driver's row object.

A query names the columns it reads (`columns`), built from the dataclass, so the two cannot drift apart, and a
column a migration adds changes no page until a dataclass asks for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def columns(cls: type[Any], alias: str = "") -> str:
    """The dataclass's fields as a select list, each prefixed with the table's alias when one is given."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + field.name for field in dataclasses.fields(cls))


def build(cls: type[T], row: Any) -> T:
    """The dataclass from a row read by name (sqlite3.Row now, a dict row of another driver later)."""
    return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})


def fetch_all(connection: sqlite3.Connection, cls: type[T], sql: str, parameters: Sequence[object] = ()) -> list[T]:
    """Every row the query finds, each as `cls` (the query selects its fields by name)."""
    return [build(cls, row) for row in connection.execute(sql, parameters)]


def fetch_one(connection: sqlite3.Connection, cls: type[T], sql: str, parameters: Sequence[object] = ()) -> T | None:
    """None when the query finds nothing."""
    row = connection.execute(sql, parameters).fetchone()
    return None if row is None else build(cls, row)


def insert(connection: sqlite3.Connection, table: str, values: Mapping[str, object]) -> int:
    """One row of `table` from column → value (the columns the caller names, the rest their defaults); its id."""
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    return returned_id(connection, f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(values.values()))


def returned_id(connection: sqlite3.Connection, statement: str, parameters: Sequence[object]) -> int:
    """Run an INSERT and give the new row's id (RETURNING: both databases have it, not both have lastrowid)."""
    return int(connection.execute(statement + " RETURNING id", parameters).fetchone()[0])


def for_update(connection: sqlite3.Connection) -> str:
    """The clause that locks the rows a SELECT reads until the transaction ends: PostgreSQL's decisions run side by
    side and lock what they change; SQLite's transactions are serial and have no such clause."""
    return " FOR UPDATE" if connection.dialect == "postgresql" else ""


def lock_name(connection: sqlite3.Connection, scope: str, name: str) -> None:
    """Lock a name until the transaction ends, e.g. a card that may have no row yet to lock (PostgreSQL: a
    transaction-scoped advisory lock on a hash of it; SQLite's transactions are serial and need none)."""
    if connection.dialect != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"{scope}\0{name}".encode()).digest()[:8], "big", signed=True)
    connection.execute("SELECT pg_advisory_xact_lock(?)", (key,))


def newest(connection: sqlite3.Connection, cls: type[T], table: str, limit: int) -> list[T]:
    """The last `limit` rows of `table` by id, newest first (the dashboard's lists)."""
    return fetch_all(connection, cls, f"SELECT {columns(cls)} FROM {table} ORDER BY id DESC LIMIT ?", (limit,))
