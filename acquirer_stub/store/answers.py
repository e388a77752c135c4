"""Stored answers: every idempotent terminal message keeps its exact response under (TID, STAN, date).

A retransmission is answered from here (acquirer.md §10), so the look-up is the same for each table that keeps
answers; the key's unique index makes it one row at most.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import fetch_one

ANSWERED = ("transactions", "settlements", "transit_loads", "transit_load_confirmations")


@dataclass(frozen=True)
class StoredAnswer:
    request_hash: str  # the canonical body's hash: the same one is a retransmission, another is a conflict
    response: str  # the JSON answer as sent


def find(connection: sqlite3.Connection, table: str, tid: str, stan: str, local_date: str, *,
         kind: str | None = None) -> StoredAnswer | None:
    """The answer stored under the key in `table` (of that `kind` for transactions), None for a new request."""
    if table not in ANSWERED:
        raise ValueError(f"{table} keeps no answers")
    where, key = "tid = ? AND stan = ? AND local_date = ?", (tid, stan, local_date)
    if kind is not None:
        where, key = "kind = ? AND " + where, (kind, *key)
    return fetch_one(connection, StoredAnswer, f"SELECT request_hash, response FROM {table} WHERE {where}", key)
