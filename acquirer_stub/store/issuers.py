"""Issuers (banks) with their demo switches, and their promotions: the dashboard shows and changes them, the
issuer engine routes by BIN, obeys the switches and picks a promotion. Changes run inside the caller's transaction,
with its `events` row.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one


@dataclass(frozen=True)
class Issuer:
    code: str
    name: str
    kind: str  # credit, debit
    bin: str
    algorithm: str  # 3des, sm4
    status: str  # up, down: down answers 91
    added_latency_ms: int
    forced_decline: str | None  # a response code every authorization gets


@dataclass(frozen=True)
class Promotion:
    id: int
    issuer: str
    title: str
    percent: int
    cap: int  # fen
    starts: str  # ISO dates, both included
    ends: str
    active: int


@dataclass(frozen=True)
class PromotionListing(Promotion):
    bank: str | None  # the issuer's name


def issuers(connection: sqlite3.Connection) -> list[Issuer]:
    """By name."""
    return fetch_all(connection, Issuer, f"SELECT {columns(Issuer)} FROM issuers ORDER BY name")


def issuer_name(connection: sqlite3.Connection, code: str) -> str | None:
    """None: no such issuer."""
    row = connection.execute("SELECT name FROM issuers WHERE code = ?", (code,)).fetchone()
    return None if row is None else str(row["name"])


def set_switches(connection: sqlite3.Connection, code: str, status: str, added_latency_ms: int,
                 forced_decline: str | None) -> None:
    """What the engine reads on every authorization of this issuer's cards."""
    connection.execute("UPDATE issuers SET status = ?, added_latency_ms = ?, forced_decline = ? WHERE code = ?",
                       (status, added_latency_ms, forced_decline, code))


def promotions(connection: sqlite3.Connection) -> list[PromotionListing]:
    """Every promotion with its bank's name, oldest first."""
    return fetch_all(connection, PromotionListing,
        f"SELECT {columns(Promotion, 'p')}, i.name AS bank FROM promotions p LEFT JOIN issuers i ON i.code = p.issuer"
        " ORDER BY p.id")


def add_promotion(connection: sqlite3.Connection, issuer: str, title: str, percent: int, cap: int, starts: str,
                  ends: str) -> None:
    connection.execute("INSERT INTO promotions (issuer, title, percent, cap, starts, ends) VALUES (?, ?, ?, ?, ?, ?)",
                       (issuer, title, percent, cap, starts, ends))


def promotion_title(connection: sqlite3.Connection, promotion_id: int) -> str | None:
    """None: no such promotion."""
    row = connection.execute("SELECT title FROM promotions WHERE id = ?", (promotion_id,)).fetchone()
    return None if row is None else str(row["title"])


def set_promotion_active(connection: sqlite3.Connection, promotion_id: int, active: bool) -> None:
    connection.execute("UPDATE promotions SET active = ? WHERE id = ?", (1 if active else 0, promotion_id))


def any_issuer(connection: sqlite3.Connection) -> bool:
    """Whether a world is loaded already (every world has issuers)."""
    return connection.execute("SELECT 1 FROM issuers LIMIT 1").fetchone() is not None


def add_issuer(connection: sqlite3.Connection, code: str, name: str, kind: str, bin: str, algorithm: str) -> None:
    """A bank of the loaded world; its switches start up, with no latency and no forced decline."""
    connection.execute("INSERT INTO issuers (code, name, kind, bin, algorithm) VALUES (?, ?, ?, ?, ?)",
                       (code, name, kind, bin, algorithm))


def issuer(connection: sqlite3.Connection, code: str) -> Issuer | None:
    """None: no such issuer."""
    return fetch_one(connection, Issuer, f"SELECT {columns(Issuer)} FROM issuers WHERE code = ?", (code,))


def route(connection: sqlite3.Connection, pan: str) -> Issuer | None:
    """The issuer whose BIN is the longest prefix of the card number, with its switches; None: no route."""
    return fetch_one(connection, Issuer,
        f"SELECT {columns(Issuer)} FROM issuers WHERE substr(?, 1, length(bin)) = bin ORDER BY length(bin) DESC"
        " LIMIT 1", (pan,))


def active_promotions(connection: sqlite3.Connection, issuer: str, day: str) -> list[Promotion]:
    """The issuer's promotions running on `day` (ISO), the oldest first."""
    return fetch_all(connection, Promotion,
        f"SELECT {columns(Promotion)} FROM promotions WHERE issuer = ? AND active = 1 AND starts <= ? AND ends >= ?"
        " ORDER BY id", (issuer, day, day))
