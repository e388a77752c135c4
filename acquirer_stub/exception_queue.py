"""The exception queue: offline advices the host acknowledged without moving money, for an operator to resolve.

An advice the host cannot prove (TC not verified or not a TC, over the floor limit, unknown card, card or token not
active, replayed ATC) is answered 00 (the goods are gone: the terminal must stop resending it) but posts nothing to
any account: it becomes an open item here, a chargeback candidate, and stays out of clearing. It still counts in
the terminal's batch (the terminal did nothing wrong by counting it), as a separate figure.

Resolving records what the operator decided, why, who and when; it moves no money and never puts the item into
clearing:

* ``charged_back``: the sale is charged back to the merchant, who is not paid for it;
* ``written_off``: the acquirer pays the merchant outside clearing and bears the loss itself.
"""

from __future__ import annotations

import sqlite3

from acquirer_stub.store import exceptions as store
from acquirer_stub.store.exceptions import ExceptionItem
from hostproto.responses import Figures  # the settlement answer shows them

__all__ = ["MAX_NOTE", "RESOLUTIONS", "ExceptionItem", "Figures", "ResolveError", "batch_exceptions", "items",
           "open_item", "resolve"]

RESOLUTIONS: dict[str, str] = {
    "charged_back": "Charged back to the merchant (not paid for the sale)",
    "written_off": "Written off (the acquirer pays the merchant and bears the loss)",
}
MAX_NOTE = 500  # characters


class ResolveError(ValueError):
    """A resolution the queue refuses: the words are for the operator's screen."""


def open_item(connection: sqlite3.Connection, transaction_id: int, transaction: dict[str, object]) -> int:
    """Queue the advice row `transaction_id` (its tid, batch, amount, pan_masked, issuer, reason, created);
    inside the caller's transaction, so the row and its item are committed together."""
    fields = ("tid", "batch", "amount", "pan_masked", "issuer", "reason", "created")
    return store.add(connection, transaction_id, **{name: transaction[name] for name in fields})


def items(connection: sqlite3.Connection, state: str, limit: int = 300, *,
          tid: str | None = None) -> list[ExceptionItem]:
    """Open items oldest first (the work queue); resolved ones newest first (the record); of one terminal's when
    `tid` is given."""
    return store.in_state(connection, state, newest_first=state != "open", limit=limit, tid=tid)


def resolve(connection: sqlite3.Connection, item_id: int, resolution: str, note: str, *, by: str,
            now: str) -> ExceptionItem | None:
    """Close an open item; None when there is no such item. Call inside a write transaction."""
    note = note.strip()
    if resolution not in RESOLUTIONS:
        raise ResolveError("Choose how the exception was resolved.")
    if not note or len(note) > MAX_NOTE:
        raise ResolveError(f"A note of 1 to {MAX_NOTE} characters must say why.")
    item = store.find(connection, item_id)
    if item is None:
        return None
    if item.state != "open":
        raise ResolveError(f"Exception #{item_id} was already resolved by {item.resolved_by}.")
    store.mark_resolved(connection, item_id, resolution, note, by, now)
    return store.find(connection, item_id)


def batch_exceptions(connection: sqlite3.Connection, tid: str, batch: int) -> Figures:
    """The advices of a batch that were taken as exceptions: in the terminal's totals, out of clearing."""
    return Figures(*store.batch_figures(connection, tid, batch))
