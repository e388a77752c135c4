"""The issuer engine against real cryptograms: world cards and the demo phone tapped on a scripted reader.

Each 3DES approval is cross-checked with pyemv (an implementation independent of emvcore): the ARQC the
card made and the ARPC the host answered.
"""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyemv import ac, kd, mac, tools

from acquirer_stub.instance import Instance
from acquirer_stub.issuer import engine
from acquirer_stub.issuer.engine import Decision
from acquirer_stub.keys import KeyStore
from acquirer_stub.store import db
from acquirer_stub.store.transactions import Transaction
from acquirer_stub.vault import Vault
from emvcore import tlv
from emvcore.crypto.cryptogram import Algorithm, compute_arpc1, derive_icc_master_key, derive_session_key
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from hostproto.limits import DEFAULT_FLOOR_LIMIT
from hostproto.messages import ICC_MANDATORY, Financial, MessageError, parse_authorization

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
ONLINE_AMOUNT = 150_000  # above every card's offline balance: the card asks for an ARQC
TTQ_ONLINE_REQUIRED = bytes.fromhex("26800080")  # TTQ byte 2 b8: online cryptogram required
AC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)
NOW = datetime.datetime.now()


# -- the host side: one connection, the instance's keys and vault --------------------------------------------


@dataclasses.dataclass
class Host:
    connection: sqlite3.Connection
    keys: KeyStore
    vault: Vault

    def authorize(self, request: Financial, *, now: datetime.datetime = NOW) -> Decision:
        with db.transaction(self.connection):
            return engine.authorize(self.connection, self.keys, self.vault, request, now=now)

    def advise(self, request: Financial, *, floor_limit: int = DEFAULT_FLOOR_LIMIT) -> Decision:
        with db.transaction(self.connection):
            return engine.record_offline_advice(self.connection, self.keys, self.vault, request,
                                                sale_date=NOW.date(), floor_limit=floor_limit)

    def reverse(self, row: Transaction) -> None:
        with db.transaction(self.connection):
            engine.reverse(self.connection, row)

    def sql(self, statement: str, *parameters: Any) -> None:
        with db.transaction(self.connection):
            self.connection.execute(statement, parameters)

    def account(self, pan: str) -> sqlite3.Row:
        return self.connection.execute(
            "SELECT * FROM accounts WHERE pan_hash = ?", (self.vault.pan_hash(pan),)
        ).fetchone()

    def token(self, token_pan: str) -> sqlite3.Row:
        return self.connection.execute(
            "SELECT * FROM tokens WHERE token_hash = ?", (self.vault.pan_hash(token_pan),)
        ).fetchone()


@pytest.fixture
def host(instance: Instance) -> Iterator[Host]:
    connection = db.connect(instance.database)
    try:
        yield Host(connection, instance.keys(), instance.vault())
    finally:
        connection.close()


# -- the card side: taps on the scripted reader ---------------------------------------------------------------


def _entry(world: World, issuer: str) -> dict[str, Any]:
    return next(c for c in world.cards() if c["issuer"] == issuer)


DE55_TAGS = frozenset(ICC_MANDATORY) | {0x5F24, 0x5F34, 0x84, 0x9F33, 0x9F35}
"""What a terminal sends in DE55: the host's mandatory tags and the optional ones it reads."""


_BODY = {"mti": "0200", "tid": "10000001", "stan": "000001", "local_date": f"{NOW:%m%d}", "batch": 1,
         "currency": "156", "entry_mode": "072"}


def _request(values: dict[int, bytes], data: dict[int, bytes], amount: int, **changes: Any) -> Financial:
    """What a terminal sends for a tap (DE2/DE14 from 57, DE23 from 5F34, DE55 = terminal + card data), through
    the host's own parser: the engine gets the validated message, as from the API."""
    pan, rest = data[0x57].hex().upper().split("D", 1)
    icc = {tag: value for tag, value in {**values, **data}.items() if tag in DE55_TAGS}
    icc[0x9F27] = b"\x80"  # qPBOC: the terminal writes the ARQC indicator
    body: dict[str, Any] = {
        **_BODY, "pan": pan, "psn": data[0x5F34].hex(), "expiry": rest[:4], "amount": amount,
        "icc": {f"{tag:X}": value.hex().upper() for tag, value in icc.items()},
    }
    body.update(changes)
    return parse_authorization(body)


