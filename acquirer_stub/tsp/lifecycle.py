"""Token lifecycle: active ↔ suspended, anything → deleted (final), and the lost-phone cascade.

Transactions: every function here joins the caller's transaction when one is open on the connection
(so a dashboard action and its audit trail commit together), and otherwise runs in a transaction of its
own. Every change writes an `events` row of kind "token" for the dashboard feed.

Reasons follow acquirer.md §11 (issuer operations): SUSPEND {LOST, STOLEN, FRAUDULENT, OTHER},
RESUME {FOUND, FRAUDULENT (cleared), OTHER}, DELETE {LOST, STOLEN, FRAUDULENT, ACCOUNT_CLOSED,
CONSUMER_DELETED, OTHER}. `LOST_DEVICE` is reserved for tokens suspended because their phone's wallet was
turned off: it is how turning the wallet on again finds exactly the tokens that action suspended.

Every hold (a suspended token, a wallet turned off) records who placed it: the cardholder (lost phone, lost
card) or the bank — the operator or the issuer (fraud, issuer request). The cardholder lifts only their own
holds; the bank lifts any.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from acquirer_stub.store import events, tokens
from acquirer_stub.store.db import transaction
from acquirer_stub.store.tokens import Token

ACTIVE, SUSPENDED, DELETED = "active", "suspended", "deleted"
STATUSES = (ACTIVE, SUSPENDED, DELETED)
SUSPEND_REASONS = ("LOST", "STOLEN", "FRAUDULENT", "OTHER")
RESUME_REASONS = ("FOUND", "FRAUDULENT", "OTHER")
DELETE_REASONS = ("LOST", "STOLEN", "FRAUDULENT", "ACCOUNT_CLOSED", "CONSUMER_DELETED", "OTHER")
LOST_DEVICE = "LOST_DEVICE"
REASONS = {SUSPENDED: SUSPEND_REASONS, ACTIVE: RESUME_REASONS, DELETED: DELETE_REASONS}
ACTIONS = {SUSPENDED: "suspend", ACTIVE: "resume", DELETED: "delete"}
CARDHOLDER, OPERATOR, ISSUER = "cardholder", "operator", "issuer"
HOLDERS = (CARDHOLDER, OPERATOR, ISSUER)


class LifecycleError(Exception):
    """The change is not allowed (deleted is final, wrong reason, wallet off …); the message says why."""


class NotFoundError(LifecycleError):
    """No such token or device."""


class HeldByBankError(LifecycleError):
    """The cardholder tried to lift a hold the bank placed."""


@dataclass(frozen=True)
class TokenChange:
    token_id: int
    token_masked: str
    device_id: str | None
    old: str
    new: str
    reason: str


def set_token_status(
    connection: sqlite3.Connection, token_id: int, status: str, reason: str, *, by: str = OPERATOR,
    actor: str | None = None,
) -> TokenChange:
    """Move one token to `status` for `reason` on behalf of `by` (one of HOLDERS; `actor` names the person);
    raises LifecycleError for a transition the rules forbid."""
    _check_holder(by)
    if status not in STATUSES:
        raise LifecycleError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if reason not in REASONS[status]:
        raise LifecycleError(f"{ACTIONS[status]} reason must be one of {', '.join(REASONS[status])}, not {reason!r}")
    with _atomic(connection):
        token = _token(connection, token_id)
        if token.status == DELETED:
            raise LifecycleError(f"token {token.token_masked} is deleted; deletion is final")
        if token.status == status:
            raise LifecycleError(f"token {token.token_masked} is already {status}")
        if status == ACTIVE and by == CARDHOLDER and token.held_by != CARDHOLDER:
            raise HeldByBankError(f"token {token.token_masked} is held by your bank; call your bank to resume it")
        if status == ACTIVE and token.device_id is not None:
            device = tokens.device(connection, token.device_id)
            if device is not None and not device.wallet_enabled:
                raise LifecycleError(
                    f"the wallet on the phone holding token {token.token_masked} is turned off;"
                    " turn the wallet on to resume it"
                )
        return _apply(connection, token, status, reason, by, actor or by)


def set_device_wallet(
    connection: sqlite3.Connection, device_id: str, enabled: bool, reason: str, *, by: str = CARDHOLDER,
    actor: str | None = None,
) -> list[TokenChange]:
    """Lost phone: off suspends the device's active tokens (LOST_DEVICE); on resumes exactly those.

    Tokens suspended for another reason before the phone was lost stay suspended, and so do tokens deleted
    meanwhile. Turning off a wallet that is already off (or on one that is on) changes nothing. A wallet the
    bank turned off stays off for the cardholder (HeldByBankError).
    """
    _check_holder(by)
    actor = actor or by
    allowed = SUSPEND_REASONS if not enabled else RESUME_REASONS
    if reason not in allowed:
        what = "turning a wallet off" if not enabled else "turning a wallet on"
        raise LifecycleError(f"reason for {what} must be one of {', '.join(allowed)}, not {reason!r}")
    with _atomic(connection):
        device = tokens.device(connection, device_id)
        if device is None:
            raise NotFoundError(f"no device {device_id!r}")
        if bool(device.wallet_enabled) == enabled:
            return []
        if enabled and by == CARDHOLDER and device.wallet_held_by != CARDHOLDER:
            raise HeldByBankError(f"the wallet on {device.name} was turned off by your bank; call your bank")
        tokens.set_wallet(connection, device_id, enabled, None if enabled else by)
        if enabled:
            held = tokens.tokens_on(connection, device_id, SUSPENDED, LOST_DEVICE)
            changes = [_apply(connection, token, ACTIVE, reason, by, actor) for token in held]
        else:
            held = tokens.tokens_on(connection, device_id, ACTIVE)
            changes = [_apply(connection, token, SUSPENDED, LOST_DEVICE, by, actor) for token in held]
        state = "on" if enabled else "off"
        record_event(connection, {
            "action": f"wallet_{state}", "device_id": device_id, "reason": reason, "by": actor, "holder": by,
            "tokens": [change.token_id for change in changes],
            "text": f"wallet on device {device.name} ({device_id}) turned {state} ({reason}):"
                    f" {len(changes)} token(s) {'resumed' if enabled else 'suspended'}",
        })
        return changes


def tokens_of_device(
    connection: sqlite3.Connection, device_id: str, *, include_deleted: bool = True
) -> list[dict[str, Any]]:
    """A device's tokens with their funding card, masked: what the wallet page and dashboard show."""
    return [dataclasses.asdict(token)
            for token in tokens.device_tokens(connection, device_id, include_deleted=include_deleted)]


