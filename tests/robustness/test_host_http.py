"""The acquirer's terminal API over a real HTTP socket (the stub served by werkzeug on 127.0.0.1:0): hostile bodies
and headers on every endpoint, JSON and ISO 8583, are clean 4xx answers that store nothing; unsigned, forged,
replayed and re-targeted requests are refused on the wire exactly as through Flask's test client
(tests/acquirer/test_api.py, test_iso8583.py), and leave every row count and balance as it was."""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fuzzing import fuzz, tried
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.serving import make_server

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from hostproto import signing

PATHS = ["/api/v1/signon", "/api/v1/echo", "/api/v1/authorizations", "/api/v1/reversals", "/api/v1/advices",
         "/api/v1/settlements", "/api/v1/iso8583"]
MMDD = time.strftime("%m%d")


class Wire:
    """The demo terminal on a real socket to the served acquirer."""

    def __init__(self, port: int, world: World, instance: Instance) -> None:
        entry = world.terminals()[0]
        self.port, self.tid, self.key = port, entry["tid"], bytes.fromhex(entry["key"])
        self.instance = instance

    def send(self, path: str, body: bytes, headers: dict[str, str] | None,
             content_type: str = "application/json") -> tuple[int, dict[str, Any] | None]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", path, body=body, headers={**(headers or {}), "Content-Type": content_type})
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        return answer.status, decoded if isinstance(decoded, dict) else None

    def signed(self, path: str, body: bytes, **changes: Any) -> dict[str, str]:
        return signing.sign(changes.get("key", self.key), changes.get("tid", self.tid), "POST",
                            changes.get("signed_path", path), body, now=time.time() + changes.get("skew", 0))

    def counts(self) -> dict[str, Any]:
        connection = db.connect(self.instance.database)
        try:
            result: dict[str, Any] = {t: connection.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                                      for t in ("transactions", "events", "settlements", "nonces")}
            result["money"] = tuple(connection.execute(
                "SELECT SUM(COALESCE(balance, 0)), SUM(credit_used), SUM(last_atc) FROM accounts").fetchone())
            return result
        finally:
            connection.close()


@pytest.fixture
def wire(instance: Instance, world: World) -> Iterator[Wire]:
    app = create_app(instance.root, overrides={"TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Wire(server.server_port, world, instance)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=10)
HEADER_VALUES = st.one_of(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=70),
                          st.sampled_from(["QP000001", "0" * 32, "f" * 64, "99999999999999", "-1"]))


@fuzz(60)
@given(path=st.sampled_from(PATHS), data=st.data(),
       body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200),
                      st.sampled_from([b"", b"{", b"\x00" * 9000, b"[" * 5000, b'{"mti": "0200"}'])))
def test_hostile_requests_on_the_wire_are_clean_refusals_that_store_nothing(
    wire: Wire, path: str, data: st.DataObject, body: bytes
) -> None:
    tried("host API over HTTP: hostile requests")
    before = wire.counts()
    how = data.draw(st.sampled_from(["signed", "unsigned", "random headers"]), label="how")
    if how == "signed":
        headers: dict[str, str] | None = wire.signed(path, body)
    elif how == "unsigned":
        headers = None
    else:
        names = [signing.HEADER_TID, signing.HEADER_TIMESTAMP, signing.HEADER_NONCE, signing.HEADER_SIGNATURE]
        headers = {name: data.draw(HEADER_VALUES, label=name) for name in names}
    content_type = "application/octet-stream" if path.endswith("iso8583") else "application/json"
    status, answer = wire.send(path, body, headers, content_type)
    assert status in (200, 400, 401, 413), (status, answer)
    if status != 200:
        assert answer is not None and answer.get("error"), answer
    else:
        assert path.endswith("iso8583") and how == "signed"  # an ISO answer (a refusal code) to signed bytes
    assert wire.counts() == before


