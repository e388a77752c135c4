"""Token lifecycle: active ↔ suspended, anything → deleted (final), and the lost-phone cascade.

Transactions: every function here joins the caller's transaction when one is open on the connection
(so a dashboard action and its audit trail commit together), and otherwise runs in a transaction of its
own. Every change writes an `events` row of kind "token" for the dashboard feed.

Reasons follow acquirer.md §11 (issuer operations): SUSPEND {LOST, STOLEN, FRAUDULENT, OTHER},
RESUME {FOUND, FRAUDULENT (cleared), OTHER}, DELETE {LOST, STOLEN, FRAUDULENT, ACCOUNT_CLOSED,
CONSUMER_DELETED, OTHER}. `LOST_DEVICE` is reserved for tokens suspended because their phone's wallet was
turned off: it is how turning the wallet on again finds exactly the tokens that action suspended.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from acquirer_stub.store.db import transaction

ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
STATUSES = (ACTIVE, SUSPENDED, DELETED)
SUSPEND_REASONS = ("LOST", "STOLEN", "FRAUDULENT", "OTHER")
RESUME_REASONS = ("FOUND", "FRAUDULENT", "OTHER")
DELETE_REASONS = ("LOST", "STOLEN", "FRAUDULENT", "ACCOUNT_CLOSED", "CONSUMER_DELETED", "OTHER")
LOST_DEVICE = "LOST_DEVICE"
REASONS = {SUSPENDED: SUSPEND_REASONS, ACTIVE: RESUME_REASONS, DELETED: DELETE_REASONS}
ACTIONS = {SUSPENDED: "suspend", ACTIVE: "resume", DELETED: "delete"}


class LifecycleError(Exception):
    """The change is not allowed (deleted is final, wrong reason, wallet off …); the message says why."""


class NotFoundError(LifecycleError):
    """No such token or device."""


@dataclass(frozen=True)
class TokenChange:
    token_id: int
    token_masked: str
    device_id: str | None
    old: str
    new: str
    reason: str


def set_token_status(
    connection: sqlite3.Connection, token_id: int, status: str, reason: str, *, actor: str = "operator"
) -> TokenChange:
    """Move one token to `status` for `reason`; raises LifecycleError for a transition the rules forbid."""
    if status not in STATUSES:
        raise LifecycleError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if reason not in REASONS[status]:
        raise LifecycleError(f"{ACTIONS[status]} reason must be one of {', '.join(REASONS[status])}, not {reason!r}")
    with _atomic(connection):
        token = _token(connection, token_id)
        if token["status"] == DELETED:
            raise LifecycleError(f"token {token['token_masked']} is deleted; deletion is final")
        if token["status"] == status:
            raise LifecycleError(f"token {token['token_masked']} is already {status}")
        if status == ACTIVE and token["device_id"] is not None:
            device = connection.execute(
                "SELECT wallet_enabled FROM devices WHERE id = ?", (token["device_id"],)
            ).fetchone()
            if device is not None and not device["wallet_enabled"]:
                raise LifecycleError(
                    f"the wallet on the phone holding token {token['token_masked']} is turned off;"
                    " turn the wallet on to resume it"
                )
        return _apply(connection, token, status, reason, actor)


def set_device_wallet(
    connection: sqlite3.Connection, device_id: str, enabled: bool, reason: str, *, actor: str = "cardholder"
) -> list[TokenChange]:
    """Lost phone: off suspends the device's active tokens (LOST_DEVICE); on resumes exactly those.

    Tokens suspended for another reason before the phone was lost stay suspended, and so do tokens deleted
    meanwhile. Turning off a wallet that is already off (or on one that is on) changes nothing.
    """
    allowed = SUSPEND_REASONS if not enabled else RESUME_REASONS
    if reason not in allowed:
        what = "turning a wallet off" if not enabled else "turning a wallet on"
        raise LifecycleError(f"reason for {what} must be one of {', '.join(allowed)}, not {reason!r}")
    with _atomic(connection):
        device = connection.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
        if device is None:
            raise NotFoundError(f"no device {device_id!r}")
        if bool(device["wallet_enabled"]) == enabled:
            return []
        connection.execute("UPDATE devices SET wallet_enabled = ? WHERE id = ?", (int(enabled), device_id))
        if enabled:
            rows = connection.execute(
                "SELECT * FROM tokens WHERE device_id = ? AND status = ? AND status_reason = ? ORDER BY id",
                (device_id, SUSPENDED, LOST_DEVICE),
            ).fetchall()
            changes = [_apply(connection, row, ACTIVE, reason, actor) for row in rows]
        else:
            rows = connection.execute(
                "SELECT * FROM tokens WHERE device_id = ? AND status = ? ORDER BY id", (device_id, ACTIVE)
            ).fetchall()
            changes = [_apply(connection, row, SUSPENDED, LOST_DEVICE, actor) for row in rows]
        state = "on" if enabled else "off"
        record_event(connection, {
            "action": f"wallet_{state}", "device_id": device_id, "reason": reason, "by": actor,
            "tokens": [change.token_id for change in changes],
            "text": f"wallet on device {device['name']} ({device_id}) turned {state} ({reason}):"
                    f" {len(changes)} token(s) {'resumed' if enabled else 'suspended'}",
        })
        return changes


def tokens_of_device(
    connection: sqlite3.Connection, device_id: str, *, include_deleted: bool = True
) -> list[dict[str, Any]]:
    """A device's tokens with their funding card, masked: what the wallet page and dashboard show."""
    rows = connection.execute(
        "SELECT t.id, t.token_masked, t.wallet_card_id, t.par, t.expiry, t.status, t.status_reason, t.last_atc,"
        " t.created, t.account_id, a.pan_masked, a.issuer, a.kind"
        " FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.device_id = ?"
        + ("" if include_deleted else " AND t.status != 'deleted'")
        + " ORDER BY t.id",
        (device_id,),
    ).fetchall()
    return [dict(row) for row in rows]


def record_event(connection: sqlite3.Connection, body: dict[str, Any]) -> None:
    """One line of the dashboard's feed (JSON body with a human `text`); never a full PAN."""
    connection.execute(
        "INSERT INTO events (created, kind, body) VALUES (?, 'token', ?)",
        (_now_text(), json.dumps(body, ensure_ascii=False)),
    )


def _apply(connection: sqlite3.Connection, token: sqlite3.Row, status: str, reason: str, actor: str) -> TokenChange:
    connection.execute("UPDATE tokens SET status = ?, status_reason = ? WHERE id = ?", (status, reason, token["id"]))
    change = TokenChange(token["id"], token["token_masked"], token["device_id"], token["status"], status, reason)
    record_event(connection, {
        "action": ACTIONS[status], "token_id": change.token_id, "token_masked": change.token_masked,
        "device_id": change.device_id, "from": change.old, "to": change.new, "reason": reason, "by": actor,
        "text": f"token {change.token_masked} {change.old} → {change.new} ({reason}, by {actor})",
    })
    return change


def _token(connection: sqlite3.Connection, token_id: int) -> sqlite3.Row:
    row = connection.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no token {token_id}")
    return row


@contextlib.contextmanager
def _atomic(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    if connection.in_transaction:
        yield connection
    else:
        with transaction(connection):
            yield connection


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
