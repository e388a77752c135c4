"""The SMS outbox: the stub's stand-in for an SMS gateway (binding codes), read by the dashboard."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, newest


@dataclass(frozen=True)
class SmsMessage:
    id: int
    phone: str
    text: str
    created: str


def recent(connection: sqlite3.Connection, limit: int) -> list[SmsMessage]:
    """The newest first."""
    return newest(connection, SmsMessage, "sms_outbox", limit)


def send(connection: sqlite3.Connection, phone: str, text: str, created: str) -> None:
    """What a gateway would send; here it waits in the table for the cardholder's page to show it."""
    connection.execute("INSERT INTO sms_outbox (phone, text, created) VALUES (?, ?, ?)", (phone, text, created))


def to_phone(connection: sqlite3.Connection, phone: str) -> list[SmsMessage]:
    """The messages to one phone, newest first."""
    return fetch_all(connection, SmsMessage,
        f"SELECT {columns(SmsMessage)} FROM sms_outbox WHERE phone = ? ORDER BY id DESC", (phone,))