def tap_card(world: World, issuer: str, amount: int = ONLINE_AMOUNT, *, ttq: bytes = reader.TTQ_CARD_READER,
             un: bytes = b"\x12\x34\x56\x78") -> Financial:
    entry = _entry(world, issuer)
    card = PlainCard.load(world.path(Path(entry["file"])))
    values = reader.terminal_data(amount, ttq=ttq, un=un)
    answer, data = reader.tap(card.chip(), DEBIT_AID if entry["kind"] == "debit" else CREDIT_AID, values)
    assert answer.ok, f"GPO {answer.sw:04X}"
    return _request(values, data, amount)


def tap_phone(world: World, amount: int = 1234, **changes: Any) -> Financial:
    """The demo phone after the fingerprint: PPSE, its first AID, GPO; the token PAN comes out in 57."""
    wallet = Wallet.load(world.demo_phone)
    assert wallet.authenticate(world.demo_fingers[0])
    chip = wallet.chip()
    ppse = reader.send(chip, reader.PPSE)
    assert ppse.ok
    aid = tlv.find(ppse.data, 0x4F)
    assert aid is not None
    values = reader.terminal_data(amount)
    answer, data = reader.tap(chip, aid, values)
    chip.field_off()
    assert answer.ok, f"GPO {answer.sw:04X}"
    return _request(values, data, amount, **changes)


def _with_icc(request: Financial, **changes: bytes) -> Financial:
    icc = dict(request.icc)
    for name, value in changes.items():
        icc[int(name.removeprefix("t"), 16)] = value
    return dataclasses.replace(request, icc=icc)


def _other_pan(pan: str) -> str:
    """Same BIN, another account number."""
    return pan[:-4] + ("0000" if pan[-4:] != "0000" else "1111")


def _flipped(value: bytes, index: int = 0) -> bytes:
    return value[:index] + bytes([value[index] ^ 0x01]) + value[index + 1 :]


# -- pyemv as the independent oracle --------------------------------------------------------------------------


def _pyemv_session_key(imk: bytes, pan: str, psn: int, atc: bytes) -> bytes:
    udk = kd.derive_icc_mk_a(imk, pan, f"{psn:02d}")
    return tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + bytes(b ^ 0xFF for b in atc))


def _pyemv_check(imk: bytes, psn: int, request: Financial, decision: Decision, arc: bytes = b"00") -> None:
    """The card's ARQC and the host's tag 91, both recomputed with pyemv only."""
    icc = request.icc
    sk = _pyemv_session_key(imk, request.pan, psn, icc[0x9F36])
    data = b"".join(icc[t] for t in AC_TAGS) + icc[0x9F10][3:7]
    arqc = mac.mac_iso9797_3(sk[:8], sk[8:], data, 2)
    assert arqc == icc[0x9F26]
    assert decision.issuer_authentication_data == ac.generate_arpc_1(sk, arqc, arc) + arc


def _imk(world: World, issuer: str) -> bytes:
    return bytes.fromhex(world.issuer_keys(issuer)["imk_ac"])


def _assert_no_pan(decision: Decision, *pans: str) -> None:
    for pan in pans:
        assert pan not in repr(decision)
    assert decision.pan_masked[:6].isdigit() and decision.pan_masked.count("*") >= 2


# -- approvals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", ["icbc-debit", "ccb-credit"], ids=["3des-debit", "3des-credit"])
def test_a_3des_card_is_approved_with_an_arpc_that_pyemv_reproduces(world: World, host: Host, issuer: str) -> None:
    entry = _entry(world, issuer)
    before = host.account(entry["pan"])
    request = tap_card(world, issuer)
    decision = host.authorize(request)

    assert (decision.rc, decision.reason) == ("00", "APPROVED") and decision.approved
    assert decision.issuer == issuer and decision.account_id == before["id"] and decision.token_id is None
    assert (decision.amount, decision.charged, decision.discount) == (ONLINE_AMOUNT, ONLINE_AMOUNT, 0)
    assert decision.cryptogram_verified and decision.atc == int.from_bytes(request.icc[0x9F36], "big")
    _pyemv_check(_imk(world, issuer), entry["psn"], request, decision)
    _assert_no_pan(decision, entry["pan"])
    assert decision.pan_masked == entry["pan"][:6] + "******" + entry["pan"][-4:]

    after = host.account(entry["pan"])
    assert after["last_atc"] == decision.atc
    if entry["kind"] == "debit":
        assert after["balance"] == before["balance"] - ONLINE_AMOUNT
    else:
        assert after["credit_used"] == before["credit_used"] + ONLINE_AMOUNT


