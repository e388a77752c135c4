"""The day's transit clearing: fares cleared (TAC-verified, once each) per card city and per gate.

Each city's card issuer holds the riders' prepaid purses, so it owes every fare its cards paid; each gate's
operator is owed every fare its gate took. The transit settlement figure is that one sum seen from both sides:
the report shows both and checks that they match.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figures:
    key: str
    name: str
    count: int
    amount: int


@dataclass
class TransitReport:
    day: datetime.date
    cities: list[Figures] = field(default_factory=list)
    gates: list[Figures] = field(default_factory=list)
    refused: int = 0  # fares refused that day (TAC, duplicate, another gate's PSAM): no money moved

    @property
    def settlement(self) -> int:
        """Fen the cities' card issuers pay the gates' operators for the day."""
        return sum(x.amount for x in self.cities)

    @property
    def count(self) -> int:
        return sum(x.count for x in self.cities)

    @property
    def balanced(self) -> bool:
        return (self.count, self.settlement) == (sum(x.count for x in self.gates), sum(x.amount for x in self.gates))


def daily_report(connection: sqlite3.Connection, day: datetime.date) -> TransitReport:
    prefix = day.isoformat()
    report = TransitReport(day)
    for row in connection.execute(
        "SELECT f.city_code AS key, COALESCE(c.name, 'city ' || f.city_code) AS name, COUNT(*) AS n,"
        " SUM(f.amount) AS amount FROM transit_fares f LEFT JOIN transit_cities c ON c.city_code = f.city_code"
        " WHERE substr(f.received, 1, 10) = ? GROUP BY f.city_code ORDER BY f.city_code", (prefix,),
    ):
        report.cities.append(Figures(row["key"], f"{row['name']} ({row['key']})", row["n"], row["amount"]))
    for row in connection.execute(
        "SELECT f.tid AS key, COALESCE(t.name, f.tid) AS name, COUNT(*) AS n, SUM(f.amount) AS amount"
        " FROM transit_fares f LEFT JOIN terminals t ON t.tid = f.tid WHERE substr(f.received, 1, 10) = ?"
        " GROUP BY f.tid ORDER BY f.tid", (prefix,),
    ):
        report.gates.append(Figures(row["key"], f"{row['key']} ({row['name']})", row["n"], row["amount"]))
    report.refused = int(connection.execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'transit_refused' AND substr(created, 1, 10) = ?",
        (prefix,)).fetchone()[0])
    return report
