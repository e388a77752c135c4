"""DOL parsing and filling (EMV Book 3 §5.4), terminal and card side."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore.bcd import amount_n12
from emvcore.dol import DolError, build_dol_data, dol_length, encode_dol, parse_dol, split_dol_data
from emvcore.tags import tag_info

# The PDOL UnionPay cards usually request (emv-qpboc.md §2.3).
UNIONPAY_PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
UNIONPAY_ENTRIES = [
    (0x9F66, 4),
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
]
TERMINAL_VALUES = {
    0x9F66: bytes.fromhex("26000080"),
    0x9F02: amount_n12(56399),
    0x9F03: amount_n12(0),
    0x9F1A: bytes.fromhex("0156"),
    0x95: bytes(5),
    0x5F2A: bytes.fromhex("0156"),
    0x9A: bytes.fromhex("250630"),
    0x9C: b"\x00",
    0x9F37: bytes.fromhex("11223344"),
}
EXPECTED_PDOL_DATA = bytes.fromhex("26000080 000000056399 000000000000 0156 0000000000 0156 250630 00 11223344")


def test_parse_unionpay_pdol() -> None:
    assert parse_dol(UNIONPAY_PDOL) == UNIONPAY_ENTRIES
    assert dol_length(UNIONPAY_PDOL) == 33
    assert encode_dol(UNIONPAY_ENTRIES) == UNIONPAY_PDOL


def test_build_unionpay_pdol_data() -> None:
    data = build_dol_data(UNIONPAY_PDOL, TERMINAL_VALUES)
    assert len(data) == 33
    assert data == EXPECTED_PDOL_DATA
    assert build_dol_data(UNIONPAY_ENTRIES, TERMINAL_VALUES) == data


def test_split_unionpay_pdol_data() -> None:
    assert split_dol_data(UNIONPAY_PDOL, EXPECTED_PDOL_DATA) == TERMINAL_VALUES


def test_unknown_tags_are_zero_filled() -> None:
    dol = UNIONPAY_PDOL + bytes.fromhex("9F7A01DF6001DF6901")
    data = build_dol_data(dol, TERMINAL_VALUES)
    assert len(data) == 36
    assert data == EXPECTED_PDOL_DATA + bytes(3)
    assert build_dol_data(dol, {}) == bytes(36)


def test_constructed_tags_are_zero_filled_even_if_known() -> None:
    assert build_dol_data([(0x70, 3)], {0x70: b"\x01\x02\x03"}) == bytes(3)


@pytest.mark.parametrize(
    ("tag", "value", "length", "expected"),
    [
        # n: left-pad with 00, truncate on the left (keep the low-order digits)
        (0x9F02, "056399", 6, "000000056399"),
        (0x9F02, "000000056399", 4, "00056399"),
        (0x9A, "20250630", 3, "250630"),
        # cn: right-pad with FF, truncate on the right
        (0x5A, "6212345678901234", 10, "6212345678901234FFFF"),
        (0x5A, "6212345678901234", 4, "62123456"),
        # b / an / ans: right-pad with 00, truncate on the right
        (0x9F37, "1122", 4, "11220000"),
        (0x9F37, "1122334455", 4, "11223344"),
        (0x9F4E, "4142", 4, "41420000"),  # ans
        (0x9F1E, "3132333435363738", 4, "31323334"),  # an
        (0xDF7F, "AB", 3, "AB0000"),  # unknown tag counts as b
        (0x9F66, "26000080", 4, "26000080"),  # exact length untouched
        (0x9F66, "26000080", 0, ""),
    ],
)
def test_fitting_rules(tag: int, value: str, length: int, expected: str) -> None:
    assert build_dol_data([(tag, length)], {tag: bytes.fromhex(value)}) == bytes.fromhex(expected)


@pytest.mark.parametrize(
    "dol",
    [
        "9F",  # tag cut short
        "9F66",  # no length
        "9F66049F02",  # second entry has no length
        "0004",  # padding byte is not a tag
        "9F8181818101",  # tag longer than 4 bytes
    ],
)
def test_malformed_dol(dol: str) -> None:
    with pytest.raises(DolError):
        parse_dol(bytes.fromhex(dol))
    with pytest.raises(DolError):
        build_dol_data(bytes.fromhex(dol), {})


@pytest.mark.parametrize("entries", [[(0x9F66, 256)], [(0x9F66, -1)], [(0x5F, 1)], [(0x00, 1)]])
def test_bad_entry_lists(entries: list[tuple[int, int]]) -> None:
    with pytest.raises(DolError):
        build_dol_data(entries, {})


@pytest.mark.parametrize("size", [0, 32, 34])
def test_split_wrong_total_length(size: int) -> None:
    with pytest.raises(DolError):
        split_dol_data(UNIONPAY_PDOL, bytes(size))


def test_split_repeated_tag_keeps_first() -> None:
    assert split_dol_data([(0x9F37, 2), (0x9F37, 2)], b"\x01\x02\x03\x04") == {0x9F37: b"\x01\x02"}


def test_empty_dol() -> None:
    assert parse_dol(b"") == []
    assert build_dol_data(b"", TERMINAL_VALUES) == b""
    assert split_dol_data(b"", b"") == {}


entry_tags = st.sampled_from([0x9F66, 0x9F02, 0x9F1A, 0x95, 0x5A, 0x9F4E, 0x9F37, 0xDF60, 0x9F7A, 0xDF8101])


@given(st.lists(st.tuples(entry_tags, st.integers(0, 255)), max_size=12, unique_by=lambda e: e[0]))
def test_build_and_split_agree(entries: list[tuple[int, int]]) -> None:
    dol = encode_dol(entries)
    assert parse_dol(dol) == entries
    values = {tag: bytes([length % 256]) * length for tag, length in entries}
    data = build_dol_data(dol, values)
    assert len(data) == sum(length for _, length in entries)
    assert split_dol_data(dol, data) == values


@given(entry_tags, st.integers(0, 255), st.binary(max_size=300))
def test_any_value_is_fitted_to_the_asked_length(tag: int, length: int, value: bytes) -> None:
    data = build_dol_data([(tag, length)], {tag: value})
    assert len(data) == length
    shared = min(length, len(value))
    if tag_info(tag).fmt == "n":  # numbers: aligned on the right
        assert data[length - shared :] == value[len(value) - shared :]
    else:  # everything else: aligned on the left
        assert data[:shared] == value[:shared]