@pytest.mark.parametrize("issuer", ["jsb-credit", "cqcb-debit"])
def test_an_sm4_card_is_approved_and_answered_in_sm4(world: World, host: Host, issuer: str) -> None:
    entry = _entry(world, issuer)
    request = tap_card(world, issuer)
    assert request.icc[0x9F10][7] == Algorithm.SM4
    decision = host.authorize(request)
    assert decision.rc == "00"

    udk = derive_icc_master_key(Algorithm.SM4, _imk(world, issuer), entry["pan"], entry["psn"])
    sk = derive_session_key(Algorithm.SM4, udk, int.from_bytes(request.icc[0x9F36], "big"))
    assert decision.issuer_authentication_data == compute_arpc1(Algorithm.SM4, sk, request.icc[0x9F26], b"00") + b"00"
    # a 3DES answer would not be the card's algorithm
    sk3 = _pyemv_session_key(_imk(world, issuer), entry["pan"], entry["psn"], request.icc[0x9F36])
    assert decision.issuer_authentication_data[:8] != ac.generate_arpc_1(sk3, request.icc[0x9F26], b"00")


def test_the_demo_phone_token_is_approved_on_the_tsp_keys_and_charges_the_funding_account(
    world: World, host: Host
) -> None:
    vault_entry = world.tsp()["tokens"][0]
    token_pan, funding_pan = vault_entry["token_pan"], vault_entry["funding_pan"]
    before, token_before = host.account(funding_pan), host.token(token_pan)
    request = tap_phone(world)
    assert request.pan == token_pan
    decision = host.authorize(request)

    assert decision.rc == "00"
    assert decision.token_id == token_before["id"] and decision.account_id == before["id"]
    assert decision.issuer == vault_entry["issuer"] == "boc-credit"
    _pyemv_check(bytes.fromhex(world.tsp()["token_imk"]), 0, request, decision)
    _assert_no_pan(decision, token_pan, funding_pan)
    # boc-credit's promotion: 10 % off 12.34 = 1.23
    assert (decision.discount, decision.charged) == (123, 1234 - 123)
    assert decision.promotion_id is not None and decision.promotion_title
    after = host.account(funding_pan)
    assert after["credit_used"] == before["credit_used"] + 1111
    assert host.token(token_pan)["last_atc"] == decision.atc
    assert after["last_atc"] == before["last_atc"]  # the card's own counter is not the token's


def test_a_card_without_de23_uses_the_psn_from_5f34(world: World, host: Host) -> None:
    request = dataclasses.replace(tap_card(world, "boc-debit"), psn=None)
    assert host.authorize(request).rc == "00"


# -- cryptogram and ATC ---------------------------------------------------------------------------------------


def test_a_wrong_arqc_is_88_and_moves_nothing_then_the_genuine_one_passes(world: World, host: Host) -> None:
    entry = _entry(world, "icbc-debit")
    before = host.account(entry["pan"])
    request = tap_card(world, "icbc-debit")
    forged = _with_icc(request, t9F26=_flipped(request.icc[0x9F26], 3))
    decision = host.authorize(forged)
    assert (decision.rc, decision.reason) == ("88", "ARQC_MISMATCH")
    assert decision.issuer_authentication_data is None and not decision.cryptogram_verified
    after = host.account(entry["pan"])
    assert (after["balance"], after["last_atc"]) == (before["balance"], before["last_atc"])
    assert host.authorize(request).rc == "00"


def test_a_wrong_psn_is_a_cryptographic_failure(world: World, host: Host) -> None:
    request = tap_card(world, "icbc-debit")
    assert host.authorize(dataclasses.replace(request, psn=request.psn + 1)).rc == "88"


