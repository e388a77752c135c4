"""Numeric formats n and cn: amounts, dates, times, PANs."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore.bcd import (
    MAX_AMOUNT_N12,
    BcdError,
    amount_n12,
    date_n6,
    decode_bcd,
    decode_cn,
    encode_bcd,
    encode_cn,
    parse_amount_n12,
    parse_date_n6,
    parse_time_n6,
    time_n6,
)

digit_strings = st.text(alphabet="0123456789", max_size=20)


def test_encode_bcd_known() -> None:
    assert encode_bcd("156", 2) == bytes.fromhex("0156")  # CNY / China in 5F2A and 9F1A
    assert encode_bcd(156, 2) == bytes.fromhex("0156")
    assert encode_bcd(0, 1) == b"\x00"
    assert encode_bcd("", 2) == b"\x00\x00"
    assert encode_bcd("1234", 2) == bytes.fromhex("1234")


@given(digit_strings, st.integers(0, 4))
def test_bcd_round_trip_keeps_value_and_pads_left(digits: str, extra: int) -> None:
    nbytes = (len(digits) + 1) // 2 + extra
    raw = encode_bcd(digits, nbytes)
    assert len(raw) == nbytes
    decoded = decode_bcd(raw)
    assert decoded == digits.rjust(2 * nbytes, "0")


@pytest.mark.parametrize(("digits", "nbytes"), [("123", 1), (1000, 1), ("1" * 13, 6), (1, 0)])
def test_encode_bcd_refuses_to_drop_digits(digits: str | int, nbytes: int) -> None:
    with pytest.raises(BcdError):
        encode_bcd(digits, nbytes)


@pytest.mark.parametrize("digits", ["12a", " 12", "-1", "1.0", "²", "١٢"])
def test_encode_bcd_rejects_non_decimal(digits: str) -> None:
    with pytest.raises(BcdError):
        encode_bcd(digits, 4)


def test_encode_bcd_rejects_negative_numbers_and_sizes() -> None:
    with pytest.raises(BcdError):
        encode_bcd(-5, 2)
    with pytest.raises(BcdError):
        encode_bcd("1", -1)
    with pytest.raises(TypeError):
        encode_bcd(True, 1)


@pytest.mark.parametrize("raw", ["0A", "F0", "12345B", "FFFF"])
def test_decode_bcd_rejects_non_decimal_nibbles(raw: str) -> None:
    with pytest.raises(BcdError):
        decode_bcd(bytes.fromhex(raw))


# --- amounts -------------------------------------------------------------------------------------------


def test_amount_from_the_doc() -> None:
    # ¥563.99 = 56399 fen
    assert amount_n12(56399) == bytes.fromhex("000000056399")
    assert parse_amount_n12(bytes.fromhex("000000056399")) == 56399


def test_amount_limits() -> None:
    assert amount_n12(0) == bytes(6)
    assert amount_n12(MAX_AMOUNT_N12) == bytes.fromhex("999999999999")
    with pytest.raises(BcdError):
        amount_n12(MAX_AMOUNT_N12 + 1)
    with pytest.raises(BcdError):
        amount_n12(-1)
    with pytest.raises(TypeError):
        amount_n12(5.63)  # type: ignore[arg-type]


@given(st.integers(0, MAX_AMOUNT_N12))
def test_amount_round_trip(fen: int) -> None:
    raw = amount_n12(fen)
    assert len(raw) == 6
    assert parse_amount_n12(raw) == fen


@pytest.mark.parametrize("raw", ["0000000563", "00000005639900", "00000005639A"])
def test_parse_amount_rejects_bad_fields(raw: str) -> None:
    with pytest.raises(BcdError):
        parse_amount_n12(bytes.fromhex(raw))


# --- dates and times -------------------------------------------------------------------------------------


def test_date_known() -> None:
    assert date_n6(datetime.date(2025, 6, 30)) == bytes.fromhex("250630")
    assert parse_date_n6(bytes.fromhex("250630")) == datetime.date(2025, 6, 30)
    assert parse_date_n6(bytes.fromhex("991231")) == datetime.date(1999, 12, 31)  # YY >= 50 is 19YY
    assert parse_date_n6(bytes.fromhex("491231")) == datetime.date(2049, 12, 31)


@given(st.dates(datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)))
def test_date_round_trip(d: datetime.date) -> None:
    assert parse_date_n6(date_n6(d)) == d


@pytest.mark.parametrize("year", [1949, 2050, 2100])
def test_date_outside_two_digit_window(year: int) -> None:
    with pytest.raises(BcdError):
        date_n6(datetime.date(year, 1, 1))


@pytest.mark.parametrize("raw", ["251301", "250001", "250230", "250100", "2506", "25063001", "2A0630"])
def test_parse_date_rejects_invalid(raw: str) -> None:
    with pytest.raises(BcdError):
        parse_date_n6(bytes.fromhex(raw))


def test_time_known() -> None:
    assert time_n6(datetime.time(13, 51, 0)) == bytes.fromhex("135100")
    assert time_n6(datetime.time(9, 5, 7, 999_999)) == bytes.fromhex("090507")


@given(st.times())
def test_time_round_trip(t: datetime.time) -> None:
    assert parse_time_n6(time_n6(t)) == t.replace(microsecond=0, tzinfo=None)


@pytest.mark.parametrize("raw", ["240000", "126000", "120060", "1200", "12000A"])
def test_parse_time_rejects_invalid(raw: str) -> None:
    with pytest.raises(BcdError):
        parse_time_n6(bytes.fromhex(raw))


# --- compressed numeric --------------------------------------------------------------------------------


def test_cn_known_pan() -> None:
    assert encode_cn("6212345678901234567", 10) == bytes.fromhex("6212345678901234567F")
    assert encode_cn("6212345678901234", 10) == bytes.fromhex("6212345678901234FFFF")
    assert decode_cn(bytes.fromhex("6212345678901234567F")) == "6212345678901234567"
    assert decode_cn(bytes.fromhex("FFFF")) == ""


@given(digit_strings, st.integers(0, 3))
def test_cn_round_trip(digits: str, extra: int) -> None:
    nbytes = (len(digits) + 1) // 2 + extra
    raw = encode_cn(digits, nbytes)
    assert len(raw) == nbytes
    assert raw.hex().upper() == digits + "F" * (2 * nbytes - len(digits))
    assert decode_cn(raw) == digits


def test_cn_keeps_leading_zeros() -> None:
    assert decode_cn(encode_cn("0012", 3)) == "0012"


@pytest.mark.parametrize(("pan", "nbytes"), [("12345", 2), ("1" * 20, 9)])
def test_encode_cn_too_long(pan: str, nbytes: int) -> None:
    with pytest.raises(BcdError):
        encode_cn(pan, nbytes)


def test_encode_cn_rejects_non_digits_and_ints() -> None:
    with pytest.raises(BcdError):
        encode_cn("6212D", 4)
    with pytest.raises(TypeError):
        encode_cn(6212, 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["62F1", "6A12", "F1FF", "62FFF0", "D2"])
def test_decode_cn_rejects_corruption(raw: str) -> None:
    with pytest.raises(BcdError):
        decode_cn(bytes.fromhex(raw))
