"""The qPBOC kernel against the test world's cards and phone, and against hostile card answers."""

from __future__ import annotations

import datetime
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquirer_stub.issuer import cryptogram as issuer_crypto
from emvcore import tlv
from emvcore.crypto import oda
from emvcore.crypto.cryptogram import Algorithm
from emvcore.crypto.transit import diversify_card_key, purchase_tac
from emvcore.qpboc import CREDIT_AID, DEBIT_AID
from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.card import Chip
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.cards.qpboc import QPbocApplication, static_data_to_authenticate
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from firmware.jsonfile import Fields
from hostproto.messages import ICC_MANDATORY, IccData
from terminal.kernel import CardGone, KernelParams, KernelResult, Message, Outcome, Psam, fare, run
from terminal.kernel.params import AidLimits

TODAY = datetime.date.today()
UN = bytes.fromhex("1A2B3C4D")
FLOOR = 50_000  # the world's cards approve offline up to ¥500.00
CVM_LIMIT = 100_000
OFFLINE_AMOUNT = 1_000
ONLINE_AMOUNT = 60_000
FIELD55_TAGS = {
    0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A, 0x9F03,
    0x9F33, 0x9F34, 0x9F35, 0x84, 0x9F09, 0x5F34,
}
SELECT, GPO, READ_RECORD = 0xA4, 0xA8, 0xB2


def _params(world: World, **changes: object) -> KernelParams:
    base = KernelParams(capks=tuple(world.capks()), floor_limit=FLOOR, cvm_limit=CVM_LIMIT)
    return replace(base, **changes)


def _entry(world: World, issuer: str) -> dict:
    return next(card for card in world.cards() if card["issuer"] == issuer)


def _card(world: World, issuer: str = "icbc-credit") -> PlainCard:
    return PlainCard.load(world.path(Path(_entry(world, issuer)["file"])))


class Tap:
    """A transceive that records the APDUs and the on_card_read moment, and can tear or tamper."""

    def __init__(
        self,
        transceive: Callable[[bytes], bytes],
        *,
        gone_at: int | None = None,
        tamper: Callable[[bytes, bytes], bytes] | None = None,
    ) -> None:
        self._transceive = transceive
        self._gone_at = gone_at
        self._tamper = tamper
        self.events: list[tuple[str, bytes]] = []

    def __call__(self, apdu: bytes) -> bytes:
        if self._gone_at is not None and len(self.commands) == self._gone_at:
            raise CardGone("card left the field")
        self.events.append(("apdu", apdu))
        answer = self._transceive(apdu)
        return self._tamper(apdu, answer) if self._tamper else answer

    def card_read(self) -> None:
        self.events.append(("card-read", b""))

    @property
    def commands(self) -> list[bytes]:
        return [apdu for kind, apdu in self.events if kind == "apdu"]

    @property
    def instructions(self) -> list[int]:
        return [apdu[1] for apdu in self.commands]


def _tap(transceive: Callable[[bytes], bytes], params: KernelParams, amount: int, **kwargs: object
         ) -> tuple[KernelResult, Tap]:
    tap = transceive if isinstance(transceive, Tap) else Tap(transceive)
    result = run(tap, params, amount, today=TODAY, unpredictable_number=UN, on_card_read=tap.card_read, **kwargs)
    return result, tap


def _rewrite_gpo(change: Callable[[dict[int, bytes]], None]) -> Callable[[bytes, bytes], bytes]:
    """Tamper that edits the format-2 GPO answer's tags (in order) and re-encodes it."""

    def tamper(apdu: bytes, answer: bytes) -> bytes:
        if apdu[1] != GPO or answer[-2:] != b"\x90\x00":
            return answer
        objects = {obj.tag: obj.value for obj in tlv.parse_one(answer[:-2]).children()}
        change(objects)
        return tlv.constructed(0x77, *(tlv.encode(tag, value) for tag, value in objects.items())) + b"\x90\x00"

    return tamper


def _flip(value: bytes, index: int) -> bytes:
    return value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1 :]


# --- parameters ------------------------------------------------------------------------------------


