"""The terminal's host link and journal against the real acquirer stub over HTTP: real cards' cryptograms,
lost answers, a host that goes away and comes back, crashes at every journal state, and settlement."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import reader
from hostdb import execute, rows
from reader import tap_icc
from werkzeug.serving import make_server

from acquirer_stub.api import service
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from emvcore.tags import mask_pan
from firmware.issuing.layout import World
from hostproto.messages import Totals
from hostproto.responses import AuthorizationAnswer, ReversalAnswer, parse_authorization_answer
from terminal.host.client import HostClient, HostRejected, HostTimeout, HostUnavailable
from terminal.host.link import HostLink
from terminal.journal.journal import MAX_STAN, Journal, JournalError, SaleId, State

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
TTQ_ONLINE = bytes.fromhex("26800080")  # online cryptogram required: the card answers with an ARQC
TTQ_OFFLINE = reader.TTQ_CARD_READER  # the card may approve offline: a TC, sent later as an advice
AUTHORIZATIONS = "/api/v1/authorizations"
REVERSALS = "/api/v1/reversals"
ADVICES = "/api/v1/advices"


# --- cards -------------------------------------------------------------------------------------------------------


def _card(world: World, issuer: str) -> dict[str, Any]:
    return next(c for c in world.cards() if c["issuer"] == issuer)


def sale(world: World, issuer: str, amount: int, *, offline: bool = False) -> dict[str, Any]:
    """What the kernel hands the link: the card's part of a 0200 (the link adds TID, STAN, date and batch)."""
    entry = _card(world, issuer)
    expiry = datetime.date.fromisoformat(entry["expiry"])
    body = {
        "pan": entry["pan"], "psn": f"{entry['psn']:02d}", "expiry": f"{expiry:%y%m}", "amount": amount,
        "currency": "156", "entry_mode": "072",
        "icc": tap_icc(world, issuer, amount, ttq=TTQ_OFFLINE if offline else TTQ_ONLINE),
    }
    if offline:
        assert bytes.fromhex(body["icc"]["9F10"])[4] == 0x90, "the card did not approve offline"
    return body


# --- the host's side ---------------------------------------------------------------------------------------------




def money(instance: Instance) -> dict[str, tuple[int | None, int]]:
    return {r["issuer"]: (r["balance"], r["credit_used"])
            for r in rows(instance, "SELECT issuer, balance, credit_used FROM accounts")}


def spent(instance: Instance, before: dict[str, tuple[int | None, int]]) -> dict[str, int]:
    """What each account paid since `before` (debit: balance down; credit: credit used up), non-zero only."""
    result = {}
    for issuer, (balance, used) in money(instance).items():
        old_balance, old_used = before[issuer]
        paid = (old_balance - balance) if balance is not None and old_balance is not None else used - old_used
        if paid:
            result[issuer] = paid
    return result


def host_transactions(instance: Instance, kind: str) -> list[sqlite3.Row]:
    return rows(instance, "SELECT * FROM transactions WHERE kind = ? ORDER BY id", kind)


# --- the terminal's side -----------------------------------------------------------------------------------------


