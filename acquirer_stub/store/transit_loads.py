"""The e-purse loads the host authorized (MAC2 answered) and their confirmations (TAC checked).

The serial rule itself is the API's (acquirer_stub.api.transit_load); these functions read and move a load's
state as it decides. The card number is never stored: a keyed hash finds a card's loads, a masked one shows it.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_one, insert, lock_name
from acquirer_stub.store.transit import Figures, per_city


@dataclass(frozen=True)
class Load:
    id: int
    tid: str
    stan: str
    local_date: str
    request_hash: str
    city_code: str
    card_hash: str
    card_masked: str
    online_serial: int  # the card's count of loads when it quoted this one
    balance_before: int  # fen
    amount: int  # fen
    terminal_id: str  # hex, as MAC2 covers it
    date_time: str  # YYYYMMDDhhmmss the card credits with
    state: str  # authorized, voided, credited, completed
    tac: str | None
    response: str  # the JSON answer as sent
    created: str
    updated: str


def find(connection: sqlite3.Connection, tid: str, stan: str, local_date: str) -> Load | None:
    """The load a confirmation names, by the key of its request."""
    return fetch_one(connection, Load,
        f"SELECT {columns(Load)} FROM transit_loads WHERE tid = ? AND stan = ? AND local_date = ?",
        (tid, stan, local_date))


def lock_card(connection: sqlite3.Connection, card_hash: str) -> None:
    """Until the transaction ends, this card's loads and confirmations wait for each other (PostgreSQL: decisions
    run side by side; one card's serial rule must be applied one load at a time, even the card's first)."""
    lock_name(connection, "transit card", card_hash)


def counted_from(connection: sqlite3.Connection, card_hash: str, serial: int) -> bool:
    """Whether a load of the card at this serial or a higher one is counted (its money is on the card)."""
    return connection.execute(
        "SELECT 1 FROM transit_loads WHERE card_hash = ? AND online_serial >= ? AND state IN"
        " ('credited', 'completed')", (card_hash, serial)).fetchone() is not None


def void_authorized(connection: sqlite3.Connection, card_hash: str, serial: int, now: str) -> None:
    """The card's authorized load at this serial was never credited (the card still counts the serial)."""
    connection.execute("UPDATE transit_loads SET state = 'voided', updated = ? WHERE card_hash = ? AND"
                       " online_serial = ? AND state = 'authorized'", (now, card_hash, serial))


def credit_authorized_below(connection: sqlite3.Connection, card_hash: str, serial: int, now: str) -> None:
    """The card's authorized loads below this serial were credited (the card counted past them)."""
    connection.execute("UPDATE transit_loads SET state = 'credited', updated = ? WHERE card_hash = ? AND"
                       " online_serial < ? AND state = 'authorized'", (now, card_hash, serial))


def add(connection: sqlite3.Connection, values: Mapping[str, object]) -> int:
    """One authorized load (column → value) with its answer; its id."""
    return insert(connection, "transit_loads", values)


def complete(connection: sqlite3.Connection, load_id: int, tac: str, now: str) -> None:
    """A verified TAC proves the credit: the load is counted `completed`, whatever the serial rule had guessed."""
    connection.execute("UPDATE transit_loads SET state = 'completed', tac = ?, updated = ? WHERE id = ?",
                       (tac, now, load_id))


def add_confirmation(connection: sqlite3.Connection, values: Mapping[str, object]) -> int:
    """One confirmation (column → value) with its answer; its id."""
    return insert(connection, "transit_load_confirmations", values)


def counted_per_city(connection: sqlite3.Connection, day: datetime.date) -> list[Figures]:
    """The day's loads that count (credited or completed), per card city: what the counters owe the issuers."""
    return per_city(connection, "transit_loads", "created", day, "x.state IN ('credited', 'completed')")


def unsettled_count(connection: sqlite3.Connection, day: datetime.date) -> int:
    """The day's loads whose MAC2 went out and whose fate the card has not told yet (no money counted)."""
    return int(connection.execute(
        "SELECT COUNT(*) FROM transit_loads WHERE state = 'authorized' AND substr(created, 1, 10) = ?",
        (day.isoformat(),)).fetchone()[0])
