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
from acquirer_stub.store import bindings, cards, outbox, tokens, users
from acquirer_stub.store.bindings import BindingCode
from acquirer_stub.store.db import transaction
from acquirer_stub.store.events import record as record_event
from acquirer_stub.store.users import User
from acquirer_stub.tsp import lifecycle
from acquirer_stub.vault import Vault
from firmware.issuing.personalize import luhn_valid, new_pan, new_par, token_card
from firmware.issuing.tokens import CARD_ID_PATTERN, MAX_PAYMENT_CARDS, DeliveredToken, encode

CODE_SECONDS = 300
CODE_ATTEMPTS = 3
MAX_TOKENS_PER_DEVICE = MAX_PAYMENT_CARDS
DEVICE_ID_PATTERN = r"[0-9a-f]{16}"  # the wallet id (firmware/apps/wallet)
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
        user = _user(connection, user_id)
        _own_device(connection, user_id, device_id, register_as=device_name or f"Phone {device_id[-4:]}")
        account = cards.find_card_by_hash(connection, vault.pan_hash(pan))
        if (
            not luhn_valid(pan) or account is None or account.owner_id != user_id
            or _mmyy(account.expiry) != expiry
        ):
            raise BindingError("mismatch", MISMATCH)
        if account.status != "active":
            raise BindingError("mismatch", "this card cannot be added to a phone; please call your bank")
        if tokens.holds_card(connection, device_id, account.id):
            raise BindingError("conflict", "this card is already on this phone")
        phone = user.phone
        if not phone:
            raise BindingError("mismatch", "no phone number on this account for the SMS code; please call your bank")
        sent = _caps(SENT_CAPS, user_id, account.id, device_id)
        refusal = _refusal(connection, sent + _caps(WRONG_CAPS, user_id, account.id, device_id))
        if refusal is not None:
            raise refusal
        code = f"{secrets.randbelow(10**6):06d}"
        salt = secrets.token_hex(8)
        # A new code replaces any earlier one for the same card and phone.
        bindings.replace_pending(connection, user_id, device_id, account.id)
        binding_id = bindings.add_code(connection, user_id, device_id, account.id,
                                       f"{salt}:{_code_hash(vault, salt, code)}", now() + CODE_SECONDS)
        outbox.send(connection, phone,
                    f"Your QuickPass binding code is {code} for card •••• {pan[-4:]} (ref {binding_id}). It expires"
                    f" in {CODE_SECONDS // 60} minutes. Never share it: the bank will never ask for it.", _now_text())
        lifecycle.record_event(connection, {
            "action": "binding_started", "binding_id": binding_id, "device_id": device_id,
            "card_masked": account.pan_masked, "by": user.username,
            "text": f"binding {binding_id}: card {account.pan_masked} to device {device_id}, SMS code sent",
        })
        capped = [(limit, key) for limit, key in sent if throttle.hit(connection, limit, key)]
        _report_caps(connection, capped, account.pan_masked, device_id, user.username)
    return StartedBinding(binding_id, mask_phone(phone), CODE_SECONDS)


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
        otp = bindings.find_code(connection, binding_id, user_id)
        if otp is None:
            raise BindingError("not_found", f"no binding {binding_id}")
        if otp.state == "locked":
            raise BindingError("locked", "too many wrong codes; start again from the card details")
        if otp.state == "verified":
            raise BindingError("conflict", "this code has already been used")
        if otp.state != "pending":
            raise BindingError("gone", "this code was replaced by a newer one; use the latest SMS")
        wrong = _caps(WRONG_CAPS, user_id, otp.account_id, otp.device_id)
        refusal = _refusal(connection, wrong)
        if refusal is not None:
            raise refusal
        if now() > otp.expires:
            bindings.set_state(connection, binding_id, "expired")
            failure = BindingError("gone", "the code has expired; start again from the card details")
        elif not _code_matches(vault, otp.code_hash, code):
            attempts = otp.attempts + 1
            capped = [(limit, key) for limit, key in wrong if throttle.hit(connection, limit, key)]
            locked = attempts >= CODE_ATTEMPTS or bool(capped)
            bindings.set_state(connection, binding_id, "locked" if locked else "pending", attempts=attempts)
            if capped:
                _report_caps(connection, capped, _card(connection, otp.account_id).pan_masked, otp.device_id,
                             _user(connection, user_id).username)
                failure = _refusal(connection, capped)
            elif locked:
                lifecycle.record_event(connection, {
                    "action": "binding_locked", "binding_id": binding_id, "device_id": otp.device_id,
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
        if tokens.token_masked_of(connection, token_id, user_id) is None:
            raise BindingError("not_found", f"no token {token_id} on your phones")
        try:
            lifecycle.set_token_status(connection, token_id, lifecycle.DELETED, "CONSUMER_DELETED", actor="cardholder")
        except lifecycle.LifecycleError as error:
            raise BindingError("conflict", str(error)) from None


def sms_inbox(connection: sqlite3.Connection, user_id: int) -> list[dict[str, Any]]:
    """The stub's stand-in for the cardholder's phone messages, newest first."""
    user = users.find(connection, user_id)
    if user is None or not user.phone:
        return []
    return [{"id": message.id, "created": message.created, "to": mask_phone(user.phone), "text": message.text}
            for message in outbox.to_phone(connection, user.phone)]


def card_label(issuer: str, kind: str, pan: str) -> str:
    """What the wallet shows, as the local provisioning path names it: "ICBC Debit •••• 1234"."""
    return f"{issuer.split('-')[0].upper()} {kind.title()} •••• {pan[-4:]}"


def _issue_token(
    connection: sqlite3.Connection, vault: Vault, keys: KeyStore, otp: BindingCode, card_id: str | None
) -> dict[str, Any]:
    device_id = otp.device_id
    device = tokens.device(connection, device_id)
    if device is None or device.owner_id != otp.user_id:
        raise BindingError("forbidden", "this phone is registered to another account")
    if not device.wallet_enabled:
        raise BindingError("conflict", "the wallet on this phone is turned off; turn it on first")
    _check_room(connection, device_id)
    account = _card(connection, otp.account_id)
    if tokens.holds_card(connection, device_id, account.id):
        raise BindingError("conflict", "this card is already on this phone")
    used = tokens.wallet_card_ids(connection, device_id)
    if card_id is None:
        card_id = account.issuer
        suffix = 2
        while card_id in used:
            card_id, suffix = f"{account.issuer}-{suffix}", suffix + 1
    elif card_id in used:
        raise BindingError("conflict", f"card id {card_id!r} is already used on this phone")

    pan = vault.unseal(account.pan_sealed)
    par = account.par or tokens.first_par(connection, account.id) or new_par()
    if account.par is None:  # one PAR per account across the PAN and all its tokens (§11)
        cards.set_par(connection, account.id, par)
    token_pan = _fresh_token_pan(connection, vault, keys.token_bin)
    expiry = datetime.date.fromisoformat(account.expiry)
    profile, token_keys = token_card(keys.token_imk, token_pan=token_pan, par=par, kind=account.kind, expiry=expiry)
    token_id = tokens.add_token(
        connection, token_hash=vault.pan_hash(token_pan), token_sealed=vault.seal(token_pan),
        token_masked=vault.masked(token_pan), account_id=account.id, device_id=device_id, wallet_card_id=card_id,
        par=par, expiry=expiry.isoformat(), status=lifecycle.ACTIVE, created=_now_text())
    bindings.set_state(connection, otp.id, "verified")
    lifecycle.record_event(connection, {
        "action": "provision", "token_id": token_id, "token_masked": vault.masked(token_pan),
        "device_id": device_id, "card_masked": account.pan_masked, "par": par,
        "text": f"token {vault.masked(token_pan)} for card {account.pan_masked} delivered to device {device_id}",
    })
    return encode(DeliveredToken(token_id, card_id, card_label(account.issuer, account.kind, pan), account.kind,
                                 profile, token_keys.icc_master_key))


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


def _user(connection: sqlite3.Connection, user_id: int) -> User:
    """The signed-in cardholder (the session names an existing user)."""
    user = users.find(connection, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    return user


def _card(connection: sqlite3.Connection, account_id: int) -> cards.Card:
    """A binding's card (its row references an existing account)."""
    card = cards.find_card(connection, account_id)
    if card is None:
        raise LookupError(f"no account {account_id}")
    return card


def _own_device(connection: sqlite3.Connection, user_id: int, device_id: str, *, register_as: str) -> None:
    device = tokens.device(connection, device_id)
    if device is None:
        tokens.add_device(connection, device_id, user_id, register_as)
        return
    if device.owner_id != user_id:
        raise BindingError("forbidden", "this phone is registered to another account")
    if not device.wallet_enabled:
        raise BindingError("conflict", "the wallet on this phone is turned off; turn it on first")
    _check_room(connection, device_id)


def _check_room(connection: sqlite3.Connection, device_id: str) -> None:
    if tokens.cards_held(connection, device_id) >= MAX_TOKENS_PER_DEVICE:
        raise BindingError("conflict", f"this phone already holds {MAX_TOKENS_PER_DEVICE} cards")


def _fresh_token_pan(connection: sqlite3.Connection, vault: Vault, token_bin: str) -> str:
    """A Luhn-valid token PAN that collides with no token and no card PAN (§11)."""
    while True:
        candidate = new_pan(token_bin)
        if not tokens.number_in_use(connection, vault.pan_hash(candidate)):
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
