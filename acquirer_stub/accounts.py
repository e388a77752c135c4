"""People's accounts: passwords checked in equal time, logins throttled, sessions kept on the server.

Used by the login form (dashboard and cardholder pages) and the token service's session login alike, so
both share one lock-out per user name and per client address (`throttle`). An attempt is counted before
its password is checked and taken back when it was right: parallel guesses cannot slip past the cap, and
the slow password hash runs outside any database lock. A user name nobody has still costs one hash (of a
dummy password), so a wrong name and a wrong password take the same time.

A session is a random id held by the browser (in Flask's signed cookie) or the wallet app (in its bearer
token); the database keeps only its SHA-256, with an expiry. Logout deletes it, a password change deletes all
of the user's sessions, so a copied cookie or token stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

from acquirer_stub import throttle
from acquirer_stub.store import events, users
from acquirer_stub.store.db import transaction
from acquirer_stub.store.users import User

WEB, TSP = "web", "tsp"
WEB_SESSION_SECONDS = 12 * 3600
MAX_USERNAME = 64
MAX_PASSWORD = 128
MIN_NEW_PASSWORD = 10


class PasswordError(Exception):
    """A password change refused; the message says why (never whether a user exists)."""


@dataclass(frozen=True)
class Login:
    user: User
    session_id: str


def log_in(
    connection: sqlite3.Connection, username: str, password: str, *, address: str, kind: str, lifetime: float,
    role: str | None = None,
) -> Login | None:
    """A new session, or None when the name, password or role is wrong (alike); raises throttle.Throttled."""
    user, reached = _count_attempt(connection, username, address)
    good = _password_matches(user, password) and (role is None or (user is not None and user.role == role))
    if not good:
        _report(connection, reached, username, address)
        return None
    assert user is not None
    with transaction(connection):
        _forgive(connection, username, address)
        throttle.purge(connection)
        users.purge_sessions(connection, time.time())
        session_id = start_session(connection, user.id, kind, lifetime)
    return Login(user, session_id)


def change_password(
    connection: sqlite3.Connection, user_id: int, current: str, new: str, *, address: str
) -> str:
    """Set a new password and end every session of the user; returns a fresh web session for this browser."""
    if not MIN_NEW_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise PasswordError(f"the new password needs {MIN_NEW_PASSWORD} to {MAX_PASSWORD} characters")
    if new == current:
        raise PasswordError("the new password must differ from the current one")
    known = users.find(connection, user_id)
    if known is None:
        raise PasswordError("no such user")
    username = known.username
    user, reached = _count_attempt(connection, username, address)
    if not _password_matches(user, current):
        _report(connection, reached, username, address)
        raise PasswordError("the current password is wrong")
    with transaction(connection):
        _forgive(connection, username, address)
        users.set_password_hash(connection, user_id, generate_password_hash(new))
        ended = end_all_sessions(connection, user_id)
        session_id = start_session(connection, user_id, WEB, WEB_SESSION_SECONDS)
        events.record(connection, "security", {
            "action": "password_changed", "user": username,
            "text": f"password changed for {username}: {ended} session(s) ended",
        })
    return session_id


def reset_password(connection: sqlite3.Connection, username: str) -> str:
    """A new random password for a forgotten one (`acquirer-stub password`: whoever can read the instance
    folder may); every session of the user ends. The password is returned to be shown once, never stored."""
    user = users.find_by_name(connection, username)
    if user is None:
        raise PasswordError(f"no user {username!r}")
    new = secrets.token_urlsafe(12)
    with transaction(connection):
        users.set_password_hash(connection, user.id, generate_password_hash(new))
        ended = end_all_sessions(connection, user.id)
        events.record(connection, "security", {
            "action": "password_reset", "user": username,
            "text": f"password reset from the command line for {username}: {ended} session(s) ended",
        })
    return new


def start_session(connection: sqlite3.Connection, user_id: int, kind: str, lifetime: float) -> str:
    """Inside the caller's transaction: a new session id (only its hash is stored)."""
    session_id = secrets.token_urlsafe(32)
    moment = time.time()
    users.add_session(connection, _digest(session_id), user_id, kind, moment, moment + lifetime)
    return session_id


def session_user(connection: sqlite3.Connection, session_id: str, kind: str) -> User | None:
    """The user of a live session of this kind, or None (ended, expired, unknown)."""
    return users.session_user(connection, _digest(session_id), kind, time.time())


def end_session(connection: sqlite3.Connection, session_id: str) -> None:
    with transaction(connection):
        users.end_session(connection, _digest(session_id))


def end_all_sessions(connection: sqlite3.Connection, user_id: int) -> int:
    """Inside the caller's transaction: every session of the user, web and token service; how many there were."""
    return users.end_sessions_of(connection, user_id)


def _login_limits(username: str, address: str) -> list[tuple[throttle.Limit, str]]:
    return [(throttle.LOGIN_FAILURES_PER_ACCOUNT, username), (throttle.LOGIN_FAILURES_PER_ADDRESS, address)]


def _count_attempt(
    connection: sqlite3.Connection, username: str, address: str
) -> tuple[User | None, list[tuple[throttle.Limit, str]]]:
    """Refuse a locked name or address, else count this attempt as a failure until it proves right."""
    limits = _login_limits(username, address)
    for limit, key in limits:  # a refusal needs no write lock: a login flood never queues the terminal API
        throttle.check(connection, limit, key)
    with transaction(connection):
        for limit, key in limits:  # again under the lock: a parallel attempt may have used the window up
            throttle.check(connection, limit, key)
        reached = [(limit, key) for limit, key in limits if throttle.hit(connection, limit, key)]
        user = users.find_by_name(connection, username)
    return user, reached


def _forgive(connection: sqlite3.Connection, username: str, address: str) -> None:
    """A right password: the user name starts afresh, the address gets its attempt back."""
    throttle.clear(connection, throttle.LOGIN_FAILURES_PER_ACCOUNT, username)
    throttle.take_back(connection, throttle.LOGIN_FAILURES_PER_ADDRESS, address)


def _report(
    connection: sqlite3.Connection, reached: list[tuple[throttle.Limit, str]], username: str, address: str
) -> None:
    """A lock-out starts: one event on the dashboard's feed (not one per refused attempt)."""
    if not reached:
        return
    with transaction(connection):
        for limit, key in reached:
            events.record(connection, "security", {
                "action": "login_locked", "scope": limit.scope, "user": username, "address": address,
                "text": f"logins locked for {limit.seconds // 60} minutes after {limit.count} {limit.what}"
                        f" ({key})",
            })


_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))
"""A hash made like every real one (werkzeug's default), so an unknown name costs the same: made when the module
loads, not at the first unknown name (that login would cost two hashes, a timing tell)."""


def _password_matches(user: User | None, password: str) -> bool:
    stored = user.password_hash if user is not None else _DUMMY_HASH
    return check_password_hash(stored, password) and user is not None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
