"""People who log in (`users`) and their server-side sessions (`sessions`; the rules are in acquirer_stub.accounts).

A session is stored as the SHA-256 of its id only, with its expiry in epoch seconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, insert


@dataclass(frozen=True)
class User:
    id: int
    username: str
    password_hash: str
    role: str  # operator, cardholder
    phone: str | None


def find(connection: sqlite3.Connection, user_id: int) -> User | None:
    return fetch_one(connection, User, f"SELECT {columns(User)} FROM users WHERE id = ?", (user_id,))


def find_by_name(connection: sqlite3.Connection, username: str) -> User | None:
    return fetch_one(connection, User, f"SELECT {columns(User)} FROM users WHERE username = ?", (username,))


def set_password_hash(connection: sqlite3.Connection, user_id: int, password_hash: str) -> None:
    connection.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def add_session(connection: sqlite3.Connection, id_hash: str, user_id: int, kind: str, created: float,
                expires: float) -> None:
    connection.execute("INSERT INTO sessions (id_hash, user_id, kind, created, expires) VALUES (?, ?, ?, ?, ?)",
                       (id_hash, user_id, kind, created, expires))


def session_user(connection: sqlite3.Connection, id_hash: str, kind: str, now: float) -> User | None:
    """The user of a session of this kind that is still live at `now`."""
    return fetch_one(connection, User,
        f"SELECT {columns(User, 'u')} FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id_hash = ? AND s.kind = ? AND s.expires > ?", (id_hash, kind, now))


def end_session(connection: sqlite3.Connection, id_hash: str) -> None:
    connection.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))


def end_sessions_of(connection: sqlite3.Connection, user_id: int) -> int:
    """How many there were."""
    return connection.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount


def purge_sessions(connection: sqlite3.Connection, now: float) -> None:
    """Forget the sessions expired by `now`."""
    connection.execute("DELETE FROM sessions WHERE expires <= ?", (now,))


def add(connection: sqlite3.Connection, username: str, password_hash: str, role: str, phone: str | None) -> int:
    """A new user's id (the loader's world: the operator and the cardholder)."""
    return insert(connection, "users",
                  {"username": username, "password_hash": password_hash, "role": role, "phone": phone})
