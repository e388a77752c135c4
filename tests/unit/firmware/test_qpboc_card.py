"""qPBOC debit/credit cards of the test world, checked from the outside as a terminal and an issuer would."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import kd, mac, tools
from reader import TTQ_CARD_READER, read_records, select, send, tap, terminal_data

from emvcore import tlv
from emvcore.apdu import CommandApdu
from emvcore.crypto import oda
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
TODAY = datetime.date.today()


def _card(world: World, issuer: str) -> tuple[PlainCard, dict]:
    entry = next(c for c in world.cards() if c["issuer"] == issuer)
    return PlainCard.load(world.path(Path(entry["file"]))), entry


def _aid(entry: dict) -> bytes:
    return DEBIT_AID if entry["kind"] == "debit" else CREDIT_AID


def _pyemv_arqc(imk: bytes, pan: str, psn: int, terminal: dict[int, bytes], card: dict[int, bytes]) -> bytes:
    """The issuer's computation with pyemv only (an implementation independent of emvcore)."""
    udk = kd.derive_icc_mk_a(imk, pan, f"{psn:02d}")
    atc = card[0x9F36]
    inverted = bytes(b ^ 0xFF for b in atc)
    session_key = tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + inverted)
    data = b"".join(terminal[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37))
    data += card[0x82] + atc + card[0x9F10][3:7]
    return mac.mac_iso9797_3(session_key[:8], session_key[8:], data, 2)


@pytest.mark.parametrize("issuer", ["icbc-credit", "boc-debit", "cmb-credit", "psbc-debit"])
def test_online_gpo_gives_an_arqc_that_pyemv_reproduces(world: World, issuer: str) -> None:
    card, entry = _card(world, issuer)
    # above the card's offline balance: the card must go online
    values = terminal_data(150_000, ttq=TTQ_CARD_READER)
    answer, data = tap(card.chip(), _aid(entry), values)
    assert answer.ok
    assert data[0x9F10][4] == 0xA0  # CVR byte 2: ARQC
    assert 0x94 not in data  # the three-APDU online tap: no records to read
    imk = bytes.fromhex(world.issuer_keys(issuer)["imk_ac"])
    assert data[0x9F26] == _pyemv_arqc(imk, entry["pan"], entry["psn"], values, data)
    assert data[0x57].hex().upper().startswith(entry["pan"] + "D")


def test_sm4_issuer_cards_mark_the_algorithm_in_the_iad(world: World) -> None:
    card, entry = _card(world, "jsb-credit")
    answer, data = tap(card.chip(), _aid(entry), terminal_data(150_000, ttq=TTQ_CARD_READER))
    assert answer.ok and data[0x9F10][7] == 0x04
    imk = bytes.fromhex(world.issuer_keys("jsb-credit")["imk_ac"])
    # a 3DES computation must not match an SM4 card's cryptogram
    assert data[0x9F26] != _pyemv_arqc(imk, entry["pan"], entry["psn"], terminal_data(150_000), data)


def test_atc_increments_on_every_gpo_and_survives_a_restart(world: World) -> None:
    card, entry = _card(world, "ccb-debit")
    atcs = []
    for _ in range(3):
        _, data = tap(card.chip(), _aid(entry), terminal_data(150_000, ttq=TTQ_CARD_READER))
        atcs.append(int.from_bytes(data[0x9F36], "big"))
        card = PlainCard.load(card.path)  # power cycle: the card comes back from its file
    assert atcs == [atcs[0], atcs[0] + 1, atcs[0] + 2]
    assert card.applications[0].state.atc == atcs[-1]


