"""The token service: binding through the API, the token vault, lifecycle rules, and `pos-card wallet bind`."""

from __future__ import annotations

import datetime
import re
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hostdb import database_bytes
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from acquirer_stub.tsp import binding, lifecycle
from emvcore.tags import mask_pan
from firmware.apps.wallet.wallet import MAX_PAYMENT_CARDS, Wallet
from firmware.cli import main
from firmware.issuing import binding as wallet_binding
from firmware.issuing.layout import World
from firmware.issuing.personalize import luhn_valid, new_pan, new_par, token_card

DEMO_ISSUER = "boc-credit"  # the demo phone's one token is on this card


# -- helpers ---------------------------------------------------------------------------------------------------


def user_password(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]


def _mmyy(card: dict[str, Any]) -> str:
    date = datetime.date.fromisoformat(card["expiry"])
    return f"{date.month:02d}{date.year % 100:02d}"


def _card(world: World, issuer: str) -> dict[str, Any]:
    return next(c for c in world.cards() if c["issuer"] == issuer)


def _login(client: FlaskClient, username: str, password: str) -> dict[str, str]:
    answer = client.post("/tsp/v1/sessions", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.json
    return {"Authorization": f"Bearer {answer.json['token']}"}


def _cardholder(client: FlaskClient, world: World) -> dict[str, str]:
    return _login(client, *user_password(world, "cardholder"))


def _start(client: FlaskClient, headers: dict[str, str], device: str, card: dict[str, Any], **extra: str) -> Any:
    return client.post(f"/tsp/v1/devices/{device}/cards",
                       json={"pan": card["pan"], "expiry": _mmyy(card), **extra}, headers=headers)


def _code(client: FlaskClient, headers: dict[str, str], binding_id: int) -> str:
    messages = client.get("/tsp/v1/sms", headers=headers).json["messages"]
    return wallet_binding.code_from_sms(messages, binding_id)


def _bind(client: FlaskClient, headers: dict[str, str], device: str, card: dict[str, Any]) -> dict[str, Any]:
    started = _start(client, headers, device, card)
    assert started.status_code == 201, started.json
    binding_id = started.json["binding_id"]
    answer = client.post(f"/tsp/v1/bindings/{binding_id}/verify", json={"code": _code(client, headers, binding_id)},
                         headers=headers)
    assert answer.status_code == 200, answer.json
    return answer.json


def _demo_device(world: World) -> str:
    return Wallet.load(world.demo_phone).wallet_id


def _add_cardholder(connection: sqlite3.Connection, username: str, password: str, phone: str) -> int:
    cursor = connection.execute(
        "INSERT INTO users (username, password_hash, role, phone) VALUES (?, ?, 'cardholder', ?) RETURNING id",
        (username, generate_password_hash(password), phone),
    )
    return int(cursor.fetchone()[0])


# -- the binding flow ------------------------------------------------------------------------------------------


def test_binding_end_to_end_puts_the_token_in_the_wallet_and_the_vault(
    world: World, app: Flask, client: FlaskClient, instance: Instance, connection: sqlite3.Connection
) -> None:
    headers = _cardholder(client, world)
    device, card = _demo_device(world), _card(world, "icbc-debit")

    started = _start(client, headers, device, card, name_on_card="ZHANG WEI")
    assert started.status_code == 201
    assert started.json["phone_masked"] == "138****8000"
    sms = client.get("/tsp/v1/sms", headers=headers).json["messages"][0]
    assert sms["to"] == "138****8000"
    assert re.search(r"Your QuickPass binding code is [0-9]{6}", sms["text"])
    assert card["pan"] not in sms["text"] and f"•••• {card['pan'][-4:]}" in sms["text"]

    code = _code(client, headers, started.json["binding_id"])
    answer = client.post(f"/tsp/v1/bindings/{started.json['binding_id']}/verify", json={"code": code},
                         headers=headers)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    payload = answer.json
    keys = app.config["KEYS"]
    assert payload["token_pan"].startswith(keys.token_bin) and luhn_valid(payload["token_pan"])
    assert payload["token_pan"] != card["pan"]
    assert payload["card_label"] == f"ICBC Debit •••• {card['pan'][-4:]}"
    assert payload["kind"] == "debit" and payload["expiry"] == card["expiry"] and payload["card_id"] == "icbc-debit"
    # the same token, keys included, as the local provisioning path (personalize.token_card) makes
    _, expected_keys = token_card(keys.token_imk, token_pan=payload["token_pan"], par=payload["par"], kind="debit",
                                  expiry=datetime.date.fromisoformat(card["expiry"]))
    assert payload["keys"] == {"icc_master_key": expected_keys.icc_master_key.hex().upper()}

    # the phone stores it in its secure element
    label, profile, token_keys = wallet_binding.delivered_card(payload)
    Wallet.load(world.demo_phone).add_card(payload["card_id"], label, profile, token_keys)
    wallet = Wallet.load(world.demo_phone)
    stored = next(c for c in wallet.cards if c.id == "icbc-debit")
    assert stored.profile.pan == payload["token_pan"] and stored.profile.par == payload["par"]
    assert stored.label == payload["card_label"]

    # the vault: sealed, hashed, masked; PAR set on the account
    vault = instance.vault()
    row = connection.execute("SELECT * FROM tokens WHERE id = ?", (payload["token_id"],)).fetchone()
    assert row["token_hash"] == vault.pan_hash(payload["token_pan"])
    assert vault.unseal(row["token_sealed"]) == payload["token_pan"]
    assert row["token_masked"] == mask_pan(payload["token_pan"])
    assert (row["device_id"], row["wallet_card_id"], row["status"]) == (device, "icbc-debit", "active")
    account = connection.execute("SELECT * FROM accounts WHERE id = ?", (row["account_id"],)).fetchone()
    assert vault.unseal(account["pan_sealed"]) == card["pan"]
    assert account["par"] == payload["par"] == row["par"]
    otp = connection.execute("SELECT * FROM otps WHERE id = ?", (started.json["binding_id"],)).fetchone()
    assert otp["state"] == "verified" and code not in otp["code_hash"]
    actions = [row["body"] for row in connection.execute("SELECT body FROM events WHERE kind = 'token'")]
    assert any('"binding_started"' in body for body in actions) and any('"provision"' in body for body in actions)
    # a code is good once
    again = client.post(f"/tsp/v1/bindings/{started.json['binding_id']}/verify", json={"code": code},
                        headers=headers)
    assert again.status_code == 409


def test_the_database_holds_no_card_or_token_number_in_clear(
    world: World, client: FlaskClient, instance: Instance
) -> None:
    headers = _cardholder(client, world)
    payloads = [_bind(client, headers, _demo_device(world), _card(world, issuer))
                for issuer in ("icbc-debit", "ccb-credit")]
    numbers = [c["pan"] for c in world.cards()] + [t["token_pan"] for t in world.tsp()["tokens"]]
    numbers += [p["token_pan"] for p in payloads]
    raw = database_bytes(instance)
    assert len(raw) > 10_000
    leaked = [mask_pan(number) for number in numbers if number.encode() in raw]
    assert leaked == []


def test_one_par_per_account_across_its_tokens(world: World, client: FlaskClient) -> None:
    headers = _cardholder(client, world)
    demo_par = world.tsp()["tokens"][0]["par"]
    payload = _bind(client, headers, "00000000000000aa", _card(world, DEMO_ISSUER))
    assert payload["par"] == demo_par


def test_the_ninth_card_is_refused_and_a_deleted_card_makes_room(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    headers = _cardholder(client, world)
    device = _demo_device(world)
    others = [c for c in world.cards() if c["issuer"] != DEMO_ISSUER]
    payloads = [_bind(client, headers, device, card) for card in others[:MAX_PAYMENT_CARDS - 1]]
    assert connection.execute("SELECT COUNT(*) FROM tokens WHERE device_id = ?", (device,)).fetchone()[0] == 8

    ninth = _start(client, headers, device, others[MAX_PAYMENT_CARDS - 1])
    assert ninth.status_code == 409
    assert ninth.json["error"] == "this phone already holds 8 cards"
    # a suspended card still takes its place on the phone
    lifecycle.set_token_status(connection, payloads[0]["token_id"], "suspended", "LOST")
    assert _start(client, headers, device, others[MAX_PAYMENT_CARDS - 1]).status_code == 409

    deleted = client.delete(f"/tsp/v1/tokens/{payloads[0]['token_id']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json["reason"] == "CONSUMER_DELETED"
    assert _start(client, headers, device, others[MAX_PAYMENT_CARDS - 1]).status_code == 201


def test_three_wrong_codes_lock_the_binding(world: World, client: FlaskClient, connection: sqlite3.Connection) -> None:
    headers = _cardholder(client, world)
    started = _start(client, headers, _demo_device(world), _card(world, "icbc-debit")).json
    code = _code(client, headers, started["binding_id"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    url = f"/tsp/v1/bindings/{started['binding_id']}/verify"

    first = client.post(url, json={"code": wrong}, headers=headers)
    assert (first.status_code, first.json["attempts_left"]) == (400, 2)
    second = client.post(url, json={"code": "12"}, headers=headers)
    assert (second.status_code, second.json["attempts_left"]) == (400, 1)
    third = client.post(url, json={"code": wrong}, headers=headers)
    assert third.status_code == 423 and "too many wrong codes" in third.json["error"]
    # locked for good: the right code no longer helps
    assert client.post(url, json={"code": code}, headers=headers).status_code == 423
    assert connection.execute("SELECT state FROM otps WHERE id = ?", (started["binding_id"],)).fetchone()[0] == "locked"
    assert connection.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 1  # the demo token only


def test_an_expired_code_is_gone(
    world: World, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, connection: sqlite3.Connection
) -> None:
    headers = _cardholder(client, world)
    started = _start(client, headers, _demo_device(world), _card(world, "icbc-debit")).json
    code = _code(client, headers, started["binding_id"])
    later = binding.now() + binding.CODE_SECONDS + 1
    monkeypatch.setattr(binding, "now", lambda: later)
    answer = client.post(f"/tsp/v1/bindings/{started['binding_id']}/verify", json={"code": code}, headers=headers)
    assert answer.status_code == 410 and "expired" in answer.json["error"]
    state = connection.execute("SELECT state FROM otps WHERE id = ?", (started["binding_id"],)).fetchone()[0]
    assert state == "expired"


def test_a_new_code_replaces_the_earlier_one(world: World, client: FlaskClient) -> None:
    headers = _cardholder(client, world)
    device, card = _demo_device(world), _card(world, "icbc-debit")
    first = _start(client, headers, device, card).json["binding_id"]
    first_code = _code(client, headers, first)
    second = _start(client, headers, device, card).json["binding_id"]
    answer = client.post(f"/tsp/v1/bindings/{first}/verify", json={"code": first_code}, headers=headers)
    assert answer.status_code == 410
    assert client.post(f"/tsp/v1/bindings/{second}/verify", json={"code": _code(client, headers, second)},
                       headers=headers).status_code == 200


def test_card_details_that_do_not_match_are_refused_without_saying_which(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    headers = _cardholder(client, world)
    device, card = _demo_device(world), _card(world, "icbc-debit")
    wrong_expiry = "01" + _mmyy(card)[2:]
    unknown = card["pan"][:-1] + str((int(card["pan"][-1]) + 1) % 10)
    answers = [
        client.post(f"/tsp/v1/devices/{device}/cards", json=body, headers=headers)
        for body in ({"pan": card["pan"], "expiry": wrong_expiry}, {"pan": unknown, "expiry": _mmyy(card)})
    ]
    assert [(a.status_code, a.json["error"]) for a in answers] == [(422, "card details do not match")] * 2
    malformed = client.post(f"/tsp/v1/devices/{device}/cards", json={"pan": card["pan"], "expiry": "2031-12"},
                            headers=headers)
    assert malformed.status_code == 400 and "expiry" in malformed.json["error"]
    assert client.post("/tsp/v1/devices/NOT-A-WALLET/cards", json={"pan": card["pan"], "expiry": _mmyy(card)},
                       headers=headers).status_code == 400
    assert _start(client, headers, device, _card(world, DEMO_ISSUER)).status_code == 409  # already on the phone
    assert connection.execute("SELECT COUNT(*) FROM sms_outbox").fetchone()[0] == 0


def test_another_users_phone_and_card_are_refused(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    _add_cardholder(connection, "lisi", "lisi-password", "13900139000")
    zhang, li = _cardholder(client, world), _login(client, "lisi", "lisi-password")
    device, card = _demo_device(world), _card(world, "icbc-debit")

    on_his_phone = _start(client, li, device, card)
    assert on_his_phone.status_code == 403
    his_card = _start(client, li, "00000000000000bb", card)
    assert (his_card.status_code, his_card.json["error"]) == (422, "card details do not match")
    assert connection.execute("SELECT 1 FROM devices WHERE id = '00000000000000bb'").fetchone() is None

    started = _start(client, zhang, device, card).json
    code = _code(client, zhang, started["binding_id"])
    assert client.get("/tsp/v1/sms", headers=li).json["messages"] == []
    stolen = client.post(f"/tsp/v1/bindings/{started['binding_id']}/verify", json={"code": code}, headers=li)
    assert stolen.status_code == 404
    demo_token = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    assert client.delete(f"/tsp/v1/tokens/{demo_token}", headers=li).status_code == 404
    assert connection.execute("SELECT status FROM tokens WHERE id = ?", (demo_token,)).fetchone()[0] == "active"


def test_sessions_need_the_right_password_and_a_valid_token(
    world: World, app: Flask, client: FlaskClient
) -> None:
    username, password = user_password(world, "cardholder")
    assert client.post("/tsp/v1/sessions", json={"username": username, "password": "wrong"}).status_code == 401
    assert client.post("/tsp/v1/sessions", json={"username": "nobody", "password": password}).status_code == 401
    operator = client.post("/tsp/v1/sessions", json=dict(zip(("username", "password"),
                                                                 user_password(world, "operator"), strict=True)))
    assert operator.status_code == 401
    assert client.post("/tsp/v1/sessions", data="not json").status_code == 400

    assert client.get("/tsp/v1/sms").status_code == 401
    headers = _cardholder(client, world)
    assert client.get("/tsp/v1/sms", headers=headers).status_code == 200
    token = headers["Authorization"]
    middle = len(token) - 10  # inside the signature: a full base64 digit (the last ones may be padding bits)
    tampered = {"Authorization": token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]}
    answer = client.get("/tsp/v1/sms", headers=tampered)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    app.config["TSP_SESSION_SECONDS"] = -1
    assert "expired" in client.get("/tsp/v1/sms", headers=headers).json["error"]


def test_a_phone_with_its_wallet_off_cannot_take_new_cards(
    world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    headers = _cardholder(client, world)
    device = _demo_device(world)
    lifecycle.set_device_wallet(connection, device, False, "LOST")
    answer = _start(client, headers, device, _card(world, "icbc-debit"))
    assert answer.status_code == 409 and "turned off" in answer.json["error"]


def test_deleting_from_the_phone_is_final(world: World, client: FlaskClient, connection: sqlite3.Connection) -> None:
    headers = _cardholder(client, world)
    token_id = connection.execute("SELECT id FROM tokens").fetchone()[0]
    assert client.delete(f"/tsp/v1/tokens/{token_id}", headers=headers).status_code == 200
    row = connection.execute("SELECT status, status_reason FROM tokens WHERE id = ?", (token_id,)).fetchone()
    assert tuple(row) == ("deleted", "CONSUMER_DELETED")
    again = client.delete(f"/tsp/v1/tokens/{token_id}", headers=headers)
    assert again.status_code == 409 and "final" in again.json["error"]


# -- lifecycle rules -------------------------------------------------------------------------------------------


def _token_ids(connection: sqlite3.Connection, device: str | None, count: int, vault: Any) -> list[int]:
    """`count` more tokens on `device`, straight into the vault (lifecycle tests need no binding)."""
    accounts = connection.execute("SELECT id, expiry FROM accounts ORDER BY id DESC LIMIT ?", (count,)).fetchall()
    ids = []
    for number, account in enumerate(accounts):
        token_pan = new_pan("628888")
        cursor = connection.execute(
            "INSERT INTO tokens (token_hash, token_sealed, token_masked, account_id, device_id, wallet_card_id, par,"
            " expiry, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '2026-01-01') RETURNING id",
            (vault.pan_hash(token_pan), vault.seal(token_pan), mask_pan(token_pan), account["id"], device,
             f"card-{number}", new_par(), account["expiry"]),
        )
        ids.append(int(cursor.fetchone()[0]))
    return ids


def _status(connection: sqlite3.Connection, token_id: int) -> tuple[str, str | None]:
    row = connection.execute("SELECT status, status_reason FROM tokens WHERE id = ?", (token_id,)).fetchone()
    return row["status"], row["status_reason"]


def test_token_lifecycle_transitions_and_reasons(
    world: World, instance: Instance, connection: sqlite3.Connection
) -> None:
    (token,) = _token_ids(connection, _demo_device(world), 1, instance.vault())
    change = lifecycle.set_token_status(connection, token, "suspended", "STOLEN")
    assert (change.old, change.new, change.reason) == ("active", "suspended", "STOLEN")
    assert _status(connection, token) == ("suspended", "STOLEN")
    with pytest.raises(lifecycle.LifecycleError, match="already suspended"):
        lifecycle.set_token_status(connection, token, "suspended", "LOST")
    with pytest.raises(lifecycle.LifecycleError, match="resume reason"):
        lifecycle.set_token_status(connection, token, "active", "LOST")
    with pytest.raises(lifecycle.LifecycleError, match="suspend reason"):
        lifecycle.set_token_status(connection, token, "suspended", lifecycle.LOST_DEVICE)  # reserved for the cascade
    lifecycle.set_token_status(connection, token, "active", "FOUND")
    assert _status(connection, token) == ("active", "FOUND")
    lifecycle.set_token_status(connection, token, "deleted", "ACCOUNT_CLOSED")
    for status, reason in (("active", "FOUND"), ("suspended", "LOST"), ("deleted", "OTHER")):
        with pytest.raises(lifecycle.LifecycleError, match="deletion is final"):
            lifecycle.set_token_status(connection, token, status, reason)
    assert _status(connection, token) == ("deleted", "ACCOUNT_CLOSED")
    with pytest.raises(lifecycle.NotFoundError):
        lifecycle.set_token_status(connection, 999_999, "suspended", "LOST")
    texts = [row[0] for row in connection.execute("SELECT body FROM events WHERE kind = 'token' ORDER BY id")]
    assert len(texts) == 3 and "active → suspended (STOLEN" in texts[0]


def test_lifecycle_joins_the_callers_transaction(
    world: World, instance: Instance, connection: sqlite3.Connection
) -> None:
    (token,) = _token_ids(connection, _demo_device(world), 1, instance.vault())
    with pytest.raises(RuntimeError), db.transaction(connection):
        lifecycle.set_token_status(connection, token, "suspended", "LOST")
        raise RuntimeError("the caller's later step failed")
    assert _status(connection, token) == ("active", None)
    assert connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


def test_lost_phone_cascade_suspends_and_resumes_exactly_its_tokens(
    world: World, instance: Instance, connection: sqlite3.Connection
) -> None:
    device = _demo_device(world)
    demo = connection.execute("SELECT id FROM tokens WHERE device_id = ?", (device,)).fetchone()[0]
    card_lost, to_delete = _token_ids(connection, device, 2, instance.vault())
    (elsewhere,) = _token_ids(connection, None, 1, instance.vault())
    lifecycle.set_token_status(connection, card_lost, "suspended", "LOST", actor="cardholder")

    off = lifecycle.set_device_wallet(connection, device, False, "LOST")
    assert sorted(change.token_id for change in off) == sorted([demo, to_delete])
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 0
    assert _status(connection, demo) == ("suspended", "LOST_DEVICE")
    assert _status(connection, card_lost) == ("suspended", "LOST")
    assert _status(connection, elsewhere) == ("active", None)
    assert lifecycle.set_device_wallet(connection, device, False, "LOST") == []  # pressed twice: nothing more
    with pytest.raises(lifecycle.LifecycleError, match="turned off"):
        lifecycle.set_token_status(connection, demo, "active", "FOUND")
    lifecycle.set_token_status(connection, to_delete, "deleted", "LOST")

    on = lifecycle.set_device_wallet(connection, device, True, "FOUND")
    assert [change.token_id for change in on] == [demo]
    assert _status(connection, demo) == ("active", "FOUND")
    assert _status(connection, card_lost) == ("suspended", "LOST")  # not suspended by the lost phone
    assert _status(connection, to_delete) == ("deleted", "LOST")
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 1

    listed = lifecycle.tokens_of_device(connection, device)
    assert [t["id"] for t in listed] == [demo, card_lost, to_delete]
    assert [t["id"] for t in lifecycle.tokens_of_device(connection, device, include_deleted=False)] == [demo, card_lost]
    assert all("*" in t["token_masked"] and "*" in t["pan_masked"] for t in listed)
    with pytest.raises(lifecycle.LifecycleError, match="reason"):
        lifecycle.set_device_wallet(connection, device, False, "FOUND")
    with pytest.raises(lifecycle.NotFoundError):
        lifecycle.set_device_wallet(connection, "ffffffffffffffff", False, "LOST")
    bodies = [row[0] for row in connection.execute("SELECT body FROM events WHERE body LIKE '%wallet_o%'")]
    assert len(bodies) == 2 and "2 token(s) suspended" in bodies[0] and "1 token(s) resumed" in bodies[1]


# -- pos-card wallet bind against a running stub -----------------------------------------------------------------


@pytest.fixture
def host(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def _bind_argv(world: World, host: str, card: dict[str, Any], *extra: str) -> list[str]:
    username, password = user_password(world, "cardholder")
    return ["wallet", "bind", str(world.demo_phone), "--host", host, "--user", username, "--password", password,
            "--pan", card["pan"], "--expiry", _mmyy(card), *extra]


def test_pos_card_wallet_bind_end_to_end(
    world: World, host: str, capsys: pytest.CaptureFixture[str], connection: sqlite3.Connection, instance: Instance
) -> None:
    card = _card(world, "icbc-debit")
    assert main(_bind_argv(world, host, card, "--id", "icbc", "--code-from-sms")) == 0
    out, err = capsys.readouterr()
    wallet = Wallet.load(world.demo_phone)
    added = next(c for c in wallet.cards if c.id == "icbc")
    token_pan = added.profile.pan
    assert added.label == f"ICBC Debit •••• {card['pan'][-4:]}"
    lines = out.splitlines()
    username = user_password(world, "cardholder")[0]
    assert lines[0] == f"logged in as {username}"
    assert lines[1].startswith("card details sent") and lines[2] == "SMS sent to 138****8000"
    assert "code verified" in lines and f"token •••• {token_pan[-4:]} delivered to the phone" in lines
    assert lines[-1] == f"added icbc: {added.label} (token {mask_pan(token_pan)})"
    assert card["pan"] not in out + err and token_pan not in out + err
    row = connection.execute("SELECT * FROM tokens WHERE token_hash = ?",
                             (instance.vault().pan_hash(token_pan),)).fetchone()
    assert (row["device_id"], row["wallet_card_id"], row["status"]) == (wallet.wallet_id, "icbc", "active")


def test_pos_card_wallet_bind_asks_for_the_code(
    world: World, host: str, client: FlaskClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    card = _card(world, "ccb-debit")
    headers = _cardholder(client, world)

    def typed(prompt: str) -> str:
        assert prompt == "SMS code: "
        newest = client.get("/tsp/v1/sms", headers=headers).json["messages"][0]["text"]
        return re.search(r"code is ([0-9]{6})", newest).group(1)  # type: ignore[union-attr]

    monkeypatch.setattr("builtins.input", typed)
    assert main(_bind_argv(world, host, card)) == 0
    assert f"added card-{card['pan'][-4:]}:" in capsys.readouterr().out


def test_pos_card_wallet_bind_reports_a_wrong_code(
    world: World, host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_bind_argv(world, host, _card(world, "icbc-debit"), "--code", "abcdef")) == 1
    out, err = capsys.readouterr()
    assert "SMS sent to 138****8000" in out
    assert err.strip() == "pos-card: token service: wrong code; 2 attempt(s) left (HTTP 400)"
    assert len(Wallet.load(world.demo_phone).cards) == 1


def test_pos_card_wallet_bind_checks_the_wallet_before_the_host(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = "http://127.0.0.1:9"  # nothing listens: the refusals must come before any request
    card = _card(world, "icbc-debit")
    assert main(_bind_argv(world, nowhere, card, "--id", "boc-credit", "--code", "123456")) == 1
    assert "already in this wallet" in capsys.readouterr().err
    wallet = Wallet.load(world.demo_phone)
    imk = bytes(16)
    for number in range(MAX_PAYMENT_CARDS - len(wallet.cards)):
        profile, keys = token_card(imk, token_pan=f"628888000000{number:03d}0", par=new_par(), kind="debit",
                                   expiry=datetime.date(2030, 12, 31))
        wallet.add_card(f"filler-{number}", "Filler", profile, keys)
    assert main(_bind_argv(world, nowhere, card, "--code", "123456")) == 1
    assert "already holds 8 payment cards" in capsys.readouterr().err
    # and an unreachable host is one clear line
    Wallet.load(world.demo_phone).remove_card("filler-0")
    assert main(_bind_argv(world, nowhere, card, "--code", "123456")) == 1
    assert "cannot reach the token service" in capsys.readouterr().err


def test_bind_help_lists_the_code_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["wallet", "bind", "--help"])
    out = capsys.readouterr().out
    assert "--code-from-sms" in out and "MMYY" in out


def test_the_wallet_refuses_a_malformed_delivery() -> None:
    with pytest.raises(wallet_binding.BindingError, match="malformed token"):
        wallet_binding.delivered_card({"token_pan": "1234", "profile": {}, "keys": {}})


@pytest.mark.parametrize("glued", [False, True])
def test_pos_card_wallet_bind_takes_a_password_starting_with_a_dash(
    world: World, host: str, connection: sqlite3.Connection, glued: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password may start with '-' (argparse alone takes `--password -x…` for an unknown option)."""
    username, _ = user_password(world, "cardholder")
    password = "-Kx9fQ2mZp7Lw"
    connection.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                       (generate_password_hash(password), username))
    card = _card(world, "icbc-debit")
    argv = ["wallet", "bind", str(world.demo_phone), "--host", host, "--user", username,
            *([f"--password={password}"] if glued else ["--password", password]),
            "--pan", card["pan"], "--expiry", _mmyy(card), "--id", "icbc", "--code-from-sms"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"logged in as {username}" and "added icbc:" in out
    assert password not in out
