"""Cards (the `accounts` table: one bank card, its account's balance or credit line, its owner).

The issuer engine still reads and debits these rows itself (a later step of issue 13 moves it here). The card
number is stored sealed, found by its keyed hash and shown masked; sealing is the vault's, not the store's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, insert


@dataclass(frozen=True)
class Card:
    """What the token service checks and copies of a card when it binds it to a phone."""

    id: int
    issuer: str
    pan_sealed: bytes
    pan_masked: str
    expiry: str  # ISO date
    kind: str  # credit, debit
    status: str
    par: str | None  # set with the card's first token
    owner_id: int | None



def add_card(connection: sqlite3.Connection, *, issuer: str, pan_hash: str, pan_sealed: bytes, pan_masked: str,
             psn: int, expiry: str, kind: str, balance: int | None, credit_limit: int | None,
             owner_id: int | None) -> int:
    """A card of the loaded world, active; its account id. A debit card has a balance, a credit card a limit."""
    return insert(connection, "accounts", {
        "issuer": issuer, "pan_hash": pan_hash, "pan_sealed": pan_sealed, "pan_masked": pan_masked, "psn": psn,
        "expiry": expiry, "kind": kind, "balance": balance, "credit_limit": credit_limit, "owner_id": owner_id})



def find_card(connection: sqlite3.Connection, account_id: int) -> Card | None:
    return fetch_one(connection, Card, f"SELECT {columns(Card)} FROM accounts WHERE id = ?", (account_id,))


def find_card_by_hash(connection: sqlite3.Connection, pan_hash: str) -> Card | None:
    """The card whose number has this keyed hash."""
    return fetch_one(connection, Card, f"SELECT {columns(Card)} FROM accounts WHERE pan_hash = ?", (pan_hash,))


def set_par(connection: sqlite3.Connection, account_id: int, par: str) -> None:
    """One PAR per card across its number and all its tokens."""
    connection.execute("UPDATE accounts SET par = ? WHERE id = ?", (par, account_id))
