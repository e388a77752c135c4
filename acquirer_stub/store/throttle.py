"""The `throttle` table: one fixed window per (scope, key) with its count (the rules are in acquirer_stub.throttle).

Every change runs inside the caller's transaction, under the same write lock as the step the counter guards.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import fetch_one


@dataclass(frozen=True)
class Window:
    count: int
    resets: float  # epoch seconds: the window closes then


def find(connection: sqlite3.Connection, scope: str, key: str) -> Window | None:
    return fetch_one(connection, Window, "SELECT count, resets FROM throttle WHERE scope = ? AND key = ?", (scope, key))


def open_window(connection: sqlite3.Connection, scope: str, key: str, resets: float) -> None:
    """A new window with its first event, in place of a closed one."""
    connection.execute(
        "INSERT INTO throttle (scope, key, count, resets) VALUES (?, ?, 1, ?)"
        " ON CONFLICT (scope, key) DO UPDATE SET count = excluded.count, resets = excluded.resets",
        (scope, key, resets))


def set_count(connection: sqlite3.Connection, scope: str, key: str, count: int) -> None:
    connection.execute("UPDATE throttle SET count = ? WHERE scope = ? AND key = ?", (count, scope, key))


def take_back(connection: sqlite3.Connection, scope: str, key: str) -> None:
    """One event less, never below zero."""
    connection.execute("UPDATE throttle SET count = count - 1 WHERE scope = ? AND key = ? AND count > 0",
                       (scope, key))


def clear(connection: sqlite3.Connection, scope: str, key: str) -> None:
    connection.execute("DELETE FROM throttle WHERE scope = ? AND key = ?", (scope, key))


def purge(connection: sqlite3.Connection, now: float) -> None:
    """Forget the windows closed by `now`."""
    connection.execute("DELETE FROM throttle WHERE resets <= ?", (now,))
