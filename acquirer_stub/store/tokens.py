"""Devices (phones with a wallet) and the tokens they hold: the dashboard's and the cardholder pages' listings,
and the token service's reads and writes (binding, the lifecycle; its rules are acquirer_stub.tsp's).

Sealed token numbers never leave this module: the listings carry masked numbers only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one, for_update, insert


@dataclass(frozen=True)
class Device:
    id: str
    owner_id: int | None
    name: str
    wallet_enabled: int
    wallet_held_by: str | None  # cardholder, operator, issuer: who turned the wallet off


@dataclass(frozen=True)
class DeviceListing(Device):
    username: str | None  # the owner's
    cards: int  # tokens not deleted


@dataclass(frozen=True)
class Token:
    """What the lifecycle rules look at."""

    id: int
    token_masked: str
    account_id: int
    device_id: str | None
    wallet_card_id: str | None
    par: str
    status: str  # active, suspended, deleted
    status_reason: str | None
    held_by: str | None  # cardholder, operator, issuer: who placed a suspension


@dataclass(frozen=True)
class PaymentToken:
    """What the issuer engine checks of a token a terminal sent."""

    id: int
    account_id: int
    device_id: str | None
    status: str  # active, suspended, deleted
    expiry: str
    last_atc: int  # -1: none yet


@dataclass(frozen=True)
class DeviceToken(Token):
    """A device's token with its funding card, masked: what the wallet page shows."""

    expiry: str
    last_atc: int
    created: str
    pan_masked: str  # the card's
    issuer: str
    kind: str


@dataclass(frozen=True)
class TokenListing:
    id: int
    token_masked: str
    device_id: str | None
    wallet_card_id: str | None
    par: str
    expiry: str
    status: str
    status_reason: str | None
    held_by: str | None
    last_atc: int
    pan_masked: str  # the card's
    bank: str


def devices(connection: sqlite3.Connection) -> list[DeviceListing]:
    """Every device with its owner's name and how many cards it holds."""
    return fetch_all(connection, DeviceListing,
        f"SELECT {columns(Device, 'd')}, u.username, (SELECT COUNT(*) FROM tokens t WHERE t.device_id = d.id"
        " AND t.status != 'deleted') AS cards FROM devices d LEFT JOIN users u ON u.id = d.owner_id ORDER BY d.id")


def tokens(connection: sqlite3.Connection) -> list[TokenListing]:
    """Every token, by device, with its card's masked number and bank."""
    return fetch_all(connection, TokenListing,
        "SELECT t.id, t.token_masked, t.device_id, t.wallet_card_id, t.par, t.expiry, t.status, t.status_reason,"
        " t.held_by, t.last_atc, a.pan_masked, COALESCE(i.name, a.issuer) AS bank FROM tokens t"
        " JOIN accounts a ON a.id = t.account_id LEFT JOIN issuers i ON i.code = a.issuer ORDER BY t.device_id, t.id")


def devices_of(connection: sqlite3.Connection, owner_id: int) -> list[Device]:
    """A cardholder's devices, by name."""
    return fetch_all(connection, Device,
        f"SELECT {columns(Device)} FROM devices WHERE owner_id = ? ORDER BY name, id", (owner_id,))


def device_of(connection: sqlite3.Connection, device_id: str, owner_id: int) -> Device | None:
    """None also when the device is someone else's: a cardholder cannot tell it from one that does not exist."""
    return fetch_one(connection, Device,
        f"SELECT {columns(Device)} FROM devices WHERE id = ? AND owner_id = ?", (device_id, owner_id))


def token_masked_of(connection: sqlite3.Connection, token_id: int, owner_id: int) -> str | None:
    """The masked number of a token on one of the owner's devices; None for anyone else's."""
    row = connection.execute(
        "SELECT t.token_masked FROM tokens t JOIN devices d ON d.id = t.device_id WHERE t.id = ? AND d.owner_id = ?",
        (token_id, owner_id)).fetchone()
    return None if row is None else str(row["token_masked"])


