"""The operator's dashboard through Flask's test client: access rules, CSRF, actions, feed, charts, clearing, ECR."""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from webform import post_login, world_login
from werkzeug.test import TestResponse

from acquirer_stub.dashboard import charts, clearing, feed, present
from acquirer_stub.dashboard.views import parse_yuan
from acquirer_stub.ecr import handover
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from emvcore.bcd import encode_cn
from firmware.issuing.layout import World
from hostproto import signing

PAGES = ("/dashboard/", "/dashboard/transactions",
         "/dashboard/terminals", "/dashboard/terminals/QP000001", "/dashboard/devices", "/dashboard/sms",
         "/dashboard/reversals",
         "/dashboard/settlements", "/dashboard/clearing", "/dashboard/transit", "/dashboard/issuers",
         "/dashboard/ecr", "/dashboard/tx/1", "/dashboard/exceptions")
GUARDED = (*PAGES, "/dashboard/transactions.csv")  # every GET an operator may make and nobody else
POSTS = ("/dashboard/devices/{device}/wallet", "/dashboard/tokens/1/status", "/dashboard/issuers/boc-credit",
         "/dashboard/promotions", "/dashboard/promotions/1/active", "/dashboard/ecr",
         "/dashboard/exceptions/1/resolve")
FULL_PAN = "6217000010001234567"
NOW = datetime.datetime(2026, 5, 9, 10, 30, 20, tzinfo=datetime.UTC)


# -- helpers ---------------------------------------------------------------------------------------------------


def _log_in(client: FlaskClient, world: World, role: str) -> str:
    """Through the form, as a person would; returns a CSRF token for later POSTs."""
    token, answer = post_login(client, *world_login(world, role))
    assert answer.status_code == 302
    return token


def _post(client: FlaskClient, path: str, **form: Any) -> TestResponse:
    return client.post(path, data={"csrf_token": client.csrf, **form})  # type: ignore[attr-defined]


def _demo_device(connection: sqlite3.Connection) -> str:
    return connection.execute("SELECT id FROM devices ORDER BY id LIMIT 1").fetchone()["id"]


def add_transaction(connection: sqlite3.Connection, **fields: Any) -> int:
    """A transactions row as the terminal API stores it, plus its `events` row, in one transaction."""
    created = fields.pop("created", NOW)
    row: dict[str, Any] = {
        "kind": "authorization", "mti": "0200", "tid": "QP000001", "local_date": created.date().isoformat(),
        "request_hash": "0" * 64, "state": "approved", "rc": "00", "reason": "APPROVED", "amount": 1234,
        "currency": "156", "batch": 1, "issuer": "icbc-debit", "pan_masked": "621700*********4567",
        "entry_mode": "072", "atc": 7, "rrn": "261290000001", "auth_code": "123456", "latency_ms": 5.0,
        "response": json.dumps({"rc": "00"}), "created": created.isoformat(),
    }
    row.update(fields)
    row.setdefault("stan", f"{connection.execute('SELECT COUNT(*) FROM transactions').fetchone()[0] + 1:06d}")
    row.setdefault("charged", row["amount"] - row.get("discount", 0))
    with db.transaction(connection):
        columns = ", ".join(row)
        transaction_id = connection.execute(
            f"INSERT INTO transactions ({columns}) VALUES ({', '.join('?' for _ in row)}) RETURNING id",
            tuple(row.values()),
        ).fetchone()[0]
        body = {"tid": row["tid"], "stan": row["stan"], "mti": row["mti"], "rc": row["rc"], "text": "Approved"}
        connection.execute("INSERT INTO events (created, kind, body) VALUES (?, ?, ?)",
                           (row["created"], row["kind"], json.dumps(body)))
    assert transaction_id is not None
    return transaction_id


# -- access rules ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_an_operator(operator: FlaskClient, connection: sqlite3.Connection, path: str) -> None:
    add_transaction(connection, created=datetime.datetime.now(datetime.UTC))
    answer = operator.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    html = answer.get_data(as_text=True)
    assert "<nav>" in html and 'href="/dashboard/ecr"' in html
    # every asset is served locally: no script, style or image from another host
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html, re.IGNORECASE), "an asset from another host"


