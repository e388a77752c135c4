"""The day's transit clearing: fares cleared (TAC-verified, once each) per card city and per gate.

Each city's card issuer holds the riders' prepaid purses, so it owes every fare its cards paid; each gate's
operator is owed every fare its gate took. The transit settlement figure is that one sum seen from both sides:
the report shows both and checks that they match.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass, field

from acquirer_stub.store import transit as store
from acquirer_stub.store.transit import Figures


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
    return TransitReport(day, store.figures_per_city(connection, day), store.figures_per_gate(connection, day),
                         store.refused_count(connection, day))
