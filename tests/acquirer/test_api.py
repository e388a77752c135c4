"""The terminal API end to end: signed requests from the demo terminal, real cards' cryptograms, the database after."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sqlite3
import time
from typing import Any

import pytest
import reader
from flask import Flask
from flask.testing import FlaskClient
from hostdb import database_bytes
from reader import tap_icc
from werkzeug.test import TestResponse

from acquirer_stub.api import service
from acquirer_stub.instance import Instance
from acquirer_stub.issuer import engine
from acquirer_stub.store import db
from firmware.issuing.layout import World
from hostproto import messages, signing

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
TTQ_ONLINE = bytes.fromhex("26800080")  # qPBOC, signature, online cryptogram required: the card sends an ARQC
TODAY = datetime.date.today()
MMDD = f"{TODAY:%m%d}"
BUSINESS_TABLES = ("transactions", "events", "settlements", "nonces")


class Terminal:
    """The demo terminal's side of the API: signs every request like the real one will."""

    def __init__(self, client: FlaskClient, world: World) -> None:
        entry = world.terminals()[0]
        self.client, self.tid, self.key = client, entry["tid"], bytes.fromhex(entry["key"])
        self._stan = 0

    def next_stan(self) -> str:
        self._stan += 1
        return f"{self._stan:06d}"

    def post(self, path: str, body: dict[str, Any] | bytes, *, now: float | None = None, nonce: str | None = None,
             key: bytes | None = None, tid: str | None = None, headers: dict[str, str] | None = None) -> TestResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        full = f"/api/v1{path}"
        signed = signing.sign(key or self.key, tid or self.tid, "POST", full, raw,
                              now=time.time() if now is None else now, nonce=nonce)
        if headers is not None:
            signed = headers
        return self.client.post(full, data=raw, headers=signed, content_type="application/json")

    def sign_on(self) -> int:
        answer = self.post("/signon", {"mti": "0800", "tid": self.tid, "stan": self.next_stan(), "local_date": MMDD})
        assert answer.status_code == 200, answer.json
        return int(answer.json["batch"])


def _card_entry(world: World, issuer: str) -> dict[str, Any]:
    return next(c for c in world.cards() if c["issuer"] == issuer)


def financial(terminal: Terminal, world: World, issuer: str, amount: int, batch: int, *, mti: str = "0200",
              ttq: bytes = TTQ_ONLINE, stan: str | None = None) -> dict[str, Any]:
    entry = _card_entry(world, issuer)
    expiry = datetime.date.fromisoformat(entry["expiry"])
    return {
        "mti": mti, "tid": terminal.tid, "stan": stan or terminal.next_stan(), "local_date": MMDD, "batch": batch,
        "pan": entry["pan"], "psn": f"{entry['psn']:02d}", "expiry": f"{expiry:%y%m}", "amount": amount,
        "currency": "156", "entry_mode": "072", "icc": tap_icc(world, issuer, amount, ttq=ttq),
    }


def connect(instance: Instance) -> sqlite3.Connection:
    return db.connect(instance.database)


def counts(instance: Instance) -> dict[str, Any]:
    """Every row the API could write, and the money: a refused request must leave all of it as it was."""
    connection = connect(instance)
    try:
        result: dict[str, Any] = {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                                  for t in BUSINESS_TABLES}
        result["money"] = connection.execute(
            "SELECT SUM(COALESCE(balance, 0)), SUM(credit_used), SUM(last_atc) FROM accounts").fetchone()[:]
        result["terminals"] = [tuple(r) for r in connection.execute("SELECT * FROM terminals ORDER BY tid").fetchall()]
        return result
    finally:
        connection.close()


def account(instance: Instance, world: World, issuer: str) -> sqlite3.Row:
    connection = connect(instance)
    try:
        return connection.execute("SELECT * FROM accounts WHERE issuer = ?", (issuer,)).fetchone()
    finally:
        connection.close()


def rows(instance: Instance, sql: str, *args: Any) -> list[sqlite3.Row]:
    connection = connect(instance)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