def test_the_same_arqc_again_is_an_atc_replay(world: World, host: Host) -> None:
    entry = _entry(world, "cmb-debit")
    request = tap_card(world, "cmb-debit")
    assert host.authorize(request).rc == "00"
    balance = host.account(entry["pan"])["balance"]
    replay = host.authorize(request)
    assert (replay.rc, replay.reason) == ("05", "ATC_REPLAY")
    # the cryptogram itself was genuine: the decline is answered with an ARPC for ARC "05"
    _pyemv_check(_imk(world, "cmb-debit"), entry["psn"], request, replay, b"05")
    assert host.account(entry["pan"])["balance"] == balance


def test_a_lower_atc_is_refused(world: World, host: Host) -> None:
    first = tap_card(world, "abc-credit")
    second = tap_card(world, "abc-credit", un=b"\x87\x65\x43\x21")
    assert int.from_bytes(second.icc[0x9F36], "big") == int.from_bytes(first.icc[0x9F36], "big") + 1
    assert host.authorize(second).rc == "00"
    decision = host.authorize(first)
    assert (decision.rc, decision.reason) == ("05", "ATC_REPLAY")


def test_the_token_replay_is_refused_too(world: World, host: Host) -> None:
    request = tap_phone(world)
    assert host.authorize(request).rc == "00"
    assert host.authorize(request).reason == "ATC_REPLAY"


def test_a_tc_sent_online_is_a_format_error(world: World, host: Host) -> None:
    request = tap_card(world, "boc-debit", 3_000)  # small enough: the card approves offline with a TC
    assert request.icc[0x9F10][4] == 0x90
    decision = host.authorize(_with_icc(request, t9F27=b"\x80"))
    assert (decision.rc, decision.reason) == ("30", "NOT_AN_ARQC")


def test_any_change_to_the_signed_icc_data_is_never_approved(world: World, host: Host) -> None:
    entry = _entry(world, "psbc-debit")
    request = tap_card(world, "psbc-debit")
    before = host.account(entry["pan"])
    signed = [(tag, i) for tag in (*AC_TAGS, 0x9F26) for i in range(len(request.icc[tag]))]
    signed += [(0x9F10, i) for i in range(3, 7)]  # the CVR inside the IAD

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(signed), st.integers(1, 255))
    def check(position: tuple[int, int], mask: int) -> None:
        tag, index = position
        value = bytearray(request.icc[tag])
        value[index] ^= mask
        icc = {**request.icc, tag: bytes(value)}
        changed = dataclasses.replace(request, icc=icc)
        if tag == 0x9F02 and bytes(value).hex().isdigit():  # keep DE4 = 9F02 so the cryptogram is what fails
            changed = dataclasses.replace(changed, amount=int(bytes(value).hex()) or 1)
        decision = host.authorize(changed)
        assert decision.rc != "00"
        assert decision.rc in {"13", "30", "88"}

    check()
    after = host.account(entry["pan"])
    assert (after["balance"], after["last_atc"]) == (before["balance"], before["last_atc"])
    assert host.authorize(request).rc == "00"


# -- tokens ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "rc", "reason"),
    [
        ("UPDATE tokens SET status = 'suspended', status_reason = 'LOST'", "05", "TOKEN_SUSPENDED"),
        ("UPDATE tokens SET status = 'deleted', status_reason = 'CONSUMER_DELETED'", "46", "TOKEN_DELETED"),
        ("UPDATE devices SET wallet_enabled = 0", "05", "WALLET_OFF"),
        ("UPDATE tokens SET expiry = '2020-01-31'", "54", "TOKEN_EXPIRED"),
    ],
    ids=["suspended", "deleted", "wallet-off", "token-expired"],
)
def test_token_controls(world: World, host: Host, statement: str, rc: str, reason: str) -> None:
    funding_pan = world.tsp()["tokens"][0]["funding_pan"]
    before = host.account(funding_pan)
    host.sql(statement)
    decision = host.authorize(tap_phone(world))
    assert (decision.rc, decision.reason) == (rc, reason)
    assert host.account(funding_pan)["credit_used"] == before["credit_used"]
    assert decision.issuer == world.tsp()["tokens"][0]["issuer"]  # declines by bank count it under its issuer


@pytest.mark.parametrize(("entry_mode", "rc"), [("051", "57"), ("022", "57"), ("981", "00"), ("962", "00")])
def test_a_token_pays_only_by_contactless_chip(world: World, host: Host, entry_mode: str, rc: str) -> None:
    decision = host.authorize(tap_phone(world, entry_mode=entry_mode))
    assert decision.rc == rc
    if rc == "57":
        assert decision.reason == "TOKEN_DOMAIN"