class Server(Protocol):
    url: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Rig:
    """One terminal (the world's demo TID and key) with its journal file, against the served acquirer."""

    def __init__(self, world: World, instance: Instance, server: Server, root: Path) -> None:
        entry = world.terminals()[0]
        self.world, self.instance, self.server = world, instance, server
        self.tid, self.key = entry["tid"], bytes.fromhex(entry["key"])
        self.journal_path = root / "journal.sqlite"
        self.key_file = root / "journal.key"
        self._opened: list[Journal] = []

    def client(self, *, timeout: float = 5.0, url: str | None = None, **options: Any) -> HostClient:
        return HostClient(url or self.server.url, self.tid, self.key, timeout=timeout, **options)

    def journal(self) -> Journal:
        """A fresh Journal over the same file: what a restarted terminal gets, nothing carried in memory."""
        journal = Journal.open(self.journal_path, key_file=self.key_file)
        self._opened.append(journal)
        return journal

    def link(self, *, timeout: float = 5.0, url: str | None = None) -> HostLink:
        return HostLink(self.client(timeout=timeout, url=url), self.journal(), tid=self.tid)

    def close(self) -> None:
        for journal in self._opened:
            journal.close()

    def journal_bytes(self) -> bytes:
        files = [self.journal_path, Path(f"{self.journal_path}-wal"), Path(f"{self.journal_path}-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())


@pytest.fixture
def rig(world: World, instance: Instance, host_server: Server, tmp_path: Path) -> Iterator[Rig]:
    root = tmp_path / "terminal"
    root.mkdir()
    result = Rig(world, instance, host_server, root)
    yield result
    result.close()


def flush_until_done(link: HostLink, *, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = link.flush()
        if result.complete:
            return
        assert time.monotonic() < deadline, f"queue not delivered: {result}"
        time.sleep(0.1)


def assert_host_agrees(rig: Rig, journal: Journal) -> None:
    """Every sale the journal calls approved is approved on the host and vice versa; reversed sales are not
    standing on the host; every advice is on the host exactly once; nothing is left half-done."""
    host_sales = {r["stan"]: r["state"] for r in host_transactions(rig.instance, "authorization")}
    host_advices = [r["stan"] for r in host_transactions(rig.instance, "advice")]
    assert len(host_advices) == len(set(host_advices))
    for entry in journal.entries():
        if entry.kind == "advice":
            assert entry.state is State.ADVISED and entry.stan in host_advices
        elif entry.state is State.ANSWERED:
            assert host_sales[entry.stan] == ("approved" if entry.rc == "00" else "declined")
        elif entry.state is State.REVERSED:
            assert host_sales.get(entry.stan) in (None, "reversed"), entry
        else:
            assert entry.state is State.FAILED and entry.stan not in host_sales, entry
    assert {s for s, state in host_sales.items() if state == "approved"} == {
        e.stan for e in journal.entries() if e.approved}
    assert sorted(host_advices) == sorted(e.stan for e in journal.entries() if e.kind == "advice")
    assert journal.pending() == []


def assert_balanced(rig: Rig, link: HostLink, *, count: int, amount: int) -> None:
    """Settlement to the cent: the journal's totals, the host's own count and the expected sum all agree."""
    batch = link.journal.batch
    assert batch is not None
    expected = Totals(debit_count=count, debit_amount=amount, credit_count=0, credit_amount=0)
    assert link.journal.totals(batch) == expected
    result = link.settle()
    assert (result.rc, result.balanced, result.batch) == ("00", True, batch)
    assert result.terminal_totals == result.host_totals == expected
    connection = db.connect(rig.instance.database)
    try:
        assert service.host_totals(connection, rig.tid, batch) == expected
    finally:
        connection.close()
    assert result.new_batch == batch + 1 and link.journal.batch == batch + 1


# --- sign-on, approval, decline ------------------------------------------------------------------------------------


def test_sign_on_opens_a_batch_the_host_and_the_journal_agree_on(rig: Rig) -> None:
    link = rig.link()
    assert link.journal.batch is None
    assert link.sign_on() == 1
    assert link.journal.batch == 1
    echo = link.echo()
    assert (echo.rc, echo.signed_on, echo.batch) == ("00", True, 1)
    assert link.sign_on() == 2 and link.journal.batch == 2
    status = link.status()
    assert (status.batch, status.pending_reversals, status.pending_advices) == (2, 0, 0)


def test_an_approval_is_journaled_with_the_hosts_answer(rig: Rig) -> None:
    link = rig.link()
    before = money(rig.instance)
    answer = link.authorize(sale(rig.world, "icbc-debit", 12_34))  # signs on by itself first

    assert (answer.outcome, answer.rc, answer.approved, answer.text) == ("approved", "00", True, "Approved")
    assert (answer.charged, answer.discount, answer.promotion) == (1234, 0, None)
    assert answer.rrn and len(answer.rrn) == 12 and answer.auth_code and len(answer.auth_code) == 6
    assert answer.issuer_authentication_data and len(bytes.fromhex(answer.issuer_authentication_data)) == 10
    assert answer.raw["stan"] == answer.stan and answer.sale_id is not None
    entry = link.journal.entry(answer.sale_id)
    assert (entry.state, entry.rc, entry.rrn, entry.auth_code, entry.charged) == (
        State.ANSWERED, "00", answer.rrn, answer.auth_code, 1234)
    assert entry.approved and entry.batch == 1 and entry.stan == answer.stan
    pan = _card(rig.world, "icbc-debit")["pan"]
    assert entry.pan_masked == mask_pan(pan)
    (host,) = host_transactions(rig.instance, "authorization")
    assert (host["state"], host["stan"], host["rrn"], host["batch"]) == ("approved", entry.stan, entry.rrn, 1)
    assert spent(rig.instance, before) == {"icbc-debit": 1234}
    assert link.status().pending_reversals == 0


def test_a_decline_and_a_promotion(rig: Rig) -> None:
    link = rig.link()
    before = money(rig.instance)
    execute(rig.instance, "UPDATE issuers SET forced_decline = '51' WHERE code = 'ccb-debit'")
    declined = link.authorize(sale(rig.world, "ccb-debit", 77_00))
    assert (declined.outcome, declined.rc, declined.approved, declined.charged) == ("declined", "51", False, 0)
    assert link.journal.entry(declined.sale_id).state is State.ANSWERED
    promoted = link.authorize(sale(rig.world, "boc-credit", 50_00))
    assert (promoted.approved, promoted.charged, promoted.discount) == (True, 4500, 500) and promoted.promotion
    assert spent(rig.instance, before) == {"boc-credit": 4500}
    assert_host_agrees(rig, link.journal)
    assert_balanced(rig, link, count=1, amount=50_00)  # the sale amount, not the discounted charge


def test_a_77_signs_on_again_and_the_sale_goes_through_in_the_new_batch(rig: Rig) -> None:
    link = rig.link()
    assert link.sign_on() == 1
    rig.client().post("/api/v1/signon", {"mti": "0800", "tid": rig.tid, "stan": link.journal.next_stan(),
                                         "local_date": link.journal.today()})  # the host moves to batch 2
    answer = link.authorize(sale(rig.world, "abc-debit", 20_00))
    assert answer.approved and link.journal.batch == 3  # signed on again: the host opened batch 3
    assert [(e.rc, e.batch) for e in link.journal.entries()] == [("77", 1), ("00", 3)]
    assert_host_agrees(rig, link.journal)
    assert_balanced(rig, link, count=1, amount=20_00)


# --- lost answers: reversal 98 --------------------------------------------------------------------------------------


def test_a_host_timeout_is_reversed_98_and_the_money_comes_back(rig: Rig) -> None:
    link = rig.link(timeout=0.5)
    link.sign_on()
    before = money(rig.instance)
    execute(rig.instance, "UPDATE issuers SET added_latency_ms = 2000 WHERE code = 'cmb-debit'")
    body = sale(rig.world, "cmb-debit", 88_88)
    started = time.monotonic()
    answer = link.authorize(body)  # 0.5 s for the sale, 0.5 s for the immediate reversal attempt
    assert time.monotonic() - started < 1.9  # the terminal gave up while the host was still deciding

    assert (answer.outcome, answer.approved, answer.rc) == ("no answer", False, None)
    entry = link.journal.entry(answer.sale_id)
    assert entry.state in (State.NEEDS_REVERSAL, State.REVERSED) and entry.reversal_reason == "98"
    execute(rig.instance, "UPDATE issuers SET added_latency_ms = 0 WHERE code = 'cmb-debit'")
    flush_until_done(link)

    entry = link.journal.entry(entry.id)
    assert entry.state is State.REVERSED and entry.reversal_outcome == "reversed"
    (original,) = host_transactions(rig.instance, "authorization")
    assert (original["stan"], original["state"]) == (entry.stan, "reversed")  # the host had approved it
    (reversal,) = host_transactions(rig.instance, "reversal")
    assert (reversal["original_stan"], reversal["reason"], reversal["amount"]) == (entry.stan, "98", 88_88)
    assert spent(rig.instance, before) == {}
    assert_host_agrees(rig, link.journal)
    assert_balanced(rig, link, count=0, amount=0)


def test_a_host_that_never_answers(rig: Rig) -> None:
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(HostTimeout) as raised:
            rig.client(timeout=0.3, url=url).post("/api/v1/echo", {"mti": "0800"})
        assert raised.value.maybe_processed and time.monotonic() - started < 2

        link = rig.link(timeout=0.3, url=url)
        signon = {"mti": "0800", "tid": rig.tid, "stan": link.journal.next_stan(), "local_date": link.journal.today()}
        link.journal.set_batch(rig.client().post("/api/v1/signon", signon)["batch"])
        answer = link.authorize(sale(rig.world, "icbc-debit", 5_00))
    finally:
        silent.close()
    assert answer.outcome == "no answer"
    assert link.status().pending_reversals == 1
    blocked = link.authorize(sale(rig.world, "icbc-debit", 6_00))  # the reversal must go first: nothing sent
    assert blocked.outcome == "unavailable" and blocked.sale_id is None
    link.journal.close()

    back = rig.link()  # the network path is back: the same journal, the real host
    flush_until_done(back)
    (entry,) = back.journal.entries()
    # the host never saw the sale: the reversal left a tombstone there, so the request, were it delivered late,
    # would be declined instead of charging the card
    assert (entry.state, entry.reversal_reason, entry.reversal_outcome) == (State.REVERSED, "98", "orphan")
    assert host_transactions(rig.instance, "authorization") == []
    assert_host_agrees(rig, back.journal)


def test_a_5xx_is_treated_as_no_answer(rig: Rig) -> None:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("502 Bad Gateway", [("Content-Type", "application/json")])
        return [b'{"error":"bad gateway"}']

    proxy = make_server("127.0.0.1", 0, broken, threaded=True)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{proxy.server_port}"
        with pytest.raises(HostUnavailable) as raised:
            rig.client(url=url).post("/api/v1/echo", {"mti": "0800"})
        assert (raised.value.status, raised.value.maybe_processed) == (502, True)
        link = rig.link(url=url)
        link.journal.set_batch(1)
        answer = link.authorize(sale(rig.world, "icbc-debit", 7_00))
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()
    assert answer.outcome == "no answer"
    (entry,) = link.journal.entries()
    assert (entry.state, entry.reversal_reason) == (State.NEEDS_REVERSAL, "98")


def test_a_malformed_answer_is_no_answer_and_the_sale_is_reversed(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The host is input too: an approval the terminal cannot read (no RRN) is as good as none, reversed 06."""
    link = rig.link()
    link.sign_on()
    before = money(rig.instance)
    post = link.client.post

    def garbled(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = post(path, body)
        return {k: v for k, v in answer.items() if k != "rrn"} if path == "/api/v1/authorizations" else answer

    monkeypatch.setattr(link.client, "post", garbled)
    with caplog.at_level(logging.WARNING, logger="terminal.host"):
        answer = link.authorize(sale(rig.world, "cmb-debit", 12_34))
    assert (answer.outcome, answer.approved) == ("no answer", False)
    entry = link.journal.entry(answer.sale_id)
    assert (entry.state, entry.reversal_reason, entry.reversal_outcome) == (State.REVERSED, "06", "reversed")
    assert "malformed answer (rrn: required)" in caplog.text
    assert spent(rig.instance, before) == {}


def test_host_errors_that_stored_nothing(rig: Rig) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with pytest.raises(HostUnavailable) as down:
        rig.client(url=f"http://127.0.0.1:{port}").post("/api/v1/echo", {"mti": "0800"})
    assert down.value.status is None and not down.value.maybe_processed

    with pytest.raises(HostRejected) as forged:
        HostClient(rig.server.url, rig.tid, bytes(32)).post("/api/v1/echo", {"mti": "0800"})
    assert (forged.value.status, forged.value.reason) == (401, "bad_signature")
    with pytest.raises(HostRejected) as malformed:
        rig.client().post("/api/v1/echo", {"mti": "0800", "tid": rig.tid, "stan": "000001"})
    assert (malformed.value.status, malformed.value.details["field"]) == (400, "local_date")

    # a refused sale is not reversed: the host has nothing to undo
    link = rig.link()
    link.sign_on()
    bad = sale(rig.world, "icbc-debit", 9_00)
    bad["icc"]["9F02"] = "000000000001"  # DE4 ≠ 9F02: refused with 400
    answer = link.authorize(bad)
    assert answer.outcome == "rejected" and link.journal.entry(answer.sale_id).state is State.FAILED
    assert link.status().pending_reversals == 0
    assert_host_agrees(rig, link.journal)


def test_a_terminal_clock_off_by_minutes_resynchronises(rig: Rig) -> None:
    client = rig.client(clock=lambda: time.time() - 1000)
    answer = client.post("/api/v1/echo", {"mti": "0800", "tid": rig.tid, "stan": "000001",
                                          "local_date": f"{datetime.date.today():%m%d}"})
    assert answer["rc"] == "00" and abs(client.clock_offset - 1000) < 5


# --- pending reversals go first --------------------------------------------------------------------------------------


def test_a_pending_reversal_is_sent_before_the_next_authorization(rig: Rig) -> None:
    link = rig.link()
    before = money(rig.instance)
    first = link.authorize(sale(rig.world, "icbc-debit", 30_00))
    assert first.approved
    rig.server.stop()
    # the printer jammed after the approval: reversal 96, but the host has just gone away
    assert link.reverse(first.sale_id, "96") is False
    assert link.status().pending_reversals == 1
    stans_before = len(link.journal.entries())
    refused = link.authorize(sale(rig.world, "ccb-debit", 40_00))
    assert refused.outcome == "unavailable" and len(link.journal.entries()) == stans_before  # nothing sent
    rig.server.start()

    second = link.authorize(sale(rig.world, "ccb-debit", 40_00))
    assert second.approved
    kinds = [(r["kind"], r["stan"]) for r in rows(rig.instance, "SELECT kind, stan FROM transactions ORDER BY id")]
    reversal_stan = link.journal.entry(first.sale_id).reversal_stan
    assert kinds == [("authorization", first.stan), ("reversal", reversal_stan), ("authorization", second.stan)]
    assert link.journal.entry(first.sale_id).state is State.REVERSED
    assert spent(rig.instance, before) == {"ccb-debit": 40_00}
    assert_host_agrees(rig, link.journal)
    assert_balanced(rig, link, count=1, amount=40_00)


# --- store-and-forward ------------------------------------------------------------------------------------------------


def test_an_advice_waits_for_the_host_and_is_delivered_exactly_once(rig: Rig) -> None:
    link = rig.link()
    link.sign_on()
    before = money(rig.instance)
    rig.server.stop()
    receipt = link.advise(sale(rig.world, "bocom-debit", 12_34, offline=True))
    assert receipt.delivered is False
    assert link.status().pending_advices == 1
    failed = link.flush()
    assert (failed.sent, failed.remaining) == (0, 1) and failed.error
    assert link.journal.entry(receipt.entry_id).attempts == 2  # advise() tried once, flush() again
    rig.server.start()  # same port

    delivered = link.flush()
    assert (delivered.sent, delivered.remaining, delivered.error) == (1, 0, None)
    assert link.flush().sent == 0
    entry = link.journal.entry(receipt.entry_id)
    assert entry.state is State.ADVISED and entry.rrn
    (advice,) = host_transactions(rig.instance, "advice")
    assert (advice["stan"], advice["amount"], advice["state"]) == (receipt.stan, 12_34, "accepted")
    assert spent(rig.instance, before) == {"bocom-debit": 12_34}
    assert_host_agrees(rig, link.journal)
    assert_balanced(rig, link, count=1, amount=12_34)


# --- crashes at every journal state ---------------------------------------------------------------------------------

CRASH_POINTS = ("intent", "sent", "answered", "needs_reversal", "reversal_sent", "advice_queued", "advice_sent")


def _run_until_crash(rig: Rig, point: str) -> tuple[dict[str, Any], int]:
    """The link's steps by hand, stopping after `point` as a power cut would: what was committed stays, the
    in-memory objects are gone. Returns the request and the amount that must stand on the host afterwards."""
    journal, client = rig.journal(), rig.client()
    local_date = journal.today()
    batch = journal.batch
    if point.startswith("advice"):
        stan = journal.next_stan()
        body = {**sale(rig.world, "bocom-debit", 15_00, offline=True), "mti": "0220", "tid": rig.tid,
                "stan": stan, "local_date": local_date, "batch": batch}
        journal.queue_advice(stan, body)
        if point == "advice_sent":
            (item,) = journal.pending()
            journal.note_attempt(item.entry_id)
            assert client.post(ADVICES, item.body)["rc"] == "00"  # the answer is lost in the crash
        return body, 15_00
    stan = journal.next_stan()
    body = {**sale(rig.world, "icbc-debit", 25_00), "mti": "0200", "tid": rig.tid, "stan": stan,
            "local_date": local_date, "batch": batch}
    sale_id = journal.begin_sale(stan, local_date, 25_00, body)
    if point == "intent":
        return body, 0  # crashed before the request left
    answer = client.post(AUTHORIZATIONS, body)
    assert answer["rc"] == "00"
    if point == "sent":
        return body, 0  # approved on the host, the answer never journaled
    if point == "answered":
        journal.record_answer(sale_id, parse_authorization_answer(answer))
        return body, 25_00
    journal.mark_unknown(sale_id)
    if point == "needs_reversal":
        return body, 0
    (item,) = journal.pending()
    journal.note_attempt(item.entry_id)
    assert client.post(REVERSALS, item.body)["outcome"] == "reversed"  # acknowledged, but not journaled
    return body, 0


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_journal_state_leaves_host_and_journal_agreeing(rig: Rig, point: str) -> None:
    setup = rig.link()
    setup.sign_on()
    before = money(rig.instance)
    body, standing = _run_until_crash(rig, point)

    journal = rig.journal()  # the restarted terminal
    recovered = journal.recover()
    assert len(recovered) == (1 if point in ("intent", "sent") else 0)
    assert all(item.kind == "reversal" and item.body["reason"] == "98" for item in recovered)
    assert journal.recover() == []
    link = HostLink(rig.client(), journal, tid=rig.tid)
    flush_until_done(link)

    assert_host_agrees(rig, journal)
    issuer = "bocom-debit" if point.startswith("advice") else "icbc-debit"
    assert spent(rig.instance, before) == ({issuer: standing} if standing else {})
    if point == "reversal_sent":  # the repeat (0401) got the stored answer: one reversal, money back once
        assert len(host_transactions(rig.instance, "reversal")) == 1
        assert journal.entries()[0].reversal_outcome == "reversed"
    if point == "intent":  # the original, arriving late, is declined by the tombstone: never a charge
        late = rig.client().post(AUTHORIZATIONS, body)
        assert late["rc"] == "05"
        assert spent(rig.instance, before) == {}
    assert_balanced(rig, link, count=1 if standing else 0, amount=standing)


# --- settlement after all of it ---------------------------------------------------------------------------------------


def test_settlement_balances_to_the_cent_after_timeouts_reversals_advices_and_a_crash(rig: Rig) -> None:
    link = rig.link(timeout=0.5)
    before = money(rig.instance)
    assert link.authorize(sale(rig.world, "icbc-debit", 10_01)).approved
    assert link.authorize(sale(rig.world, "boc-credit", 50_00)).charged == 45_00
    execute(rig.instance, "UPDATE issuers SET forced_decline = '51' WHERE code = 'ccb-debit'")
    assert link.authorize(sale(rig.world, "ccb-debit", 3_03)).rc == "51"
    execute(rig.instance, "UPDATE issuers SET added_latency_ms = 1200 WHERE code = 'cmb-debit'")
    assert link.authorize(sale(rig.world, "cmb-debit", 7_07)).outcome == "no answer"
    execute(rig.instance, "UPDATE issuers SET added_latency_ms = 0 WHERE code = 'cmb-debit'")
    flush_until_done(link)  # the slow sale is committed on the host by now, and reversed
    jammed = link.authorize(sale(rig.world, "abc-debit", 2_22))
    assert jammed.approved and link.reverse(jammed.sale_id, "96") is True
    rig.server.stop()
    assert link.advise(sale(rig.world, "bocom-debit", 4_44, offline=True)).delivered is False
    rig.server.start()
    # the terminal dies here with a sale in INTENT and the queue not yet sent
    journal = rig.journal()
    stan = journal.next_stan()
    body = {**sale(rig.world, "psbc-debit", 6_06), "mti": "0200", "tid": rig.tid, "stan": stan,
            "local_date": journal.today(), "batch": journal.batch}
    journal.begin_sale(stan, journal.today(), 6_06, body)
    rig.client().post(AUTHORIZATIONS, body)

    restarted = HostLink(rig.client(), rig.journal(), tid=rig.tid)  # recovers by itself
    assert restarted.status().pending_reversals >= 1
    assert restarted.authorize(sale(rig.world, "hzb-debit", 8_08)).approved  # reversals go out first
    flush_until_done(restarted)
    assert_host_agrees(rig, restarted.journal)
    assert spent(rig.instance, before) == {"icbc-debit": 10_01, "boc-credit": 45_00, "bocom-debit": 4_44,
                                           "hzb-debit": 8_08}
    assert_balanced(rig, restarted, count=4, amount=10_01 + 50_00 + 4_44 + 8_08)
    assert restarted.authorize(sale(rig.world, "icbc-debit", 1_00)).approved  # the new batch works


def test_a_lost_settlement_answer_is_resent_under_the_same_stan(rig: Rig) -> None:
    link = rig.link()
    assert link.authorize(sale(rig.world, "icbc-debit", 3_33)).approved
    batch = link.journal.batch
    assert batch == 1
    # the 0500 reached the host, which closed the batch, and then the terminal died
    ticket = link.journal.begin_settlement(batch, link.journal.totals(batch))
    body = {"mti": "0500", "tid": rig.tid, "stan": ticket.stan, "local_date": ticket.local_date, "batch": batch,
            "totals": ticket.totals.as_dict()}
    assert rig.client().post("/api/v1/settlements", body)["balanced"] is True

    restarted = rig.link()
    result = restarted.settle()  # same STAN again: the host's stored answer, not a 77 for a closed batch
    assert (result.rc, result.balanced, result.new_batch) == ("00", True, 2)
    assert [r["stan"] for r in rows(rig.instance, "SELECT stan FROM settlements")] == [ticket.stan]
    assert restarted.journal.settled(1) and restarted.journal.batch == 2


def test_unbalanced_totals_keep_the_batch_open(rig: Rig) -> None:
    link = rig.link()
    link.sign_on()
    assert link.authorize(sale(rig.world, "icbc-debit", 1_11)).approved
    # a sale the journal never saw (another program on the same TID): the host counts it, we do not
    outside = {**sale(rig.world, "ccb-debit", 2_22), "mti": "0200", "tid": rig.tid, "stan": link.journal.next_stan(),
               "local_date": link.journal.today(), "batch": link.journal.batch}
    assert rig.client().post(AUTHORIZATIONS, outside)["rc"] == "00"
    result = link.settle()
    assert (result.rc, result.balanced, result.new_batch) == ("00", False, None)
    assert result.terminal_totals.debit_count == 1 and result.host_totals is not None
    assert result.host_totals.debit_count == 2
    assert link.journal.batch == 1


# --- the journal itself -----------------------------------------------------------------------------------------------


def test_the_journal_never_holds_a_pan_or_track_2_in_clear(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="terminal")
    link = rig.link()
    secrets_seen: list[bytes] = []
    sales = [sale(rig.world, "icbc-debit", 1_23), sale(rig.world, "boc-credit", 4_56)]
    for body in sales:
        assert link.authorize(body).approved
    rig.server.stop()
    offline = sale(rig.world, "bocom-debit", 7_89, offline=True)
    assert link.advise(offline).delivered is False
    assert link.authorize(sale(rig.world, "cmb-debit", 1_00)).outcome == "unavailable"
    for body in [*sales, offline]:
        pan, track2 = body["pan"], body["icc"]["57"]
        secrets_seen += [pan.encode(), bytes.fromhex(body["icc"]["5A"]), body["icc"]["5A"].encode(),
                         body["icc"]["5A"].lower().encode(), track2.encode(), track2.lower().encode(),
                         bytes.fromhex(track2), track2.split("D")[0].encode()]

    def scan() -> None:
        raw = rig.journal_bytes()
        assert raw
        for secret in secrets_seen:
            assert secret not in raw

    scan()  # with the advice's body sealed in the journal
    (item,) = rig.journal().pending()  # and it opens again after a restart, card data intact
    assert item.body["pan"] == offline["pan"] and item.body["icc"]["57"] == offline["icc"]["57"]
    rig.server.start()
    assert link.flush().complete
    scan()
    for record in caplog.records:
        text = record.getMessage()
        for body in [*sales, offline]:
            assert body["pan"] not in text and body["icc"]["57"] not in text
    assert any(mask_pan(sales[0]["pan"]) in r.getMessage() for r in caplog.records)
    assert stat.S_IMODE(os.stat(rig.key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rig.journal_path).st_mode) == 0o600


def test_a_journal_key_others_can_read_or_the_wrong_key_is_refused(rig: Rig, tmp_path: Path) -> None:
    journal = rig.journal()
    journal.queue_advice("000001", {"mti": "0220", "tid": rig.tid, "local_date": journal.today(), "batch": 1,
                                    "amount": 1, "pan": "6212345678901234"})
    os.chmod(rig.key_file, 0o644)
    with pytest.raises(JournalError, match="chmod 600"):
        rig.journal()
    other_key = tmp_path / "other.key"
    stranger = Journal.open(rig.journal_path, key_file=other_key)
    try:
        with pytest.raises(JournalError, match="does not open"):
            stranger.pending()
    finally:
        stranger.close()


def test_stans_persist_wrap_and_are_never_reused_within_a_day(rig: Rig) -> None:
    journal = rig.journal()
    journal.set_batch(7)
    assert [journal.next_stan() for _ in range(3)] == ["000001", "000002", "000003"]
    assert rig.journal().next_stan() == "000004"  # persisted: a restart continues
    connection = sqlite3.connect(rig.journal_path)
    try:
        connection.execute("UPDATE meta SET value = ? WHERE name = 'stan'", (str(MAX_STAN - 1),))
        connection.commit()
    finally:
        connection.close()
    assert journal.next_stan() == "999999"
    assert journal.next_stan() == "000005"  # wrapped, skipping the four already used today in this batch
    tomorrow = f"{datetime.date.today() + datetime.timedelta(days=1):%m%d}"
    journal.sign_off()  # a new day and no open batch: yesterday's STANs may come back
    assert journal.next_stan(tomorrow) == "000006"
    connection = sqlite3.connect(rig.journal_path)
    try:
        connection.execute("UPDATE meta SET value = '0' WHERE name = 'stan'")
        connection.commit()
    finally:
        connection.close()
    assert journal.next_stan(tomorrow) == "000001"


def test_journal_transitions_are_checked(rig: Rig) -> None:
    journal = rig.journal()
    request = {"mti": "0200", "tid": rig.tid, "batch": 1, "pan": "6212345678901234", "entry_mode": "072"}
    sale_id = journal.begin_sale(journal.next_stan(), journal.today(), 1_00, request)
    approved = AuthorizationAnswer("0210", "00", "Approved", "000001", rrn="263400000001", auth_code="123456",
                                   amount=1_00, charged=1_00, discount=0, promotion=None, batch=1)
    journal.record_answer(sale_id, approved)
    with pytest.raises(JournalError):
        journal.record_answer(sale_id, approved)
    with pytest.raises(JournalError):
        journal.queue_reversal(sale_id, "99")
    journal.queue_reversal(sale_id, "96")
    journal.queue_reversal(sale_id, "96")  # idempotent
    (item,) = journal.pending()
    assert item.body["reason"] == "96" and item.body["original_stan"] == "000001" and "pan" not in item.body
    journal.reversal_done(sale_id, ReversalAnswer("0410", "00", "Approved", "000002", "000001", "reversed"))
    journal.reversal_done(sale_id)  # idempotent
    assert journal.entry(sale_id).state is State.REVERSED and journal.pending() == []
    with pytest.raises(JournalError):
        journal.entry(SaleId(999))
    failed = journal.begin_sale(journal.next_stan(), journal.today(), 2_00, request)
    journal.mark_failed(failed, "host not reachable")
    with pytest.raises(JournalError):
        journal.mark_unknown(failed)
    assert journal.counts()["REVERSED"] == 1 and journal.counts()["FAILED"] == 1
    assert journal.totals(1) == Totals(0, 0, 0, 0)
    assert json.loads(json.dumps(journal.counts()))  # plain data for a status screen