def test_ttq_follows_the_limits_and_capabilities() -> None:
    params = KernelParams(floor_limit=FLOOR, cvm_limit=CVM_LIMIT, contactless_limit=500_000)
    assert params.ttq(100).hex().upper() == "22004080"  # qPBOC + signature, no PIN pad, CDCVM, fDDA 01
    assert params.ttq(FLOOR).hex().upper() == "22004080"
    assert params.ttq(FLOOR + 1).hex().upper() == "22804080"  # 2.8 online cryptogram required
    assert params.ttq(CVM_LIMIT).hex().upper() == "22C04080"  # + 2.7 CVM required
    assert params.ttq(100, force_online=True).hex().upper() == "22804080"
    assert replace(params, online_pin_supported=True).ttq(100).hex().upper() == "26004080"
    assert replace(params, cdcvm_supported=False, fdda_v01_supported=False).ttq(100).hex().upper() == "22000000"
    # an offline-only reader says so (1.4) and never asks for an online cryptogram
    assert replace(params, online_capable=False).ttq(FLOOR + 1).hex().upper() == "2A004080"


def test_a_floor_limit_per_aid_overrides_the_default_for_that_aid_only() -> None:
    debit = ((DEBIT_AID, AidLimits(floor_limit=1_000)),)
    params = KernelParams(floor_limit=FLOOR, cvm_limit=CVM_LIMIT, aid_limits=debit)
    assert params.floor_limit_for(DEBIT_AID) == 1_000 and params.floor_limit_for(CREDIT_AID) == FLOOR
    assert params.ttq(1_001, aid=DEBIT_AID).hex().upper() == "22804080"  # above the debit AID's limit: online
    assert params.ttq(1_001, aid=CREDIT_AID).hex().upper() == "22004080"
    assert params.ttq(1_000, aid=DEBIT_AID).hex().upper() == "22004080"  # at the limit: offline allowed
    # the longest configured AID prefix wins
    prefix = replace(params, aid_limits=((DEBIT_AID[:7], AidLimits(floor_limit=5)),
                                         (DEBIT_AID, AidLimits(floor_limit=7))))
    assert (prefix.floor_limit_for(DEBIT_AID), prefix.floor_limit_for(CREDIT_AID)) == (7, 5)
    with pytest.raises(ValueError, match="floor_limit must be an amount"):
        KernelParams(aid_limits=((DEBIT_AID, AidLimits(floor_limit=-1)),))


def test_the_selected_aids_floor_limit_sends_a_debit_card_online(world: World) -> None:
    card = _card(world, "icbc-debit")
    params = _params(world, aid_limits=((DEBIT_AID, AidLimits(floor_limit=OFFLINE_AMOUNT - 1)),))
    result, _ = _tap(card.chip().transceive, params, OFFLINE_AMOUNT)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cryptogram == "ARQC"
    result, _ = _tap(_card(world, "icbc-credit").chip().transceive, params, OFFLINE_AMOUNT)  # the credit AID's own
    assert result.outcome is Outcome.APPROVED and result.cryptogram == "TC"


def test_params_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="country"):
        KernelParams(country="156")
    with pytest.raises(ValueError, match="floor_limit"):
        KernelParams(floor_limit=-1)
    with pytest.raises(ValueError, match="AID"):
        KernelParams(supported_aids=(b"\xa0\x00",))
    assert KernelParams(supported_aids=(bytes.fromhex("A0000003330101"),)).supports(CREDIT_AID)


# --- pre-processing --------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [500_000, 500_001])
def test_at_or_above_the_contactless_limit_no_card_command_is_sent(world: World, amount: int) -> None:
    def refuse(apdu: bytes) -> bytes:
        raise AssertionError("the kernel must not talk to the card")

    result, tap = _tap(refuse, _params(world, contactless_limit=500_000), amount)
    assert result.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert result.message == "Insert or swipe card"
    assert tap.events == []


def test_amount_zero_ends_before_the_card(world: World) -> None:
    result, tap = _tap(lambda apdu: b"\x90\x00", _params(world), 0)
    assert result.outcome is Outcome.END_APPLICATION and tap.events == []


# --- online and offline taps -----------------------------------------------------------------------


