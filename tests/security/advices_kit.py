"""Offline advices and reversals as an attacker holding a terminal's key sends them: signed requests over real HTTP
to a live acquirer (JSON and ISO 8583), then every balance, settlement figure and clearing total read back."""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hostdb import rows
from hostserver import HostServer
from reader import tap_icc

from acquirer_stub.api import service
from acquirer_stub.app import create_app
from acquirer_stub.dashboard import clearing
from acquirer_stub.instance import Instance
from acquirer_stub.iso8583 import spec
from acquirer_stub.store import db
from emvcore import tlv
from firmware.issuing.layout import World
from hostproto import signing

MMDD = f"{datetime.date.today():%m%d}"
TTQ_ONLINE = bytes.fromhex("26800080")  # online cryptogram required: the card answers with an ARQC
TTQ_OFFLINE = bytes.fromhex("26000080")  # the card may approve offline: a TC
ISO_HEADER = "6000093019" + "603100311003"  # TPDU + CUP header


def card(world: World, issuer: str) -> dict[str, Any]:
    return next(c for c in world.cards() if c["issuer"] == issuer)


class SignedTerminal:
    """The world's demo terminal, its key in the attacker's hands: every request correctly signed."""

    def __init__(self, url: str, world: World) -> None:
        entry = world.terminals()[0]
        self.url, self.world = url, world
        self.tid, self.mid, self.key = entry["tid"], entry["mid"], bytes.fromhex(entry["key"])
        self._stan = 0

    def next_stan(self) -> str:
        self._stan += 1
        return f"{self._stan:06d}"

    def _send(self, path: str, raw: bytes, content_type: str) -> tuple[int, bytes]:
        full = f"/api/v1{path}"
        headers = {**signing.sign(self.key, self.tid, "POST", full, raw, now=time.time()),
                   "Content-Type": content_type}
        request = urllib.request.Request(self.url + full, data=raw, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, raw = self._send(path, json.dumps(body).encode(), "application/json")
        assert status == 200, (status, raw[:300])
        return dict(json.loads(raw))

    def iso(self, doc: dict[str, str]) -> dict[str, str]:
        status, raw = self._send("/iso8583", spec.encode(doc), "application/octet-stream")
        assert status == 200, (status, raw[:300])
        return spec.decode(raw)

    def sign_on(self) -> int:
        answer = self.post("/signon", {"mti": "0800", "tid": self.tid, "stan": self.next_stan(), "local_date": MMDD})
        return int(answer["batch"])

    def financial(self, issuer: str, amount: int, batch: int, *, mti: str = "0200",
                  ttq: bytes = TTQ_ONLINE) -> dict[str, Any]:
        """A real tap of the world's card for `amount`: an ARQC (online TTQ) or a TC (offline TTQ)."""
        entry = card(self.world, issuer)
        expiry = datetime.date.fromisoformat(entry["expiry"])
        return {"mti": mti, "tid": self.tid, "stan": self.next_stan(), "local_date": MMDD, "batch": batch,
                "pan": entry["pan"], "psn": f"{entry['psn']:02d}", "expiry": f"{expiry:%y%m}", "amount": amount,
                "currency": "156", "entry_mode": "072", "icc": tap_icc(self.world, issuer, amount, ttq=ttq)}

    def advice(self, issuer: str, amount: int, batch: int) -> dict[str, Any]:
        body = self.financial(issuer, amount, batch, mti="0220", ttq=TTQ_OFFLINE)
        assert bytes.fromhex(body["icc"]["9F10"])[4] == 0x90, "the card did not approve offline (no TC)"
        return body

    def settle(self, batch: int, count: int, amount: int) -> dict[str, Any]:
        return self.post("/settlements", {
            "mti": "0500", "tid": self.tid, "stan": self.next_stan(), "local_date": MMDD, "batch": batch,
            "totals": {"debit_count": count, "debit_amount": amount, "credit_count": 0, "credit_amount": 0}})

    def reversal(self, sale: dict[str, Any], amount: int, *, reason: str = "96") -> dict[str, Any]:
        return self.post("/reversals", {
            "mti": "0400", "tid": self.tid, "stan": self.next_stan(), "local_date": MMDD, "reason": reason,
            "original_stan": sale["stan"], "original_local_date": sale["local_date"], "amount": amount})

    def iso_financial(self, body: dict[str, Any]) -> dict[str, str]:
        """The JSON body as a CUP terminal's ISO message (0220: DE3 000000, 60.1 30)."""
        type_code = "30" if body["mti"] in ("0220", "0221") else "22"
        icc = b"".join(tlv.encode(int(tag, 16), bytes.fromhex(value)) for tag, value in body["icc"].items())
        return {"h": ISO_HEADER, "t": body["mti"], "2": body["pan"], "3": "000000", "4": f"{body['amount']:012d}",
                "11": body["stan"], "13": body["local_date"], "14": body["expiry"], "22": body["entry_mode"],
                "23": "0" + body["psn"], "41": body["tid"], "42": self.mid, "49": body["currency"],
                "55": icc.hex().upper(), "60": f"{type_code}{body['batch']:06d}000"}

    def iso_settlement(self, batch: int, count: int, amount: int) -> dict[str, str]:
        return {"h": ISO_HEADER, "t": "0500", "11": self.next_stan(), "41": self.tid, "42": self.mid,
                "48": f"{amount:012d}{count:03d}{0:012d}{0:03d}0", "49": "156", "60": f"00{batch:06d}201"}


@contextlib.contextmanager
def live_acquirer(instance: Instance) -> Iterator[tuple[Flask, HostServer]]:
    """The acquirer app on a real loopback port, as a terminal meets it."""
    app = create_app(instance.root, overrides={"TESTING": True})
    server = HostServer(app)
    server.start()
    try:
        yield app, server
    finally:
        server.stop()


@dataclass(frozen=True)
class Books:
    """Everything an advice or a reversal could change about money, read from the database files."""

    accounts: dict[int, tuple[int | None, int, int]]  # id → balance, credit used, last ATC
    token_atcs: dict[int, int]
    cleared: tuple[int, int, int, int]  # the daily clearing reports summed: count, gross, discount, charged
    # (every day that has transactions: a test running across midnight moves money on two days)

    @classmethod
    def read(cls, instance: Instance) -> Books:
        accounts = {r["id"]: (r["balance"], r["credit_used"], r["last_atc"])
                    for r in rows(instance, "SELECT id, balance, credit_used, last_atc FROM accounts")}
        tokens = {r["id"]: r["last_atc"] for r in rows(instance, "SELECT id, last_atc FROM tokens")}
        days = [datetime.date.fromisoformat(r["day"])
                for r in rows(instance, "SELECT DISTINCT substr(created, 1, 10) AS day FROM transactions")]
        connection = db.connect(instance.database)
        try:
            reports = [clearing.daily_report(connection, day) for day in days]
        finally:
            connection.close()
        assert all(report.balanced for report in reports), "a clearing report's two sides disagree"
        totals = [report.issuer_total for report in reports]
        return cls(accounts, tokens, (sum(t.count for t in totals), sum(t.gross for t in totals),
                                      sum(t.discount for t in totals), sum(t.charged for t in totals)))

    def money(self) -> tuple[dict[int, tuple[int | None, int]], tuple[int, int, int, int]]:
        """Balances, credit used and clearing totals: what an online sale's ATC may move on without."""
        return {key: (balance, used) for key, (balance, used, _) in self.accounts.items()}, self.cleared


def account(instance: Instance, issuer: str) -> tuple[int | None, int]:
    """(balance, credit used) of the issuer's world card."""
    (row,) = rows(instance, "SELECT balance, credit_used FROM accounts WHERE issuer = ?", issuer)
    return row["balance"], row["credit_used"]


def figures(instance: Instance, tid: str, batch: int) -> dict[str, dict[str, int]]:
    connection = db.connect(instance.database)
    try:
        return service.batch_figures(connection, tid, batch)
    finally:
        connection.close()


def operator_client(app: Flask, world: World) -> tuple[FlaskClient, str]:
    """The dashboard's operator logged in through the login form; returns the client and its CSRF token."""
    client = app.test_client()
    user = next(u for u in world.users() if u["role"] == "operator")
    token = csrf_token(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"username": user["username"], "password": user["password"],
                                         "csrf_token": token})
    assert answer.status_code == 302
    return client, token


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)



