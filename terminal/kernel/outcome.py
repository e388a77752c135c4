"""Kernel outcomes (EMV contactless names) and the shopper texts that go with them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Message", "Outcome"]


class Outcome(StrEnum):
    """What the terminal does next; the values are the EMV contactless outcome names, for logs and receipts."""

    APPROVED = "Approved"
    DECLINED = "Declined"
    ONLINE_REQUEST = "Online Request"
    TRY_AGAIN = "Try Again"
    SEE_PHONE = "See Phone"
    TRY_ANOTHER_INTERFACE = "Try Another Interface"
    END_APPLICATION = "End Application"


class Message(StrEnum):
    """Shopper-facing texts, kept in one place so the display and the receipts say the same thing."""

    PRESENT_CARD = "Present card"
    PRESENT_CARD_AGAIN = "Present card again"
    REMOVE_CARD = "Remove card"
    SEE_PHONE = "See phone"
    PROCESSING = "Processing"
    APPROVED = "Approved"
    DECLINED = "Declined"
    INSERT_OR_SWIPE = "Insert or swipe card"
    PIN_REQUIRED = "Insert card / PIN required"
    NOT_SUPPORTED = "Card not supported"
    CARD_ERROR = "Card error"
    ENTER_AMOUNT = "Enter amount"
    FARE_PAID = "Fare paid"
    INSUFFICIENT_BALANCE = "Insufficient balance"
    CARD_EXPIRED = "Card expired"
    TOPPED_UP = "Card topped up"
    BALANCE_LIMIT = "Over the card's balance limit"