def test_online_tap_with_a_plain_card(world: World) -> None:
    entry = _entry(world, "icbc-credit")
    card = _card(world, "icbc-credit")
    result, tap = _tap(card.chip().transceive, _params(world), ONLINE_AMOUNT)

    assert result.outcome is Outcome.ONLINE_REQUEST
    assert result.cryptogram == "ARQC" and result.oda == "not-performed" and result.cvm == "none"
    assert tap.instructions == [SELECT, SELECT, GPO]  # the three-APDU tap
    assert tap.events[-1] == ("card-read", b"")  # released right after the last card command
    assert result.aid == "A000000333010102" and result.label == "UICS CREDIT"
    assert result.pan == entry["pan"] and result.psn == entry["psn"] == 1
    assert result.pan_masked == entry["pan"][:6] + "******" + entry["pan"][-4:]
    assert result.expiry == datetime.date.fromisoformat(entry["expiry"]).strftime("%y%m")
    assert entry["pan"] not in repr(result) and entry["pan"] not in str(result)
    assert result.atc == card.applications[0].state.atc
    assert 0 <= result.timings["card_in_field"] <= result.timings["total"]

    field55 = result.field55
    assert set(field55) == FIELD55_TAGS
    assert field55[0x9F27] == b"\x80" and field55[0x84] == CREDIT_AID
    assert field55[0x9F34] == bytes.fromhex("3F0000") and field55[0x95] == bytes(5)
    assert field55[0x9F02] == bytes.fromhex("000000060000") and field55[0x9F37] == UN
    IccData(ICC_MANDATORY, "").validate({f"{t:X}": v.hex() for t, v in field55.items()}, "icc")
    # the issuer recomputes the ARQC from exactly these values
    imk = bytes.fromhex(world.issuer_keys("icbc-credit")["imk_ac"])
    key = issuer_crypto.session_key(Algorithm.TDES, imk, entry["pan"], entry["psn"], result.atc)
    assert issuer_crypto.verify_ac(key, field55)


