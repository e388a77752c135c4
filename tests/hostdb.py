"""The acquirer's database as the tests read and steer it (a real SQLite file, one short connection each)."""

from __future__ import annotations

import sqlite3
from typing import Any

from acquirer_stub.instance import Instance
from acquirer_stub.store import db


def rows(instance: Instance, sql: str, *args: Any) -> list[sqlite3.Row]:
    connection = db.connect(instance.database)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def execute(instance: Instance, sql: str, *args: Any) -> None:
    connection = db.connect(instance.database)
    try:
        connection.execute(sql, args)
    finally:
        connection.close()