def test_an_unknown_token_is_14(world: World, host: Host) -> None:
    request = tap_phone(world)
    assert host.authorize(dataclasses.replace(request, pan=_other_pan(request.pan))).rc == "14"


# -- card, account and issuer states ---------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "rc"), [("lost", "41"), ("stolen", "43"), ("restricted", "62"),
                                            ("closed", "46"), ("frozen", "05")])
def test_card_status(world: World, host: Host, status: str, rc: str) -> None:
    pan_hash = host.vault.pan_hash(_entry(world, "hxb-credit")["pan"])
    host.sql("UPDATE accounts SET status = ? WHERE pan_hash = ?", status, pan_hash)
    assert host.authorize(tap_card(world, "hxb-credit")).rc == rc


def test_an_expired_account_is_54(world: World, host: Host) -> None:
    entry = _entry(world, "ceb-credit")
    host.sql("UPDATE accounts SET expiry = '2024-01-31' WHERE pan_hash = ?", host.vault.pan_hash(entry["pan"]))
    decision = host.authorize(tap_card(world, "ceb-credit"))
    assert (decision.rc, decision.reason) == ("54", "CARD_EXPIRED")


def test_an_expired_de14_is_54(world: World, host: Host) -> None:
    request = tap_card(world, "ceb-credit")
    assert host.authorize(dataclasses.replace(request, expiry="2401")).rc == "54"
    later = NOW.replace(year=2032, month=1, day=1)  # the card's own expiry (2031-12) has passed
    assert host.authorize(request, now=later).rc == "54"


def test_insufficient_funds_is_51_and_still_moves_the_atc(world: World, host: Host) -> None:
    entry = _entry(world, "njcb-debit")
    host.sql("UPDATE accounts SET balance = 100 WHERE pan_hash = ?", host.vault.pan_hash(entry["pan"]))
    request = tap_card(world, "njcb-debit")
    decision = host.authorize(request)
    assert (decision.rc, decision.reason) == ("51", "INSUFFICIENT_FUNDS")
    assert decision.charged == 0
    _pyemv_check(_imk(world, "njcb-debit"), entry["psn"], request, decision, b"51")
    account = host.account(entry["pan"])
    assert account["balance"] == 100 and account["last_atc"] == decision.atc
    assert host.authorize(request).reason == "ATC_REPLAY"


def test_a_debit_balance_exactly_enough_is_approved(world: World, host: Host) -> None:
    entry = _entry(world, "hzb-debit")
    host.sql("UPDATE accounts SET balance = ? WHERE pan_hash = ?", ONLINE_AMOUNT, host.vault.pan_hash(entry["pan"]))
    assert host.authorize(tap_card(world, "hzb-debit")).rc == "00"
    assert host.account(entry["pan"])["balance"] == 0


def test_a_credit_limit_exceeded_is_51(world: World, host: Host) -> None:
    entry = _entry(world, "cib-credit")
    pan_hash = host.vault.pan_hash(entry["pan"])
    host.sql("UPDATE accounts SET credit_used = credit_limit - 100 WHERE pan_hash = ?", pan_hash)
    before = host.account(entry["pan"])
    decision = host.authorize(tap_card(world, "cib-credit"))
    assert (decision.rc, decision.reason) == ("51", "CREDIT_LIMIT_EXCEEDED")
    assert host.account(entry["pan"])["credit_used"] == before["credit_used"]


def test_an_issuer_down_is_91_before_any_cryptogram_check(world: World, host: Host) -> None:
    host.sql("UPDATE issuers SET status = 'down' WHERE code = 'spdb-credit'")
    request = tap_card(world, "spdb-credit")
    decision = host.authorize(_with_icc(request, t9F26=bytes(8)))
    assert (decision.rc, decision.reason) == ("91", "ISSUER_DOWN")
    assert decision.issuer_authentication_data is None


def test_a_forced_decline_answers_that_code(world: World, host: Host) -> None:
    host.sql("UPDATE issuers SET forced_decline = '61' WHERE code = 'cgb-credit'")
    decision = host.authorize(tap_card(world, "cgb-credit"))
    assert (decision.rc, decision.reason) == ("61", "FORCED_DECLINE")