@pytest.fixture
def terminal(client: FlaskClient, world: World) -> Terminal:
    return Terminal(client, world)


# --- network management ------------------------------------------------------------------------------------------


def test_signon_opens_a_new_batch_each_time_and_echo_reports_it(terminal: Terminal, instance: Instance) -> None:
    echo = {"mti": "0800", "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD}
    before = terminal.post("/echo", echo)
    assert before.status_code == 200
    assert before.json["mti"] == "0810" and before.json["rc"] == "00"
    assert before.json["signed_on"] is False and before.json["batch"] is None
    assert abs(before.json["host_time"] - time.time()) < 5

    assert terminal.sign_on() == 1
    assert terminal.sign_on() == 2
    after = terminal.post("/echo", {**echo, "stan": terminal.next_stan()})
    assert after.json["signed_on"] is True and after.json["batch"] == 2
    (row,) = rows(instance, "SELECT batch, signed_on, last_seen FROM terminals WHERE tid = ?", terminal.tid)
    assert (row["batch"], row["signed_on"]) == (2, 1) and row["last_seen"]
    assert [r["kind"] for r in rows(instance, "SELECT kind FROM events")] == ["signon", "signon"]


HEALTH = {"reader": "fault", "reader_resets": 2, "pending_reversals": 1, "pending_advices": 3, "uptime": 3725}


def test_an_echo_carries_the_terminals_health_to_its_page(terminal: Terminal, instance: Instance,
                                                          operator: FlaskClient) -> None:
    echo = {"mti": "0800", "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD, "health": HEALTH}
    assert terminal.post("/echo", echo).status_code == 200
    (row,) = rows(instance, "SELECT health, health_at FROM terminals WHERE tid = ?", terminal.tid)
    assert json.loads(row["health"]) == HEALTH and row["health_at"]
    html = operator.get(f"/dashboard/terminals/{terminal.tid}").get_data(as_text=True)
    health = html.split('id="terminal-health"', 1)[1].split("</table>", 1)[0]
    assert "fault, 2 resets" in health and "1 h 2 min" in health
    assert [int(n) for n in re.findall(r'<td class="num[^"]*">(\d+)</td>', health)] == [1, 3]
    assert operator.get("/dashboard/terminals/QP999999").status_code == 404


@pytest.mark.parametrize("health", [
    {**HEALTH, "reader": "broken"}, {**HEALTH, "pending_reversals": -1}, {**HEALTH, "extra": 1},
    {**HEALTH, "uptime": 2**31}, "ok",
])
def test_a_bad_health_report_is_refused_and_stores_nothing(terminal: Terminal, instance: Instance,
                                                           health: object) -> None:
    echo = {"mti": "0800", "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD, "health": health}
    answer = terminal.post("/echo", echo)
    assert answer.status_code == 400 and answer.json["field"].startswith("health"), answer.json
    assert rows(instance, "SELECT health FROM terminals WHERE tid = ?", terminal.tid)[0]["health"] is None


# --- authorizations -----------------------------------------------------------------------------------------------


def test_approval_end_to_end_with_a_real_arqc(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "icbc-debit", 12_34, batch)
    answer = terminal.post("/authorizations", request)

    assert answer.status_code == 200
    body = answer.json
    assert body["mti"] == "0210" and body["rc"] == "00" and body["text"] == "Approved"
    assert body["stan"] == request["stan"] and body["batch"] == batch
    assert len(body["rrn"]) == 12 and body["rrn"].isdigit()
    assert len(body["auth_code"]) == 6
    assert (body["amount"], body["charged"], body["discount"], body["promotion"]) == (1234, 1234, 0, None)
    assert len(bytes.fromhex(body["icc"]["91"])) == 10  # ARPC ‖ ARC
    assert account(instance, world, "icbc-debit")["balance"] == 500_000 - 1234

    pan = request["pan"]
    (row,) = rows(instance, "SELECT * FROM transactions")
    assert (row["kind"], row["state"], row["rc"], row["batch"]) == ("authorization", "approved", "00", batch)
    assert row["response"] == answer.get_data(as_text=True)
    stored_icc = json.loads(row["icc_masked"])
    assert "57" not in stored_icc and "5A" not in stored_icc and stored_icc["9F26"] == request["icc"]["9F26"]
    assert row["pan_masked"].startswith(pan[:6]) and row["pan_masked"].endswith(pan[-4:]) and "*" in row["pan_masked"]
    event = json.loads(rows(instance, "SELECT body FROM events WHERE kind = 'authorization'")[0]["body"])
    assert event["pan"] == row["pan_masked"] and event["rc"] == "00" and event["latency_ms"] >= 0
    received = json.loads(row["request_masked"])  # the request as received, for the dashboard: masked
    assert (received["pan_masked"], received["expiry"], received["stan"]) == (row["pan_masked"], "****",
                                                                               request["stan"])
    assert "pan" not in received
    assert received["icc"] == stored_icc and received["amount"] == 1234
    # no full PAN or track 2 anywhere in the database file
    raw = database_bytes(instance)
    assert pan.encode() not in raw and request["icc"]["57"].encode() not in raw


def test_a_bank_promotion_charges_less_than_the_sale(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    answer = terminal.post("/authorizations", financial(terminal, world, "boc-credit", 50_00, batch))
    assert answer.json["rc"] == "00"
    assert (answer.json["amount"], answer.json["charged"], answer.json["discount"]) == (5000, 4500, 500)
    assert answer.json["promotion"]
    assert account(instance, world, "boc-credit")["credit_used"] == 4500


def test_issuer_declines_are_stored_and_answered(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "ccb-debit", 77_00, batch)
    request["icc"]["9F26"] = "00" * 8  # a cryptogram the issuer did not make
    answer = terminal.post("/authorizations", request)
    assert answer.status_code == 200
    assert (answer.json["rc"], answer.json["auth_code"], answer.json["charged"]) == ("88", None, 0)
    assert answer.json["text"] == messages.response_text("88")
    (row,) = rows(instance, "SELECT state, reason FROM transactions")
    assert (row["state"], row["reason"]) == ("declined", "ARQC_MISMATCH")
    assert account(instance, world, "ccb-debit")["balance"] == 500_000


def test_a_retransmission_gets_the_same_bytes_and_charges_once(terminal: Terminal, world: World,
                                                                instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "abc-debit", 99_99, batch)
    first = terminal.post("/authorizations", request)
    again = terminal.post("/authorizations", request)  # signed afresh: new nonce and timestamp
    reordered = terminal.post("/authorizations", json.dumps(request, indent=2, sort_keys=True).encode())
    assert first.json["rc"] == "00"
    assert first.data == again.data == reordered.data
    assert account(instance, world, "abc-debit")["balance"] == 500_000 - 9999
    assert len(rows(instance, "SELECT id FROM transactions")) == 1
    assert len(rows(instance, "SELECT id FROM events WHERE kind = 'retransmission'")) == 2


def test_other_content_under_the_same_key_is_94_and_changes_nothing(terminal: Terminal, world: World,
                                                                   instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "abc-debit", 10_00, batch)
    assert terminal.post("/authorizations", request).json["rc"] == "00"
    before = counts(instance)
    answer = terminal.post("/authorizations", {**request, "entry_mode": "071"})
    assert answer.status_code == 200
    assert answer.json == {"mti": "0210", "rc": "94", "text": "Duplicate transmission", "stan": request["stan"]}
    after = counts(instance)
    assert after["money"] == before["money"] and after["transactions"] == before["transactions"]


def test_authorizations_need_a_sign_on_and_the_open_batch(terminal: Terminal, world: World,
                                                          instance: Instance) -> None:
    not_signed_on = terminal.post("/authorizations", financial(terminal, world, "psbc-debit", 5_00, 1))
    assert (not_signed_on.json["rc"], not_signed_on.json["batch"]) == ("77", None)
    batch = terminal.sign_on()
    wrong_batch = terminal.post("/authorizations", financial(terminal, world, "psbc-debit", 5_00, batch + 1))
    assert (wrong_batch.json["rc"], wrong_batch.json["batch"]) == ("77", batch)
    assert [r["reason"] for r in rows(instance, "SELECT reason FROM transactions ORDER BY id")] == [
        "NOT_SIGNED_ON", "BATCH_MISMATCH"]
    assert account(instance, world, "psbc-debit")["balance"] == 500_000
    assert terminal.post("/authorizations", financial(terminal, world, "psbc-debit", 5_00, batch)).json["rc"] == "00"


def test_0100_is_answered_0110(terminal: Terminal, world: World) -> None:
    batch = terminal.sign_on()
    answer = terminal.post("/authorizations", financial(terminal, world, "cmb-debit", 3_00, batch, mti="0100"))
    assert (answer.json["mti"], answer.json["rc"]) == ("0110", "00")


# --- transport authentication: 401/403, nothing stored ---------------------------------------------------------------


def _refused(terminal: Terminal, instance: Instance, status: int, send: Any) -> dict[str, Any]:
    before = counts(instance)
    answer = send()
    assert answer.status_code == status, answer.data
    assert answer.mimetype == "application/json"
    assert counts(instance) == before
    return dict(answer.json)


def test_unsigned_forged_skewed_and_unknown_requests_are_refused(terminal: Terminal, world: World,
                                                                 instance: Instance,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "hzb-debit", 8_00, batch)
    caplog.set_level(logging.WARNING)

    unsigned = _refused(terminal, instance, 401, lambda: terminal.client.post(
        "/api/v1/authorizations", json=request))
    assert unsigned["reason"] == "missing_header"

    forged = _refused(terminal, instance, 401, lambda: terminal.post("/authorizations", request, key=bytes(32)))
    assert forged["reason"] == "bad_signature"

    tampered_headers = signing.sign(terminal.key, terminal.tid, "POST", "/api/v1/authorizations",
                                    json.dumps(request).encode(), now=time.time())
    tampered = _refused(terminal, instance, 401, lambda: terminal.post(
        "/authorizations", {**request, "amount": 1}, headers=tampered_headers))
    assert tampered["reason"] == "bad_signature"

    other_path = signing.sign(terminal.key, terminal.tid, "POST", "/api/v1/advices", json.dumps(request).encode(),
                              now=time.time())
    assert _refused(terminal, instance, 401, lambda: terminal.post(
        "/authorizations", request, headers=other_path))["reason"] == "bad_signature"

    window = 300
    for skew in (-window - 1, window + 1):
        skewed = _refused(terminal, instance, 401, lambda s=skew: terminal.post(
            "/authorizations", request, now=time.time() + s))
        assert skewed["reason"] == "clock_skew" and abs(skewed["host_time"] - time.time()) < 5

    unknown = _refused(terminal, instance, 401, lambda: terminal.post("/authorizations", request, tid="QP999999"))
    assert (unknown["reason"], unknown["rc"]) == ("unknown_terminal", "97")

    malformed = _refused(terminal, instance, 401, lambda: terminal.post("/authorizations", request, nonce="xyz"))
    assert malformed["reason"] == "malformed_header"

    # logged with the TID, never with the body
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any(terminal.tid in m and "bad_signature" in m for m in refusals)
    assert any("QP999999" in m for m in refusals)
    assert not any(request["pan"] in r.getMessage() for r in caplog.records)


def test_a_replayed_nonce_is_refused(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "njcb-debit", 6_00, batch)
    raw = json.dumps(request).encode()
    headers = signing.sign(terminal.key, terminal.tid, "POST", "/api/v1/authorizations", raw, now=time.time())
    assert terminal.post("/authorizations", raw, headers=headers).json["rc"] == "00"
    replay = _refused(terminal, instance, 401, lambda: terminal.post("/authorizations", raw, headers=headers))
    assert replay["reason"] == "replayed_nonce"
    # a sign-on (not idempotent) cannot be replayed either
    signon = json.dumps({"mti": "0800", "tid": terminal.tid, "stan": "000777", "local_date": MMDD}).encode()
    signon_headers = signing.sign(terminal.key, terminal.tid, "POST", "/api/v1/signon", signon, now=time.time())
    assert terminal.post("/signon", signon, headers=signon_headers).json["batch"] == batch + 1
    assert _refused(terminal, instance, 401, lambda: terminal.post(
        "/signon", signon, headers=signon_headers))["reason"] == "replayed_nonce"


def test_old_nonces_are_pruned(terminal: Terminal, app: Flask, instance: Instance) -> None:
    terminal.sign_on()
    connection = connect(instance)
    with db.transaction(connection):
        connection.execute("INSERT INTO nonces (tid, nonce, seen) VALUES (?, ?, ?)",
                           (terminal.tid, "0" * 32, time.time() - 2 * app.config["SIGNATURE_WINDOW_SECONDS"]))
    connection.close()
    terminal.sign_on()
    assert [r["nonce"] for r in rows(instance, "SELECT nonce FROM nonces WHERE nonce = ?", "0" * 32)] == []
    assert len(rows(instance, "SELECT nonce FROM nonces")) == 2


def test_an_inactive_terminal_is_refused_with_58(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "hsb-debit", 4_00, batch)
    connection = connect(instance)
    with db.transaction(connection):
        connection.execute("UPDATE terminals SET status = 'inactive'")
    connection.close()
    for path, body in (("/authorizations", request),
                       ("/signon", {"mti": "0800", "tid": terminal.tid, "stan": "000900", "local_date": MMDD})):
        refused = _refused(terminal, instance, 403, lambda p=path, b=body: terminal.post(p, b))
        assert (refused["reason"], refused["rc"]) == ("terminal_inactive", "58")


# --- validation: 400 naming the field, nothing stored -------------------------------------------------------------


def test_validation_errors_name_the_field(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "egb-debit", 12_00, batch)
    cases: list[tuple[dict[str, Any] | bytes, str]] = [
        ({**request, "amount": 12_01}, "amount"),  # DE4 ≠ 9F02
        ({**request, "currency": "840"}, "currency"),
        ({**request, "icc": {**request["icc"], "5F2A": "0840"}}, "currency"),  # DE49 ≠ 5F2A
        ({**request, "psn": "07"}, "psn"),
        ({**request, "pan": request["pan"][:-1] + str((int(request["pan"][-1]) + 1) % 10)}, "pan"),  # ≠ 5A
        ({**request, "tid": "QP000002"}, "tid"),
        ({**request, "icc": {**request["icc"], "9F02": "00000000120A"}}, "icc.9F02"),
        ({k: v for k, v in request.items() if k != "stan"}, "stan"),
        ({**request, "extra": 1}, "extra"),
        (b"{not json", "body"),
        (b"[]", "body"),
    ]
    before = counts(instance)
    for body, field in cases:
        answer = terminal.post("/authorizations", body)
        assert answer.status_code == 400, (field, answer.data)
        assert answer.json["field"] == field and answer.json["error"]
        assert request["pan"] not in answer.get_data(as_text=True)
    assert counts(instance) == before


def test_a_body_over_8_kib_is_refused(terminal: Terminal, instance: Instance) -> None:
    before = counts(instance)
    answer = terminal.post("/echo", b"{" + b" " * 9000 + b"}")
    assert answer.status_code == 413 and answer.json["error"]
    assert counts(instance) == before


def test_an_engine_failure_is_a_500_with_96_and_stores_nothing(terminal: Terminal, world: World, instance: Instance,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    batch = terminal.sign_on()
    request = financial(terminal, world, "boc-debit", 1_00, batch)

    def broken(*args: Any, **kwargs: Any) -> engine.Decision:
        raise RuntimeError("issuer module bug")

    monkeypatch.setattr(engine, "authorize", broken)
    before = counts(instance)
    answer = terminal.post("/authorizations", request)
    assert (answer.status_code, answer.json["rc"]) == (500, "96")
    assert counts(instance) == before


# --- reversals ------------------------------------------------------------------------------------------------------


def reversal(terminal: Terminal, original: dict[str, Any], *, reason: str = "98", mti: str = "0400") -> dict[str, Any]:
    return {"mti": mti, "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD, "reason": reason,
            "original_stan": original["stan"], "original_local_date": original["local_date"],
            "amount": original["amount"]}


def test_reversing_an_approved_sale_gives_the_money_back_once(terminal: Terminal, world: World,
                                                              instance: Instance) -> None:
    batch = terminal.sign_on()
    sale = financial(terminal, world, "icbc-debit", 250_00, batch)
    assert terminal.post("/authorizations", sale).json["rc"] == "00"
    assert account(instance, world, "icbc-debit")["balance"] == 500_000 - 25_000

    request = reversal(terminal, sale, reason="96")
    first = terminal.post("/reversals", request)
    assert first.status_code == 200
    assert first.json == {"mti": "0410", "rc": "00", "text": "Approved", "stan": request["stan"],
                          "original_stan": sale["stan"], "outcome": "reversed"}
    assert account(instance, world, "icbc-debit")["balance"] == 500_000
    repeat = terminal.post("/reversals", {**request, "mti": "0401"})  # the repeat MTI re-sends the same reversal
    assert repeat.data == first.data
    second = terminal.post("/reversals", reversal(terminal, sale, mti="0420"))  # another reversal of the same sale
    assert (second.json["mti"], second.json["rc"], second.json["outcome"]) == ("0430", "00", "already_reversed")
    assert account(instance, world, "icbc-debit")["balance"] == 500_000
    states = {r["kind"]: r["state"] for r in rows(instance, "SELECT kind, state FROM transactions")}
    assert states == {"authorization": "reversed", "reversal": "already_reversed"}
    # a reversed sale is retransmitted: still the stored approval, still no charge
    assert terminal.post("/authorizations", sale).json["rc"] == "00"
    assert account(instance, world, "icbc-debit")["balance"] == 500_000


def test_reversing_an_unknown_sale_leaves_a_tombstone_that_declines_the_late_original(
        terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    sale = financial(terminal, world, "ccb-debit", 42_00, batch)
    request = reversal(terminal, sale)
    answer = terminal.post("/reversals", request)
    assert (answer.json["rc"], answer.json["outcome"]) == ("00", "orphan")
    assert terminal.post("/reversals", request).data == answer.data

    late = terminal.post("/authorizations", sale)
    assert late.json["rc"] == "05" and late.json["auth_code"] is None
    assert account(instance, world, "ccb-debit")["balance"] == 500_000
    (row,) = rows(instance, "SELECT reason, state FROM transactions WHERE kind = 'authorization'")
    assert (row["reason"], row["state"]) == ("ORPHAN_REVERSAL", "declined")


def test_reversal_of_a_declined_sale_changes_nothing(terminal: Terminal, world: World, instance: Instance) -> None:
    sale = financial(terminal, world, "cqcb-debit", 1_00, 1)  # not signed on: 77
    assert terminal.post("/authorizations", sale).json["rc"] == "77"
    # CUP terminals reuse the original's STAN for its reversal: a different kind, so a different key
    answer = terminal.post("/reversals", {**reversal(terminal, sale, reason="A0"), "stan": sale["stan"]})
    assert (answer.json["rc"], answer.json["outcome"]) == ("00", "not_approved")
    assert account(instance, world, "cqcb-debit")["balance"] == 500_000


def test_a_different_reversal_under_the_same_key_is_94(terminal: Terminal, world: World) -> None:
    batch = terminal.sign_on()
    sale = financial(terminal, world, "boc-debit", 1_00, batch)
    request = reversal(terminal, sale)
    assert terminal.post("/reversals", request).json["rc"] == "00"
    assert terminal.post("/reversals", {**request, "reason": "06"}).json["rc"] == "94"


# --- advices ----------------------------------------------------------------------------------------------------


def test_an_offline_advice_is_recorded_once(terminal: Terminal, world: World, instance: Instance) -> None:
    batch = terminal.sign_on()
    advice = financial(terminal, world, "bocom-debit", 12_34, batch, mti="0220", ttq=reader.TTQ_CARD_READER)
    assert bytes.fromhex(advice["icc"]["9F10"])[4] == 0x90  # the card approved offline: a TC
    first = terminal.post("/advices", advice)
    assert first.status_code == 200
    assert (first.json["mti"], first.json["rc"], first.json["batch"]) == ("0230", "00", batch)
    assert terminal.post("/advices", {**advice, "mti": "0221"}).data == first.data
    assert account(instance, world, "bocom-debit")["balance"] == 500_000 - 1234
    (row,) = rows(instance, "SELECT kind, state, reason, icc_masked FROM transactions")
    assert (row["kind"], row["state"], row["reason"]) == ("advice", "accepted", "OFFLINE_APPROVED")
    assert "57" not in json.loads(row["icc_masked"])


def test_a_doubtful_advice_is_acknowledged_as_an_exception(terminal: Terminal, world: World,
                                                            instance: Instance) -> None:
    advice = financial(terminal, world, "bocom-debit", 5_00, 3, mti="0220", ttq=reader.TTQ_CARD_READER)
    advice["icc"]["9F26"] = "11" * 8  # a TC that does not verify, from a terminal that is not signed on
    answer = terminal.post("/advices", advice)
    assert (answer.json["rc"], answer.json["outcome"], answer.json["exception"]) == ("00", "exception",
                                                                                    "TC_UNVERIFIED")
    (row,) = rows(instance, "SELECT state, reason FROM transactions")
    assert (row["state"], row["reason"]) == ("exception", "TC_UNVERIFIED")
    assert account(instance, world, "bocom-debit")["balance"] == 500_000


# --- settlement ------------------------------------------------------------------------------------------------


def settlement(terminal: Terminal, batch: int, debit_count: int, debit_amount: int, credit_count: int = 0,
               credit_amount: int = 0) -> dict[str, Any]:
    return {"mti": "0500", "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD, "batch": batch,
            "totals": {"debit_count": debit_count, "debit_amount": debit_amount, "credit_count": credit_count,
                       "credit_amount": credit_amount}}


def test_settlement_balances_to_the_fen_and_closes_the_batch(terminal: Terminal, world: World,
                                                             instance: Instance) -> None:
    batch = terminal.sign_on()
    for issuer, amount in (("icbc-debit", 10_00), ("boc-credit", 50_00)):  # the promotion: still 5000 for the merchant
        assert terminal.post("/authorizations", financial(terminal, world, issuer, amount, batch)).json["rc"] == "00"
    reversed_sale = financial(terminal, world, "abc-debit", 7_77, batch)
    assert terminal.post("/authorizations", reversed_sale).json["rc"] == "00"
    assert terminal.post("/reversals", reversal(terminal, reversed_sale)).json["outcome"] == "reversed"
    declined = financial(terminal, world, "ccb-debit", 3_00, batch)
    declined["icc"]["9F26"] = "00" * 8
    assert terminal.post("/authorizations", declined).json["rc"] == "88"
    advice = financial(terminal, world, "bocom-debit", 12_34, batch, mti="0220", ttq=reader.TTQ_CARD_READER)
    assert terminal.post("/advices", advice).json["rc"] == "00"
    host = {"debit_count": 3, "debit_amount": 1000 + 5000 + 1234, "credit_count": 0, "credit_amount": 0}

    off_by_a_fen = terminal.post("/settlements", settlement(terminal, batch, 3, host["debit_amount"] + 1))
    assert off_by_a_fen.status_code == 200
    assert off_by_a_fen.json == {"mti": "0510", "rc": "00", "text": "Approved", "stan": off_by_a_fen.json["stan"],
                                 "batch": batch, "balanced": False, "reconciliation": "2", "host_totals": host,
                                 "accepted": {"count": 3, "amount": host["debit_amount"]},
                                 "exceptions": {"count": 0, "amount": 0}}
    a_refund_too_many = terminal.post("/settlements", settlement(terminal, batch, 3, host["debit_amount"], 1, 100))
    assert a_refund_too_many.json["balanced"] is False
    assert rows(instance, "SELECT signed_on FROM terminals WHERE tid = ?",
                terminal.tid)[0]["signed_on"] == 1  # still open: upload, then retry

    request = settlement(terminal, batch, 3, host["debit_amount"])
    balanced = terminal.post("/settlements", request)
    assert (balanced.json["balanced"], balanced.json["reconciliation"]) == (True, "1")
    assert terminal.post("/settlements", request).data == balanced.data  # retransmitted after the close
    assert rows(instance, "SELECT signed_on FROM terminals WHERE tid = ?", terminal.tid)[0]["signed_on"] == 0
    stored = rows(instance, "SELECT balanced, terminal_totals, host_totals FROM settlements ORDER BY id")
    assert [r["balanced"] for r in stored] == [0, 0, 1]
    assert json.loads(stored[-1]["host_totals"]) == host == json.loads(stored[-1]["terminal_totals"])

    # the batch is closed: sales need a new sign-on, a late reversal of a settled sale moves no money
    assert terminal.post("/authorizations", financial(terminal, world, "icbc-debit", 1_00, batch)).json["rc"] == "77"
    settled_sale = rows(instance, "SELECT stan FROM transactions WHERE kind = 'authorization' AND state = 'approved'"
                               " ORDER BY id")[0]  # the first sale (the ¥10.00): standing, not reversed
    late = terminal.post("/reversals", {**reversal(terminal, {"stan": settled_sale["stan"], "local_date": MMDD,
                                                              "amount": 1000})})
    assert late.json["outcome"] == "settled"
    assert account(instance, world, "icbc-debit")["balance"] == 500_000 - 1000
    assert terminal.sign_on() == batch + 1


def test_settling_a_batch_that_is_not_open_is_77_and_not_stored(terminal: Terminal, instance: Instance) -> None:
    answer = terminal.post("/settlements", settlement(terminal, 1, 0, 0))
    assert (answer.json["rc"], answer.json["batch"]) == ("77", None)
    batch = terminal.sign_on()
    assert terminal.post("/settlements", settlement(terminal, batch + 5, 0, 0)).json["rc"] == "77"
    assert rows(instance, "SELECT id FROM settlements") == []
    empty = terminal.post("/settlements", settlement(terminal, batch, 0, 0))
    assert empty.json["balanced"] is True


def test_a_different_settlement_under_the_same_key_is_94(terminal: Terminal) -> None:
    batch = terminal.sign_on()
    request = settlement(terminal, batch, 1, 100)
    assert terminal.post("/settlements", request).json["balanced"] is False
    assert terminal.post("/settlements", {**request, "totals": {**request["totals"], "debit_count": 0}}).json[
        "rc"] == "94"


# --- the OpenAPI document ------------------------------------------------------------------------------------------


def test_the_openapi_document_lists_every_route(app: Flask, client: FlaskClient) -> None:
    answer = client.get("/api/v1/openapi.json")  # unsigned on purpose: documentation holds no data
    assert answer.status_code == 200
    document = answer.json
    assert document["openapi"].startswith("3.1")
    prefix = document["servers"][0]["url"]
    documented = {(prefix + path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint.startswith("api.")
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert documented == served
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for operation in item.values():
            text = json.dumps(operation)
            for ref in (part.split('"')[0] for part in text.split("#/components/schemas/")[1:]):
                assert ref in schemas, (path, ref)
            if "requestBody" in operation:
                assert {"200", "400", "401", "403", "413", "500"} <= set(operation["responses"])
    assert set(schemas["AuthorizationRequest"]["required"]) >= {"pan", "amount", "icc", "batch"}
    assert document["components"]["securitySchemes"]["signature"]["name"] == "X-Signature"


def test_request_hash_ignores_layout_and_the_repeat_digit() -> None:
    body = {"mti": "0221", "b": 1, "a": [1, 2]}
    assert service.request_hash(body) == service.request_hash({"a": [1, 2], "b": 1, "mti": "0220"})
    assert service.request_hash(body) != service.request_hash({**body, "b": 2})
