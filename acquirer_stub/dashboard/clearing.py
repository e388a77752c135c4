"""The daily clearing report, as the interbank settlement system would produce it, and batch differences.

Cleared items are the day's approved sales (online authorizations and accepted offline advices) that were not
reversed, each for what of it still stands after partial reversals. Advices taken as exceptions are not cleared:
no card paid for them (acquirer_stub.exception_queue). Each issuer owes the acquirer the gross amount: its
cardholders pay `charged` and the bank itself funds the promotion discount (the merchant always receives the full
sale). Net positions are therefore −gross per issuer and +gross per acquirer, and sum to zero: the report shows
that check.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from acquirer_stub.store import clearing as store
from acquirer_stub.store.clearing import Line, PromotionFunding

ACQUIRER = "QuickPass acquirer stub"


@dataclass
class Report:
    day: datetime.date
    issuers: list[Line] = field(default_factory=list)
    terminals: list[Line] = field(default_factory=list)
    acquirers: list[Line] = field(default_factory=list)
    promotions: list[PromotionFunding] = field(default_factory=list)

    @staticmethod
    def _total(lines: list[Line]) -> Line:
        return Line("total", "Total", sum(x.count for x in lines), sum(x.gross for x in lines),
                    sum(x.discount for x in lines), sum(x.charged for x in lines))

    @property
    def issuer_total(self) -> Line:
        return self._total(self.issuers)

    @property
    def terminal_total(self) -> Line:
        return self._total(self.terminals)

    @property
    def net_positions(self) -> list[tuple[str, int]]:
        return [(f"issuer {x.name}", -x.gross) for x in self.issuers] + [
            (f"acquirer {x.name}", x.gross) for x in self.acquirers]

    @property
    def balanced(self) -> bool:
        """Both sides count the same items and money, and positions net to zero."""
        issuers, terminals = self.issuer_total, self.terminal_total
        return (issuers.count, issuers.gross, issuers.discount) == (terminals.count, terminals.gross,
                                                                     terminals.discount) and sum(
            amount for _, amount in self.net_positions) == 0


def daily_report(connection: sqlite3.Connection, day: datetime.date) -> Report:
    """The day's cleared items grouped two ways (issuers, terminals); the acquirer's line is the terminals' total."""
    report = Report(day, store.per_issuer(connection, day), store.per_terminal(connection, day))
    if report.terminals:
        total = report.terminal_total
        report.acquirers.append(Line("acquirer", ACQUIRER, total.count, total.gross, total.discount, total.charged))
    report.promotions = store.per_promotion(connection, day)
    return report


def _flatten(totals: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(totals, dict):
        return {prefix.rstrip("."): totals} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in totals.items():
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def batch_differences(terminal_totals: Any, host_totals: Any) -> list[tuple[str, Any, Any, Any]]:
    """Per field of the settlement totals (nested ones dotted): terminal, host and terminal − host."""
    theirs_all, ours_all = _flatten(terminal_totals), _flatten(host_totals)
    rows = []
    for key in sorted(set(theirs_all) | set(ours_all)):
        theirs, ours = theirs_all.get(key), ours_all.get(key)
        numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in (ours, theirs))
        rows.append((key, theirs, ours, theirs - ours if numeric else None))
    return rows