def test_added_latency_delays_the_answer(world: World, host: Host) -> None:
    host.sql("UPDATE issuers SET added_latency_ms = 250 WHERE code = 'bob-credit'")
    decision = host.authorize(tap_card(world, "bob-credit"))
    assert (decision.rc, decision.delay_ms) == ("00", 250)


def test_an_unknown_bin_is_92_and_an_unknown_pan_of_a_known_bin_is_14(world: World, host: Host) -> None:
    request = tap_card(world, "bosc-credit")
    no_route = host.authorize(dataclasses.replace(request, pan="999999" + request.pan[6:]))
    assert (no_route.rc, no_route.reason) == ("92", "NO_ROUTE")
    decision = host.authorize(dataclasses.replace(request, pan=_other_pan(request.pan)))
    assert (decision.rc, decision.reason, decision.issuer) == ("14", "UNKNOWN_CARD", "bosc-credit")


# -- message sanity -------------------------------------------------------------------------------------------


def test_message_sanity(world: World, host: Host) -> None:
    """Formats and cross-checks are the parser's (the API answers 400 naming the field; no engine sees them); the
    engine refuses with 30 the DE55 that its keys cannot recompute."""
    request = tap_card(world, "czb-credit")
    body = {**_BODY, "pan": request.pan, "psn": f"{request.psn:02d}", "expiry": request.expiry,
            "amount": request.amount, "icc": {f"{tag:X}": value.hex() for tag, value in request.icc.items()}}
    assert parse_authorization(body) == request
    for name, value in [("amount", 0), ("amount", ONLINE_AMOUNT - 1), ("currency", "840"), ("expiry", "3113"),
                        ("entry_mode", "7"), ("pan", "62A0")]:
        with pytest.raises(MessageError) as refused:
            parse_authorization({**body, name: value})
        assert refused.value.field == name, (name, value)
    for tag in (*AC_TAGS, 0x9F10, 0x9F26):
        icc = {t: v for t, v in request.icc.items() if t != tag}
        assert host.authorize(dataclasses.replace(request, icc=icc)).rc == "30", f"{tag:X}"
    assert host.authorize(_with_icc(request, t9F36=b"\x00\x01\x02")).rc == "30"
    iad = bytearray(request.icc[0x9F10])
    iad[2] = 0x12  # not CVN 01
    assert host.authorize(_with_icc(request, t9F10=bytes(iad))).rc == "30"
    # the genuine message still passes after all of that
    assert host.authorize(request).rc == "00"


# -- promotions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "discount"), [(5_000, 500), (ONLINE_AMOUNT, 2_000)], ids=["10-percent", "capped"])
def test_the_boc_credit_promotion_lowers_what_is_charged(world: World, host: Host, amount: int, discount: int) -> None:
    entry = _entry(world, "boc-credit")
    before = host.account(entry["pan"])
    decision = host.authorize(tap_card(world, "boc-credit", amount, ttq=TTQ_ONLINE_REQUIRED))
    assert decision.rc == "00"
    assert (decision.amount, decision.discount, decision.charged) == (amount, discount, amount - discount)
    assert decision.promotion_title and "10 %" in decision.promotion_title
    assert host.account(entry["pan"])["credit_used"] == before["credit_used"] + amount - discount


@pytest.mark.parametrize(
    "statement",
    ["UPDATE promotions SET starts = '2020-01-01', ends = '2020-12-31'",
     "UPDATE promotions SET starts = '2099-01-01', ends = '2099-12-31'",
     "UPDATE promotions SET active = 0"],
    ids=["ended", "not-yet", "inactive"],
)
def test_no_discount_outside_the_promotion(world: World, host: Host, statement: str) -> None:
    host.sql(statement)
    decision = host.authorize(tap_card(world, "boc-credit"))
    assert decision.rc == "00"
    assert (decision.discount, decision.charged, decision.promotion_id) == (0, ONLINE_AMOUNT, None)


def test_other_issuers_get_no_discount(world: World, host: Host) -> None:
    decision = host.authorize(tap_card(world, "boc-debit"))
    assert (decision.discount, decision.charged) == (0, ONLINE_AMOUNT)


# -- reversal -------------------------------------------------------------------------------------------------


