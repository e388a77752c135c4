"""Binding a bank card to a phone: card details → SMS one-time code → a token delivered to the phone.

The token service's ID&V step-up (acquirer.md §11): the cardholder proves they hold the card (details
match an account of theirs) and the phone number the bank knows (the SMS code). Only then is a token made
and its PAN and key sent out, once, for the phone's secure element. Each public function opens its own
transaction; a wrong code's attempt counter is committed even though the call fails.

Guessing across bindings is capped too: codes sent and wrong codes per card, per phone and per cardholder
in a day (`throttle`); past a cap the answer is 429 with Retry-After, and reaching one is an event on the
dashboard's feed.
"""

from __future__ import annotations

import datetime
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from acquirer_stub import throttle
from acquirer_stub.keys import KeyStore
from acquirer_stub.store.db import transaction
from acquirer_stub.store.events import record as record_event
from acquirer_stub.tsp import lifecycle
from acquirer_stub.vault import Vault
from firmware.cards import qpboc_schema
from firmware.wallet.wallet import CARD_ID_PATTERN, MAX_PAYMENT_CARDS
from firmware.world.personalize import luhn_valid, new_pan, new_par, token_card

CODE_SECONDS = 300
CODE_ATTEMPTS = 3
MAX_TOKENS_PER_DEVICE = MAX_PAYMENT_CARDS
DEVICE_ID_PATTERN = r"[0-9a-f]{16}"  # the wallet id (firmware/wallet)
MISMATCH = "card details do not match"
MAX_DEVICE_NAME = 64
MAX_NAME_ON_CARD = 64
MAX_CODE = 16


