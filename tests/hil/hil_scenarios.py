"""The scenario catalogue: every feature and every failure a counter sees, each a named function that runs
against a `Bench` and asserts three things — the outcome at the counter, the acquirer's record of it
(kind / state / rc / amount rows) and the lights and tones the shopper got.

The same functions run on the software rig and on real PN532s; what only the software rig can do is
declared in `needs` (see hil_rig).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil_bench import Bench, alert_beeps_paired, signals
from hil_rig import RESET_LINE, UART_FAULTS

from acquirer_stub.store import db
from acquirer_stub.tsp import lifecycle
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import layout
from firmware.jsonfile import read_json
from hostproto.messages import response_text
from hostproto.money import format_yuan
from terminal.host.client import HostClient

DEBIT, CREDIT = "icbc-debit", "cmb-credit"
ONLINE = 250_000  # ¥2,500.00: above the floor limit (¥2,000), so the card must send an ARQC
OFFLINE = 800  # ¥8.00: under the card's offline limit; it approves with a TC and fDDA
PHONE_AMOUNT = 1_234  # ¥12.34 on the phone: online (tokens never approve offline), 10 % promotion
PHONE_CHARGED = 1_111

# What the shopper sees and hears; see hil_bench.signals for the notation.
READY = ["lights 1", "Present card"]
CARD_READ = ["lights 12", "Processing", "lights 1234", "♪success", "Remove card"]
SEE_PHONE = ["lights 12", "Processing", "lights 1", "♪alert", "See phone"]
TRY_AGAIN = ["lights 12", "Processing", "lights 1", "♪alert", "Present card again"]


def approved(text: str) -> list[str]:
    return [text]


def declined(reason: str) -> list[str]:
    return ["lights -", "♪alert", f"Declined: {reason}"]


@dataclass(frozen=True)
class Scenario:
    name: str
    proves: str
    run: Callable[[Bench], None]
    needs: frozenset[str] = field(default_factory=frozenset)
    link: bool = False  # its outcome hangs on the reader's link (frames, chaining, a card leaving, a reset), not
    # only on the kernel and the host: by default the software rig runs it on every interface, the rest on HSU only

    def __str__(self) -> str:
        return self.name


CATALOGUE: list[Scenario] = []


def scenario(name: str, proves: str, *, needs: tuple[str, ...] = (),
             link: bool = False) -> Callable[[Callable[[Bench], None]], Any]:
    def register(run: Callable[[Bench], None]) -> Callable[[Bench], None]:
        assert all(s.name != name for s in CATALOGUE), f"two scenarios named {name}"
        CATALOGUE.append(Scenario(name, proves, run, frozenset(needs), link))
        return run

    return register


def expect_signals(bench: Bench, events: list[tuple[str, str, object]], expected: list[str]) -> None:
    got = signals(events)
    bench.trace.facts["lights and tones"] = " → ".join(got)
    assert got == expected, f"lights/tones/messages:\n got      {got}\n expected {expected}"
    assert alert_beeps_paired(events), "an alert was not two beeps"


def expect_rows(bench: Bench, expected: list[tuple[str, str, str, int]]) -> None:
    assert bench.rows() == expected


def _fact(bench: Bench, **facts: object) -> None:
    bench.trace.facts.update(facts)


# -- payments ---------------------------------------------------------------------------------------------------


@scenario("online-approval", "a plain debit card over the floor limit: ARQC, the issuer approves online (00)",
          link=True)
def online_approval(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        sale = pos.sale(ONLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, rc=sale.rc, cryptogram=sale.cryptogram)
    assert (sale.outcome, sale.rc, sale.cryptogram, sale.charged) == ("Approved", "00", "ARQC", ONLINE)
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00"))


@scenario("offline-fdda-approval", "a small sale on a plain card: the card approves offline (TC), fDDA v01 checks it, "
          "the host hears of it as an advice", link=True)
def offline_approval(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        sale = pos.sale(OFFLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, cryptogram=sale.cryptogram, oda=sale.oda)
    assert (sale.outcome, sale.cryptogram, sale.rc) == ("Approved", "TC", None)
    assert sale.oda.startswith("fdda-v01")
    expect_rows(bench, [("advice", "accepted", "00", OFFLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥8.00"))


def _declined_online(bench: Bench, issuer: str, rc: str, amount: int = ONLINE, *, card: Path | None = None) -> None:
    bench.rig.card.present(card or bench.card(issuer))
    with bench.terminal() as pos:
        sale = pos.sale(amount)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, rc=sale.rc, text=sale.text)
    assert (sale.outcome, sale.rc, sale.text, sale.charged) == ("Declined", rc, response_text(rc), 0)
    expect_rows(bench, [("authorization", "declined", rc, amount)])
    expect_signals(bench, events, READY + CARD_READ + declined(response_text(rc)))


@scenario("issuer-decline", "the issuer declines (05, do not honour): the counter says so, no money moves")
def issuer_decline(bench: Bench) -> None:
    bench.execute("UPDATE issuers SET forced_decline = '05' WHERE code = ?", CREDIT)
    _declined_online(bench, CREDIT, "05")
    assert bench.money(CREDIT) == 0


@scenario("insufficient-funds", "a debit account without enough money: 51 from the issuer")
def insufficient_funds(bench: Bench) -> None:
    bench.execute("UPDATE accounts SET balance = 10000 WHERE issuer = ?", "ccb-debit")
    _declined_online(bench, "ccb-debit", "51")
    assert bench.money("ccb-debit") == -10000  # the ¥100.00 is still there


@scenario("wrong-cryptogram", "a cloned card with the wrong key: its ARQC does not verify, 88 (ARQC mismatch)")
def wrong_cryptogram(bench: Bench) -> None:
    bench.edit_card("abc-credit", lambda app: app["keys"].update(icc_master_key="11" * 16))
    _declined_online(bench, "abc-credit", "88")
    (row,) = bench.query("SELECT reason FROM transactions")
    assert row["reason"] == "ARQC_MISMATCH"  # the host's own record names the cause; the counter only sees 88


@scenario("replayed-atc", "a card whose ATC was set back replays a counter the issuer has seen: 05 (ATC replay)")
def replayed_atc(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        first = pos.sale(ONLINE)
        bench.rig.card.remove()
        bench.edit_card(DEBIT, lambda app: app["state"].update(atc=app["state"]["atc"] - 1))
        bench.rig.card.present(bench.card(DEBIT))
        second = pos.sale(ONLINE)
        events = pos.ui_events()
    _fact(bench, first=first.rc, second=second.rc, atc=(first.atc, second.atc))
    assert (first.outcome, first.rc, second.outcome, second.rc) == ("Approved", "00", "Declined", "05")
    assert second.atc == first.atc
    expect_rows(bench, [("authorization", "approved", "00", ONLINE), ("authorization", "declined", "05", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00")
                   + READY + CARD_READ + declined(response_text("05")))


@scenario("expired-card", "the world's expired card over the floor limit: an ARQC, the kernel leaves the expiry to the "
          "issuer, which answers 54")
def expired_card(bench: Bench) -> None:
    _declined_online(bench, "hsb-debit", "54", card=bench.named_card(layout.EXPIRED_CARD))


@scenario("expired-card-offline", "the world's expired card on a small sale: it offers a TC, the kernel declines it "
          "(5F24 passed, the CTQ does not say go online) before fDDA, and no money moves")
def expired_card_offline(bench: Bench) -> None:
    bench.rig.card.present(bench.named_card(layout.EXPIRED_CARD))
    with bench.terminal() as pos:
        sale = pos.sale(OFFLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, cryptogram=sale.cryptogram, oda=sale.oda, text=sale.message)
    assert (sale.outcome, sale.message, sale.cryptogram, sale.oda) == ("Declined", "Card expired", "TC",
                                                                       "not-performed")
    assert sale.charged == 0 and sale.field55_tags == []
    expect_rows(bench, [])  # the host never hears of it: nothing to authorise, nothing to advise
    expect_signals(bench, events, READY + CARD_READ + declined("Card expired"))


@scenario("quasi-credit-card", "the world's quasi-credit card (AID A000000333010103, on by default): online "
          "approval (00) over the floor limit, then an offline TC with fDDA under it")
def quasi_credit_card(bench: Bench) -> None:
    bench.rig.card.present(bench.named_card(layout.QUASI_CREDIT_CARD))
    with bench.terminal() as pos:
        online = pos.sale(ONLINE)
        offline = pos.sale(OFFLINE)
        events = pos.ui_events()
    _fact(bench, aid=online.aid, label=online.label, online=online.rc, offline=offline.cryptogram)
    assert (online.outcome, online.rc, online.cryptogram, online.aid) == ("Approved", "00", "ARQC",
                                                                          "A000000333010103")
    assert (offline.outcome, offline.cryptogram, offline.aid) == ("Approved", "TC", "A000000333010103")
    assert offline.oda.startswith("fdda-v01") and online.label == "UICS QCREDIT"
    expect_rows(bench, [("authorization", "approved", "00", ONLINE), ("advice", "accepted", "00", OFFLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00")
                   + READY + CARD_READ + approved("Approved ¥8.00"))


# -- the phone -------------------------------------------------------------------------------------------------


def fingerprint_on_see_phone(bench: Bench) -> Callable[[bytes, bytes | None], None]:
    """The shopper: when the phone answers "see phone" (6986), they look at it and touch the sensor."""

    def shopper(command: bytes, answer: bytes | None) -> None:
        if answer is not None and answer[-2:] == b"\x69\x86":
            assert bench.fingerprint()

    return shopper


@scenario("see-phone-fingerprint", "a locked phone: See phone, the fingerprint, the re-tap is approved with the "
          "bank's promotion (CDCVM, token ARQC)", link=True)
def see_phone(bench: Bench) -> None:
    bench.rig.card.present(bench.phone, on_exchange=fingerprint_on_see_phone(bench))
    with bench.terminal() as pos:
        sale = pos.sale(PHONE_AMOUNT)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, taps=sale.taps, charged=sale.charged, discount=sale.discount)
    assert (sale.outcome, sale.rc, sale.taps, sale.charged, sale.discount) == ("Approved", "00", 2, 1111, 123)
    assert sale.pan_masked and sale.pan_masked.startswith("628888")  # the token, never the card's PAN
    expect_rows(bench, [("authorization", "approved", "00", PHONE_AMOUNT)])
    expect_signals(bench, events, READY + SEE_PHONE + CARD_READ + approved("Approved ¥11.11 (¥1.23 off)"))


def _phone_sale(bench: Bench, amount: int = PHONE_AMOUNT) -> tuple[Any, list[tuple[str, str, object]]]:
    bench.rig.card.present(bench.phone)
    with bench.terminal() as pos:
        sale = pos.sale(amount)
        events = pos.ui_events()
    return sale, events


@scenario("eight-cards-default", "a phone with eight cards pays with its default card (Bank of China credit)",
          link=True)
def eight_cards_default(bench: Bench) -> None:
    wallet = Wallet.load(bench.phone)
    assert len(wallet.cards) == 8
    assert bench.fingerprint()
    sale, events = _phone_sale(bench)
    (row,) = bench.query("SELECT issuer, token_id FROM transactions")
    _fact(bench, issuer=row["issuer"], label=sale.label)
    assert (sale.outcome, sale.taps, row["issuer"]) == ("Approved", 1, "boc-credit") and row["token_id"]
    expect_rows(bench, [("authorization", "approved", "00", PHONE_AMOUNT)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥11.11 (¥1.23 off)"))


@scenario("non-default-card-chosen", "the holder picks another of the eight cards for this tap; the next tap is "
          "back on the default")
def non_default_card(bench: Bench) -> None:
    Wallet.load(bench.phone).choose_for_next_tap("icbc-debit")
    bench.trace.add("rig", "card icbc-debit chosen on the phone for the next tap")
    assert bench.fingerprint()
    sale, events = _phone_sale(bench)
    (row,) = bench.query("SELECT issuer FROM transactions")
    _fact(bench, issuer=row["issuer"], label=sale.label)
    assert (sale.outcome, row["issuer"], sale.charged, sale.discount) == ("Approved", "icbc-debit", PHONE_AMOUNT, 0)
    assert Wallet.load(bench.phone).next_tap_card is None
    expect_rows(bench, [("authorization", "approved", "00", PHONE_AMOUNT)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥12.34"))


@scenario("lost-phone-and-found", "I lost this phone: its tokens are suspended, the tap is declined (05); "
          "I found it: resumed, approved")
def lost_phone(bench: Bench) -> None:
    device = bench.world.tsp()["tokens"][0]["wallet_id"]
    connection = db.connect(bench.instance.database)
    try:
        bench.trace.add("host", "cardholder: I lost this phone")
        assert lifecycle.set_device_wallet(connection, device, False, "LOST")
        bench.rig.card.present(bench.phone, on_exchange=fingerprint_on_see_phone(bench))
        with bench.terminal() as pos:
            lost = pos.sale(PHONE_AMOUNT)
            bench.trace.add("host", "cardholder: I found this phone")
            assert lifecycle.set_device_wallet(connection, device, True, "FOUND")
            found = pos.sale(PHONE_AMOUNT)
            events = pos.ui_events()
    finally:
        connection.close()
    _fact(bench, lost=lost.rc, found=found.rc)
    assert (lost.outcome, lost.rc, found.outcome, found.rc) == ("Declined", "05", "Approved", "00")
    expect_rows(bench, [("authorization", "declined", "05", PHONE_AMOUNT),
                        ("authorization", "approved", "00", PHONE_AMOUNT)])
    expect_signals(bench, events, READY + SEE_PHONE + CARD_READ + declined(response_text("05"))
                   + READY + SEE_PHONE + CARD_READ + approved("Approved ¥11.11 (¥1.23 off)"))


# -- transit ---------------------------------------------------------------------------------------------------

FARE = 200
FARE_READ = ["lights 12", "Processing"]


@scenario("transit-fare", "a ¥2.00 metro fare on the phone's transit card, express mode (no fingerprint), no host",
          link=True)
def transit_fare(bench: Bench) -> None:
    bench.rig.card.present(bench.phone)
    with bench.terminal() as pos:
        result = pos.fare(FARE)
        events = pos.ui_events()
    _fact(bench, outcome=result.outcome, balance=(result.balance_before, result.balance_after))
    assert (result.outcome, result.amount, result.balance_after) == ("Approved", FARE, 5000 - FARE)
    assert result.tac is not None and len(result.tac) == 4
    expect_rows(bench, [])  # the TAC goes to the transit clearing centre, not to the acquirer
    expect_signals(bench, events, READY + FARE_READ + ["lights 1234", "♪success", "Approved ¥2.00"])


def _transit_balance(bench: Bench) -> int:
    return int(read_json(bench.transit_card())["applications"][0]["state"]["balance"])


@scenario("transit-balance-too-low", "a fare above the transit card's balance: declined by the card (9401), "
          "nothing debited")
def transit_low(bench: Bench) -> None:
    bench.rig.card.present(bench.transit_card())
    with bench.terminal() as pos:
        result = pos.fare(6_000)
        events = pos.ui_events()
    _fact(bench, outcome=result.outcome, message=result.message)
    assert (result.outcome, result.message) == ("Declined", "Insufficient balance")
    assert _transit_balance(bench) == 5000
    expect_rows(bench, [])
    expect_signals(bench, events, READY + FARE_READ + declined("Insufficient balance"))


@scenario("torn-transit-recovered", "the transit card leaves right after it debited (torn DEBIT): the re-tap asks "
          "GET TRANSACTION PROVE and completes the fare without charging twice", link=True)
def torn_transit(bench: Bench) -> None:
    bench.rig.card.present(bench.transit_card(), remove_after=3, tear=True)  # SELECT, INITIALIZE, DEBIT
    with bench.terminal() as pos:
        result = pos.fare(FARE)
        events = pos.ui_events()
    _fact(bench, outcome=result.outcome, recovered=result.recovered)
    assert (result.outcome, result.recovered, result.amount) == ("Approved", True, FARE)
    assert _transit_balance(bench) == 5000 - FARE  # once
    expect_rows(bench, [])
    expect_signals(bench, events, READY + FARE_READ + ["lights 1", "♪alert", "Present card again"] + FARE_READ
                   + ["lights 1234", "♪success", "Approved ¥2.00"])


# -- the card leaves too early ----------------------------------------------------------------------------------


def _removed_at(bench: Bench, exchange: int, amount: int, row: tuple[str, str, str, int], text: str) -> None:
    bench.rig.card.present(bench.card(DEBIT), remove_after=exchange)
    with bench.terminal() as pos:
        sale = pos.sale(amount)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, taps=sale.taps)
    assert (sale.outcome, sale.taps) == ("Approved", 2)
    expect_rows(bench, [row])
    expect_signals(bench, events, READY + TRY_AGAIN + CARD_READ + approved(text))


for _number, _apdu in ((1, "PPSE"), (2, "SELECT"), (3, "GPO")):
    scenario(f"card-removed-at-{_apdu.lower()}", f"the card leaves at its {_apdu} (APDU {_number}): "
             "Present card again, the re-tap is approved online")(
        lambda bench, n=_number: _removed_at(bench, n, ONLINE, ("authorization", "approved", "00", ONLINE),
                                             "Approved ¥2,500.00"))


@scenario("card-removed-at-read-record", "an offline tap where the card leaves during READ RECORD (APDU 4): the "
          "re-tap is approved offline, one advice", link=True)
def removed_at_read_record(bench: Bench) -> None:
    _removed_at(bench, 4, OFFLINE, ("advice", "accepted", "00", OFFLINE), "Approved ¥8.00")


# -- the reader and its UART ------------------------------------------------------------------------------------


def _reinits(bench: Bench) -> int:
    return sum(1 for e in bench.trace.sorted_events() if e.lane == "uart" and "reader → chip D4 GetFirmwareVersion"
               in e.text)


@scenario("reader-silent-reset", "the PN532 stops answering: the terminal pulses RSTPDN, initialises it again and "
          "the sale goes on", needs=(RESET_LINE,), link=True)
def reader_silent(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        before = _reinits(bench)
        bench.rig.hang_reader()
        sale = pos.sale(ONLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, reader_initialisations=_reinits(bench))
    assert sale.outcome == "Approved"
    assert _reinits(bench) > before  # GetFirmwareVersion again: the chip was reset and set up anew
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00"))


@scenario("corrupted-uart-frame", "a byte of the PN532's answer is corrupted on the UART: the frame is refused, "
          "the reader is reset and the sale goes on", needs=(UART_FAULTS,))
def corrupted_frame(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        before = _reinits(bench)
        bench.rig.corrupt_reader_frame(4)  # LCS: read first on every interface (an I2C driver reads a frame's
        # head, then asks for it again with a NACK: a byte further on would be read only from the clean resend)
        sale = pos.sale(ONLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome)
    assert sale.outcome == "Approved"
    assert _reinits(bench) > before
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00"))


# -- the host --------------------------------------------------------------------------------------------------


@scenario("host-timeout-reversal", "the issuer answers after the terminal gave up: declined at the counter, "
          "reversal 98, the money comes back")
def host_timeout(bench: Bench) -> None:
    bench.execute("UPDATE issuers SET added_latency_ms = 1500 WHERE code = ?", DEBIT)
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal(host_timeout=1.0) as pos:
        sale = pos.sale(ONLINE)
        bench.execute("UPDATE issuers SET added_latency_ms = 0 WHERE code = ?", DEBIT)
        for _ in range(20):
            if pos.host.flush().complete:
                break
        assert pos.host.status().pending_reversals == 0
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, message=sale.message)
    assert (sale.outcome, sale.rc, sale.message) == ("Declined", None, "Declined: No answer from the host")
    expect_rows(bench, [("authorization", "reversed", "00", ONLINE), ("reversal", "reversed", "00", ONLINE)])
    (reversal,) = bench.query("SELECT reason FROM transactions WHERE kind = 'reversal'")
    assert reversal["reason"] == "98"
    assert bench.money(DEBIT) == -500_000  # the whole balance is back
    expect_signals(bench, events, READY + CARD_READ + declined("No answer from the host"))


@scenario("host-down-advice-later", "the host is down during an offline approval: the advice waits in the journal "
          "and is delivered once the host is back")
def host_down(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        bench.host.stop()
        bench.trace.add("host", "acquirer stopped")
        sale = pos.sale(OFFLINE)
        assert pos.host.status().pending_advices == 1
        assert bench.rows() == []
        bench.host.start()
        bench.trace.add("host", "acquirer back on the same port")
        assert pos.host.flush().complete
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, cryptogram=sale.cryptogram)
    assert (sale.outcome, sale.cryptogram) == ("Approved", "TC")
    expect_rows(bench, [("advice", "accepted", "00", OFFLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥8.00"))


@scenario("over-contactless-limit", "¥20,000.00 is at the contactless limit: insert or swipe, nothing is sent")
def over_limit(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        sale = pos.sale(2_000_000)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, message=sale.message)
    assert (sale.outcome, sale.message) == ("Try Another Interface", "Insert or swipe card")
    expect_rows(bench, [])
    expect_signals(bench, events, [*READY, "lights 12", "Processing", "lights -", "♪alert",
                                   "Declined: Insert or swipe card"])


CVM_AMOUNT = 150_000  # ¥1,500.00: over the CVM limit (¥1,000), under the floor limit


@scenario("cvm-limit-cdcvm-phone", "over the CVM limit on a phone: the fingerprint is the CVM (CDCVM), no signature")
def cvm_phone(bench: Bench) -> None:
    assert bench.fingerprint()
    sale, events = _phone_sale(bench, CVM_AMOUNT)
    _fact(bench, outcome=sale.outcome, cvm=sale.cvm)
    assert (sale.outcome, sale.cvm) == ("Approved", "cdcvm")
    assert not any("Signature" in line for line in sale.receipt("M"))
    expect_rows(bench, [("authorization", "approved", "00", CVM_AMOUNT)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥1,480.00 (¥20.00 off)"))


@scenario("cvm-limit-signature-card", "over the CVM limit on a plain card: the card asks for a signature, the "
          "receipt has the line for it")
def cvm_card(bench: Bench) -> None:
    bench.rig.card.present(bench.card("ccb-debit"))
    with bench.terminal() as pos:
        sale = pos.sale(CVM_AMOUNT)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, cvm=sale.cvm)
    assert (sale.outcome, sale.cvm) == ("Approved", "signature")
    assert any(line.startswith("Signature required") for line in sale.receipt("M"))
    expect_rows(bench, [("authorization", "approved", "00", CVM_AMOUNT)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥1,500.00"))


@scenario("promotion-applied", "the Bank of China promotion on a plain card: 10 % off, capped at ¥20, charged "
          "¥2,480.00 for ¥2,500.00")
def promotion(bench: Bench) -> None:
    bench.rig.card.present(bench.card("boc-credit"))
    with bench.terminal() as pos:
        sale = pos.sale(ONLINE)
        events = pos.ui_events()
    _fact(bench, outcome=sale.outcome, discount=sale.discount, promotion=sale.promotion)
    assert (sale.outcome, sale.discount, sale.charged) == ("Approved", 2_000, 248_000)
    (row,) = bench.query("SELECT charged, discount FROM transactions")
    assert (row["charged"], row["discount"]) == (248_000, 2_000)
    assert bench.money("boc-credit") == 248_000
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,480.00 (¥20.00 off)"))


@scenario("settlement-balanced", "an online and an offline sale, then settlement: terminal and host totals agree, "
          "the batch closes")
def settlement(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        online, offline = pos.sale(ONLINE), pos.sale(OFFLINE)
        result = pos.settle()
        events = pos.ui_events()
    _fact(bench, balanced=result.balanced, totals=result.terminal_totals)
    assert (online.outcome, offline.outcome, offline.cryptogram) == ("Approved", "Approved", "TC")
    assert result.balanced and result.rc == "00" and result.terminal_totals == result.host_totals
    assert result.terminal_totals.as_dict() == {"debit_count": 2, "debit_amount": ONLINE + OFFLINE,
                                                "credit_count": 0, "credit_amount": 0}
    (settled,) = bench.query("SELECT balanced, batch FROM settlements")
    assert (settled["balanced"], settled["batch"]) == (1, result.batch)
    expect_rows(bench, [("authorization", "approved", "00", ONLINE), ("advice", "accepted", "00", OFFLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00")
                   + READY + CARD_READ + approved("Approved ¥8.00"))


@scenario("duplicate-request-once", "the terminal's authorization sent again (same TID, STAN, date): the host "
          "answers with the stored answer and moves the money once")
def duplicate(bench: Bench) -> None:
    bench.rig.card.present(bench.card(DEBIT))
    with bench.terminal() as pos:
        sale = pos.sale(ONLINE)
        events = pos.ui_events()
        body = next(b for path, b in reversed(bench.host.requests) if path.endswith("/authorizations"))
        entry = bench.world.terminals()[0]
        client = HostClient(bench.host.url, entry["tid"], bytes.fromhex(entry["key"]))
        bench.trace.add("host", f"the same authorization (STAN {body['stan']}) sent again")
        again = client.post("/api/v1/authorizations", body)
    (row,) = bench.query("SELECT response FROM transactions")
    _fact(bench, outcome=sale.outcome, repeat_rc=again.get("rc"))
    assert sale.outcome == "Approved" and again == json.loads(row["response"])
    assert bench.money(DEBIT) == ONLINE - 500_000  # charged once
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)])
    expect_signals(bench, events, READY + CARD_READ + approved("Approved ¥2,500.00"))


@scenario("all-issuers-approve", "each of the 20 credit and 12 debit issuers' cards pays one online sale")
def all_issuers(bench: Bench) -> None:
    # each issuer's own card (the world's quasi-credit and expired cards have scenarios of their own)
    cards = [c for c in bench.world.cards() if c["file"] == str(layout.card_file(c["issuer"]))]
    kinds = sorted(c["kind"] for c in cards)
    assert (kinds.count("credit"), kinds.count("debit")) == (20, 12)
    expected: list[str] = []
    with bench.terminal() as pos:
        for entry in cards:
            bench.rig.card.present(bench.card(entry["issuer"]))
            sale = pos.sale(ONLINE)
            assert (sale.outcome, sale.rc) == ("Approved", "00"), (entry["issuer"], sale.message)
            expected += READY + CARD_READ + approved(
                f"Approved {format_yuan(sale.charged)}"
                + (f" ({format_yuan(sale.discount)} off)" if sale.discount else ""))
        events = pos.ui_events()
    issuers = [r["issuer"] for r in bench.query("SELECT issuer FROM transactions ORDER BY id")]
    _fact(bench, issuers=len(set(issuers)))
    assert issuers == [c["issuer"] for c in cards]
    expect_rows(bench, [("authorization", "approved", "00", ONLINE)] * len(cards))
    expect_signals(bench, events, expected)


def scenario_by_name(name: str) -> Scenario:
    return next(s for s in CATALOGUE if s.name == name)
