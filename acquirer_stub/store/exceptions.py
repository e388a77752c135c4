"""The exception queue's table (`exception_items`): advices acknowledged without moving money, and their
resolutions (the rules are in acquirer_stub.exception_queue)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from acquirer_stub.store.rows import columns, fetch_all, fetch_one, insert


@dataclass(frozen=True)
class ExceptionItem:
    id: int
    transaction_id: int
    tid: str
    batch: int | None
    amount: int  # fen
    pan_masked: str | None
    issuer: str | None
    reason: str
    state: str  # open, resolved
    resolution: str | None  # charged_back, written_off
    note: str | None
    resolved_by: str | None
    resolved_at: str | None
    created: str


def add(connection: sqlite3.Connection, transaction_id: int, *, tid: str, batch: int | None, amount: int,
        pan_masked: str | None, issuer: str | None, reason: str, created: str) -> int:
    """An open item for the advice row `transaction_id`; its id."""
    return insert(connection, "exception_items", {
        "transaction_id": transaction_id, "tid": tid, "batch": batch, "amount": amount, "pan_masked": pan_masked,
        "issuer": issuer, "reason": reason, "created": created})


def in_state(connection: sqlite3.Connection, state: str, *, newest_first: bool, limit: int,
             tid: str | None = None) -> list[ExceptionItem]:
    order = "DESC" if newest_first else "ASC"
    of_terminal = "" if tid is None else " AND tid = ?"
    return fetch_all(connection, ExceptionItem,
        f"SELECT {columns(ExceptionItem)} FROM exception_items WHERE state = ?{of_terminal}"
        f" ORDER BY id {order} LIMIT ?",
        (state, *(() if tid is None else (tid,)), limit))


def find(connection: sqlite3.Connection, item_id: int) -> ExceptionItem | None:
    return fetch_one(connection, ExceptionItem,
        f"SELECT {columns(ExceptionItem)} FROM exception_items WHERE id = ?", (item_id,))


def mark_resolved(connection: sqlite3.Connection, item_id: int, resolution: str, note: str, by: str,
                  at: str) -> None:
    connection.execute(
        "UPDATE exception_items SET state = 'resolved', resolution = ?, note = ?, resolved_by = ?, resolved_at = ?"
        " WHERE id = ?", (resolution, note, by, at, item_id))


def batch_figures(connection: sqlite3.Connection, tid: str, batch: int) -> tuple[int, int]:
    """(count, fen) of the batch's advices taken as exceptions."""
    count, amount = connection.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transactions WHERE tid = ? AND batch = ? AND kind = 'advice'"
        " AND state = 'exception'", (tid, batch)).fetchone()
    return int(count), int(amount)
