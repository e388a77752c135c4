"""Devices (phones with a wallet) and the tokens they hold, as the dashboard and the cardholder pages list them.

The token service (acquirer_stub.tsp) still writes these tables itself; a later step of issue 13 moves it here.
Sealed token numbers never leave this module: the listings carry masked numbers only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one, insert


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

