"""The SMS outbox: the stub's stand-in for an SMS gateway (binding codes), read by the dashboard."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import newest


@dataclass(frozen=True)
class SmsMessage:
    id: int
    phone: str
    text: str
    created: str


def recent(connection: sqlite3.Connection, limit: int) -> list[SmsMessage]:
    """The newest first."""
    return newest(connection, SmsMessage, "sms_outbox", limit)
