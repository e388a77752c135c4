"""Issue #11 §4: logout and a password change end sessions on the server; the cookie is Secure over HTTPS.

Found by an attacker: logout did not revoke the session (a copied cookie kept working).
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from flask import Flask
from flask.testing import FlaskClient
from webform import csrf_token, post_login, world_login

from acquirer_stub.app import create_app
from acquirer_stub.instance import CONFIG, Instance
from firmware.issuing.layout import World

NEW_PASSWORD = "a-new-password-for-the-test"


def _logged_in(app: Flask, world: World, role: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    token, answer = post_login(client, *world_login(world, role))
    assert answer.status_code == 302
    return client, token


def _copy_of_the_cookie(app: Flask, client: FlaskClient) -> FlaskClient:
    """What an attacker does with a stolen cookie: the same session cookie in another browser."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def _bearer(client: FlaskClient, username: str, password: str) -> dict[str, str]:
    answer = client.post("/tsp/v1/sessions", json={"username": username, "password": password})
    assert answer.status_code == 200
    return {"Authorization": f"Bearer {answer.json['token']}"}


@pytest.mark.parametrize(("role", "home"), [("operator", "/dashboard/"), ("cardholder", "/cardholder/")])
def test_logout_ends_the_session_on_the_server(app: Flask, world: World, role: str, home: str) -> None:
    browser, token = _logged_in(app, world, role)
    thief = _copy_of_the_cookie(app, browser)
    assert thief.get(home).status_code == 200  # the copy works while the session lives

    assert browser.post("/logout", data={"csrf_token": token}).status_code == 302
    answer = thief.get(home)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert browser.get(home).status_code == 302


def test_a_password_change_ends_every_session_of_the_user(
    app: Flask, world: World, connection: sqlite3.Connection
) -> None:
    username, password = world_login(world, "cardholder")
    browser, _ = _logged_in(app, world, "cardholder")
    other_browser, _ = _logged_in(app, world, "cardholder")
    wallet_app = _bearer(app.test_client(), username, password)
    assert app.test_client().get("/tsp/v1/sms", headers=wallet_app).status_code == 200

    form = browser.get("/account/password").get_data(as_text=True)
    answer = browser.post("/account/password", data={"current": password, "new": NEW_PASSWORD,
                                                     "repeat": NEW_PASSWORD, "csrf_token": csrf_token(form)})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/cardholder/")
    assert browser.get("/cardholder/").status_code == 200  # this browser got a fresh session
    assert other_browser.get("/cardholder/").status_code == 302
    assert app.test_client().get("/tsp/v1/sms", headers=wallet_app).status_code == 401
    assert connection.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1

    assert post_login(app.test_client(), username, password)[1].status_code == 200  # the old one: refused
    assert post_login(app.test_client(), username, NEW_PASSWORD)[1].status_code == 302


def test_a_password_change_needs_the_current_password(
    app: Flask, world: World, connection: sqlite3.Connection
) -> None:
    username, password = world_login(world, "operator")
    browser, _ = _logged_in(app, world, "operator")
    stored = connection.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()[0]
    token = csrf_token(browser.get("/account/password").get_data(as_text=True))
    forms = [
        {"current": "not my password", "new": NEW_PASSWORD, "repeat": NEW_PASSWORD},
        {"current": password, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD + "x"},
        {"current": password, "new": "short", "repeat": "short"},
        {"current": password, "new": password, "repeat": password},
        {"current": password, "new": "x" * 129, "repeat": "x" * 129},
    ]
    for form in forms:
        answer = browser.post("/account/password", data={**form, "csrf_token": token})
        assert answer.status_code == 400 and "Not changed" in answer.get_data(as_text=True)
    assert browser.post("/account/password", data={"current": password, "new": NEW_PASSWORD,
                                                   "repeat": NEW_PASSWORD}).status_code == 400  # no CSRF token
    assert connection.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()[0] \
        == stored
    assert browser.get("/dashboard/").status_code == 200


def test_the_wallet_apps_logout_ends_its_token(app: Flask, world: World) -> None:
    client = app.test_client()
    headers = _bearer(client, *world_login(world, "cardholder"))
    assert client.delete("/tsp/v1/sessions", headers=headers).status_code == 200
    answer = client.get("/tsp/v1/sms", headers=headers)
    assert answer.status_code == 401 and "log in again" in answer.json["error"]


@pytest.mark.parametrize("https", [False, True])
def test_the_session_cookie_is_secure_when_the_instance_is_served_over_https(
    instance: Instance, world: World, https: bool
) -> None:
    config = json.loads((instance.root / CONFIG).read_text())
    assert config.get("https", False) is False  # the default: the loopback demo is plain HTTP
    config["https"] = https
    (instance.root / CONFIG).write_text(json.dumps(config))
    client = create_app(instance.root, overrides={"TESTING": True}).test_client()
    _, answer = post_login(client, *world_login(world, "operator"))
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is https
    assert ("Strict-Transport-Security" in answer.headers) is https
