"""The transit clearing tables: fares cleared (one per card and purse transaction) and the cities' names.

All of transit clearing's SQL is here, so the API and the dashboard work on these dataclasses and the store can
change under them. The card number is never stored: a keyed hash finds a fare, a masked number shows it.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class ClearedFare:
    tid: str
    psam: str
    city_code: str
    card_hash: str
    card_masked: str
    offline_serial: int
    amount: int
    terminal_serial: str
    fare_time: str  # ISO, as the PSAM sent it in DEBIT
    tac: str
    received: str  # ISO, host local time: its date is the clearing day


@dataclass(frozen=True)
class Figures:
    key: str
    name: str
    count: int
    amount: int


def find_fare(connection: sqlite3.Connection, card_hash: str, offline_serial: int) -> ClearedFare | None:
    row = connection.execute(
        "SELECT tid, psam, city_code, card_hash, card_masked, offline_serial, amount, terminal_serial, fare_time, tac,"
        " received FROM transit_fares WHERE card_hash = ? AND offline_serial = ?",
        (card_hash, offline_serial)).fetchone()
    return None if row is None else ClearedFare(**dict(row))


def add_fare(connection: sqlite3.Connection, fare: ClearedFare) -> None:
    """Inside the caller's transaction; the unique (card, purse transaction) key refuses a second one."""
    connection.execute(
        "INSERT INTO transit_fares (tid, psam, city_code, card_hash, card_masked, offline_serial, amount,"
        " terminal_serial, fare_time, tac, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (fare.tid, fare.psam, fare.city_code, fare.card_hash, fare.card_masked, fare.offline_serial, fare.amount,
         fare.terminal_serial, fare.fare_time, fare.tac, fare.received))


def add_cities(connection: sqlite3.Connection, cities: list[tuple[str, str]]) -> None:
    """(city code, name) of the world's transit card issuers, for the dashboard."""
    connection.executemany("INSERT INTO transit_cities (city_code, name) VALUES (?, ?)", cities)


def per_city(connection: sqlite3.Connection, table: str, day_column: str, day: datetime.date,
             where: str = "1 = 1") -> list[Figures]:
    """Count and sum of `table`'s amounts for a day, per card city (`table`, `day_column`, `where`: this package's
    own names, never a caller's text)."""
    return [Figures(row["key"], f"{row['name']} ({row['key']})", row["n"], row["amount"]) for row in connection.execute(
        "SELECT x.city_code AS key, COALESCE(c.name, 'city ' || x.city_code) AS name, COUNT(*) AS n,"
        f" SUM(x.amount) AS amount FROM {table} x LEFT JOIN transit_cities c ON c.city_code = x.city_code"
        f" WHERE {where} AND substr(x.{day_column}, 1, 10) = ? GROUP BY x.city_code, c.name ORDER BY x.city_code",
        (day.isoformat(),))]


def figures_per_city(connection: sqlite3.Connection, day: datetime.date) -> list[Figures]:
    return per_city(connection, "transit_fares", "received", day)


def figures_per_gate(connection: sqlite3.Connection, day: datetime.date, *, tid: str | None = None) -> list[Figures]:
    """Every gate's fares of `day`, or only the gate `tid`'s (none: it cleared nothing that day)."""
    one = "" if tid is None else " AND f.tid = ?"
    return [Figures(row["key"], f"{row['key']} ({row['name']})", row["n"], row["amount"]) for row in connection.execute(
        "SELECT f.tid AS key, COALESCE(t.name, f.tid) AS name, COUNT(*) AS n, SUM(f.amount) AS amount"
        f" FROM transit_fares f LEFT JOIN terminals t ON t.tid = f.tid WHERE substr(f.received, 1, 10) = ?{one}"
        " GROUP BY f.tid, t.name ORDER BY f.tid", (day.isoformat(), *(() if tid is None else (tid,))))]


def refused_count(connection: sqlite3.Connection, day: datetime.date) -> int:
    """Fares refused that day: the feed's `transit_refused` events (nothing else of them is stored)."""
    return int(connection.execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'transit_refused' AND substr(created, 1, 10) = ?",
        (day.isoformat(),)).fetchone()[0])