@pytest.mark.parametrize(("v01", "expected"), [(True, "fdda-v01-ok"), (False, "fdda-v00-ok")])
def test_offline_tap_with_fdda(world: World, v01: bool, expected: str) -> None:
    card = _card(world, "boc-debit")
    result, tap = _tap(card.chip().transceive, _params(world, fdda_v01_supported=v01), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.APPROVED and result.message == "Approved"
    assert result.cryptogram == "TC" and result.oda == expected
    assert tap.instructions == [SELECT, SELECT, GPO, READ_RECORD, READ_RECORD, READ_RECORD]
    assert [kind for kind, _ in tap.events][-1] == "card-read"
    assert set(result.field55) == FIELD55_TAGS and result.field55[0x9F27] == b"\x40"
    assert result.aid == "A000000333010101"


def test_sm4_card_goes_online_with_its_iad(world: World) -> None:
    result, _ = _tap(_card(world, "jsb-credit").chip().transceive, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.field55[0x9F10][7] == 0x04


def test_blocked_card_declines_with_an_aac(world: World) -> None:
    card = _card(world)
    card.applications[0].state.blocked = True
    result, _ = _tap(card.chip().transceive, _params(world), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.DECLINED and result.cryptogram == "AAC"
    assert result.field55 == {}


def test_offline_only_terminal_declines_an_arqc(world: World) -> None:
    card = _card(world)
    card.applications[0].state.offline_balance = 0  # no offline money: an honest card declines itself
    result, _ = _tap(card.chip().transceive, _params(world, online_capable=False), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.DECLINED and result.cryptogram == "AAC"

    def forge_arqc(tags: dict[int, bytes]) -> None:
        tags[0x9F10] = tags[0x9F10][:4] + b"\xa0" + tags[0x9F10][5:]

    tap = Tap(_card(world).chip().transceive, tamper=_rewrite_gpo(forge_arqc))
    result, _ = _tap(tap, _params(world, online_capable=False), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.DECLINED and result.cryptogram == "ARQC" and result.field55 == {}


# --- fDDA failures and the CTQ ---------------------------------------------------------------------


def _tamper_sdad(apdu: bytes, answer: bytes) -> bytes:
    return _rewrite_gpo(lambda tags: tags.update({0x9F4B: _flip(tags[0x9F4B], 40)}))(apdu, answer)


def _tamper_record(apdu: bytes, answer: bytes) -> bytes:
    if apdu[1] == READ_RECORD and apdu[2] == 3:  # inside the ICC certificate
        return _flip(answer, len(answer) // 2)
    return answer


@pytest.mark.parametrize("tamper", [_tamper_sdad, _tamper_record], ids=["sdad", "record"])
@pytest.mark.parametrize(
    ("ctq", "outcome"),
    [("2000", Outcome.TRY_AGAIN), ("1000", Outcome.TRY_ANOTHER_INTERFACE), ("0000", Outcome.DECLINED)],
)
def test_fdda_failure_follows_the_ctq(world: World, tamper: Callable, ctq: str, outcome: Outcome) -> None:
    card = _card(world, "boc-debit")
    app = card.applications[0]
    app.profile = replace(app.profile, ctq=bytes.fromhex(ctq))
    result, tap = _tap(Tap(card.chip().transceive, tamper=tamper), _params(world), OFFLINE_AMOUNT)
    assert result.outcome is outcome
    assert result.cryptogram == "TC" and result.oda == "fdda-failed"
    assert result.field55 == {}  # nothing goes to the host
    assert tap.events[-1][0] == "card-read"
    assert result.retry_online is (outcome is Outcome.TRY_AGAIN)
    if outcome is Outcome.TRY_AGAIN:
        # the decision for CTQ 1.6: tap again asking for an ARQC, which the host can authorize
        assert result.message == "Present card again"
        again, _ = _tap(card.chip().transceive, _params(world), OFFLINE_AMOUNT, force_online=True)
        assert again.outcome is Outcome.ONLINE_REQUEST and again.cryptogram == "ARQC"


def test_missing_capk_fails_fdda(world: World) -> None:
    result, _ = _tap(_card(world).chip().transceive, _params(world, capks=()), OFFLINE_AMOUNT)
    assert result.oda == "fdda-failed" and result.outcome is Outcome.TRY_AGAIN  # default CTQ 2000
    assert any("no CA key" in reason for reason in result.reasons)


def test_offline_only_terminal_declines_when_fdda_fails_and_the_ctq_says_online(world: World) -> None:
    card = _card(world)
    params = _params(world, online_capable=False, capks=())
    result, _ = _tap(card.chip().transceive, params, OFFLINE_AMOUNT)
    assert result.outcome is Outcome.DECLINED and not result.retry_online


def test_a_tc_when_online_was_required_is_declined(world: World) -> None:
    def forge_tc(tags: dict[int, bytes]) -> None:
        iad = bytearray(tags[0x9F10])
        iad[4] = 0x90
        tags[0x9F10] = bytes(iad)

    tap = Tap(_card(world).chip().transceive, tamper=_rewrite_gpo(forge_tc))
    result, _ = _tap(tap, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.DECLINED and result.cryptogram == "TC"


# --- CVM -------------------------------------------------------------------------------------------


def test_cvm_limit_plain_card_signs(world: World) -> None:
    result, _ = _tap(_card(world).chip().transceive, _params(world), CVM_LIMIT)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cvm == "signature"
    assert result.field55[0x9F34] == bytes.fromhex("1E0300")


def test_cvm_limit_offline_approval_with_signature(world: World) -> None:
    params = _params(world, cvm_limit=OFFLINE_AMOUNT)
    result, _ = _tap(_card(world).chip().transceive, params, OFFLINE_AMOUNT)
    assert result.outcome is Outcome.APPROVED and result.cvm == "signature"


def test_see_phone_then_fingerprint_then_cdcvm(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    first, tap = _tap(wallet.chip().transceive, _params(world), CVM_LIMIT)
    assert first.outcome is Outcome.SEE_PHONE and first.message == "See phone"
    assert ("card-read", b"") not in tap.events and first.field55 == {}
    assert wallet.authenticate("right-thumb")
    again, tap = _tap(wallet.chip().transceive, _params(world), CVM_LIMIT)
    assert again.outcome is Outcome.ONLINE_REQUEST and again.cvm == "cdcvm"
    assert again.field55[0x9F34] == bytes.fromhex("010002")
    assert tap.instructions == [SELECT, SELECT, GPO]  # the token, not the transit card
    assert again.pan_masked is not None and again.pan_masked.startswith("628888")


def test_phone_below_the_cvm_limit_needs_no_cvm(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    wallet.authenticate("right-thumb")
    result, _ = _tap(wallet.chip().transceive, _params(world), 1234)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.cvm == "none"


def test_online_pin_card_without_pin_pad_asks_for_the_contact_interface(world: World) -> None:
    card = _card(world)
    app = card.applications[0]
    app.profile = replace(app.profile, cvm="online-pin")
    result, _ = _tap(card.chip().transceive, _params(world), CVM_LIMIT)
    assert result.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert result.message == Message.PIN_REQUIRED == "Insert card / PIN required"
    assert result.field55 == {}
    with_pad, _ = _tap(card.chip().transceive, _params(world, online_pin_supported=True), CVM_LIMIT)
    assert with_pad.outcome is Outcome.ONLINE_REQUEST and with_pad.cvm == "online-pin"


def test_cdcvm_claim_on_a_tc_must_match_the_signed_ctq(world: World) -> None:
    # the card asks for a signature (6000, signed inside 9F69); a forged 9F6C claims CDCVM
    params = _params(world, cvm_limit=OFFLINE_AMOUNT)
    forge = _rewrite_gpo(lambda tags: tags.update({0x9F6C: bytes.fromhex("6080")}))
    result, _ = _tap(Tap(_card(world).chip().transceive, tamper=forge), params, OFFLINE_AMOUNT)
    assert result.oda == "fdda-v01-ok" and result.outcome is Outcome.DECLINED


# --- torn taps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "exchanges"), [(ONLINE_AMOUNT, 3), (OFFLINE_AMOUNT, 6)])
def test_card_removed_at_every_exchange(world: World, amount: int, exchanges: int) -> None:
    card = _card(world)
    for gone_at in range(exchanges):
        tap = Tap(card.chip().transceive, gone_at=gone_at)
        result, _ = _tap(tap, _params(world), amount)
        assert result.outcome is Outcome.TRY_AGAIN, gone_at
        assert result.message == "Present card again"
        assert result.field55 == {} and not result.retry_online
        assert len(tap.commands) == gone_at and ("card-read", b"") not in tap.events
    complete, tap = _tap(Tap(card.chip().transceive, gone_at=exchanges), _params(world), amount)
    assert complete.outcome in (Outcome.ONLINE_REQUEST, Outcome.APPROVED)


def test_a_reader_error_subclassing_card_gone_is_a_try_again(world: World) -> None:
    class CardRemoved(CardGone):
        pass

    def removed(apdu: bytes) -> bytes:
        raise CardRemoved

    result, _ = _tap(removed, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.TRY_AGAIN


# --- selection -------------------------------------------------------------------------------------


def test_without_ppse_the_supported_aids_are_selected_directly(world: World) -> None:
    card = _card(world, "icbc-credit")
    chip = card.chip()

    def no_ppse(apdu: bytes) -> bytes:
        return b"\x6a\x82" if b"2PAY.SYS.DDF01" in apdu else chip.transceive(apdu)

    result, tap = _tap(no_ppse, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.ONLINE_REQUEST and result.aid == "A000000333010102"
    assert [apdu[5:13] for apdu in tap.commands[1:3]] == [DEBIT_AID, CREDIT_AID]  # debit 6A82, then credit


def test_candidates_follow_priority_then_ppse_order(world: World) -> None:
    debit, credit = _card(world, "boc-debit").applications[0], _card(world, "icbc-credit").applications[0]
    chip = Chip([debit, credit])
    ppse = tlv.constructed(0x6F, tlv.encode(0x84, b"2PAY.SYS.DDF01"), tlv.constructed(0xA5, tlv.constructed(
        0xBF0C,
        tlv.constructed(0x61, tlv.encode(0x4F, bytes.fromhex("A000000632010105")), tlv.encode(0x87, b"\x01")),
        tlv.constructed(0x61, tlv.encode(0x4F, DEBIT_AID), tlv.encode(0x87, b"\x02")),
        tlv.constructed(0x61, tlv.encode(0x4F, CREDIT_AID), tlv.encode(0x87, b"\x01")),
    )))

    def reordered(apdu: bytes) -> bytes:
        return ppse + b"\x90\x00" if b"2PAY.SYS.DDF01" in apdu else chip.transceive(apdu)

    result, _ = _tap(reordered, _params(world), ONLINE_AMOUNT)
    assert result.aid == "A000000333010102"  # priority 1 beats PPSE order; transit is not supported
    only_debit = _params(world, supported_aids=(DEBIT_AID,))
    result, _ = _tap(reordered, only_debit, ONLINE_AMOUNT)
    assert result.aid == "A000000333010101"


def test_transit_only_card_is_not_supported(world: World) -> None:
    transit = PlainCard.load(world.path(Path(world.transit_cards()[0]["file"])))
    result, tap = _tap(transit.chip().transceive, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.END_APPLICATION and result.message == "Card not supported"
    assert tap.instructions == [SELECT]


@pytest.mark.parametrize(
    ("sw", "outcome"),
    [("6985", Outcome.TRY_ANOTHER_INTERFACE), ("6A80", Outcome.END_APPLICATION), ("6986", Outcome.SEE_PHONE)],
)
def test_gpo_status_words(world: World, sw: str, outcome: Outcome) -> None:
    chip = _card(world).chip()
    result, _ = _tap(lambda a: bytes.fromhex(sw) if a[1] == GPO else chip.transceive(a), _params(world), 100)
    assert result.outcome is outcome


def test_gpo_format_1_asks_for_another_interface(world: World) -> None:
    chip = _card(world).chip()
    format1 = tlv.encode(0x80, bytes.fromhex("7C00") + bytes.fromhex("08010100")) + b"\x90\x00"
    result, _ = _tap(lambda a: format1 if a[1] == GPO else chip.transceive(a), _params(world), 100)
    assert result.outcome is Outcome.TRY_ANOTHER_INTERFACE


def test_get_response_chaining(world: World) -> None:
    chip = _card(world).chip()
    pending: list[bytes] = []

    def chained(apdu: bytes) -> bytes:
        if apdu[1] == 0xC0:
            return pending.pop() + b"\x90\x00"
        answer = chip.transceive(apdu)
        if apdu[1] == GPO:
            pending.append(answer[20:-2])
            return answer[:20] + bytes([0x61, len(answer) - 22])
        return answer

    result, tap = _tap(chained, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.ONLINE_REQUEST and tap.instructions[-1] == 0xC0


# --- expiry ----------------------------------------------------------------------------------------


def _expired_card(world: World, issuer: str, ctq: str) -> Chip:
    """The card's application re-personalised with a past expiry and a fresh (still valid) ICC certificate."""
    card = _card(world, issuer)
    app = card.applications[0]
    expired = TODAY.replace(day=1) - datetime.timedelta(days=1)
    profile = replace(app.profile, expiry=expired, effective=datetime.date(expired.year - 5, 1, 1),
                      ctq=bytes.fromhex(ctq))
    stored = json.loads(card.path.read_text())["applications"][0]
    keys = qpboc_schema.keys_from_dict(Fields(stored["keys"], "keys"))
    issuer_private = oda.private_key_from_pem(world.issuer_keys(issuer)["rsa_private_key_pem"].encode())
    icc_public = oda.public_key_of(oda.private_key_from_pem(keys.icc_private_key_pem))
    certificate, remainder = oda.make_icc_certificate(
        issuer_private, icc_public, profile.pan, datetime.date(TODAY.year + 3, 12, 31), b"\x00\x00\x01",
        static_data_to_authenticate(profile),
    )
    assert profile.oda is not None
    profile = replace(profile, oda=replace(profile.oda, icc_certificate=certificate, icc_remainder=remainder))
    return Chip([QPbocApplication(profile, keys, app.state)])


@pytest.mark.parametrize(
    ("ctq", "outcome"), [("2000", Outcome.DECLINED), ("2800", Outcome.TRY_AGAIN)], ids=["decline", "online"]
)
def test_expired_card_offline(world: World, ctq: str, outcome: Outcome) -> None:
    result, _ = _tap(_expired_card(world, "boc-debit", ctq).transceive, _params(world), OFFLINE_AMOUNT)
    assert result.cryptogram == "TC" and result.oda == "not-performed"  # the dates are checked before fDDA
    assert result.outcome is outcome and result.retry_online is (outcome is Outcome.TRY_AGAIN)
    assert result.message == ("Card expired" if outcome is Outcome.DECLINED else "Present card again")
    assert result.expiry == (TODAY.replace(day=1) - datetime.timedelta(days=1)).strftime("%y%m")


def test_expired_card_online_is_left_to_the_issuer(world: World) -> None:
    result, _ = _tap(_expired_card(world, "boc-debit", "2000").transceive, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.ONLINE_REQUEST
    assert any("expired" in reason for reason in result.reasons)


# --- malformed and hostile cards -------------------------------------------------------------------


@pytest.mark.parametrize("tag", [0x9F26, 0x9F10, 0x9F36, 0x57, 0x82])
def test_missing_mandatory_tag_ends_the_application(world: World, tag: int) -> None:
    tap = Tap(_card(world).chip().transceive, tamper=_rewrite_gpo(lambda tags: tags.pop(tag)))
    result, _ = _tap(tap, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.END_APPLICATION
    assert any(f"{tag:X}" in reason for reason in result.reasons)


@pytest.mark.parametrize(("tag", "value"), [(0x9F26, b"\x00" * 7), (0x9F36, b"\x01"), (0x82, b"\x7c"),
                                            (0x9F10, bytes.fromhex("07010103")), (0x57, b"\x62\x25")])
def test_wrong_lengths_end_the_application(world: World, tag: int, value: bytes) -> None:
    tap = Tap(_card(world).chip().transceive, tamper=_rewrite_gpo(lambda tags: tags.update({tag: value})))
    result, _ = _tap(tap, _params(world), ONLINE_AMOUNT)
    assert result.outcome is Outcome.END_APPLICATION and result.field55 == {}


def test_reasons_never_carry_a_pan(world: World) -> None:
    def bad_5a(apdu: bytes, answer: bytes) -> bytes:
        if apdu[1] == READ_RECORD and apdu[2] == 1:  # 70 L 5A 08 <PAN>: make a nibble non-decimal
            return answer[:4] + bytes([answer[4] | 0x0A]) + answer[5:]
        return answer

    pan = _entry(world, "boc-debit")["pan"]
    result, _ = _tap(Tap(_card(world, "boc-debit").chip().transceive, tamper=bad_5a), _params(world), OFFLINE_AMOUNT)
    assert result.outcome is Outcome.END_APPLICATION
    text = " ".join(result.reasons)
    assert "compressed numeric" in text and pan[6:] not in text and not re.search(r"[1-9][0-9]{12,}", text)


@pytest.fixture(scope="module")
def transcripts(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list]:
    """Real card answers of one online and one offline tap, replayed by the hostile-card properties."""
    root = tmp_path_factory.mktemp("kernel-world") / "world"
    shutil.copytree(world_template.root, root)
    world = World.open(root)
    recorded: dict[str, list] = {"params": [_params(world)], "pan": [_entry(world, "boc-debit")["pan"]]}
    for name, amount in (("online", ONLINE_AMOUNT), ("offline", OFFLINE_AMOUNT)):
        chip = _card(world, "boc-debit").chip()
        answers: list[bytes] = []

        def record(apdu: bytes, chip: Chip = chip, answers: list[bytes] = answers) -> bytes:
            answers.append(chip.transceive(apdu))
            return answers[-1]

        result, _ = _tap(record, recorded["params"][0], amount)
        assert result.outcome in (Outcome.ONLINE_REQUEST, Outcome.APPROVED)
        recorded[name] = answers
    return recorded


def _replay(answers: list[bytes]) -> Callable[[bytes], bytes]:
    queue = list(answers)
    return lambda apdu: queue.pop(0) if queue else b"\x6a\x82"


_HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_replayed_transcripts_give_the_same_outcomes(transcripts: dict[str, list]) -> None:
    params = transcripts["params"][0]
    assert _tap(_replay(transcripts["online"]), params, ONLINE_AMOUNT)[0].outcome is Outcome.ONLINE_REQUEST
    assert _tap(_replay(transcripts["offline"]), params, OFFLINE_AMOUNT)[0].outcome is Outcome.APPROVED


@_HOSTILE
@given(answers=st.lists(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b + b"\x90\x00")),
                        max_size=8))
def test_random_answers_never_crash_the_kernel(transcripts: dict[str, list], answers: list[bytes]) -> None:
    result, _ = _tap(_replay(answers), transcripts["params"][0], OFFLINE_AMOUNT)
    assert isinstance(result.outcome, Outcome)
    assert result.outcome is not Outcome.APPROVED


@_HOSTILE
@given(which=st.sampled_from(["online", "offline"]), data=st.data())
def test_truncated_or_corrupted_real_answers_never_crash_the_kernel(
    transcripts: dict[str, list], which: str, data: st.DataObject
) -> None:
    answers = list(transcripts[which])
    index = data.draw(st.integers(0, len(answers) - 1), label="answer")
    original = answers[index]
    if data.draw(st.booleans(), label="truncate"):
        answers[index] = original[: data.draw(st.integers(0, len(original) - 1), label="keep")]
    else:
        position = data.draw(st.integers(0, len(original) - 1), label="position")
        answers[index] = original[:position] + bytes([data.draw(st.integers(0, 255))]) + original[position + 1 :]
    amount = ONLINE_AMOUNT if which == "online" else OFFLINE_AMOUNT
    result, _ = _tap(_replay(answers), transcripts["params"][0], amount)
    assert isinstance(result.outcome, Outcome)
    if result.outcome in (Outcome.APPROVED, Outcome.ONLINE_REQUEST):
        assert FIELD55_TAGS - {0x5F34} <= set(result.field55) <= FIELD55_TAGS  # the PSN is optional
    assert transcripts["pan"][0] not in repr(result)
    assert not re.search(r"[1-9][0-9]{12,}", " ".join(result.reasons))  # AIDs shown, no card number


_GPO_TAGS = [0x82, 0x94, 0x9F36, 0x57, 0x5A, 0x9F10, 0x9F26, 0x5F34, 0x9F6C, 0x9F4B, 0x9F69, 0x5F24, 0x8F]


@_HOSTILE
@given(tags=st.dictionaries(st.sampled_from(_GPO_TAGS), st.binary(max_size=24), max_size=len(_GPO_TAGS)))
def test_forged_gpo_templates_never_crash_the_kernel(transcripts: dict[str, list], tags: dict[int, bytes]) -> None:
    answers = list(transcripts["offline"][:2])  # real PPSE and SELECT
    answers.append(tlv.constructed(0x77, *(tlv.encode(t, v) for t, v in tags.items())) + b"\x90\x00")
    answers += [bytes.fromhex("7003800100") + b"\x90\x00"] * 3
    result, _ = _tap(_replay(answers), transcripts["params"][0], OFFLINE_AMOUNT)
    assert result.outcome is not Outcome.APPROVED


# --- transit fares (software PSAM) -----------------------------------------------------------------

TERMINAL_ID = bytes.fromhex("001122334455")
NOW = datetime.datetime.combine(TODAY, datetime.time(8, 30, 15))


def _psam(world: World, **override: bytes) -> Psam:
    keys = {city["city_code"]: bytes.fromhex(city["purchase_master_key"]) for city in world.transit_keys()}
    return Psam({**keys, **override}, TERMINAL_ID)


def _transit(world: World, index: int = 0) -> tuple[PlainCard, dict]:
    entry = world.transit_cards()[index]
    return PlainCard.load(world.path(Path(entry["file"]))), entry


def _balance(card: PlainCard) -> int:
    return PlainCard.load(card.path).applications[0].state.balance


def test_fare_is_paid_and_the_tac_verifies(world: World) -> None:
    card, entry = _transit(world)
    result = fare(card.chip().transceive, _psam(world), 200, NOW)
    assert result.outcome is Outcome.APPROVED and result.message == "Fare paid"
    assert (result.balance_before, result.balance_after) == (5_000, 4_800) == (5_000, _balance(card))
    assert result.card_number == entry["card_number"] and entry["card_number"] not in repr(result)
    city = next(c for c in world.transit_keys() if c["city"] == entry["city"])
    tac_key = diversify_card_key(bytes.fromhex(city["tac_master_key"]), entry["card_number"])
    assert result.date_time is not None and result.terminal_serial is not None
    assert result.tac == purchase_tac(tac_key, 200, 0x06, TERMINAL_ID, result.terminal_serial, result.date_time)


def test_insufficient_balance_and_wrong_psam_key_charge_nothing(world: World) -> None:
    card, entry = _transit(world)
    assert fare(card.chip().transceive, _psam(world), 6_000, NOW).outcome is Outcome.DECLINED
    city_code = next(c["city_code"] for c in world.transit_keys() if c["city"] == entry["city"])
    wrong = fare(card.chip().transceive, _psam(world, **{city_code: bytes(16)}), 200, NOW)
    assert wrong.outcome is Outcome.END_APPLICATION and "MAC1" in wrong.reasons[-1]
    assert _balance(card) == 5_000


@pytest.mark.parametrize("tear", ["after-debit", "before-card", "garbled-answer"])
def test_torn_debit_is_recovered_on_the_next_tap(world: World, tear: str) -> None:
    card, _ = _transit(world)
    psam = _psam(world)
    chip = card.chip()
    debited = tear != "before-card"

    def tear_on_debit(apdu: bytes) -> bytes:
        if apdu[:2] == b"\x80\x54":
            if debited:
                answer = chip.transceive(apdu)  # the card debits, the answer never arrives intact
                if tear == "garbled-answer":
                    return answer[:3] + b"\x90\x00"
            raise CardGone("torn")
        return chip.transceive(apdu)

    torn = fare(tear_on_debit, psam, 200, NOW)
    assert torn.outcome is Outcome.TRY_AGAIN and torn.message == "Present card again"
    assert _balance(card) == (4_800 if debited else 5_000)
    again = fare(card.chip().transceive, psam, 200, NOW + datetime.timedelta(seconds=5))
    assert again.outcome is Outcome.APPROVED and again.recovered is debited
    assert _balance(card) == 4_800  # charged exactly once
    assert psam.torn(again.card_number or "") is None


def test_phone_express_transit_needs_no_fingerprint(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    result = fare(wallet.chip().transceive, _psam(world), 200, NOW)
    assert result.outcome is Outcome.APPROVED and result.balance_after == 4_800


def test_a_bank_card_is_no_transit_card(world: World) -> None:
    result = fare(_card(world).chip().transceive, _psam(world), 200, NOW)
    assert result.outcome is Outcome.END_APPLICATION and result.message == "Card not supported"


@_HOSTILE
@given(answers=st.lists(st.one_of(st.binary(max_size=64), st.binary(max_size=64).map(lambda b: b + b"\x90\x00")),
                        max_size=5))
def test_random_answers_never_crash_the_fare(transcripts: dict[str, list], answers: list[bytes]) -> None:
    psam = Psam({"3100": bytes(16)}, TERMINAL_ID)
    result = fare(_replay(answers), psam, 200, NOW)
    assert result.outcome is not Outcome.APPROVED
