"""Cards (the `accounts` table: one bank card, its account's balance or credit line, its owner).

The issuer engine still reads and debits these rows itself (a later step of issue 13 moves it here). The card
number is stored sealed, found by its keyed hash and shown masked; sealing is the vault's, not the store's.
"""

from __future__ import annotations

import sqlite3

from acquirer_stub.store.rows import insert


def add_card(connection: sqlite3.Connection, *, issuer: str, pan_hash: str, pan_sealed: bytes, pan_masked: str,
             psn: int, expiry: str, kind: str, balance: int | None, credit_limit: int | None,
             owner_id: int | None) -> int:
    """A card of the loaded world, active; its account id. A debit card has a balance, a credit card a limit."""
    return insert(connection, "accounts", {
        "issuer": issuer, "pan_hash": pan_hash, "pan_sealed": pan_sealed, "pan_masked": pan_masked, "psn": psn,
        "expiry": expiry, "kind": kind, "balance": balance, "credit_limit": credit_limit, "owner_id": owner_id})