def add_device(connection: sqlite3.Connection, device_id: str, owner_id: int | None, name: str) -> None:
    """A phone registered to its owner, its wallet on; a device already known is left as it is."""
    connection.execute("INSERT INTO devices (id, owner_id, name) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                       (device_id, owner_id, name))


def add_token(connection: sqlite3.Connection, *, token_hash: str, token_sealed: bytes, token_masked: str,
              account_id: int, device_id: str, wallet_card_id: str, par: str, expiry: str, status: str,
              created: str) -> int:
    """A token for a card on a device (sealed number in, sealed number stored); its id."""
    return insert(connection, "tokens", {
        "token_hash": token_hash, "token_sealed": token_sealed, "token_masked": token_masked, "account_id": account_id,
        "device_id": device_id, "wallet_card_id": wallet_card_id, "par": par, "expiry": expiry, "status": status,
        "created": created})



def device(connection: sqlite3.Connection, device_id: str) -> Device | None:
    return fetch_one(connection, Device, f"SELECT {columns(Device)} FROM devices WHERE id = ?", (device_id,))


def set_wallet(connection: sqlite3.Connection, device_id: str, enabled: bool, held_by: str | None) -> None:
    """The lost-phone switch; `held_by` says who turned it off (None when on)."""
    connection.execute("UPDATE devices SET wallet_enabled = ?, wallet_held_by = ? WHERE id = ?",
                       (int(enabled), held_by, device_id))


def token(connection: sqlite3.Connection, token_id: int) -> Token | None:
    return fetch_one(connection, Token, f"SELECT {columns(Token)} FROM tokens WHERE id = ?", (token_id,))


def tokens_on(connection: sqlite3.Connection, device_id: str, status: str,
              status_reason: str | None = None) -> list[Token]:
    """A device's tokens in `status` (and for `status_reason`, when given), oldest first."""
    sql, parameters = f"SELECT {columns(Token)} FROM tokens WHERE device_id = ? AND status = ?", [device_id, status]
    if status_reason is not None:
        sql, parameters = sql + " AND status_reason = ?", [*parameters, status_reason]
    return fetch_all(connection, Token, sql + " ORDER BY id", parameters)


def set_status(connection: sqlite3.Connection, token_id: int, status: str, reason: str, held_by: str | None) -> None:
    connection.execute("UPDATE tokens SET status = ?, status_reason = ?, held_by = ? WHERE id = ?",
                       (status, reason, held_by, token_id))


def device_tokens(connection: sqlite3.Connection, device_id: str, *, include_deleted: bool) -> list[DeviceToken]:
    """Oldest first."""
    return fetch_all(connection, DeviceToken,
        f"SELECT {columns(Token, 't')}, t.expiry, t.last_atc, t.created, a.pan_masked, a.issuer, a.kind"
        " FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.device_id = ?"
        + ("" if include_deleted else " AND t.status != 'deleted'") + " ORDER BY t.id", (device_id,))


def holds_card(connection: sqlite3.Connection, device_id: str, account_id: int) -> bool:
    """Whether the device has a token of this card that is not deleted."""
    return connection.execute(
        "SELECT 1 FROM tokens WHERE device_id = ? AND account_id = ? AND status != 'deleted'",
        (device_id, account_id)).fetchone() is not None


def wallet_card_ids(connection: sqlite3.Connection, device_id: str) -> set[str | None]:
    """The wallet's names of the device's cards not deleted: a new card must take another."""
    return {row[0] for row in connection.execute(
        "SELECT wallet_card_id FROM tokens WHERE device_id = ? AND status != 'deleted'", (device_id,))}


def cards_held(connection: sqlite3.Connection, device_id: str) -> int:
    """Tokens active or suspended on the device: what counts against the wallet's room."""
    return int(connection.execute(
        "SELECT COUNT(*) FROM tokens WHERE device_id = ? AND status IN ('active', 'suspended')",
        (device_id,)).fetchone()[0])


def first_par(connection: sqlite3.Connection, account_id: int) -> str | None:
    """The PAR of the card's oldest token, if it has one."""
    row = connection.execute("SELECT par FROM tokens WHERE account_id = ? ORDER BY id LIMIT 1",
                             (account_id,)).fetchone()
    return None if row is None else str(row["par"])


def number_in_use(connection: sqlite3.Connection, number_hash: str) -> bool:
    """Whether a token or a card already has the number with this keyed hash (a new token's must be unique)."""
    return connection.execute(
        "SELECT 1 FROM tokens WHERE token_hash = ? UNION ALL SELECT 1 FROM accounts WHERE pan_hash = ?",
        (number_hash, number_hash)).fetchone() is not None


def payment_token(connection: sqlite3.Connection, token_hash: str) -> PaymentToken | None:
    """The token by its number's keyed hash, locked for the decision (its ATC); None: no such token."""
    return fetch_one(connection, PaymentToken,
                     f"SELECT {columns(PaymentToken)} FROM tokens WHERE token_hash = ?{for_update(connection)}",
                     (token_hash,))


def raise_atc(connection: sqlite3.Connection, token_id: int, atc: int) -> None:
    """The token's last verified ATC moves forward only."""
    connection.execute("UPDATE tokens SET last_atc = ? WHERE id = ? AND last_atc < ?", (atc, token_id, atc))
