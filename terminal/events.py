"""What a sale or a fare goes through, as the pipeline (`terminal.sale.Counter`) tells its observers.

The observers are everything that shows or keeps a transaction: the lights, tones and message line
(`Feedback.observe`), the paper receipt (`terminal.ui.receipt.ReceiptPrinter`), the service's status, the CLI's
lines for the merchant, and a customer display. Each gets every event, in order, on the thread running the
transaction; one that fails is logged and skipped (a payment must not fail for a broken screen or printer).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from terminal.kernel.transit import TransitResult
    from terminal.sale import SaleResult

log = logging.getLogger(__name__)


class Step(enum.StrEnum):
    READY = "ready"  # waiting for a card for `amount`
    READING = "reading"  # a card answered: the kernel runs
    CARD_READ = "card read"  # everything needed is read: the card may go
    SEE_PHONE = "see phone"  # the phone wants its holder (fingerprint), then the same phone again
    TRY_AGAIN = "try again"  # present the card again (it left too early, a torn fare)
    ONLINE = "online"  # with the host (an authorization, or an offline approval's advice)
    APPROVED = "approved"  # `amount` charged, `discount` off
    DECLINED = "declined"  # `message` says why, in words a shopper may see
    IDLE = "idle"  # no card came, or cancelled: nothing happened
    DONE = "done"  # the last event of every transaction: `result` is its outcome


@dataclass(frozen=True)
class Event:
    step: Step
    amount: int | None = None
    discount: int = 0
    message: str = ""
    result: SaleResult | TransitResult | None = None
    again: bool = False  # SEE_PHONE / TRY_AGAIN as after the tap before (a locked phone left in the field, read
    # again and again): shown, not announced again (no second alert, no second line for the merchant)


Observer = Callable[[Event], None]


def tell(observers: Iterable[Observer], event: Event) -> None:
    """Every observer, in order; one that fails is logged (its type only: the message may hold card data)."""
    for observer in observers:
        try:
            observer(event)
        except Exception as error:
            log.warning("observer %s failed on %s: %s", getattr(observer, "__qualname__", observer), event.step,
                        type(error).__name__)
