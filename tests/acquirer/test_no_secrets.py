"""No full PAN, track 2 or key anywhere a person or an attacker could read: pages, logs, the database."""

from __future__ import annotations

import logging
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_api import Terminal, financial

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World


def _secrets(world: World) -> list[str]:
    """Everything that must never appear in clear: card and token PANs, issuer and token keys, terminal keys."""
    values = [card["pan"] for card in world.cards()]
    values += [token["token_pan"] for token in world.tsp()["tokens"]]
    values += [world.issuer_keys(issuer["code"])["imk_ac"] for issuer in world.issuers()]
    values += [world.tsp()["token_imk"]] + [terminal["key"] for terminal in world.terminals()]
    return [value.upper() for value in values]


def _pages(client: FlaskClient, app: Flask) -> list[str]:
    """Every GET page without URL parameters, plus the drill-down of each transaction."""
    texts = []
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and not rule.rule.startswith(("/static", "/api")):
            if rule.endpoint == "dashboard.feed_stream":
                continue  # a stream that never ends; its events are the same masked rows
            answer = client.get(rule.rule)
            texts.append(answer.get_data(as_text=True))
    return texts


def test_pages_logs_and_database_hold_no_pan_track2_or_key(
    app: Flask, client: FlaskClient, instance: Instance, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    terminal = Terminal(client, world)
    batch = terminal.sign_on()
    for issuer in ("icbc-debit", "cmb-credit", "jsb-credit"):
        answer = terminal.post("/authorizations", financial(terminal, world, issuer, 2345, batch))
        assert answer.status_code == 200 and answer.json["rc"] == "00"
    operator = next(u for u in world.users() if u["role"] == "operator")
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": operator["username"], "password": operator["password"],
                                "csrf_token": token})
    texts = _pages(client, app)
    icbc = next(card["pan"] for card in world.cards() if card["issuer"] == "icbc-debit")
    masked = re.compile(re.escape(icbc[:6]) + r"[*•.\s]+" + re.escape(icbc[-4:]))
    assert any(masked.search(text) for text in texts)  # the pages did show the sale, masked
    for row_id in range(1, 5):
        texts.append(client.get(f"/dashboard/tx/{row_id}").get_data(as_text=True))
    texts.append(caplog.text)
    stored = b"".join(path.read_bytes() for path in instance.root.glob("acquirer.sqlite3*"))
    for secret in _secrets(world):
        for text in texts:
            assert secret not in text.upper().replace(" ", "")
        assert secret.encode() not in stored.upper()
        assert bytes.fromhex(secret if len(secret) % 2 == 0 else secret + "F") not in stored