def _signon(wire: Wire, stan: str) -> bytes:
    return json.dumps({"mti": "0800", "tid": wire.tid, "stan": stan, "local_date": MMDD}).encode()


def test_unsigned_forged_replayed_skewed_and_retargeted_requests_are_refused_on_the_wire(wire: Wire) -> None:
    path = "/api/v1/signon"
    body = _signon(wire, "000001")
    before = wire.counts()
    refusals = {
        "unsigned": wire.send(path, body, None),
        "forged key": wire.send(path, body, wire.signed(path, body, key=bytes(32))),
        "other terminal": wire.send(path, body, wire.signed(path, body, tid="QP999999")),
        "signed for another path": wire.send(path, body, wire.signed(path, body, signed_path="/api/v1/echo")),
        "body changed after signing": wire.send(path, _signon(wire, "000002"), wire.signed(path, body)),
        "clock 301 s ahead": wire.send(path, body, wire.signed(path, body, skew=301)),
    }
    reasons = {name: (status, (answer or {}).get("reason")) for name, (status, answer) in refusals.items()}
    assert reasons == {
        "unsigned": (401, "missing_header"), "forged key": (401, "bad_signature"),
        "other terminal": (401, "unknown_terminal"), "signed for another path": (401, "bad_signature"),
        "body changed after signing": (401, "bad_signature"), "clock 301 s ahead": (401, "clock_skew"),
    }
    assert wire.counts() == before  # not even a nonce was remembered

    headers = wire.signed(path, body)
    status, first = wire.send(path, body, headers)
    assert status == 200 and first is not None and first["rc"] == "00"
    after_first = wire.counts()
    status, replay = wire.send(path, body, headers)  # the same bytes again, captured off the wire
    assert (status, (replay or {}).get("reason")) == (401, "replayed_nonce")
    status, replay_elsewhere = wire.send("/api/v1/echo", body, headers)  # the captured headers on another path
    assert (status, (replay_elsewhere or {}).get("reason")) == (401, "bad_signature")
    assert wire.counts() == after_first


def test_a_replayed_iso_8583_request_is_refused_on_the_wire(wire: Wire, world: World) -> None:
    from acquirer_stub.iso8583 import spec

    mid = world.terminals()[0]["mid"]
    raw = spec.encode({"h": "6000093019603100311003", "t": "0800", "11": "000010", "41": wire.tid, "42": mid,
                       "60": "00000000003"})
    path = "/api/v1/iso8583"
    headers = wire.signed(path, raw)
    before = wire.counts()
    status, _ = wire.send(path, raw, headers, "application/octet-stream")
    assert status == 200
    signed_on = wire.counts()
    assert signed_on != before  # the sign-on was recorded
    status, replay = wire.send(path, raw, headers, "application/octet-stream")
    assert (status, (replay or {}).get("reason")) == (401, "replayed_nonce")
    status, unsigned = wire.send(path, raw, None, "application/octet-stream")
    assert (status, (unsigned or {}).get("reason")) == (401, "missing_header")
    status, forged = wire.send(path, raw, wire.signed(path, raw, key=b"\x01" * 32), "application/octet-stream")
    assert (status, (forged or {}).get("reason")) == (401, "bad_signature")
    assert wire.counts() == signed_on


def test_the_database_is_untouched_by_refusals_byte_for_byte(wire: Wire) -> None:
    """Stronger than row counts: a refused request changes no row of any table."""

    def dump() -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(wire.instance.database)
        try:
            tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return [(t, *row) for t in sorted(tables) for row in connection.execute(f"SELECT * FROM {t}")]
        finally:
            connection.close()

    before = dump()
    body = _signon(wire, "000003")
    for headers in (None, wire.signed("/api/v1/signon", body, key=bytes(32)),
                    wire.signed("/api/v1/signon", body, skew=-400)):
        assert wire.send("/api/v1/signon", body, headers)[0] == 401
    assert dump() == before
