"""Issue #11 §4: free-text fields have length limits (a clear 400, nothing stored) and an over-long id in a URL
is a 404, not a 500.

Found by an attacker: a 3 MiB device name was accepted; `/dashboard/tx/<30 digits>` answered 500.
"""

from __future__ import annotations

import datetime
import sqlite3
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from webform import csrf_token, post_login, world_login

from acquirer_stub import accounts
from acquirer_stub.tsp import binding
from firmware.issuing.layout import World

NEW_PHONE = "00000000000000b3"
THIRTY_DIGITS = "9" * 30


def _card_details(world: World) -> dict[str, str]:
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    expiry = datetime.date.fromisoformat(card["expiry"])
    return {"pan": card["pan"], "expiry": f"{expiry.month:02d}{expiry.year % 100:02d}"}


def _stored(connection: sqlite3.Connection) -> tuple[Any, ...]:
    return tuple(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                 for table in ("devices", "otps", "sms_outbox", "events", "tokens"))


def test_a_huge_device_name_is_refused_and_nothing_is_stored(
    world: World, client: FlaskClient, headers: dict[str, str], connection: sqlite3.Connection
) -> None:
    before = _stored(connection)
    url = f"/tsp/v1/devices/{NEW_PHONE}/cards"
    huge = client.post(url, json={**_card_details(world), "device_name": "x" * 3 * 2**20}, headers=headers)
    assert huge.status_code in (400, 413)  # the field's limit, or a request size limit in front of it
    over = client.post(url, json={**_card_details(world), "device_name": "x" * (binding.MAX_DEVICE_NAME + 1)},
                       headers=headers)
    assert over.status_code == 400
    assert over.json["error"] == f"device_name: at most {binding.MAX_DEVICE_NAME} characters"
    control = client.post(url, json={**_card_details(world), "device_name": "Phone\n<script>"}, headers=headers)
    assert control.status_code == 400 and "printable" in control.json["error"]
    assert _stored(connection) == before

    fits = client.post(url, json={**_card_details(world), "device_name": "x" * binding.MAX_DEVICE_NAME},
                       headers=headers)
    assert fits.status_code == 201
    assert connection.execute("SELECT name FROM devices WHERE id = ?", (NEW_PHONE,)).fetchone()[0] == "x" * 64


def test_every_free_text_field_of_the_token_service_has_a_limit(
    world: World, client: FlaskClient, headers: dict[str, str], connection: sqlite3.Connection
) -> None:
    username, password = world_login(world, "cardholder")
    before = _stored(connection)
    refused = [
        ("/tsp/v1/sessions", {"username": "u" * (accounts.MAX_USERNAME + 1), "password": password}, "username"),
        ("/tsp/v1/sessions", {"username": username, "password": "p" * (accounts.MAX_PASSWORD + 1)}, "password"),
        (f"/tsp/v1/devices/{NEW_PHONE}/cards",
         {**_card_details(world), "name_on_card": "n" * (binding.MAX_NAME_ON_CARD + 1)}, "name_on_card"),
        (f"/tsp/v1/devices/{NEW_PHONE}/cards", {**_card_details(world), "pan": "4" * 1_000}, "pan"),
        ("/tsp/v1/bindings/1/verify", {"code": "1" * (binding.MAX_CODE + 1)}, "code"),
    ]
    for url, body, field in refused:
        answer = client.post(url, json=body, headers=headers)
        assert answer.status_code == 400, (url, field, answer.json)
        assert answer.json["error"].startswith(f"{field}:")
    assert _stored(connection) == before


def test_the_login_and_password_forms_have_limits(
    app: Flask, world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    username, password = world_login(world, "cardholder")
    _, answer = post_login(client, "u" * (accounts.MAX_USERNAME + 1), password)
    assert answer.status_code == 400 and "at most 64 characters" in answer.get_data(as_text=True)
    _, answer = post_login(client, username, "p" * 3 * 2**20)
    assert answer.status_code in (400, 413)
    assert connection.execute("SELECT COUNT(*) FROM throttle").fetchone()[0] == 0  # refused before counting

    _, answer = post_login(client, username, password)
    assert answer.status_code == 302
    token = csrf_token(client.get("/account/password").get_data(as_text=True))
    answer = client.post("/account/password", data={"current": password, "new": "n" * 200, "repeat": "n" * 200,
                                                    "csrf_token": token})
    assert answer.status_code == 400 and "at most 128 characters" in answer.get_data(as_text=True)


def test_an_over_long_id_in_a_url_is_not_found(
    app: Flask, world: World, headers: dict[str, str], connection: sqlite3.Connection
) -> None:
    operator = app.test_client()
    token, answer = post_login(operator, *world_login(world, "operator"))
    assert answer.status_code == 302
    cardholder = app.test_client()
    cardholder_token, answer = post_login(cardholder, *world_login(world, "cardholder"))
    assert answer.status_code == 302
    for digits in (THIRTY_DIGITS, str(2**63), str(2**63 - 1)):
        assert operator.get(f"/dashboard/tx/{digits}").status_code == 404
        assert operator.post(f"/dashboard/tokens/{digits}/status",
                             data={"status": "suspended", "reason": "LOST", "csrf_token": token}).status_code == 404
        assert operator.post(f"/dashboard/promotions/{digits}/active",
                             data={"active": "0", "csrf_token": token}).status_code == 404
        assert cardholder.post(f"/cardholder/tokens/{digits}/status",
                               data={"action": "resume", "csrf_token": cardholder_token}).status_code == 404
        assert cardholder.post(f"/tsp/v1/bindings/{digits}/verify", json={"code": "123456"},
                               headers=headers).status_code == 404
        assert cardholder.delete(f"/tsp/v1/tokens/{digits}", headers=headers).status_code == 404
