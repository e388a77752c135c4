"""The cardholder's self-service pages: log in through the form, turn a lost phone's wallet off and on."""

from __future__ import annotations

import re
import sqlite3

import pytest
from flask.testing import FlaskClient
from webform import csrf_token, post_login, world_login
from werkzeug.security import generate_password_hash

from acquirer_stub.instance import Instance
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World


def _log_in(client: FlaskClient, username: str, password: str) -> None:
    _, answer = post_login(client, username, password)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/cardholder/")


@pytest.fixture
def cardholder(world: World, client: FlaskClient) -> FlaskClient:
    _log_in(client, *world_login(world, "cardholder"))
    return client


def _device(world: World) -> str:
    return Wallet.load(world.demo_phone).wallet_id


def _tokens(connection: sqlite3.Connection, device: str) -> list[tuple[str, str | None]]:
    rows = connection.execute("SELECT status, status_reason FROM tokens WHERE device_id = ? ORDER BY id", (device,))
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_the_cardholder_sees_their_phone_and_its_cards_masked(
    world: World, cardholder: FlaskClient, instance: Instance
) -> None:
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    token_pan = world.tsp()["tokens"][0]["token_pan"]
    assert "Demo phone" in page and _device(world) in page and "wallet on" in page
    assert f"{token_pan[:6]}******{token_pan[-4:]}" in page
    assert "I lost this phone" in page
    assert token_pan not in page
    assert all(card["pan"] not in page for card in world.cards())


def test_lost_phone_off_suspends_and_on_resumes(
    world: World, cardholder: FlaskClient, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    answer = cardholder.post(f"/cardholder/devices/{device}/wallet",
                             data={"enabled": "0", "csrf_token": csrf_token(page)})
    assert answer.status_code == 302
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 0
    assert _tokens(connection, device) == [("suspended", "LOST_DEVICE")]
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    assert "wallet off" in page and "1 card(s) suspended" in page and "I found this phone" in page

    answer = cardholder.post(f"/cardholder/devices/{device}/wallet",
                             data={"enabled": "1", "csrf_token": csrf_token(page)})
    assert answer.status_code == 302
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 1
    assert _tokens(connection, device) == [("active", "FOUND")]
    events = connection.execute("SELECT COUNT(*) FROM events WHERE kind = 'token'").fetchone()[0]
    assert events == 4  # token suspended, wallet off, token resumed, wallet on


def test_one_card_suspended_and_resumed_from_the_page(
    world: World, cardholder: FlaskClient, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    token_id = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    token = csrf_token(cardholder.get("/cardholder/").get_data(as_text=True))
    url = f"/cardholder/tokens/{token_id}/status"
    assert cardholder.post(url, data={"action": "suspend", "reason": "STOLEN", "csrf_token": token}).status_code == 302
    assert _tokens(connection, device) == [("suspended", "STOLEN")]
    assert cardholder.post(url, data={"action": "suspend", "reason": "LOST_DEVICE", "csrf_token": token}).status_code \
        == 400
    assert cardholder.post(url, data={"action": "resume", "csrf_token": token}).status_code == 302
    assert _tokens(connection, device) == [("active", "FOUND")]
    # resuming an active card is refused politely, nothing changes
    answer = cardholder.post(url, data={"action": "resume", "csrf_token": token}, follow_redirects=True)
    assert "already active" in answer.get_data(as_text=True)


def test_a_post_without_the_csrf_token_is_refused(
    world: World, cardholder: FlaskClient, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    assert cardholder.post(f"/cardholder/devices/{device}/wallet", data={"enabled": "0"}).status_code == 400
    assert cardholder.post(f"/cardholder/devices/{device}/wallet",
                           data={"enabled": "0", "csrf_token": "forged"}).status_code == 400
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 1
    assert _tokens(connection, device) == [("active", None)]


def test_anonymous_and_operators_cannot_open_the_cardholder_pages(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    for path in ("/cardholder/", "/cardholder/sms"):
        answer = client.get(path)
        assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    _, answer = post_login(client, *world_login(world, "operator"))  # the operator (its home page is not ours)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/dashboard/")
    for path in ("/cardholder/", "/cardholder/sms"):
        assert client.get(path).status_code == 403


def test_another_cardholders_phone_is_not_found(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    connection.execute(
        "INSERT INTO users (username, password_hash, role, phone) VALUES ('lisi', ?, 'cardholder', '13900139000')",
        (generate_password_hash("lisi-password"),),
    )
    _log_in(client, "lisi", "lisi-password")
    page = client.get("/cardholder/").get_data(as_text=True)
    assert "No phones yet" in page and _device(world) not in page
    token = csrf_token(page)
    device = _device(world)
    token_id = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    assert client.post(f"/cardholder/devices/{device}/wallet",
                       data={"enabled": "0", "csrf_token": token}).status_code == 404
    assert client.post(f"/cardholder/tokens/{token_id}/status",
                       data={"action": "suspend", "reason": "LOST", "csrf_token": token}).status_code == 404
    assert _tokens(connection, device) == [("active", None)]


def test_the_sms_inbox_shows_the_binding_code(world: World, cardholder: FlaskClient) -> None:
    assert "No messages" in cardholder.get("/cardholder/sms").get_data(as_text=True)
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    username, password = world_login(world, "cardholder")
    bearer = cardholder.post("/tsp/v1/sessions", json={"username": username, "password": password}).json["token"]
    expiry = card["expiry"][5:7] + card["expiry"][2:4]
    started = cardholder.post(f"/tsp/v1/devices/{_device(world)}/cards", json={"pan": card["pan"], "expiry": expiry},
                              headers={"Authorization": f"Bearer {bearer}"})
    assert started.status_code == 201
    page = cardholder.get("/cardholder/sms").get_data(as_text=True)
    assert re.search(r"Your QuickPass binding code is [0-9]{6}", page) and "138****8000" in page
    assert card["pan"] not in page