@pytest.mark.parametrize("path", GUARDED)
def test_anonymous_users_are_sent_to_log_in(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


@pytest.mark.parametrize("path", GUARDED)
def test_cardholders_are_refused(client: FlaskClient, world: World, path: str) -> None:
    _log_in(client, world, "cardholder")
    assert client.get(path).status_code == 403


def test_the_feed_is_for_operators_only(client: FlaskClient, world: World) -> None:
    assert client.get("/dashboard/feed").status_code == 302
    _log_in(client, world, "cardholder")
    assert client.get("/dashboard/feed").status_code == 403


@pytest.mark.parametrize("path", POSTS)
def test_posts_without_the_csrf_token_are_refused(operator: FlaskClient, connection: sqlite3.Connection,
                                                  path: str) -> None:
    before = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    answer = operator.post(path.format(device=_demo_device(connection)),
                           data={"enabled": "0", "reason": "LOST", "status": "down", "amount": "1.00"})
    assert answer.status_code == 400
    assert connection.execute("SELECT COUNT(*) FROM events").fetchone()[0] == before


def test_cardholders_cannot_post_either(client: FlaskClient, world: World, connection: sqlite3.Connection) -> None:
    token = _log_in(client, world, "cardholder")
    answer = client.post("/dashboard/issuers/boc-credit", data={"csrf_token": token, "status": "down"})
    assert answer.status_code == 403
    assert connection.execute("SELECT status FROM issuers WHERE code = 'boc-credit'").fetchone()[0] == "up"


# -- actions ---------------------------------------------------------------------------------------------------


def _token_states(connection: sqlite3.Connection, device: str) -> list[tuple[str, str | None]]:
    return [tuple(r) for r in connection.execute(
        "SELECT status, status_reason FROM tokens WHERE device_id = ? ORDER BY id", (device,))]


def test_suspending_and_resuming_a_device_wallet(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    device = _demo_device(connection)
    assert _token_states(connection, device) == [("active", None)]
    answer = _post(operator, f"/dashboard/devices/{device}/wallet", enabled="0", reason="LOST")
    assert answer.status_code == 302
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 0
    assert _token_states(connection, device) == [("suspended", "LOST_DEVICE")]
    page = operator.get("/dashboard/devices").get_data(as_text=True)
    assert "off (lost phone)" in page and "Resume wallet" in page
    _post(operator, f"/dashboard/devices/{device}/wallet", enabled="1", reason="FOUND")
    assert connection.execute("SELECT wallet_enabled FROM devices WHERE id = ?", (device,)).fetchone()[0] == 1
    assert _token_states(connection, device) == [("active", "FOUND")]
    kinds = [r[0] for r in connection.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds.count("token") == 4  # two token changes and two wallet switches, each with its event


def test_suspending_and_resuming_one_token(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    token_id = connection.execute("SELECT id FROM tokens ORDER BY id LIMIT 1").fetchone()[0]
    _post(operator, f"/dashboard/tokens/{token_id}/status", status="suspended", reason="STOLEN")
    assert connection.execute("SELECT status, status_reason FROM tokens WHERE id = ?", (token_id,)).fetchone()[:] == (
        "suspended", "STOLEN")
    _post(operator, f"/dashboard/tokens/{token_id}/status", status="active", reason="FOUND")
    assert connection.execute("SELECT status FROM tokens WHERE id = ?", (token_id,)).fetchone()[0] == "active"
    answer = _post(operator, f"/dashboard/tokens/{token_id}/status", status="suspended", reason="BORED")
    assert answer.status_code == 302  # refused by the lifecycle rules, told on the page
    assert "reason must be one of" in operator.get("/dashboard/devices").get_data(as_text=True)
    assert connection.execute("SELECT status FROM tokens WHERE id = ?", (token_id,)).fetchone()[0] == "active"
    assert _post(operator, "/dashboard/tokens/999/status", status="suspended", reason="LOST").status_code == 404


def test_issuer_switches_change_the_database(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    _post(operator, "/dashboard/issuers/boc-credit", status="down", added_latency_ms="750", forced_decline="51")
    row = connection.execute("SELECT status, added_latency_ms, forced_decline FROM issuers WHERE code = 'boc-credit'")
    assert row.fetchone()[:] == ("down", 750, "51")
    event = connection.execute("SELECT kind, body FROM events ORDER BY id DESC LIMIT 1").fetchone()
    assert event["kind"] == "operator" and json.loads(event["body"])["issuer"] == "boc-credit"
    _post(operator, "/dashboard/issuers/boc-credit", status="up", added_latency_ms="0", forced_decline="")
    row = connection.execute("SELECT status, added_latency_ms, forced_decline FROM issuers WHERE code = 'boc-credit'")
    assert row.fetchone()[:] == ("up", 0, None)
    for bad in ({"added_latency_ms": "-1"}, {"added_latency_ms": "999999"}, {"forced_decline": "00"},
                {"added_latency_ms": "soon"}):
        _post(operator, "/dashboard/issuers/boc-credit", **{"status": "down", "added_latency_ms": "0", **bad})
        assert connection.execute("SELECT status FROM issuers WHERE code = 'boc-credit'").fetchone()[0] == "up"
    assert _post(operator, "/dashboard/issuers/nobank", status="down", added_latency_ms="0").status_code == 404


def test_promotions_can_be_added_and_turned_off(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    _post(operator, "/dashboard/promotions", issuer="icbc-debit", title="ICBC ¥5 off", percent="5", cap="5.00",
          starts="2026-01-01", ends="2026-12-31")
    row = connection.execute("SELECT * FROM promotions ORDER BY id DESC LIMIT 1").fetchone()
    assert (row["issuer"], row["percent"], row["cap"], row["active"]) == ("icbc-debit", 5, 500, 1)
    _post(operator, f"/dashboard/promotions/{row['id']}/active", active="0")
    assert connection.execute("SELECT active FROM promotions WHERE id = ?", (row["id"],)).fetchone()[0] == 0
    count = connection.execute("SELECT COUNT(*) FROM promotions").fetchone()[0]
    _post(operator, "/dashboard/promotions", issuer="icbc-debit", title="bad", percent="500", cap="1",
          starts="2026-01-01", ends="2026-12-31")
    assert connection.execute("SELECT COUNT(*) FROM promotions").fetchone()[0] == count


# -- drill-down never shows a full PAN, track 2 or key -------------------------------------------------------


def test_the_drill_down_names_icc_tags_and_masks_card_data(operator: FlaskClient,
                                                            connection: sqlite3.Connection) -> None:
    pan_hex = encode_cn(FULL_PAN, 10).hex().upper()
    track2 = (FULL_PAN + "D30122010000000000").ljust(38, "F")
    icc = {"9F26": "1A2B3C4D5E6F7081", "9F36": "0007", "9F02": "000000001234", "9F27": "80", "5A": pan_hex,
           "57": track2, "DF8101": FULL_PAN}
    transaction_id = add_transaction(connection, icc_masked=json.dumps(icc), pan_masked=FULL_PAN,
                                     response=json.dumps({"rc": "00", "pan": FULL_PAN, "note": f"card {FULL_PAN}"}))
    html = operator.get(f"/dashboard/tx/{transaction_id}").get_data(as_text=True)
    assert "Application Cryptogram" in html and "1A2B3C4D5E6F7081" in html
    assert "Application Transaction Counter (ATC)" in html and "ATC 7" in html
    assert "¥12.34" in html and "ARQC" in html
    assert FULL_PAN not in html and track2 not in html and pan_hex not in html
    assert "621700*********4567" in html and "&lt;hidden&gt;" in html
    assert operator.get("/dashboard/tx/99999").status_code == 404
    assert "Not kept for this message" in html  # a row from before requests were kept


def test_the_drill_down_decodes_bit_fields_and_shows_the_request(operator: FlaskClient,
                                                                connection: sqlite3.Connection) -> None:
    icc = {"95": "8000088000", "82": "7C00", "9F34": "3F0000", "9F66": "26800080", "9F6C": "0080",
           "9F10": "07010103A00000010A01000000000000000000"}
    request = {"mti": "0200", "pan": FULL_PAN, "expiry": "3012", "amount": 1234, "icc": {"5A": FULL_PAN}}
    transaction_id = add_transaction(connection, icc_masked=json.dumps(icc), request_masked=json.dumps(request))
    html = operator.get(f"/dashboard/tx/{transaction_id}").get_data(as_text=True)
    bits = {tag: re.findall(r"<li>([^<]*)</li>", block) for tag, block in
            re.findall(r'<ul class="bits" data-tag="([0-9A-F]+)">(.*?)</ul>', html)}
    assert bits["95"] == ["Offline data authentication was not performed", "PIN entry required, PIN pad present, "
                          "but PIN was not entered", "Transaction exceeds floor limit"]
    assert bits["82"][0] == "SDA supported" and "CDA supported" not in bits["82"]
    assert bits["9F34"][0] == "Performed: No CVM performed"
    assert "fDDA version 01 supported" in bits["9F66"] and bits["9F6C"] == ["Consumer device CVM performed"]
    assert bits["9F10"][:2] == ["CVN 01, key index (DKI) 01, algorithm 3DES",
                                "CVR 03A00000: first GENERATE AC ARQC, second not requested"]
    shown = html.split('id="request">', 1)[1].split("</pre>", 1)[0]
    assert "&#34;mti&#34;: &#34;0200&#34;" in shown or '"mti": "0200"' in shown
    assert FULL_PAN not in html and "621700*********4567" in shown


def test_icc_items_follow_emvcores_secrecy_classes() -> None:
    items = {item.tag: item for item in present.icc_items(json.dumps([["9F24", "Q" * 29], ["57", "not hex"]]))}
    assert "Q" * 29 not in items["9F24"].value and items["57"].value == "<hidden>"
    assert present.icc_items(None) == [] and present.icc_items("not json") == []


def test_money_and_masks() -> None:
    assert present.yuan(123456) == "¥1,234.56" and present.yuan(-5) == "-¥0.05" and present.yuan(None) == ""
    assert parse_yuan("0.29") == 29 and parse_yuan("¥1,234.5") == 123450 and parse_yuan("12") == 1200
    for bad in ("1.234", "abc", "NaN", ""):
        with pytest.raises(ValueError):
            parse_yuan(bad)
    assert present.scrub(f"x {FULL_PAN} y") == "x 621700*********4567 y"
    assert present.scrub("AID A000000333010103 refused") == "AID A000000333010103 refused"  # the scheme is shown
    assert present.mask_phone("13800138000") == "138****8000"


# -- live feed -------------------------------------------------------------------------------------------------


def _text(chunk: bytes | str) -> str:
    return chunk.decode() if isinstance(chunk, bytes) else chunk


def _frames(response: TestResponse, wanted: int, *, seconds: float = 5.0) -> list[str]:
    """Read SSE frames (one per chunk) until `wanted` of them carry data."""
    chunks: list[str] = []
    deadline = time.monotonic() + seconds
    iterator = iter(response.response)
    while sum(1 for c in chunks if "data: " in c) < wanted:
        assert time.monotonic() < deadline, f"no event within {seconds} s: {chunks}"
        chunks.append(_text(next(iterator)))
    return chunks


@pytest.fixture
def fast_feed(app: Flask) -> Flask:
    app.config.update(FEED_POLL_SECONDS=0.01, FEED_HEARTBEAT_SECONDS=0.05, FEED_MAX_SECONDS=5)
    return app


def test_the_feed_streams_a_new_event_with_its_id(fast_feed: Flask, operator: FlaskClient,
                                                  connection: sqlite3.Connection) -> None:
    response = operator.get("/dashboard/feed", buffered=False)
    try:
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        transaction_id = add_transaction(connection, amount=4321, created=datetime.datetime.now(datetime.UTC))
        event_id = connection.execute("SELECT MAX(id) FROM events").fetchone()[0]
        frames = [f for f in _frames(response, 1) if "data: " in f]
        assert frames[0].startswith(f"id: {event_id}\n")
        message = json.loads(frames[0].split("data: ", 1)[1])
        assert message["kind"] == "authorization"
        assert message["transaction"]["id"] == transaction_id and message["transaction"]["amount"] == "¥43.21"
        assert message["transaction"]["pan_masked"] == "621700*********4567"
    finally:
        response.close()


def test_the_feed_resumes_after_last_event_id_and_sends_heartbeats(fast_feed: Flask, operator: FlaskClient,
                                                                   connection: sqlite3.Connection) -> None:
    first = add_transaction(connection, amount=100)
    second = add_transaction(connection, amount=200)
    first_event = connection.execute("SELECT MIN(id) FROM events").fetchone()[0]
    response = operator.get("/dashboard/feed", headers={"Last-Event-ID": str(first_event)}, buffered=False)
    try:
        frames = _frames(response, 1)
        data = [json.loads(f.split("data: ", 1)[1]) for f in frames if "data: " in f]
        assert [m["transaction"]["id"] for m in data] == [second] and first != second
        chunks = iter(response.response)
        deadline = time.monotonic() + 5
        while not _text(next(chunks)).startswith(": heartbeat"):  # nothing new: the stream keeps itself alive
            assert time.monotonic() < deadline, "no heartbeat"
    finally:
        response.close()


def test_the_feed_holds_no_transaction_and_closes_its_connection(fast_feed: Flask, operator: FlaskClient,
                                                                 connection: sqlite3.Connection,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[sqlite3.Connection] = []
    real_connect = db.connect

    def connect(path: Any) -> sqlite3.Connection:
        opened.append(real_connect(path))
        return opened[-1]

    monkeypatch.setattr(feed.db, "connect", connect)
    response = operator.get("/dashboard/feed?after=0", buffered=False)
    add_transaction(connection)
    _frames(response, 1)
    assert len(opened) == 1 and not opened[0].in_transaction
    with db.transaction(connection):  # a writer is not held up by the open stream
        connection.execute("UPDATE terminals SET last_seen = 'now'")
    response.close()  # what the server does when the browser goes away
    with pytest.raises((sqlite3.ProgrammingError, psycopg.OperationalError)):  # closed
        opened[0].execute("SELECT 1")


def test_the_stream_ends_by_itself_after_its_time(instance: Instance) -> None:
    frames = list(feed.stream(instance.database, None, poll_seconds=0.01, heartbeat_seconds=0.02, max_seconds=0.1))
    assert frames[0].startswith("retry: ") and any(f.startswith(": heartbeat") for f in frames)


def test_the_stream_stops_when_the_client_is_gone(instance: Instance) -> None:
    frames = list(feed.stream(instance.database, 0, poll_seconds=0.01, client_gone=lambda: True))
    assert len(frames) == 1


# -- charts ----------------------------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert [charts.percentile(values, p) for p in (50, 95, 99)] == [50.0, 95.0, 99.0]
    assert charts.percentile([7.0], 99) == 7.0 and charts.percentile([], 50) is None


def test_overview_numbers_from_inserted_transactions(connection: sqlite3.Connection) -> None:
    minute = NOW.replace(second=0)
    for n in range(6):  # 6 approved in the current minute, latencies 1..6 ms
        add_transaction(connection, created=minute + datetime.timedelta(seconds=n), latency_ms=float(n + 1))
    for rc, issuer, ago in (("51", "icbc-debit", 1), ("51", "boc-credit", 2), ("91", "boc-credit", 2),
                            ("88", "icbc-debit", 2)):
        add_transaction(connection, rc=rc, issuer=issuer, latency_ms=100.0, state="declined",
                        created=minute - datetime.timedelta(minutes=ago))
    with db.transaction(connection):
        for rc, reason in (("51", "INSUFFICIENT_FUNDS"), ("91", "ISSUER_DOWN"), ("88", "ARQC_MISMATCH")):
            connection.execute("UPDATE transactions SET reason = ? WHERE rc = ?", (reason, rc))
    add_transaction(connection, created=minute - datetime.timedelta(minutes=61))  # outside the window
    add_transaction(connection, kind="reversal", mti="0400", created=minute)  # not a sale
    stats = charts.overview(connection, now=NOW, minutes=60)
    assert (stats.total, stats.approved, stats.declined) == (10, 6, 4)
    assert stats.approval_rate == pytest.approx(60.0)
    assert len(stats.per_minute) == 60 and stats.per_minute[-1][1:] == (6, 0)
    assert stats.per_minute[-2][1:] == (0, 1) and stats.per_minute[-3][1:] == (0, 3)
    assert stats.tps_now == pytest.approx(0.1) and stats.tps_peak == pytest.approx(0.1)
    assert stats.tps_average == pytest.approx(10 / 3600)
    assert stats.latency == {50: 5.0, 95: 100.0, 99: 100.0}
    assert stats.declines_by_code == [("51", 2), ("88", 1), ("91", 1)]
    banks = dict(stats.declines_by_bank)
    assert sum(banks.values()) == 4 and len(banks) == 2
    assert stats.bin_minutes == 2 and len(stats.bins) == 30  # 2-minute columns over the hour
    assert [bin[1:] for bin in stats.bins[-2:]] == [(0, 3), (6, 1)]
    assert sum(a + d for _, a, d in stats.bins) == 10
    assert stats.reasons_per_bin[-1] == {"Insufficient funds": 1}
    assert stats.reasons_per_bin[-2] == {"Insufficient funds": 1, "Issuer unavailable": 1,
                                         "Cryptogram (ARQC) does not verify": 1}
    assert dict(stats.latency_distribution) == {"≤ 5 ms": 5, "5–10 ms": 1, "10–25 ms": 0, "25–50 ms": 0,
                                                "50–100 ms": 4, "100–250 ms": 0, "250–1000 ms": 0, "> 1000 ms": 0}


def test_the_overview_page_draws_the_charts(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    now = datetime.datetime.now(datetime.UTC)
    add_transaction(connection, created=now, latency_ms=12.0)
    add_transaction(connection, created=now, rc="51", state="declined", latency_ms=30.0)
    html = operator.get("/dashboard/?minutes=15").get_data(as_text=True)
    assert html.count("<svg") == 5 and "<script" in html and "dashboard.js" in html
    assert "51 Insufficient funds" in html and "50.0 %" in html
    assert "Host processing time" in html and "10–25 ms" in html and "Declines by reason per minute" in html
    figures = operator.get("/dashboard/overview.json?minutes=15").get_json()
    assert figures["minutes"] == 15 and figures["kpis"]["kpi-approval"] == "50.0 %"
    assert sorted(figures["charts"]) == ["banks", "codes", "latency", "reasons", "volume"]
    assert all(svg.startswith("<svg") for svg in figures["charts"].values())
    assert operator.get("/dashboard/overview.json?minutes=7").get_json()["minutes"] == 60  # not a window: the default


def test_svg_labels_are_escaped() -> None:
    svg = str(charts.bar_chart([("<script>alert(1)</script>", 3)], title="t & t"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "t &amp; t" in svg
    stacked = str(charts.stacked_chart([("10:00", Counter({"<b>x</b>": 2}))], title="<i>"))
    assert "<b>" not in stacked and "<i>" not in stacked and "&lt;b&gt;x&lt;/b&gt; (2)" in stacked


def test_a_stacked_chart_keeps_five_reasons_and_groups_the_rest() -> None:
    columns = [("10:00", Counter({f"reason {n}": n + 1 for n in range(8)}))]
    svg = str(charts.stacked_chart(columns, title="Declines"))
    legend = re.findall(r'class="chart-label">([^<]+)</text>', svg)[2:]  # after the axis' first and last label
    assert legend == ["reason 7 (8)", "reason 6 (7)", "reason 5 (6)", "reason 4 (5)", "reason 3 (4)", "other (6)"]
    assert svg.count('class="bar s') == 6 + 6  # six slices in the column, six legend keys


# -- clearing --------------------------------------------------------------------------------------------------


def test_the_daily_clearing_report_sums(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    day = NOW.date()
    promotion = connection.execute("SELECT id, issuer FROM promotions ORDER BY id LIMIT 1").fetchone()
    add_transaction(connection, issuer="icbc-debit", amount=1000)
    add_transaction(connection, issuer="icbc-debit", amount=2500)
    add_transaction(connection, issuer=promotion["issuer"], amount=5000, discount=500, charged=4500,
                    promotion_id=promotion["id"])
    add_transaction(connection, kind="advice", mti="0220", issuer=promotion["issuer"], amount=300, state="accepted")
    add_transaction(connection, kind="advice", mti="0220", issuer="icbc-debit", amount=99_999_00, state="exception",
                    reason="TC_UNVERIFIED")  # no card paid for it: not cleared
    add_transaction(connection, issuer="icbc-debit", amount=9999, rc="51", state="declined")
    add_transaction(connection, issuer="icbc-debit", amount=7777, state="reversed")
    add_transaction(connection, issuer="icbc-debit", amount=8888, created=NOW - datetime.timedelta(days=1))
    report = clearing.daily_report(connection, day)
    lines = {line.key: line for line in report.issuers}
    assert (lines["icbc-debit"].count, lines["icbc-debit"].gross, lines["icbc-debit"].discount) == (2, 3500, 0)
    boc = lines[promotion["issuer"]]
    assert (boc.count, boc.gross, boc.discount, boc.net, boc.charged) == (2, 5300, 500, 4800, 4800)
    total = report.issuer_total
    assert (total.count, total.gross, total.discount, total.net) == (4, 8800, 500, 8300)
    assert (report.terminal_total.count, report.terminal_total.gross) == (4, 8800)
    assert report.acquirers[0].gross == 8800 and report.balanced
    assert sum(amount for _, amount in report.net_positions) == 0
    assert [(p.issuer, p.n, p.funded) for p in report.promotions] == [(promotion["issuer"], 1, 500)]
    html = operator.get(f"/dashboard/clearing?day={day.isoformat()}").get_data(as_text=True)
    assert "Sums match" in html and "¥88.00" in html and "¥5.00" in html


def test_batch_differences() -> None:
    rows = clearing.batch_differences({"debit_count": 3, "debit_amount": 900, "extra": {"n": 1}},
                                      {"debit_count": 2, "debit_amount": 900, "extra": {"n": 1}})
    assert rows == [("debit_amount", 900, 900, 0), ("debit_count", 3, 2, 1), ("extra.n", 1, 1, 0)]


def test_the_settlement_page_shows_differences(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    connection.execute(
        "INSERT INTO settlements (tid, batch, terminal_totals, host_totals, balanced, created)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        ("QP000001", 3, json.dumps({"debit_count": 3, "debit_amount": 1500}),
         json.dumps({"debit_count": 2, "debit_amount": 1000}), 0, NOW.isoformat()),
    )
    html = operator.get("/dashboard/settlements").get_data(as_text=True)
    assert "NOT balanced" in html and "¥5.00" in html and "debit_count" in html


# -- the virtual ECR -------------------------------------------------------------------------------------------


class Terminal:
    """The demo terminal's side of the ECR protocol: signed like every /api/v1 call."""

    def __init__(self, client: FlaskClient, world: World) -> None:
        entry = world.terminals()[0]
        self.client, self.tid, self.key = client, entry["tid"], bytes.fromhex(entry["key"])

    def request(self, method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None,
                query: str = "") -> TestResponse:
        signed = signing.sign(self.key, self.tid, method, path, body, now=time.time()) if headers is None else headers
        return self.client.open(path + query, method=method, data=body, headers=signed,
                                content_type="application/json" if body else None)

    def next(self, **kwargs: Any) -> TestResponse:
        return self.request("GET", "/api/v1/ecr/next", **kwargs)

    def accept(self, ecr_id: int, offer: str, seconds: int = 60) -> TestResponse:
        return self.request("POST", f"/api/v1/ecr/{ecr_id}/accept",
                            json.dumps({"offer": offer, "seconds": seconds}).encode())

    def result(self, ecr_id: int, result: dict[str, Any]) -> TestResponse:
        return self.request("POST", f"/api/v1/ecr/{ecr_id}/result", json.dumps(result).encode())


def test_the_ecr_round_trip(app: Flask, operator: FlaskClient, world: World,
                            connection: sqlite3.Connection) -> None:
    terminal = Terminal(app.test_client(), world)
    assert terminal.next().status_code == 204
    answer = _post(operator, "/dashboard/ecr", tid=terminal.tid, amount="12.34")
    assert answer.status_code == 302
    row = connection.execute("SELECT * FROM ecr_requests").fetchone()
    assert (row["tid"], row["amount"], row["state"]) == (terminal.tid, 1234, "pending")

    offered = terminal.next()
    assert offered.status_code == 200
    body = offered.json
    offer = body.pop("offer")
    assert body == {"id": row["id"], "tid": terminal.tid, "amount": 1234, "currency": "156",
                    "created": row["created"], "lease_seconds": 30.0}
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "offered"
    again = terminal.next()  # not accepted: offered again, under a new token; the first one is void
    assert again.json["id"] == row["id"] and again.json["offer"] != offer
    assert terminal.accept(row["id"], offer).status_code == 409
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "offered"
    taken = terminal.accept(row["id"], again.json["offer"])
    assert taken.json == {"id": row["id"], "state": "taken"}
    assert terminal.accept(row["id"], again.json["offer"]).status_code == 200  # a retry after a lost answer
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "taken"
    assert terminal.next().status_code == 204  # never handed out twice
    seen = connection.execute("SELECT last_seen FROM terminals WHERE tid = ?", (terminal.tid,)).fetchone()[0]
    assert seen is not None

    result = {"rc": "00", "text": "APPROVED", "stan": "000042"}
    assert terminal.result(row["id"], result).json == {"id": row["id"], "state": "done"}
    done = connection.execute("SELECT state, result FROM ecr_requests").fetchone()
    assert done["state"] == "done" and json.loads(done["result"]) == result
    assert terminal.result(row["id"], result).status_code == 200  # a retry after a lost answer
    assert terminal.result(row["id"], {**result, "rc": "05"}).status_code == 409
    assert terminal.accept(row["id"], again.json["offer"]).status_code == 409  # finished: not taken again
    states = [json.loads(r[0])["state"] for r in connection.execute("SELECT body FROM events WHERE kind = 'ecr'")]
    assert states == ["pending", "offered", "offered", "taken", "done"]
    page = operator.get("/dashboard/ecr").get_data(as_text=True)
    assert "APPROVED" in page and "000042" in page and "ecr-done" in page


def _open_ecr_sales(operator: FlaskClient) -> str:
    """The last cell of the demo terminal's row on /dashboard/terminals."""
    html = operator.get("/dashboard/terminals").get_data(as_text=True)
    found = re.search(r'QP000001</a></td>.*?<td class="num">([0-9]+)</td></tr>', html, re.S)
    assert found is not None
    return found.group(1)


def test_an_ecr_offer_lapses_back_to_pending_and_a_late_sale_shows_expired(
        app: Flask, operator: FlaskClient, world: World, connection: sqlite3.Connection) -> None:
    """The hand-over's clock, moved by hand (`now`): an offer nobody accepts goes back to the queue; a taken
    sale without a result by its deadline is shown expired on the page; its late result still completes it."""
    terminal = Terminal(app.test_client(), world)
    _post(operator, "/dashboard/ecr", tid=terminal.tid, amount="3.00")
    t0 = time.time()
    with db.transaction(connection):
        offered = handover.offer(connection, terminal.tid, now=t0)
    assert offered is not None and offered.state == "offered"
    with db.transaction(connection):
        handover.expire_overdue(connection, now=t0 + handover.LEASE_SECONDS - 1)
        assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "offered"
        handover.expire_overdue(connection, now=t0 + handover.LEASE_SECONDS + 1)
    row = connection.execute("SELECT state, offer FROM ecr_requests").fetchone()
    assert (row["state"], row["offer"]) == ("pending", None)
    assert terminal.accept(offered.id, offered.offer).status_code == 409  # the lapsed offer is void

    work = terminal.next().json  # offered again, accepted, then nothing comes back in time
    with db.transaction(connection):
        handover.accept(connection, terminal.tid, work["id"], work["offer"], 60, now=t0 - 120)
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "taken"
    assert _open_ecr_sales(operator) == "1"
    page = operator.get("/dashboard/ecr").get_data(as_text=True)  # the page sweeps: past the deadline
    assert "ecr-expired" in page and "no result from" in page
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "expired"
    assert _open_ecr_sales(operator) == "0"  # expired is no longer open
    assert terminal.next().status_code == 204  # taken once: never offered again
    assert terminal.accept(work["id"], work["offer"]).status_code == 409
    late = {"rc": "00", "text": "APPROVED", "stan": "000007"}
    assert terminal.result(work["id"], late).status_code == 200
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "done"
    states = [json.loads(r[0])["state"] for r in connection.execute("SELECT body FROM events WHERE kind = 'ecr'")]
    assert states == ["pending", "offered", "pending", "offered", "taken", "expired", "done"]


def test_the_ecr_protocol_refuses_what_it_must(app: Flask, operator: FlaskClient, world: World,
                                               connection: sqlite3.Connection) -> None:
    terminal = Terminal(app.test_client(), world)
    _post(operator, "/dashboard/ecr", tid=terminal.tid, amount="1.00")
    assert terminal.next(headers={}).status_code == 401  # unsigned
    forged = signing.sign(b"\x00" * 32, terminal.tid, "GET", "/api/v1/ecr/next", b"", now=time.time())
    assert terminal.next(headers=forged).json["reason"] == "bad_signature"
    replay = signing.sign(terminal.key, terminal.tid, "GET", "/api/v1/ecr/next", b"", now=time.time())
    offer = terminal.next(headers=replay).json["offer"]
    assert terminal.next(headers=replay).json["reason"] == "replayed_nonce"
    assert terminal.request("GET", "/api/v1/ecr/next", query="?tid=QP000002").status_code == 403
    ecr_id = connection.execute("SELECT id FROM ecr_requests").fetchone()[0]
    assert terminal.result(ecr_id, {"rc": "00", "text": "x", "stan": None}).status_code == 409  # not handed over
    for body in ({}, {"offer": offer}, {"offer": offer.upper(), "seconds": 60}, {"offer": offer, "seconds": 0},
                 {"offer": offer, "seconds": 3601}, {"offer": offer, "seconds": True}, [offer]):
        assert terminal.request("POST", f"/api/v1/ecr/{ecr_id}/accept", json.dumps(body).encode()).status_code == 400
    assert terminal.accept(ecr_id + 1, offer).status_code == 404
    assert terminal.accept(10**30, offer).status_code == 404
    assert terminal.accept(ecr_id, "0" * 32).status_code == 409
    assert connection.execute("SELECT state FROM ecr_requests").fetchone()[0] == "offered"
    assert terminal.accept(ecr_id, offer).status_code == 200
    assert terminal.result(ecr_id, {"rc": "0", "text": "x"}).status_code == 400
    assert terminal.result(ecr_id, {"rc": "00", "text": "x", "stan": 42}).status_code == 400
    assert terminal.result(ecr_id + 1, {"rc": "00", "text": "x", "stan": None}).status_code == 404
    _post(operator, "/dashboard/ecr", tid=terminal.tid, amount="2.00")
    pending = connection.execute("SELECT MAX(id) FROM ecr_requests").fetchone()[0]
    assert terminal.result(pending, {"rc": "00", "text": "x", "stan": None}).status_code == 409  # not taken yet
    for amount in ("0", "-1", "1.001", "abc", "1000000", "12,34", "1,2345"):  # "12,34" is not ¥1,234.00
        _post(operator, "/dashboard/ecr", tid=terminal.tid, amount=amount)
    assert _post(operator, "/dashboard/ecr", tid="NOPE0000", amount="1.00").status_code == 400
    assert connection.execute("SELECT COUNT(*) FROM ecr_requests").fetchone()[0] == 2
