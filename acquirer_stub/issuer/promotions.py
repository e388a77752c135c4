"""Bank promotions ("立减"): the issuer pays part of a purchase, so the account is charged less than the sale.

The merchant still receives the full amount; only the cardholder's side moves by `charged`.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass

from acquirer_stub.store import issuers


@dataclass(frozen=True)
class Discount:
    promotion_id: int
    title: str
    discount: int  # fen

    def charged(self, amount: int) -> int:
        return amount - self.discount


def discount_for(percent: int, cap: int, amount: int) -> int:
    """Percent off rounded down to the fen, never above the cap nor the amount itself."""
    return max(0, min(amount * percent // 100, cap, amount))


def best_discount(connection: sqlite3.Connection, issuer: str, day: datetime.date, amount: int) -> Discount | None:
    """The active promotion of this issuer on that day that saves the cardholder most (ties: the oldest)."""
    best: Discount | None = None
    for promotion in issuers.active_promotions(connection, issuer, day.isoformat()):
        offer = Discount(promotion.id, promotion.title, discount_for(promotion.percent, promotion.cap, amount))
        if offer.discount > 0 and (best is None or offer.discount > best.discount):
            best = offer
    return best
