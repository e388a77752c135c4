"""emvcore.bitfields: each named bit reads as its name alone, values as values, and no input raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore.bitfields import AIP_BITS, CTQ_WORDS, CVR_BITS, TTQ_WORDS, TVR_BITS, describe
from emvcore.qpboc import Ctq, Ttq


def _only(byte: int, bit: int, size: int) -> bytes:
    raw = bytearray(size)
    raw[byte - 1] = 1 << (bit - 1)
    return bytes(raw)


@pytest.mark.parametrize(("tag", "names", "size"), [(0x95, TVR_BITS, 5), (0x82, AIP_BITS, 2)])
def test_each_named_bit_reads_as_its_name_alone(tag: int, names: dict[tuple[int, int], str], size: int) -> None:
    for (byte, bit), name in names.items():
        assert describe(tag, _only(byte, bit, size)) == [name]
    assert describe(tag, _only(1, 1, size) if tag == 0x95 else _only(2, 8, size)) == [
        "byte 1 bit 1: RFU (set)" if tag == 0x95 else "byte 2 bit 8: RFU (set)"]


def test_an_all_zero_tvr_says_so() -> None:
    assert describe(0x95, bytes(5)) == ["No bit set: nothing to report"]


def test_the_cvr_flags_and_its_values() -> None:
    for (byte, bit), name in CVR_BITS.items():
        cvr = bytearray.fromhex("03A00000")
        cvr[byte - 1] |= 1 << (bit - 1)
        lines = describe(0x9F10, bytes.fromhex("070101") + bytes(cvr) + bytes.fromhex("01"))
        assert lines[2:] == [name], (byte, bit)
    lines = describe(0x9F10, bytes.fromhex("07020103902830040A01") + bytes(9))
    assert lines == ["CVN 01, key index (DKI) 02, algorithm SM4",
                     "CVR 03902830: first GENERATE AC TC, second not requested",
                     "Velocity checking exceeded", "Issuer authentication failed on last online transaction",
                     "3 issuer script command(s)"]
    assert describe(0x9F10, bytes.fromhex("0601010300000001")) == ["IAD (9F10) starts with 06, not the length 07"]


def test_qualifiers_are_read_by_their_own_table() -> None:
    """The same bit value means different things in the TTQ and the CTQ (an IntFlag of one class equals an int of
    the other): each is read by its own table."""
    assert describe(0x9F66, bytes.fromhex("00000080")) == [TTQ_WORDS[Ttq.FDDA_V01]]
    assert describe(0x9F6C, bytes.fromhex("0080")) == [CTQ_WORDS[Ctq.CDCVM_PERFORMED]]
    assert set(TTQ_WORDS) == set(Ttq) and set(CTQ_WORDS) == set(Ctq)  # every declared bit has its words
    assert describe(0x9F6C, bytes.fromhex("0001")) == ["Other bits 0001"]


@pytest.mark.parametrize(("raw", "lines"), [
    ("3F0000", ["Performed: No CVM performed", "Condition 00", "Result: Unknown"]),
    ("5E0302", ["Performed: Signature (paper)", "Apply succeeding CV rule if unsuccessful", "Condition 03",
                "Result: Successful"]),
    ("1F00", ["2 bytes, not the 3 of CVM results"]),
])
def test_cvm_results(raw: str, lines: list[str]) -> None:
    assert describe(0x9F34, bytes.fromhex(raw)) == lines


@given(st.sampled_from([0x95, 0x82, 0x9F34, 0x9F66, 0x9F6C, 0x9F10, 0x9F26]), st.binary(max_size=40))
def test_no_input_raises(tag: int, raw: bytes) -> None:
    lines = describe(tag, raw)
    assert isinstance(lines, list) and all(isinstance(line, str) and line for line in lines)