@pytest.fixture(scope="module")
def offline_tap(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One offline tap of a plain debit card: the GPO answer, the records, and the terminal data."""
    root = tmp_path_factory.mktemp("offline") / "world"
    shutil.copytree(world_template.root, root)
    world = World.open(root)
    card, entry = _card(world, "bocom-debit")
    chip = card.chip()
    values = terminal_data(1234, ttq=TTQ_CARD_READER, un=bytes.fromhex("A1B2C3D4"))
    answer, data = tap(chip, DEBIT_AID, values)
    records = read_records(chip, data[0x94])
    return {"answer": answer, "data": data, "records": records, "values": values, "world": world, "entry": entry}


def _verify_fdda(capk: oda.CaPublicKey, pan: str, records: list[tuple[int, bytes]], data: dict[int, bytes],
                 values: dict[int, bytes]) -> bytes:
    """The terminal's fDDA: CA → issuer → ICC key, then the SDAD over the v01 terminal dynamic data."""
    found: dict[int, bytes] = {}
    for _, record in records:
        found.update(tlv.flatten(record))
    issuer_key = oda.recover_issuer_key(capk, found[0x90], found.get(0x92, b""), found[0x9F32], pan, TODAY)
    static = oda.static_data_to_authenticate(records[:1], data[0x82], found.get(0x9F4A, b""))
    icc_key = oda.recover_icc_key(
        issuer_key, found[0x9F46], found.get(0x9F48, b""), found[0x9F47], pan, static, TODAY
    )
    dynamic = oda.fdda_terminal_data(1, values[0x9F37], values[0x9F02], values[0x5F2A], data[0x9F69])
    return oda.verify_dynamic_data(icc_key, data[0x9F4B], dynamic)


def test_offline_tap_gives_a_tc_whose_sdad_verifies_through_the_whole_chain(offline_tap: dict) -> None:
    data, world = offline_tap["data"], offline_tap["world"]
    assert data[0x9F10][4] == 0x90  # TC
    assert data[0x94] == bytes.fromhex("08010301")
    capk = world.capks()[0]
    assert capk.rid == bytes.fromhex("A000000333")
    idn = _verify_fdda(capk, offline_tap["entry"]["pan"], offline_tap["records"], data, offline_tap["values"])
    assert idn == data[0x9F36]  # the ICC dynamic number is the ATC
    assert data[0x9F69][0] == 0x01 and data[0x9F69][5:7] == data[0x9F6C]


@settings(max_examples=60, deadline=None)
@given(target=st.sampled_from(["90", "92", "9F46", "9F48", "static", "sdad", "un", "amount", "9F69"]),
       position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_changing_any_byte_of_chain_sdad_or_terminal_data_fails_fdda(
    offline_tap: dict, target: str, position: int, flip: int
) -> None:
    data = dict(offline_tap["data"])
    values = dict(offline_tap["values"])
    records = list(offline_tap["records"])

    def flipped(value: bytes) -> bytes:
        index = position % len(value)
        return value[:index] + bytes([value[index] ^ flip]) + value[index + 1 :]

    if target in ("90", "92", "9F46", "9F48"):
        tag = int(target, 16)
        for i, (sfi, record) in enumerate(records):
            value = tlv.find(record, tag)
            if value is not None:
                records[i] = (sfi, record.replace(value, flipped(value)))
    elif target == "static":
        sfi, record = records[0]
        inner = tlv.parse_one(record).value
        records[0] = (sfi, tlv.encode(0x70, flipped(inner)))
    elif target == "sdad":
        data[0x9F4B] = flipped(data[0x9F4B])
    elif target == "un":
        values[0x9F37] = flipped(values[0x9F37])
    elif target == "amount":
        values[0x9F02] = flipped(values[0x9F02])
    else:
        data[0x9F69] = flipped(data[0x9F69])
    capk = offline_tap["world"].capks()[0]
    with pytest.raises((oda.OdaError, tlv.TlvError)):
        _verify_fdda(capk, offline_tap["entry"]["pan"], records, data, values)


def test_offline_spending_comes_off_the_offline_balance_then_the_card_goes_online(world: World) -> None:
    card, _ = _card(world, "abc-debit")
    app = card.applications[0]
    app.state.offline_balance = 2_000
    cryptograms = []
    for _ in range(3):
        _, data = tap(card.chip(), DEBIT_AID, terminal_data(900, ttq=TTQ_CARD_READER))
        cryptograms.append(data[0x9F10][4])
    assert cryptograms == [0x90, 0x90, 0xA0]  # ¥9 + ¥9 offline, the third does not fit in ¥2 left
    assert PlainCard.load(card.path).applications[0].state.offline_balance == 200


def test_online_required_by_the_reader_overrides_offline(world: World) -> None:
    card, _ = _card(world, "abc-debit")
    ttq = bytes([0x26, 0x80, 0x00, 0x80])  # 2.8 online cryptogram required
    _, data = tap(card.chip(), DEBIT_AID, terminal_data(100, ttq=ttq))
    assert data[0x9F10][4] == 0xA0


def test_blocked_card_declines_with_an_aac(world: World) -> None:
    card, _ = _card(world, "citic-credit")
    card.applications[0].state.blocked = True
    _, data = tap(card.chip(), CREDIT_AID, terminal_data(100, ttq=TTQ_CARD_READER))
    assert data[0x9F10][4] == 0x80


def test_offline_only_reader_and_no_offline_room_declines(world: World) -> None:
    card, _ = _card(world, "citic-credit")
    ttq = bytes([0x2E, 0x00, 0x00, 0x80])  # 1.4 offline-only reader
    _, data = tap(card.chip(), CREDIT_AID, terminal_data(900_000, ttq=ttq))
    assert data[0x9F10][4] == 0x80


@pytest.mark.parametrize(("ttq", "ctq"), [
    (bytes.fromhex("26400080"), bytes.fromhex("6000")),  # CVM required, signature supported → signature
    (bytes.fromhex("24400080"), bytes.fromhex("A000")),  # CVM required, no signature → online PIN
    (bytes.fromhex("26000080"), bytes.fromhex("2000")),  # no CVM required
])
def test_plain_card_asks_for_the_cvm_the_reader_supports(world: World, ttq: bytes, ctq: bytes) -> None:
    card, _ = _card(world, "hxb-credit")
    _, data = tap(card.chip(), CREDIT_AID, terminal_data(150_000, ttq=ttq))
    assert data[0x9F6C] == ctq


def test_reader_without_qpboc_is_sent_to_another_interface(world: World) -> None:
    card, _ = _card(world, "hxb-credit")
    answer, _ = tap(card.chip(), CREDIT_AID, terminal_data(100, ttq=bytes.fromhex("06000080")))
    assert answer.sw == 0x6985


def test_ppse_lists_the_application_and_partial_selection_works(world: World) -> None:
    card, _ = _card(world, "icbc-debit")
    chip = card.chip()
    ppse = send(chip, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256))
    assert tlv.find(ppse.data, 0x4F) == DEBIT_AID
    assert select(chip, bytes.fromhex("A0000003330101")).ok  # partial AID, as terminal AID tables use
    assert select(chip, bytes.fromhex("A0000003330101"), next_occurrence=True).sw == 0x6A82
    assert select(chip, CREDIT_AID).sw == 0x6A82


@pytest.mark.parametrize(("command", "sw"), [
    ("80A8000000", 0x6A80),  # GPO, no 83 template (Le only)
    ("80A80000028300", 0x6700),  # GPO without Le
    ("80A8000002830000", 0x6700),  # PDOL data of the wrong length
    ("80A8010002830000", 0x6A86),  # GPO P1 wrong
    ("80A800000384010000", 0x6A80),  # not an 83 template
    ("00B2010400", 0x6A86),  # READ RECORD with SFI 0
    ("00B2090C00", 0x6A83),  # no such record
    ("80CA9F7F00", 0x6A88),  # GET DATA of an unknown tag
    ("80AE800000", 0x6985),  # GENERATE AC: full PBOC flow not offered
    ("00EE000000", 0x6D00),  # unknown instruction
    ("84CA9F3600", 0x6E00),  # wrong class
    ("80A8", 0x6700),  # too short to be an APDU
])
def test_wrong_commands_get_iso_status_words(world: World, command: str, sw: int) -> None:
    card, _ = _card(world, "icbc-debit")
    chip = card.chip()
    assert select(chip, DEBIT_AID).ok
    response = chip.transceive(bytes.fromhex(command))
    assert int.from_bytes(response[-2:], "big") == sw and len(response) == 2


def test_commands_before_any_selection_are_refused(world: World) -> None:
    card, _ = _card(world, "icbc-debit")
    assert card.chip().transceive(bytes.fromhex("80CA9F3600")) == bytes.fromhex("6985")


def test_get_data_reads_the_atc(world: World) -> None:
    card, _ = _card(world, "icbc-debit")
    chip = card.chip()
    tap(chip, DEBIT_AID, terminal_data(150_000, ttq=TTQ_CARD_READER))
    answer = send(chip, CommandApdu(0x80, 0xCA, 0x9F, 0x36, le=256))
    assert tlv.find(answer.data, 0x9F36) == card.applications[0].state.atc.to_bytes(2, "big")


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(min_size=0, max_size=300))
def test_any_bytes_get_a_status_word_never_an_exception(world_template: World, raw: bytes) -> None:
    card, _ = _card(world_template, "icbc-debit")
    card.save = lambda: None  # type: ignore[method-assign]  # the template is shared: keep it unchanged
    for app in card.applications:
        app._on_change = lambda: None  # type: ignore[attr-defined]
    chip = card.chip()
    select(chip, DEBIT_AID)
    response = chip.transceive(raw)
    assert len(response) >= 2
