"""Nonces of signed terminal requests (`nonces`): each spent once, remembered while its timestamp is in the window.

The rules (the window, when a nonce is spent) are acquirer_stub.api.security's.
"""

from __future__ import annotations

import sqlite3


def spend(connection: sqlite3.Connection, tid: str, nonce: str, seen: float, *, forget_before: float) -> bool:
    """Remember the nonce (and forget this terminal's seen before `forget_before`); False if it was spent already.

    A unique key, not a read first: two requests with one nonce racing each other cannot both spend it. Only the
    terminal's own old nonces go, so two terminals' decisions never wait for each other's rows.
    """
    insert = "INSERT INTO nonces (tid, nonce, seen) VALUES (?, ?, ?) ON CONFLICT (tid, nonce) DO NOTHING"
    if connection.dialect == "postgresql":  # one round trip: the forgetting as a data-modifying WITH
        cursor = connection.execute("WITH forgotten AS (DELETE FROM nonces WHERE tid = ? AND seen < ?) " + insert,
                                    (tid, forget_before, tid, nonce, seen))
    else:  # SQLite has no DELETE inside WITH; its statements cost no network round trip
        connection.execute("DELETE FROM nonces WHERE tid = ? AND seen < ?", (tid, forget_before))
        cursor = connection.execute(insert, (tid, nonce, seen))
    return cursor.rowcount == 1
