"""Issue #11 §2: a hold records who placed it; the cardholder lifts only their own.

Found by an attacker: an operator's fraud hold (FRAUDULENT) was lifted by the cardholder pressing Resume.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from webform import csrf_token, post_login, world_login

from acquirer_stub.store import db
from acquirer_stub.store.schema import MIGRATIONS
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World


def _logged_in(app: Flask, world: World, role: str) -> tuple[FlaskClient, str]:
    """A browser of its own, logged in through the form; returns it and a CSRF token for its POSTs."""
    client = app.test_client()
    token, answer = post_login(client, *world_login(world, role))
    assert answer.status_code == 302
    return client, token


def _device(world: World) -> str:
    return Wallet.load(world.demo_phone).wallet_id


def _state(connection: sqlite3.Connection, device: str) -> dict[str, Any]:
    """Everything a lift would change: the wallet, its tokens, the audit trail."""
    wallet = connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0]
    tokens = [tuple(row) for row in connection.execute(
        "SELECT id, status, status_reason FROM tokens WHERE device_id = ? ORDER BY id", (device,))]
    events = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    return {"wallet": wallet, "tokens": tokens, "events": events}


def _token_row(page: str, token_id: int) -> str:
    found = re.search(rf'<tr id="token-{token_id}">(.*?)</tr>', page, re.S)
    assert found, "the cardholder page does not list the token"
    return found.group(1)


def test_an_operators_fraud_hold_is_not_the_cardholders_to_lift(
    app: Flask, world: World, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    token_id = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    operator, operator_csrf = _logged_in(app, world, "operator")
    answer = operator.post(f"/dashboard/tokens/{token_id}/status",
                           data={"status": "suspended", "reason": "FRAUDULENT", "csrf_token": operator_csrf})
    assert answer.status_code == 302
    assert _state(connection, device)["tokens"] == [(token_id, "suspended", "FRAUDULENT")]

    cardholder, _ = _logged_in(app, world, "cardholder")
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    row = _token_row(page, token_id)
    assert "held by your bank" in row
    assert "Resume" not in row and "<form" not in row
    before = _state(connection, device)

    # the request the old Resume button sent, with a valid CSRF token: refused, nothing changes
    forged = cardholder.post(f"/cardholder/tokens/{token_id}/status",
                             data={"action": "resume", "csrf_token": csrf_token(page)})
    assert forged.status_code == 403
    assert _state(connection, device) == before

    # the bank clears its own hold
    answer = operator.post(f"/dashboard/tokens/{token_id}/status",
                           data={"status": "active", "reason": "FRAUDULENT", "csrf_token": operator_csrf})
    assert answer.status_code == 302
    assert _state(connection, device)["tokens"] == [(token_id, "active", "FRAUDULENT")]


def test_a_wallet_the_operator_turned_off_stays_off_for_the_cardholder(
    app: Flask, world: World, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    operator, operator_csrf = _logged_in(app, world, "operator")
    answer = operator.post(f"/dashboard/devices/{device}/wallet",
                           data={"enabled": "0", "reason": "FRAUDULENT", "csrf_token": operator_csrf})
    assert answer.status_code == 302

    cardholder, _ = _logged_in(app, world, "cardholder")
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    assert "turned off by your bank" in page and "I found this phone" not in page
    assert "held by your bank" in page
    before = _state(connection, device)
    assert before["wallet"] == 0

    forged = cardholder.post(f"/cardholder/devices/{device}/wallet",
                             data={"enabled": "1", "csrf_token": csrf_token(page)})
    assert forged.status_code == 403
    token_id = before["tokens"][0][0]
    forged = cardholder.post(f"/cardholder/tokens/{token_id}/status",
                             data={"action": "resume", "csrf_token": csrf_token(page)})
    assert forged.status_code == 403
    assert _state(connection, device) == before


def test_the_cardholders_own_holds_stay_theirs_to_lift(
    app: Flask, world: World, connection: sqlite3.Connection
) -> None:
    device = _device(world)
    token_id = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    cardholder, token = _logged_in(app, world, "cardholder")
    url = f"/cardholder/tokens/{token_id}/status"
    assert cardholder.post(url, data={"action": "suspend", "reason": "STOLEN", "csrf_token": token}).status_code == 302
    page = cardholder.get("/cardholder/").get_data(as_text=True)
    assert "held by your bank" not in page and "Resume" in _token_row(page, token_id)
    assert cardholder.post(url, data={"action": "resume", "csrf_token": token}).status_code == 302
    assert _state(connection, device)["tokens"] == [(token_id, "active", "FOUND")]

    wallet = f"/cardholder/devices/{device}/wallet"
    assert cardholder.post(wallet, data={"enabled": "0", "csrf_token": token}).status_code == 302
    assert cardholder.post(wallet, data={"enabled": "1", "csrf_token": token}).status_code == 302
    assert _state(connection, device)["wallet"] == 1
    assert _state(connection, device)["tokens"] == [(token_id, "active", "FOUND")]


def test_holds_placed_before_the_upgrade_keep_their_owner(tmp_path: Path) -> None:
    """The migration: a FRAUDULENT hold, or one whose event says the operator placed it, is the bank's."""
    connection = db.connect(tmp_path / "old.sqlite3")
    try:
        web = next(n for n, script in enumerate(MIGRATIONS) if "ADD COLUMN held_by" in script)
        for number, script in enumerate(MIGRATIONS[:web], start=1):  # the database as the old program left it
            with db.transaction(connection):
                for statement in filter(str.strip, script.split(";")):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")
        with db.transaction(connection):
            connection.execute("INSERT INTO issuers (code, name, kind, bin, algorithm) VALUES"
                               " ('x', 'X', 'debit', '621700', '3des')")
            connection.execute("INSERT INTO accounts (id, issuer, pan_hash, pan_sealed, pan_masked, psn, expiry, kind)"
                                " VALUES (1, 'x', 'h', x'00', '621700******0001', 0, '2031-12-31', 'debit')")
            for device, wallet in (("d-cardholder", 0), ("d-operator", 0), ("d-on", 1)):
                connection.execute("INSERT INTO devices (id, name, wallet_enabled) VALUES (?, ?, ?)",
                                   (device, device, wallet))
            holds = {1: ("active", None, "d-on"), 2: ("suspended", "FRAUDULENT", "d-on"),
                     3: ("suspended", "OTHER", "d-on"), 4: ("suspended", "STOLEN", "d-on"),
                     5: ("suspended", "LOST_DEVICE", "d-operator"), 6: ("suspended", "LOST_DEVICE", "d-cardholder")}
            for token_id, (status, reason, device) in holds.items():
                connection.execute(
                    "INSERT INTO tokens (id, token_hash, token_sealed, token_masked, account_id, device_id, par,"
                    " expiry, status, status_reason, created) VALUES (?, ?, x'00', 'm', 1, ?, 'p', 'e', ?, ?, 'c')",
                    (token_id, f"t{token_id}", device, status, reason))
            trail = [{"token_id": 3, "to": "suspended", "by": "operator"},
                     {"token_id": 4, "to": "suspended", "by": "zhangwei"},
                     {"action": "wallet_off", "device_id": "d-operator", "by": "operator"},
                     {"action": "wallet_off", "device_id": "d-cardholder", "by": "zhangwei"}]
            for body in trail:
                connection.execute("INSERT INTO events (created, kind, body) VALUES ('c', 'token', ?)",
                                   (json.dumps(body),))
        db.migrate(connection)
        held = dict(connection.execute("SELECT id, held_by FROM tokens").fetchall())
        assert held == {1: None, 2: "operator", 3: "operator", 4: "cardholder", 5: "operator", 6: "cardholder"}
        wallets = dict(connection.execute("SELECT id, wallet_held_by FROM devices").fetchall())
        assert wallets == {"d-cardholder": "cardholder", "d-operator": "operator", "d-on": None}
    finally:
        connection.close()