class BindingError(Exception):
    """A refusal the cardholder's phone shows; `kind` decides the HTTP status, `extra` goes in the body."""

    def __init__(
        self, kind: str, message: str, extra: dict[str, Any] | None = None, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        # bad_request, forbidden, not_found, conflict, mismatch, wrong_code, locked, gone, too_many
        self.kind = kind
        self.message = message
        self.extra = extra or {}
        self.retry_after = retry_after

    @classmethod
    def throttled(cls, error: throttle.Throttled) -> BindingError:
        return cls("too_many", str(error), retry_after=error.retry_after)


@dataclass(frozen=True)
class StartedBinding:
    binding_id: int
    phone_masked: str
    expires_in: int


def now() -> float:
    """The clock for code expiry (one place for tests to move time)."""
    return time.time()


def mask_phone(phone: str) -> str:
    """138****8000: enough for the user to recognise their phone, not enough to call it."""
    return phone[:3] + "*" * max(len(phone) - 7, 0) + phone[-4:] if len(phone) > 7 else "*" * len(phone)


def start_binding(
    connection: sqlite3.Connection,
    vault: Vault,
    *,
    user_id: int,
    device_id: str,
    pan: str,
    expiry: str,
    device_name: str | None = None,
) -> StartedBinding:
    """Check the card and the phone, then send a 6-digit code by SMS to the cardholder's phone."""
    if not re.fullmatch(DEVICE_ID_PATTERN, device_id):
        raise BindingError("bad_request", "device id: 16 lower-case hexadecimal digits (the wallet id)")
    if not re.fullmatch(r"[0-9]{13,19}", pan):
        raise BindingError("bad_request", "pan: 13 to 19 digits")
    if not re.fullmatch(r"(0[1-9]|1[0-2])[0-9]{2}", expiry):
        raise BindingError("bad_request", "expiry: MMYY, e.g. 1230")
    if device_name is not None and not (len(device_name) <= MAX_DEVICE_NAME and device_name.isprintable()):
        raise BindingError("bad_request", f"device_name: at most {MAX_DEVICE_NAME} printable characters")
    with transaction(connection):
        user = connection.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
        _own_device(connection, user_id, device_id, register_as=device_name or f"Phone {device_id[-4:]}")
        account = connection.execute("SELECT * FROM accounts WHERE pan_hash = ?", (vault.pan_hash(pan),)).fetchone()
        if (
            not luhn_valid(pan) or account is None or account["owner_id"] != user_id
            or _mmyy(account["expiry"]) != expiry
        ):
            raise BindingError("mismatch", MISMATCH)
        if account["status"] != "active":
            raise BindingError("mismatch", "this card cannot be added to a phone; please call your bank")
        if connection.execute(
            "SELECT 1 FROM tokens WHERE device_id = ? AND account_id = ? AND status != 'deleted'",
            (device_id, account["id"]),
        ).fetchone():
            raise BindingError("conflict", "this card is already on this phone")
        if not user["phone"]:
            raise BindingError("mismatch", "no phone number on this account for the SMS code; please call your bank")
        sent = _caps(SENT_CAPS, user_id, account["id"], device_id)
        refusal = _refusal(connection, sent + _caps(WRONG_CAPS, user_id, account["id"], device_id))
        if refusal is not None:
            raise refusal
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_hex(8)
        # A new code replaces any earlier one for the same card and phone.
        connection.execute(
            "UPDATE otps SET state = 'replaced' WHERE user_id = ? AND device_id = ? AND account_id = ?"
            " AND state = 'pending'",
            (user_id, device_id, account["id"]),
        )
        cursor = connection.execute(
            "INSERT INTO otps (user_id, device_id, account_id, code_hash, expires) VALUES (?, ?, ?, ?, ?)",
            (user_id, device_id, account["id"], f"{salt}:{_code_hash(vault, salt, code)}", now() + CODE_SECONDS),
        )
        binding_id = int(cursor.lastrowid or 0)
        connection.execute(
            "INSERT INTO sms_outbox (phone, text, created) VALUES (?, ?, ?)",
            (user["phone"],
             f"Your QuickPass binding code is {code} for card •••• {pan[-4:]} (ref {binding_id}). It expires in"
             f" {CODE_SECONDS // 60} minutes. Never share it: the bank will never ask for it.",
             _now_text()),
        )
        lifecycle.record_event(connection, {
            "action": "binding_started", "binding_id": binding_id, "device_id": device_id,
            "card_masked": account["pan_masked"], "by": user["username"],
            "text": f"binding {binding_id}: card {account['pan_masked']} to device {device_id}, SMS code sent",
        })
        capped = [(limit, key) for limit, key in sent if throttle.hit(connection, limit, key)]
        _report_caps(connection, capped, account["pan_masked"], device_id, user["username"])
    return StartedBinding(binding_id, mask_phone(user["phone"]), CODE_SECONDS)


def verify_binding(
    connection: sqlite3.Connection,
    vault: Vault,
    keys: KeyStore,
    *,
    user_id: int,
    binding_id: int,
    code: str,
    card_id: str | None = None,
) -> dict[str, Any]:
    """Check the SMS code; the right one creates the token and returns what the phone's secure element gets."""
    if card_id is not None and not re.fullmatch(CARD_ID_PATTERN, card_id):
        raise BindingError("bad_request", "card_id: lower-case letters, digits and '-' (max 32)")
    failure: BindingError | None = None
    payload: dict[str, Any] = {}
    with transaction(connection):
        otp = connection.execute(
            "SELECT * FROM otps WHERE id = ? AND user_id = ?", (binding_id, user_id)
        ).fetchone()
        if otp is None:
            raise BindingError("not_found", f"no binding {binding_id}")
        if otp["state"] == "locked":
            raise BindingError("locked", "too many wrong codes; start again from the card details")
        if otp["state"] == "verified":
            raise BindingError("conflict", "this code has already been used")
        if otp["state"] != "pending":
            raise BindingError("gone", "this code was replaced by a newer one; use the latest SMS")
        wrong = _caps(WRONG_CAPS, user_id, otp["account_id"], otp["device_id"])
        refusal = _refusal(connection, wrong)
        if refusal is not None:
            raise refusal
        if now() > otp["expires"]:
            connection.execute("UPDATE otps SET state = 'expired' WHERE id = ?", (binding_id,))
            failure = BindingError("gone", "the code has expired; start again from the card details")
        elif not _code_matches(vault, otp["code_hash"], code):
            attempts = otp["attempts"] + 1
            capped = [(limit, key) for limit, key in wrong if throttle.hit(connection, limit, key)]
            locked = attempts >= CODE_ATTEMPTS or bool(capped)
            connection.execute(
                "UPDATE otps SET attempts = ?, state = ? WHERE id = ?",
                (attempts, "locked" if locked else "pending", binding_id),
            )
            if capped:
                card = connection.execute("SELECT pan_masked FROM accounts WHERE id = ?", (otp["account_id"],))
                user = connection.execute("SELECT username FROM users WHERE id = ?", (user_id,))
                _report_caps(connection, capped, card.fetchone()[0], otp["device_id"], user.fetchone()[0])
                failure = _refusal(connection, capped)
            elif locked:
                lifecycle.record_event(connection, {
                    "action": "binding_locked", "binding_id": binding_id, "device_id": otp["device_id"],
                    "text": f"binding {binding_id}: locked after {attempts} wrong codes",
                })
                failure = BindingError("locked", "too many wrong codes; start again from the card details")
            else:
                left = CODE_ATTEMPTS - attempts
                failure = BindingError("wrong_code", f"wrong code; {left} attempt(s) left", {"attempts_left": left})
        else:
            payload = _issue_token(connection, vault, keys, otp, card_id)
    if failure is not None:
        raise failure
    return payload


def delete_token(connection: sqlite3.Connection, *, user_id: int, token_id: int) -> None:
    """The cardholder removed the card from the phone: the token is deleted for good."""
    with transaction(connection):
        if not connection.execute(
            "SELECT 1 FROM tokens t JOIN devices d ON d.id = t.device_id WHERE t.id = ? AND d.owner_id = ?",
            (token_id, user_id),
        ).fetchone():
            raise BindingError("not_found", f"no token {token_id} on your phones")
        try:
            lifecycle.set_token_status(connection, token_id, lifecycle.DELETED, "CONSUMER_DELETED", actor="cardholder")
        except lifecycle.LifecycleError as error:
            raise BindingError("conflict", str(error)) from None


def sms_inbox(connection: sqlite3.Connection, user_id: int) -> list[dict[str, Any]]:
    """The stub's stand-in for the cardholder's phone messages, newest first."""
    user = connection.execute("SELECT phone FROM users WHERE id = ?", (user_id,)).fetchone()
    if user is None or not user["phone"]:
        return []
    rows = connection.execute(
        "SELECT id, created, text FROM sms_outbox WHERE phone = ? ORDER BY id DESC", (user["phone"],)
    ).fetchall()
    return [{"id": row["id"], "created": row["created"], "to": mask_phone(user["phone"]), "text": row["text"]}
            for row in rows]


def card_label(issuer: str, kind: str, pan: str) -> str:
    """What the wallet shows, as the local provisioning path names it: "ICBC Debit •••• 1234"."""
    return f"{issuer.split('-')[0].upper()} {kind.title()} •••• {pan[-4:]}"


def _issue_token(
    connection: sqlite3.Connection, vault: Vault, keys: KeyStore, otp: sqlite3.Row, card_id: str | None
) -> dict[str, Any]:
    device_id = otp["device_id"]
    device = connection.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
    if device is None or device["owner_id"] != otp["user_id"]:
        raise BindingError("forbidden", "this phone is registered to another account")
    if not device["wallet_enabled"]:
        raise BindingError("conflict", "the wallet on this phone is turned off; turn it on first")
    _check_room(connection, device_id)
    account = connection.execute("SELECT * FROM accounts WHERE id = ?", (otp["account_id"],)).fetchone()
    if connection.execute(
        "SELECT 1 FROM tokens WHERE device_id = ? AND account_id = ? AND status != 'deleted'",
        (device_id, account["id"]),
    ).fetchone():
        raise BindingError("conflict", "this card is already on this phone")
    used = {row[0] for row in connection.execute(
        "SELECT wallet_card_id FROM tokens WHERE device_id = ? AND status != 'deleted'", (device_id,)
    )}
    if card_id is None:
        card_id = account["issuer"]
        suffix = 2
        while card_id in used:
            card_id, suffix = f"{account['issuer']}-{suffix}", suffix + 1
    elif card_id in used:
        raise BindingError("conflict", f"card id {card_id!r} is already used on this phone")

    pan = vault.unseal(account["pan_sealed"])
    par = account["par"] or _par_of_existing_tokens(connection, account["id"]) or new_par()
    if account["par"] is None:  # one PAR per account across the PAN and all its tokens (§11)
        connection.execute("UPDATE accounts SET par = ? WHERE id = ?", (par, account["id"]))
    token_pan = _fresh_token_pan(connection, vault, keys.token_bin)
    expiry = datetime.date.fromisoformat(account["expiry"])
    profile, token_keys = token_card(keys.token_imk, token_pan=token_pan, par=par, kind=account["kind"], expiry=expiry)
    cursor = connection.execute(
        "INSERT INTO tokens (token_hash, token_sealed, token_masked, account_id, device_id, wallet_card_id, par,"
        " expiry, status, status_reason, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?)",
        (vault.pan_hash(token_pan), vault.seal(token_pan), vault.masked(token_pan), account["id"], device_id,
         card_id, par, expiry.isoformat(), _now_text()),
    )
    token_id = int(cursor.lastrowid or 0)
    connection.execute("UPDATE otps SET state = 'verified' WHERE id = ?", (otp["id"],))
    lifecycle.record_event(connection, {
        "action": "provision", "token_id": token_id, "token_masked": vault.masked(token_pan),
        "device_id": device_id, "card_masked": account["pan_masked"], "par": par,
        "text": f"token {vault.masked(token_pan)} for card {account['pan_masked']} delivered to device {device_id}",
    })
    keys_out = qpboc_schema.keys_to_dict(token_keys)
    return {
        "token_id": token_id,
        "card_id": card_id,
        "token_pan": token_pan,
        "expiry": expiry.isoformat(),
        "par": par,
        "kind": account["kind"],
        "card_label": card_label(account["issuer"], account["kind"], pan),
        "profile": qpboc_schema.profile_to_dict(profile),
        "keys": {"icc_master_key": keys_out["icc_master_key"]},
    }


SENT_CAPS = (throttle.SMS_CODES_PER_CARD, throttle.SMS_CODES_PER_DEVICE, throttle.SMS_CODES_PER_USER)
WRONG_CAPS = (throttle.WRONG_CODES_PER_CARD, throttle.WRONG_CODES_PER_DEVICE, throttle.WRONG_CODES_PER_USER)


def _caps(
    limits: tuple[throttle.Limit, throttle.Limit, throttle.Limit], user_id: int, account_id: int, device_id: str
) -> list[tuple[throttle.Limit, str]]:
    """(per card, per device, per user) limits with their keys."""
    return list(zip(limits, (str(account_id), device_id, str(user_id)), strict=True))


def _refusal(connection: sqlite3.Connection, caps: list[tuple[throttle.Limit, str]]) -> BindingError | None:
    """The 429 to answer when one of the caps is used up, else None."""
    try:
        for limit, key in caps:
            throttle.check(connection, limit, key)
    except throttle.Throttled as error:
        return BindingError.throttled(error)
    return None


def _report_caps(
    connection: sqlite3.Connection, capped: list[tuple[throttle.Limit, str]], card_masked: str, device_id: str,
    username: str,
) -> None:
    """A cap just reached: one event on the dashboard's feed (not one per refused request)."""
    for limit, _ in capped:
        record_event(connection, "security", {
            "action": "sms_cap", "scope": limit.scope, "device_id": device_id, "card_masked": card_masked,
            "by": username,
            "text": f"SMS binding codes stopped for a day: {limit.count} {limit.what} (card {card_masked}, device"
                    f" {device_id}, cardholder {username})",
        })


def _own_device(connection: sqlite3.Connection, user_id: int, device_id: str, *, register_as: str) -> None:
    device = connection.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
    if device is None:
        connection.execute(
            "INSERT INTO devices (id, owner_id, name) VALUES (?, ?, ?)", (device_id, user_id, register_as)
        )
        return
    if device["owner_id"] != user_id:
        raise BindingError("forbidden", "this phone is registered to another account")
    if not device["wallet_enabled"]:
        raise BindingError("conflict", "the wallet on this phone is turned off; turn it on first")
    _check_room(connection, device_id)


def _check_room(connection: sqlite3.Connection, device_id: str) -> None:
    held = connection.execute(
        "SELECT COUNT(*) FROM tokens WHERE device_id = ? AND status IN ('active', 'suspended')", (device_id,)
    ).fetchone()[0]
    if held >= MAX_TOKENS_PER_DEVICE:
        raise BindingError("conflict", f"this phone already holds {MAX_TOKENS_PER_DEVICE} cards")


def _par_of_existing_tokens(connection: sqlite3.Connection, account_id: int) -> str | None:
    row = connection.execute(
        "SELECT par FROM tokens WHERE account_id = ? ORDER BY id LIMIT 1", (account_id,)
    ).fetchone()
    return row["par"] if row else None


def _fresh_token_pan(connection: sqlite3.Connection, vault: Vault, token_bin: str) -> str:
    """A Luhn-valid token PAN that collides with no token and no card PAN (§11)."""
    while True:
        candidate = new_pan(token_bin)
        digest = vault.pan_hash(candidate)
        if not connection.execute(
            "SELECT 1 FROM tokens WHERE token_hash = ? UNION ALL SELECT 1 FROM accounts WHERE pan_hash = ?",
            (digest, digest),
        ).fetchone():
            return candidate


def _code_hash(vault: Vault, salt: str, code: str) -> str:
    # Keyed with the vault key: a copy of the database alone cannot brute-force the 10⁶ codes.
    return vault.pan_hash(f"otp:{salt}:{code}")


def _code_matches(vault: Vault, stored: str, code: str) -> bool:
    salt, _, digest = stored.partition(":")
    return hmac.compare_digest(_code_hash(vault, salt, code), digest)


def _mmyy(iso_date: str) -> str:
    date = datetime.date.fromisoformat(iso_date)
    return f"{date.month:02d}{date.year % 100:02d}"


def _now_text() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
