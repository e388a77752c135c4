"""Cards (the `accounts` table: one bank card, its account's balance or credit line, its owner).

The issuer engine reads a card's account here and moves its money and ATC. The card number is stored sealed,
found by its keyed hash and shown masked; sealing is the vault's, not the store's.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, for_update, insert


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


@dataclass(frozen=True)
class Account:
    """What the issuer engine decides on: the card's state, its money and the last ATC it verified."""

    id: int
    issuer: str
    expiry: str  # ISO date
    kind: str  # credit, debit
    balance: int | None  # fen, a debit card's
    credit_limit: int | None  # fen, a credit card's
    credit_used: int
    status: str  # active, lost, stolen, restricted, closed
    last_atc: int  # -1: none yet


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


def account(connection: sqlite3.Connection, account_id: int) -> Account | None:
    """The account, locked for the decision that reads its money and ATC (a token's is locked before it)."""
    return fetch_one(connection, Account,
                     f"SELECT {columns(Account)} FROM accounts WHERE id = ?{for_update(connection)}", (account_id,))


def account_by_hash(connection: sqlite3.Connection, pan_hash: str) -> Account | None:
    """The card's account by its number's keyed hash, locked as `account` is; None: no such card."""
    return fetch_one(connection, Account,
                     f"SELECT {columns(Account)} FROM accounts WHERE pan_hash = ?{for_update(connection)}", (pan_hash,))


def charge(connection: sqlite3.Connection, account_id: int, kind: str, amount: int, *,
           atc: int | None = None) -> None:
    """Take `amount` (negative: give it back) from a debit card's balance or onto a credit card's line, in SQL
    rather than from a row read earlier, so nothing else's change is overwritten. With `atc`, the card's last
    verified ATC moves forward to it in the same statement (as `raise_atc`)."""
    money = "balance = COALESCE(balance, 0) - ?" if kind == "debit" else "credit_used = credit_used + ?"
    if atc is None:
        connection.execute(f"UPDATE accounts SET {money} WHERE id = ?", (amount, account_id))
    else:
        connection.execute(f"UPDATE accounts SET {money}, last_atc = CASE WHEN last_atc < ? THEN ? ELSE last_atc END"
                           " WHERE id = ?", (amount, atc, atc, account_id))


def raise_atc(connection: sqlite3.Connection, account_id: int, atc: int) -> None:
    """The card's last verified ATC moves forward only."""
    connection.execute("UPDATE accounts SET last_atc = ? WHERE id = ? AND last_atc < ?", (atc, account_id, atc))
