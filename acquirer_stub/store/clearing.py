"""The day's cleared items, summed per issuer, per terminal and per promotion (see acquirer_stub.dashboard.clearing).

Cleared: approved sales (online authorizations and accepted offline advices), each for what of it still stands
after partial reversals. One `WHERE` for the three sums, so both sides of the report come from the same rows.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import fetch_all

CLEARED = ("((t.kind = 'authorization' AND t.rc = '00' AND t.state = 'approved')"
           " OR (t.kind = 'advice' AND t.rc = '00' AND t.state = 'accepted'))")
# what of a cleared row still stands after partial reversals (discount: the promotion's share of it)
GROSS = "SUM(t.amount - t.reversed_amount)"
CHARGED = "SUM(t.charged - t.reversed_charged)"
DISCOUNT = "SUM(t.discount - t.reversed_amount + t.reversed_charged)"
_OF_THE_DAY = f"{CLEARED} AND substr(t.created, 1, 10) = ?"


@dataclass(frozen=True)
class Line:
    key: str
    name: str
    count: int
    gross: int
    discount: int
    charged: int

    @property
    def net(self) -> int:
        """What the cardholders paid: the gross less the promotions the bank funded."""
        return self.gross - self.discount


@dataclass(frozen=True)
class PromotionFunding:
    id: int
    title: str
    issuer: str
    bank: str
    n: int  # cleared items with a discount
    funded: int  # fen the bank funded


def _line(row: sqlite3.Row, name: str) -> Line:
    return Line(row["key"], name, row["n"], row["gross"] or 0, row["discount"] or 0, row["charged"] or 0)


def per_issuer(connection: sqlite3.Connection, day: datetime.date) -> list[Line]:
    """Largest gross first."""
    return [_line(row, row["name"]) for row in connection.execute(
        "SELECT COALESCE(t.issuer, '') AS key,"
        " COALESCE(i.name || ' (' || i.kind || ')', t.issuer, '(unknown)') AS name, COUNT(*) AS n,"
        f" {GROSS} AS gross, {DISCOUNT} AS discount, {CHARGED} AS charged"
        f" FROM transactions t LEFT JOIN issuers i ON i.code = t.issuer WHERE {_OF_THE_DAY}"
        " GROUP BY t.issuer, i.name, i.kind ORDER BY gross DESC, key", (day.isoformat(),))]


def per_terminal(connection: sqlite3.Connection, day: datetime.date) -> list[Line]:
    """By TID, each named "TID (MID name)"."""
    return [_line(row, f"{row['key']} ({row['name']})") for row in connection.execute(
        "SELECT t.tid AS key, COALESCE(m.mid || ' ' || m.name, t.tid) AS name, COUNT(*) AS n,"
        f" {GROSS} AS gross, {DISCOUNT} AS discount, {CHARGED} AS charged"
        f" FROM transactions t LEFT JOIN terminals m ON m.tid = t.tid WHERE {_OF_THE_DAY}"
        " GROUP BY t.tid, m.mid, m.name ORDER BY t.tid", (day.isoformat(),))]


def per_promotion(connection: sqlite3.Connection, day: datetime.date) -> list[PromotionFunding]:
    return fetch_all(connection, PromotionFunding,
        "SELECT p.id, p.title, p.issuer, COALESCE(i.name, p.issuer) AS bank, COUNT(*) AS n,"
        f" {DISCOUNT} AS funded FROM transactions t JOIN promotions p ON p.id = t.promotion_id"
        f" LEFT JOIN issuers i ON i.code = p.issuer WHERE {_OF_THE_DAY} AND t.discount > 0"
        " GROUP BY p.id, p.title, p.issuer, i.name ORDER BY p.id", (day.isoformat(),))
