"""The day's transit clearing: fares cleared (TAC-verified, once each) per card city and per gate, and top-ups.

Each city's card issuer holds the riders' prepaid purses, so it owes every fare its cards paid; each gate's
operator is owed every fare its gate took. The transit settlement figure is that one sum seen from both sides:
the report shows both and checks that they match. A top-up goes the other way: the counter collected the money,
the card issuer's purse now holds it, so the counters owe the issuers every load that counts.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass, field

from acquirer_stub.store import transit as store
from acquirer_stub.store import transit_loads
from acquirer_stub.store.transit import Figures


@dataclass
class TransitReport:
    day: datetime.date
    cities: list[Figures] = field(default_factory=list)
    gates: list[Figures] = field(default_factory=list)
    refused: int = 0  # fares refused that day (TAC, duplicate, another gate's PSAM): no money moved
    loads: list[Figures] = field(default_factory=list)  # top-ups at the counters that count, per card city
    loads_unsettled: int = 0  # MAC2 sent, the card's next tap or load still to say whether it credited

    @property
    def settlement(self) -> int:
        """Fen the cities' card issuers pay the gates' operators for the day."""
        return sum(x.amount for x in self.cities)

    @property
    def count(self) -> int:
        return sum(x.count for x in self.cities)

    @property
    def loads_total(self) -> int:
        """Fen the counters collected for the cities' card issuers (the purses now hold it)."""
        return sum(x.amount for x in self.loads)

    @property
    def balanced(self) -> bool:
        return (self.count, self.settlement) == (sum(x.count for x in self.gates), sum(x.amount for x in self.gates))


def daily_report(connection: sqlite3.Connection, day: datetime.date) -> TransitReport:
    return TransitReport(day, store.figures_per_city(connection, day), store.figures_per_gate(connection, day),
                         store.refused_count(connection, day), transit_loads.counted_per_city(connection, day),
                         transit_loads.unsettled_count(connection, day))
