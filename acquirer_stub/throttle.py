"""Counters that cap what one account, address, card or device may try in a time window (logins, SMS codes).

They live in the acquirer's own database (table `throttle`), not in process memory or a separate server, and
are read and bumped inside the caller's transaction: several acquirer processes share them, a restart keeps
them, and a cap is decided under the same write lock as the step it guards (two parallel guesses cannot both
slip under it). Flask-Limiter was not used: its storage (the `limits` package, 5.x) offers memory — one count
per process — or Redis, Memcached and MongoDB, a server the Pi and the demo do not run; and these caps are keyed
on what the request proves (the account behind a PAN, the device of a binding), known only inside the
transaction.

A window is fixed: it opens at the first counted event and closes `seconds` later, whatever happens meanwhile.
A lock-out therefore always ends by itself (an attacker cannot stretch it by trying again), and Retry-After is
the time left in the window.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass

from acquirer_stub import process_metrics
from acquirer_stub.store import throttle as store

MINUTE = 60
DAY = 24 * 60 * MINUTE


@dataclass(frozen=True)
class Limit:
    """At most `count` events per `seconds` for one key of this `scope`; `what` names them for people."""

    scope: str
    count: int
    seconds: int
    what: str


# Logins (dashboard and cardholder form, token service sessions, the current password on a password change).
LOGIN_FAILURES_PER_ACCOUNT = Limit("login-account", 5, 15 * MINUTE, "failed logins for this user name")
LOGIN_FAILURES_PER_ADDRESS = Limit("login-address", 20, 15 * MINUTE, "failed logins from this address")
# SMS codes for binding a card to a phone, across bindings (each binding also locks after 3 wrong codes).
SMS_CODES_PER_CARD = Limit("sms-sent-card", 5, DAY, "SMS codes sent for this card")
SMS_CODES_PER_DEVICE = Limit("sms-sent-device", 10, DAY, "SMS codes sent for this phone")
SMS_CODES_PER_USER = Limit("sms-sent-user", 15, DAY, "SMS codes sent to this cardholder")
WRONG_CODES_PER_CARD = Limit("sms-wrong-card", 5, DAY, "wrong SMS codes for this card")
WRONG_CODES_PER_DEVICE = Limit("sms-wrong-device", 8, DAY, "wrong SMS codes from this phone")
WRONG_CODES_PER_USER = Limit("sms-wrong-user", 12, DAY, "wrong SMS codes of this cardholder")


class Throttled(Exception):
    """A cap is reached: answer 429 with Retry-After; nothing else may happen for this request."""

    def __init__(self, limit: Limit, key: str, retry_after: int) -> None:
        super().__init__(f"too many {limit.what}; try again in {_duration(retry_after)}")
        self.limit = limit
        self.key = key
        self.retry_after = retry_after


def now() -> float:
    """The counters' clock (one place for tests to move time)."""
    return time.time()


def check(connection: sqlite3.Connection, limit: Limit, key: str) -> None:
    """Raise Throttled when `key` has used up its window."""
    window = store.find(connection, limit.scope, key)
    moment = now()
    if window is not None and window.resets > moment and window.count >= limit.count:
        process_metrics.refused(limit.scope)
        raise Throttled(limit, key, max(1, math.ceil(window.resets - moment)))


def hit(connection: sqlite3.Connection, limit: Limit, key: str) -> bool:
    """Count one event; True when this one used up the window (the moment to tell the operator)."""
    _require_transaction(connection)
    window = store.find(connection, limit.scope, key)
    moment = now()
    if window is None or window.resets <= moment:
        count = 1
        store.open_window(connection, limit.scope, key, moment + limit.seconds)
    else:
        count = window.count + 1
        store.set_count(connection, limit.scope, key, count)
    return count == limit.count


def take_back(connection: sqlite3.Connection, limit: Limit, key: str) -> None:
    """Undo one `hit` (an attempt counted in advance turned out fine)."""
    _require_transaction(connection)
    store.take_back(connection, limit.scope, key)


def clear(connection: sqlite3.Connection, limit: Limit, key: str) -> None:
    _require_transaction(connection)
    store.clear(connection, limit.scope, key)


def purge(connection: sqlite3.Connection) -> None:
    """Forget windows that have closed (called now and then, so the table stays small)."""
    _require_transaction(connection)
    store.purge(connection, now())


def _require_transaction(connection: sqlite3.Connection) -> None:
    if not connection.in_transaction:
        raise RuntimeError("throttle counters change only inside the caller's transaction")


def _duration(seconds: int) -> str:
    if seconds < 2 * MINUTE:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / MINUTE)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"
