"""emvcore.pcsc: the ATR a PC/SC reader makes for a contactless card, ATR parsing, the GET DATA pseudo-APDU."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore import pcsc

SOFTWARE_CARD_ATS = bytes.fromhex("0578807002")  # TL 05, T0 78: TA1 80, TB1 70, TC1 02, no historical bytes


def test_the_atr_of_an_iso_dep_card_without_historical_bytes() -> None:
    """PC/SC Part 3's example layout, and what ACR122U-class readers show for most payment cards and phones."""
    assert pcsc.ats_historical_bytes(SOFTWARE_CARD_ATS) == b""
    assert pcsc.contactless_atr(b"") == bytes.fromhex("3B80800101")


def test_historical_bytes_go_into_the_atr_and_come_back_out() -> None:
    historical = bytes.fromhex("8073C821100A")
    ats = bytes.fromhex("0B78807002") + historical  # TL 0B = 5 + 6
    assert pcsc.ats_historical_bytes(ats) == historical
    atr = pcsc.contactless_atr(historical)
    assert atr[:4] == bytes([0x3B, 0x80 | len(historical), 0x80, 0x01]) and atr[4:-1] == historical
    tck = 0
    for byte in atr[1:]:
        tck ^= byte
    assert tck == 0  # TCK makes the XOR from T0 on zero
    assert pcsc.atr_historical_bytes(atr) == historical and pcsc.is_contactless_iso_dep(atr)


@given(st.binary(max_size=15))
def test_any_historical_bytes_round_trip(historical: bytes) -> None:
    assert pcsc.atr_historical_bytes(pcsc.contactless_atr(historical)) == historical


def test_a_contact_card_atr_parses_with_t0_only_and_no_tck() -> None:
    atr = bytes.fromhex("3B6500002063CBA680")  # T=0 only (no TD1): 5 historical bytes, no TCK
    assert pcsc.atr_historical_bytes(atr) == bytes.fromhex("2063CBA680")
    assert not pcsc.is_contactless_iso_dep(atr)


@pytest.mark.parametrize(("atr", "problem"), [
    ("", "no TS"), ("3B", "no TS"), ("4B80800101", "no TS"),
    ("3B8080010100", "TCK missing or wrong"), ("3B80800102", "TCK missing or wrong"),
    ("3B8F800101", "announces 15 historical bytes"), ("3B80", "cut inside"),
    ("3B650000206301", "announces 5 historical bytes"),
])
def test_broken_atrs_are_refused_by_name(atr: str, problem: str) -> None:
    with pytest.raises(pcsc.AtrError, match=problem):
        pcsc.atr_historical_bytes(bytes.fromhex(atr))


@pytest.mark.parametrize(("ats", "problem"), [("", "TL"), ("0578", "TL"), ("0278", "announces more")])
def test_broken_ats_are_refused(ats: str, problem: str) -> None:
    with pytest.raises(pcsc.AtrError, match=problem):
        pcsc.ats_historical_bytes(bytes.fromhex(ats))


def test_too_many_historical_bytes_for_an_atr() -> None:
    with pytest.raises(pcsc.AtrError, match="at most 15"):
        pcsc.contactless_atr(bytes(16))


def test_the_reader_answers_get_data_and_passes_everything_else_on() -> None:
    uid = bytes.fromhex("08A1B2C3")
    assert pcsc.reader_answer(pcsc.GET_UID, uid, SOFTWARE_CARD_ATS) == uid + b"\x90\x00"
    assert pcsc.reader_answer(bytes.fromhex("FFCA000002"), uid, SOFTWARE_CARD_ATS) == b"\x6c\x04"  # Le too short
    assert pcsc.reader_answer(bytes.fromhex("FFCA010000"), uid, SOFTWARE_CARD_ATS) == b"\x90\x00"  # no historicals
    assert pcsc.reader_answer(bytes.fromhex("FFCA020000"), uid, SOFTWARE_CARD_ATS) == b"\x6a\x81"
    assert pcsc.reader_answer(bytes.fromhex("FFCA0000"), uid, SOFTWARE_CARD_ATS) == b"\x67\x00"
    assert pcsc.reader_answer(bytes.fromhex("00A404000E325041592E5359532E444446303100"), uid,
                              SOFTWARE_CARD_ATS) is None