def _row(decision: Decision, state: str = "approved", **changes: Any) -> Transaction:
    """The authorization row the decision was stored as (the fields a reversal reads; the rest empty)."""
    empty = {field.name: None for field in dataclasses.fields(Transaction)}
    return Transaction(**{**empty, "kind": "authorization", "rc": decision.rc, "state": state,
                          "account_id": decision.account_id, "amount": decision.amount, "charged": decision.charged,
                          "reversed_amount": 0, "reversed_charged": 0, **changes})


@pytest.mark.parametrize("issuer", ["icbc-debit", "boc-credit"])
def test_reverse_gives_back_what_was_charged_once(world: World, host: Host, issuer: str) -> None:
    entry = _entry(world, issuer)
    before = host.account(entry["pan"])
    decision = host.authorize(tap_card(world, issuer))
    assert decision.rc == "00"
    host.reverse(_row(decision))
    after = host.account(entry["pan"])
    assert (after["balance"], after["credit_used"]) == (before["balance"], before["credit_used"])
    host.reverse(_row(decision, state="reversed"))  # a repeated reversal of a row already marked
    again = host.account(entry["pan"])
    assert (again["balance"], again["credit_used"]) == (before["balance"], before["credit_used"])


def test_reverse_of_a_decline_gives_nothing_and_of_an_approval_what_it_charged(world: World, host: Host) -> None:
    entry = _entry(world, "egb-debit")
    host.sql("UPDATE accounts SET balance = 100 WHERE pan_hash = ?", host.vault.pan_hash(entry["pan"]))
    declined = host.authorize(tap_card(world, "egb-debit"))
    assert declined.rc == "51"
    host.reverse(_row(declined))
    assert host.account(entry["pan"])["balance"] == 100
    host.reverse(_row(declined, rc="00", amount=50, charged=40))  # an approval of 50 that a promotion made 40
    assert host.account(entry["pan"])["balance"] == 140


# -- offline advices ------------------------------------------------------------------------------------------


def _offline_tap(world: World, issuer: str, amount: int = 3_000) -> Financial:
    request = tap_card(world, issuer, amount)
    assert request.icc[0x9F10][4] == 0x90  # the card approved it offline: a TC
    return _with_icc(request, t9F27=b"\x40")


def test_an_offline_tc_is_posted_and_its_atc_kept(world: World, host: Host) -> None:
    entry = _entry(world, "bocom-debit")
    before = host.account(entry["pan"])
    request = _offline_tap(world, "bocom-debit")
    decision = host.advise(request)
    assert (decision.rc, decision.reason) == ("00", "OFFLINE_APPROVED")
    assert decision.cryptogram_verified and decision.issuer_authentication_data is None
    after = host.account(entry["pan"])
    assert after["balance"] == before["balance"] - 3_000
    assert after["last_atc"] == decision.atc
    # an online ARQC with the same (old) ATC afterwards is a replay
    assert host.authorize(request).rc != "00"


def test_an_offline_advice_ignores_the_issuer_switches(world: World, host: Host) -> None:
    entry = _entry(world, "icbc-debit")
    pan_hash = host.vault.pan_hash(entry["pan"])
    host.sql("UPDATE accounts SET balance = 1000 WHERE pan_hash = ?", pan_hash)
    host.sql("UPDATE issuers SET status = 'down', forced_decline = '05' WHERE code = 'icbc-debit'")
    decision = host.advise(_offline_tap(world, "icbc-debit"))
    assert (decision.rc, decision.reason) == ("00", "OFFLINE_APPROVED")
    assert host.account(entry["pan"])["balance"] == 1000 - 3_000  # below zero: the card approved it, the TC proves it


def test_an_advice_for_a_lost_card_moves_no_money(world: World, host: Host) -> None:
    entry = _entry(world, "icbc-debit")
    host.sql("UPDATE accounts SET status = 'lost' WHERE pan_hash = ?", host.vault.pan_hash(entry["pan"]))
    decision = host.advise(_offline_tap(world, "icbc-debit"))
    assert (decision.approved, decision.reason, decision.charged) == (False, "CARD_LOST", 0)
    assert host.account(entry["pan"])["balance"] == 500_000


