"""Kernel rules for real cards: the Entry Point's AIDs and per-AID limits, quasi-credit, the application dates
(5F24 / 5F25) and what the reasons (logged) show — against the test world's own cards."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from emvcore import tlv
from emvcore.qpboc import CREDIT_AID, DEBIT_AID, QUASI_CREDIT_AID
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing import layout
from firmware.issuing.layout import World
from terminal.kernel import KernelParams, KernelResult, Message, Outcome, run
from terminal.kernel.dates import application_dates, month_end
from terminal.kernel.entry import PPSE_NAME, kernel_for
from terminal.kernel.params import AidLimits

TODAY = datetime.date.today()
UN = bytes.fromhex("0A1B2C3D")
FLOOR = 50_000
OFFLINE_AMOUNT = 1_000  # under the floor limit and the cards' own offline limit: a TC
ONLINE_AMOUNT = 60_000  # over the floor limit: an ARQC
READ_RECORD = 0xB2


def _params(world: World, **changes: object) -> KernelParams:
    return replace(KernelParams(capks=tuple(world.capks()), floor_limit=FLOOR), **changes)


def _chip(world: World, name: str) -> Callable[[bytes], bytes]:
    return PlainCard.load(world.path(layout.card_file(name))).chip().transceive


def _tap(transceive: Callable[[bytes], bytes], params: KernelParams, amount: int) -> KernelResult:
    return run(transceive, params, amount, today=TODAY, unpredictable_number=UN)


def _no_card_number(result: KernelResult, pan: str) -> None:
    text = " ".join(result.reasons) + repr(result)
    assert pan not in text and pan[6:] not in text
    assert not re.search(r"[1-9][0-9]{12,}", " ".join(result.reasons))


def _pan(world: World, name: str) -> str:
    return next(card["pan"] for card in world.cards() if card["file"] == str(layout.card_file(name)))


# --- AIDs: quasi-credit, per-AID limits, AIDs in the reasons ----------------------------------------


def test_the_worlds_quasi_credit_card_pays_online_and_offline_by_default(world: World) -> None:
    params = _params(world)
    online = _tap(_chip(world, layout.QUASI_CREDIT_CARD), params, ONLINE_AMOUNT)
    assert (online.outcome, online.cryptogram, online.aid) == (Outcome.ONLINE_REQUEST, "ARQC", "A000000333010103")
    assert online.field55[0x84] == QUASI_CREDIT_AID
    assert "selected A000000333010103 (UICS QCREDIT)" in online.reasons  # the AID in the log, not masked
    offline = _tap(_chip(world, layout.QUASI_CREDIT_CARD), params, OFFLINE_AMOUNT)
    assert (offline.outcome, offline.cryptogram, offline.oda) == (Outcome.APPROVED, "TC", "fdda-v01-ok")
    _no_card_number(online, _pan(world, layout.QUASI_CREDIT_CARD))


def test_a_terminal_without_the_quasi_credit_aid_names_the_refused_aid(world: World) -> None:
    params = _params(world, supported_aids=(DEBIT_AID, CREDIT_AID))
    result = _tap(_chip(world, layout.QUASI_CREDIT_CARD), params, ONLINE_AMOUNT)
    assert (result.outcome, result.message) == (Outcome.END_APPLICATION, Message.NOT_SUPPORTED)
    assert result.reasons == ["PPSE lists no supported AID (A000000333010103)"]


def test_an_aids_own_transaction_limit_sends_the_shopper_to_another_interface(world: World) -> None:
    params = _params(world, aid_limits=((QUASI_CREDIT_AID, AidLimits(transaction_limit=ONLINE_AMOUNT)),))
    over = _tap(_chip(world, layout.QUASI_CREDIT_CARD), params, ONLINE_AMOUNT)
    assert (over.outcome, over.message) == (Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE)
    assert over.reasons == [f"amount {ONLINE_AMOUNT} at or above the contactless limit of A000000333010103 "
                            f"(limit {ONLINE_AMOUNT})"]
    # the same amount on a credit card: that AID keeps the terminal-wide limit
    credit = _tap(_chip(world, "icbc-credit"), params, ONLINE_AMOUNT)
    assert credit.outcome is Outcome.ONLINE_REQUEST
    assert _tap(_chip(world, layout.QUASI_CREDIT_CARD), params, ONLINE_AMOUNT - 1).outcome is Outcome.ONLINE_REQUEST


def test_above_every_aids_limit_the_card_is_not_even_asked(world: World) -> None:
    params = _params(world, contactless_limit=10_000, aid_limits=((CREDIT_AID, AidLimits(transaction_limit=20_000)),))
    commands: list[bytes] = []
    card = _chip(world, "icbc-credit")

    def counting(apdu: bytes) -> bytes:
        commands.append(apdu)
        return card(apdu)

    assert _tap(counting, params, 20_000).outcome is Outcome.TRY_ANOTHER_INTERFACE and commands == []
    paid = _tap(counting, params, 15_000)  # under the credit AID's own limit, over the terminal-wide one
    assert (paid.outcome, paid.aid) == (Outcome.APPROVED, "A000000333010102") and commands


def test_an_aids_own_floor_and_cvm_limits_set_its_ttq() -> None:
    params = KernelParams(floor_limit=FLOOR, cvm_limit=100_000,
                          aid_limits=((QUASI_CREDIT_AID, AidLimits(floor_limit=0, cvm_limit=500)),))
    assert params.ttq(500, aid=QUASI_CREDIT_AID).hex().upper() == "22C04080"  # online and CVM for this AID
    assert params.ttq(500, aid=DEBIT_AID).hex().upper() == "22004080"
    assert params.limits_for(None) == AidLimits(2_000_000, FLOOR, 100_000)


# --- application dates ----------------------------------------------------------------------------


def test_the_worlds_expired_card_is_declined_offline_before_fdda(world: World) -> None:
    result = _tap(_chip(world, layout.EXPIRED_CARD), _params(world), OFFLINE_AMOUNT)
    last_month_end = TODAY.replace(day=1) - datetime.timedelta(days=1)
    assert (result.outcome, result.message, result.cryptogram) == (Outcome.DECLINED, "Card expired", "TC")
    assert result.oda == "not-performed" and result.field55 == {}
    assert f"application expired on {last_month_end} (5F24)" in result.reasons
    _no_card_number(result, _pan(world, layout.EXPIRED_CARD))


def test_the_worlds_expired_card_online_is_left_to_the_issuer(world: World) -> None:
    result = _tap(_chip(world, layout.EXPIRED_CARD), _params(world), ONLINE_AMOUNT)
    assert (result.outcome, result.cryptogram) == (Outcome.ONLINE_REQUEST, "ARQC")
    assert any(reason.startswith("application expired on") for reason in result.reasons)


def test_expired_with_ctq_go_online_asks_for_the_card_again_unless_offline_only(world: World) -> None:
    tamper = _rewrite_gpo(lambda tags: tags.__setitem__(0x9F6C, bytes.fromhex("2800")))
    result = _tap(tamper(_chip(world, layout.EXPIRED_CARD)), _params(world), OFFLINE_AMOUNT)
    assert (result.outcome, result.retry_online) == (Outcome.TRY_AGAIN, True)
    offline_only = _params(world, online_capable=False)
    result = _tap(tamper(_chip(world, layout.EXPIRED_CARD)), offline_only, OFFLINE_AMOUNT)
    assert (result.outcome, result.retry_online) == (Outcome.DECLINED, False)


def _rewrite_gpo(change: Callable[[dict[int, bytes]], None]) -> Callable[[Callable[[bytes], bytes]], Callable]:
    def wrap(transceive: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def tampered(apdu: bytes) -> bytes:
            answer = transceive(apdu)
            if apdu[1] != 0xA8 or answer[-2:] != b"\x90\x00":
                return answer
            tags = {obj.tag: obj.value for obj in tlv.parse_one(answer[:-2]).children()}
            change(tags)
            return tlv.constructed(0x77, *(tlv.encode(tag, value) for tag, value in tags.items())) + b"\x90\x00"
        return tampered
    return wrap


def _record_1(tag: int, value: bytes) -> Callable[[Callable[[bytes], bytes]], Callable[[bytes], bytes]]:
    """Replace one tag of record 1 (70 template: 5A, 5F24, 5F25 …), as a card personalised so would send it."""
    def wrap(transceive: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        def tampered(apdu: bytes) -> bytes:
            answer = transceive(apdu)
            if apdu[1] != READ_RECORD or apdu[2] != 1 or answer[-2:] != b"\x90\x00":
                return answer
            objects = [(obj.tag, value if obj.tag == tag else obj.value)
                       for obj in tlv.parse_one(answer[:-2]).children()]
            return tlv.constructed(0x70, *(tlv.encode(t, v) for t, v in objects)) + b"\x90\x00"
        return tampered
    return wrap


def test_a_card_not_yet_effective_is_declined_offline_and_left_to_the_issuer_online(world: World) -> None:
    tomorrow = TODAY + datetime.timedelta(days=1)
    future = bytes.fromhex(f"{tomorrow:%y%m%d}")
    result = _tap(_record_1(0x5F25, future)(_chip(world, "boc-debit")), _params(world), OFFLINE_AMOUNT)
    assert (result.outcome, result.message, result.oda) == (Outcome.DECLINED, "Declined", "not-performed")
    assert f"application not effective until {tomorrow} (5F25)" in result.reasons
    today = bytes.fromhex(f"{TODAY:%y%m%d}")  # effective today: approved
    result = _tap(_record_1(0x5F25, today)(_chip(world, "boc-debit")), _params(world), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.TRY_AGAIN and result.oda == "fdda-failed"  # the signed record changed …
    assert not any("5F25" in reason for reason in result.reasons)  # … but the date itself passed
    # an ARQC reads no record; a card that sends 5F25 in its GPO answer is left to the issuer
    with_date = _rewrite_gpo(lambda tags: tags.__setitem__(0x5F25, future))
    result = _tap(with_date(_chip(world, "boc-debit")), _params(world), ONLINE_AMOUNT)
    assert (result.outcome, result.cryptogram) == (Outcome.ONLINE_REQUEST, "ARQC")
    assert f"application not effective until {tomorrow}: left to the issuer" in result.reasons


@pytest.mark.parametrize("value", ["251301", "2502AB", "AB0101", "250230", "2501", "250101FF", "000000"])
@pytest.mark.parametrize("tag", [0x5F24, 0x5F25])
def test_a_date_that_is_not_a_date_ends_the_application_cleanly(world: World, tag: int, value: str) -> None:
    result = _tap(_record_1(tag, bytes.fromhex(value))(_chip(world, "boc-debit")), _params(world), OFFLINE_AMOUNT)
    assert (result.outcome, result.message) == (Outcome.END_APPLICATION, Message.CARD_ERROR)
    assert result.field55 == {} and f"{tag:X}" in " ".join(result.reasons)
    _no_card_number(result, _pan(world, "boc-debit"))


def test_application_dates_rules() -> None:
    today = datetime.date(2026, 12, 6)
    assert month_end("2602") == datetime.date(2026, 2, 28) and month_end("2402") == datetime.date(2024, 2, 29)
    assert month_end("9912") == datetime.date(1999, 12, 31)
    valid = application_dates("2612", bytes.fromhex("261231"), bytes.fromhex("211201"), today)
    assert (valid.expired, valid.not_yet_effective) == (False, False)
    assert application_dates("2612", bytes.fromhex("261205"), None, today).expired  # 5F24 wins over the month
    assert application_dates("2611", None, None, today).expired  # track 2 only: valid to the month's end
    assert not application_dates("2612", None, None, today).expired
    assert application_dates("2712", None, bytes.fromhex("261207"), today).not_yet_effective
    for args, message in [
        (("2612", bytes.fromhex("271231"), None), "differs from the one in track 2"),
        (("2712", None, bytes.fromhex("281231")), "after the expiry"),
        (("2613", None, None), "not a YYMM month"),
    ]:
        with pytest.raises(ValueError, match=message):
            application_dates(*args, today)


def test_the_world_writes_effective_dates_in_the_past(world: World) -> None:
    for entry in world.cards():
        card = PlainCard.load(world.path(Path(entry["file"])))
        profile = card.applications[0].profile
        assert profile.effective <= TODAY, entry["file"]
        assert (profile.expiry < TODAY) is (entry["file"] == str(layout.card_file(layout.EXPIRED_CARD)))


def test_the_entry_point_hands_unionpay_aids_to_the_qpboc_kernel_only(world: World) -> None:
    assert [kernel_for(aid) for aid in (DEBIT_AID, QUASI_CREDIT_AID, bytes.fromhex("A0000000031010"))] == [
        "qpboc", "qpboc", None]
    visa = bytes.fromhex("A0000000031010")
    ppse = tlv.constructed(0x6F, tlv.encode(0x84, PPSE_NAME), tlv.constructed(0xA5, tlv.constructed(
        0xBF0C, tlv.constructed(0x61, tlv.encode(0x4F, visa), tlv.encode(0x87, b"\x01")))))
    fci = tlv.constructed(0x6F, tlv.encode(0x84, visa), tlv.constructed(0xA5, tlv.encode(0x50, b"VISA")))

    def visa_card(apdu: bytes) -> bytes:
        return (ppse if PPSE_NAME in apdu else fci) + b"\x90\x00"

    result = _tap(visa_card, _params(world, supported_aids=(visa, DEBIT_AID)), ONLINE_AMOUNT)
    assert (result.outcome, result.message) == (Outcome.END_APPLICATION, Message.NOT_SUPPORTED)
    assert "SELECT A0000000031010: no kernel for A0000000031010; next candidate" in result.reasons
