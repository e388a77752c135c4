"""Bindings in progress (`otps`): one SMS code per card and phone, salted and keyed-hashed, with its attempts.

The rules (expiry, attempts, the daily caps) are acquirer_stub.tsp.binding's. A binding's id is its row's id.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, insert


@dataclass(frozen=True)
class BindingCode:
    id: int
    user_id: int
    device_id: str
    account_id: int
    code_hash: str  # "salt:hex digest"
    expires: float  # epoch seconds
    attempts: int
    state: str  # pending, verified, locked, expired, replaced


def replace_pending(connection: sqlite3.Connection, user_id: int, device_id: str, account_id: int) -> None:
    """A new code for a card and phone voids the earlier one still pending."""
    connection.execute("UPDATE otps SET state = 'replaced' WHERE user_id = ? AND device_id = ? AND account_id = ?"
                       " AND state = 'pending'", (user_id, device_id, account_id))


def add_code(connection: sqlite3.Connection, user_id: int, device_id: str, account_id: int, code_hash: str,
             expires: float) -> int:
    """A pending code; its id is the binding's."""
    return insert(connection, "otps", {"user_id": user_id, "device_id": device_id, "account_id": account_id,
                                       "code_hash": code_hash, "expires": expires})


def find_code(connection: sqlite3.Connection, binding_id: int, user_id: int) -> BindingCode | None:
    """None also for another user's binding."""
    return fetch_one(connection, BindingCode,
        f"SELECT {columns(BindingCode)} FROM otps WHERE id = ? AND user_id = ?", (binding_id, user_id))


def set_state(connection: sqlite3.Connection, binding_id: int, state: str, *, attempts: int | None = None) -> None:
    """The code's new state; `attempts` too after a wrong code."""
    if attempts is None:
        connection.execute("UPDATE otps SET state = ? WHERE id = ?", (state, binding_id))
    else:
        connection.execute("UPDATE otps SET attempts = ?, state = ? WHERE id = ?", (attempts, state, binding_id))
