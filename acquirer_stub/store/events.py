"""The `events` table: one line of the dashboard's feed per decision, written in the decision's transaction."""

from __future__ import annotations

import datetime
import json
import sqlite3
from typing import Any


def record(connection: sqlite3.Connection, kind: str, body: dict[str, Any]) -> None:
    """A JSON body with a human `text`; never a full PAN, a code or a password (the feed shows it)."""
    connection.execute(
        "INSERT INTO events (created, kind, body) VALUES (?, ?, ?)",
        (datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), kind,
         json.dumps(body, ensure_ascii=False)),
    )
