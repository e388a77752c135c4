"""Issue #11 §3: SMS binding codes are capped per card, per phone and per cardholder across bindings.

Found by an attacker: each binding locked after 3 wrong codes, but starting a new binding reset the count —
1,725 guesses in 10 s from one client.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webform import post_login, world_login

from acquirer_stub import throttle
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import binding as wallet_binding
from firmware.issuing.layout import World

ATTACK_ROUNDS = 200  # bindings the attacker tries to start; the old code let every one of them guess 3 times
SECOND_PHONE = "00000000000000a2"


def _cards(world: World) -> list[dict[str, Any]]:
    """The cardholder's cards that are not on the demo phone yet."""
    return [card for card in world.cards() if card["issuer"] != "boc-credit"]


def _mmyy(card: dict[str, Any]) -> str:
    date = datetime.date.fromisoformat(card["expiry"])
    return f"{date.month:02d}{date.year % 100:02d}"


def _start(client: FlaskClient, headers: dict[str, str], device: str, card: dict[str, Any]) -> Any:
    return client.post(f"/tsp/v1/devices/{device}/cards", json={"pan": card["pan"], "expiry": _mmyy(card)},
                       headers=headers)


def _code(client: FlaskClient, headers: dict[str, str], binding_id: int) -> str:
    return wallet_binding.code_from_sms(client.get("/tsp/v1/sms", headers=headers).json["messages"], binding_id)


def _verify(client: FlaskClient, headers: dict[str, str], binding_id: int, code: str) -> Any:
    return client.post(f"/tsp/v1/bindings/{binding_id}/verify", json={"code": code}, headers=headers)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def _guess_until_refused(client: FlaskClient, headers: dict[str, str], device: str, card: dict[str, Any]) -> tuple[
        int, Any]:
    """The attack: new binding, three wrong codes, again … until the service refuses; returns how many wrong
    codes were sent (the last one refused with 429) and the refusal."""
    guesses = 0
    for _ in range(ATTACK_ROUNDS):
        started = _start(client, headers, device, card)
        if started.status_code != 201:
            return guesses, started
        binding_id = started.json["binding_id"]
        wrong = _wrong(_code(client, headers, binding_id))
        for _ in range(3):
            answer = _verify(client, headers, binding_id, wrong)
            guesses += 1
            if answer.status_code not in (400, 423):
                return guesses, answer
    return guesses, None


def _assert_too_many(answer: Any, what: str) -> None:
    assert answer is not None, "never refused"
    assert answer.status_code == 429, answer.json
    assert what in answer.json["error"]
    retry_after = int(answer.headers["Retry-After"])
    assert 0 < retry_after <= throttle.DAY


def _security_events(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT body FROM events WHERE kind = 'security' ORDER BY id")]


def test_new_bindings_do_not_reset_the_count_of_wrong_codes(
    app: Flask, world: World, client: FlaskClient, headers: dict[str, str], connection: sqlite3.Connection
) -> None:
    device, card = Wallet.load(world.demo_phone).wallet_id, _cards(world)[0]
    guesses, refusal = _guess_until_refused(client, headers, device, card)
    assert guesses == throttle.WRONG_CODES_PER_CARD.count
    _assert_too_many(refusal, "wrong SMS codes for this card")

    # a fresh binding for that card is refused too, before any code is sent
    outbox = connection.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0]
    _assert_too_many(_start(client, headers, device, card), "wrong SMS codes for this card")
    assert connection.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == outbox
    assert connection.execute("SELECT COUNT(*) FROM tokens WHERE device_id = ?", (device,)).fetchone()[0] == 1

    # one event on the dashboard when the cap was reached, none per refused request
    events = _security_events(connection)
    assert len(events) == 1 and "wrong SMS codes for this card" in events[0] and card["pan"] not in events[0]
    operator = app.test_client()
    assert post_login(operator, *world_login(world, "operator"))[1].status_code == 302
    assert "SMS binding codes stopped for a day" in operator.get("/dashboard/").get_data(as_text=True)


def test_the_caps_per_phone_and_per_cardholder_span_cards_and_phones(
    world: World, client: FlaskClient, headers: dict[str, str], connection: sqlite3.Connection
) -> None:
    device = Wallet.load(world.demo_phone).wallet_id
    spare, first, second, third, fourth = _cards(world)[:5]
    pending = _start(client, headers, device, spare).json["binding_id"]  # the cardholder's own, right code known
    right_code = _code(client, headers, pending)

    guesses, refusal = _guess_until_refused(client, headers, device, first)
    assert guesses == throttle.WRONG_CODES_PER_CARD.count and refusal.status_code == 429
    guesses, refusal = _guess_until_refused(client, headers, device, second)
    assert guesses == throttle.WRONG_CODES_PER_DEVICE.count - throttle.WRONG_CODES_PER_CARD.count
    _assert_too_many(refusal, "wrong SMS codes from this phone")
    # even the right code of a card never guessed at is refused on this phone now
    _assert_too_many(_verify(client, headers, pending, right_code), "wrong SMS codes from this phone")

    # another phone of the same cardholder: the per-cardholder cap follows them
    guesses, refusal = _guess_until_refused(client, headers, SECOND_PHONE, third)
    assert guesses == throttle.WRONG_CODES_PER_USER.count - throttle.WRONG_CODES_PER_DEVICE.count
    _assert_too_many(refusal, "wrong SMS codes of this cardholder")
    _assert_too_many(_start(client, headers, SECOND_PHONE, fourth), "wrong SMS codes of this cardholder")
    assert connection.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 1  # the demo token only
    assert len(_security_events(connection)) == 3


def test_codes_sent_are_capped_and_the_cap_ends_after_a_day(
    world: World, client: FlaskClient, headers: dict[str, str], connection: sqlite3.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device, card = Wallet.load(world.demo_phone).wallet_id, _cards(world)[0]
    answers = [_start(client, headers, device, card) for _ in range(throttle.SMS_CODES_PER_CARD.count + 3)]
    assert [a.status_code for a in answers] == [201] * throttle.SMS_CODES_PER_CARD.count + [429] * 3
    for answer in answers[throttle.SMS_CODES_PER_CARD.count:]:
        _assert_too_many(answer, "SMS codes sent for this card")
    assert connection.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == throttle.SMS_CODES_PER_CARD.count

    later = throttle.now() + throttle.DAY + 1
    monkeypatch.setattr(throttle, "now", lambda: later)
    started = _start(client, headers, device, card)
    assert started.status_code == 201
    assert _verify(client, headers, started.json["binding_id"],
                   _code(client, headers, started.json["binding_id"])).status_code == 200