def record_event(connection: sqlite3.Connection, body: dict[str, Any]) -> None:
    """One line of the dashboard's feed (JSON body with a human `text`); never a full PAN."""
    events.record(connection, "token", body)


def _apply(
    connection: sqlite3.Connection, token: Token, status: str, reason: str, by: str, actor: str
) -> TokenChange:
    tokens.set_status(connection, token.id, status, reason, by if status == SUSPENDED else None)
    change = TokenChange(token.id, token.token_masked, token.device_id, token.status, status, reason)
    record_event(connection, {
        "action": ACTIONS[status], "token_id": change.token_id, "token_masked": change.token_masked,
        "device_id": change.device_id, "from": change.old, "to": change.new, "reason": reason, "by": actor,
        "holder": by,
        "text": f"token {change.token_masked} {change.old} → {change.new} ({reason}, by {actor})",
    })
    return change


def _check_holder(by: str) -> None:
    if by not in HOLDERS:
        raise LifecycleError(f"a hold is placed by one of {', '.join(HOLDERS)}, not {by!r}")


def _token(connection: sqlite3.Connection, token_id: int) -> Token:
    token = tokens.token(connection, token_id)
    if token is None:
        raise NotFoundError(f"no token {token_id}")
    return token


@contextlib.contextmanager
def _atomic(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    if connection.in_transaction:
        yield connection
    else:
        with transaction(connection):
            yield connection