def test_an_unverifiable_tc_moves_no_money(world: World, host: Host) -> None:
    entry = _entry(world, "cmb-debit")
    before = host.account(entry["pan"])
    request = _offline_tap(world, "cmb-debit")
    decision = host.advise(_with_icc(request, t9F26=_flipped(request.icc[0x9F26])))
    assert (decision.approved, decision.reason, decision.cryptogram_verified) == (False, "TC_UNVERIFIED", False)
    after = host.account(entry["pan"])
    assert after["balance"] == before["balance"]
    assert after["last_atc"] == before["last_atc"]  # an unverified counter is not trusted


def test_an_advice_over_the_floor_limit_moves_no_money(world: World, host: Host) -> None:
    entry = _entry(world, "cmb-debit")
    decision = host.advise(_offline_tap(world, "cmb-debit"), floor_limit=2_999)
    assert (decision.approved, decision.reason) == (False, "OVER_FLOOR_LIMIT")
    assert host.account(entry["pan"])["balance"] == 500_000
    assert host.advise(_offline_tap(world, "cmb-debit"), floor_limit=3_000).approved  # at the limit: offline is fine


def test_an_advice_with_a_lower_atc_keeps_the_higher_one(world: World, host: Host) -> None:
    entry = _entry(world, "ccb-debit")
    early = _offline_tap(world, "ccb-debit")
    late = tap_card(world, "ccb-debit")  # online, a later ATC
    assert host.authorize(late).rc == "00"
    assert host.advise(early).rc == "00"
    assert host.account(entry["pan"])["last_atc"] == int.from_bytes(late.icc[0x9F36], "big")


def test_an_advice_for_an_arqc_or_an_unknown_card_moves_no_money(world: World, host: Host) -> None:
    request = tap_card(world, "cmbc-credit")
    assert (host.advise(request).reason, host.advise(request).charged) == ("NOT_A_TC", 0)
    unknown = host.advise(dataclasses.replace(request, pan=_other_pan(request.pan)))
    assert (unknown.approved, unknown.reason, unknown.charged) == (False, "UNKNOWN_CARD", 0)
    assert host.account(request.pan)["credit_used"] == 0


def test_an_advice_whose_cryptogram_data_this_issuer_cannot_recompute_is_30(world: World, host: Host) -> None:
    """The formats (DE4 = 9F02 …) are the parser's; the engine refuses the DE55 its keys cannot check: 9F10 that
    is not CVN 01. The account is not touched."""
    entry = _entry(world, "pab-credit")
    request = _offline_tap(world, "pab-credit")
    iad = bytearray(request.icc[0x9F10])
    iad[2] ^= 0xFF  # the CVN byte
    decision = host.advise(_with_icc(request, t9F10=bytes(iad)))
    assert (decision.rc, decision.reason, decision.charged) == ("30", "FORMAT_ICC", 0)
    assert host.account(entry["pan"])["credit_used"] == 0


def _approved_today(host: Host, account_id: int, count: int, charged: int) -> None:
    """Earlier approvals of this account today, as the terminal API would have recorded them."""
    for number in range(count):
        host.sql(
            "INSERT INTO transactions (kind, mti, tid, stan, local_date, request_hash, state, rc, amount, charged,"
            " account_id, response, created) VALUES ('authorization', '0200', 'QP000001', ?, ?, 'x', 'approved',"
            " '00', ?, ?, ?, '{}', ?)",
            f"{900000 + number:06d}", NOW.date().isoformat(), charged, charged, account_id, NOW.isoformat(),
        )


@pytest.mark.parametrize(("count", "charged", "rc", "reason"), [
    (engine.VELOCITY_DAILY_COUNT, 100, "65", "VELOCITY_COUNT"),
    (1, engine.VELOCITY_DAILY_AMOUNT - ONLINE_AMOUNT + 1, "61", "VELOCITY_AMOUNT"),
    (engine.VELOCITY_DAILY_COUNT - 1, 100, "00", "APPROVED"),
])
def test_daily_velocity_limits_decline_before_any_money_moves(
    world: World, host: Host, count: int, charged: int, rc: str, reason: str
) -> None:
    entry = _entry(world, "spdb-credit")
    account = host.account(entry["pan"])
    _approved_today(host, account["id"], count, charged)
    decision = host.authorize(tap_card(world, "spdb-credit"))
    assert (decision.rc, decision.reason) == (rc, reason)
    used = host.account(entry["pan"])["credit_used"]
    assert used == (account["credit_used"] + ONLINE_AMOUNT if rc == "00" else account["credit_used"])
