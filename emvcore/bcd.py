"""EMV numeric formats: ``n`` (BCD, left zero-padded) and ``cn`` (compressed numeric, right F-padded).

Amounts, dates and currency codes travel as ``n``; the PAN in 5A travels as ``cn``. Any nibble that is
not allowed raises :class:`BcdError` so a corrupt amount can never become a different amount.
"""

from __future__ import annotations

import datetime

__all__ = [
    "MAX_AMOUNT_N12",
    "BcdError",
    "amount_n12",
    "date_n6",
    "decode_bcd",
    "decode_cn",
    "encode_bcd",
    "encode_cn",
    "parse_amount_n12",
    "parse_date_n6",
    "parse_time_n6",
    "time_n6",
]

MAX_AMOUNT_N12 = 999_999_999_999
"""Largest amount n12 can carry, in minor units (fen)."""

_DIGITS = frozenset("0123456789")


class BcdError(ValueError):
    """Digits that do not fit, or bytes that are not the numeric format they claim to be."""


def _digit_string(digits: str | int) -> str:
    if isinstance(digits, bool):
        raise TypeError("digits must be a str or an int, not bool")
    if isinstance(digits, int):
        if digits < 0:
            raise BcdError(f"negative number {digits} has no BCD form")
        return str(digits)
    if not isinstance(digits, str):
        raise TypeError(f"digits must be a str or an int, not {type(digits).__name__}")
    if not _DIGITS.issuperset(digits):
        # str.isdigit() would also accept '²' or Arabic-Indic digits.
        raise BcdError(f"not a decimal digit string: {digits!r}")
    return digits


def _check_nbytes(nbytes: int) -> None:
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError("nbytes must be an int")
    if nbytes < 0:
        raise BcdError(f"negative size {nbytes}")


def encode_bcd(digits: str | int, nbytes: int) -> bytes:
    """Format ``n``: packed BCD, left zero-padded to ``nbytes``; refuses to drop digits."""
    _check_nbytes(nbytes)
    text = _digit_string(digits)
    if len(text) > 2 * nbytes:
        raise BcdError(f"{len(text)} digits do not fit in {nbytes} bytes")
    return bytes.fromhex(text.rjust(2 * nbytes, "0"))


def decode_bcd(data: bytes) -> str:
    """Format ``n`` back to its digit string (leading zeros kept: they are part of the field)."""
    text = bytes(data).hex()
    if not _DIGITS.issuperset(text):
        raise BcdError(f"non-decimal nibble in BCD data {text.upper()}")
    return text


def amount_n12(minor_units: int) -> bytes:
    """Amount in minor units (fen) as the 6-byte n12 of 9F02/9F03: ¥563.99 → ``000000056399``."""
    if isinstance(minor_units, bool) or not isinstance(minor_units, int):
        raise TypeError("amount must be an int number of minor units")
    if not 0 <= minor_units <= MAX_AMOUNT_N12:
        raise BcdError(f"amount {minor_units} outside 0..{MAX_AMOUNT_N12}")
    return encode_bcd(minor_units, 6)


def parse_amount_n12(b: bytes) -> int:
    """The 6-byte n12 amount back to minor units; any other size is a framing bug."""
    if len(b) != 6:
        raise BcdError(f"n12 amount must be 6 bytes, got {len(b)}")
    return int(decode_bcd(b))


def _year_from_yy(yy: int) -> int:
    # EMV Book 4 §6.7.3: YY 00-49 is 20YY, 50-99 is 19YY.
    return 2000 + yy if yy < 50 else 1900 + yy


def date_n6(d: datetime.date) -> bytes:
    """YYMMDD (9A, 5F24, 5F25); only 1950-2049 survive the two-digit year."""
    if not 1950 <= d.year <= 2049:
        raise BcdError(f"year {d.year} cannot be written as YY (1950..2049)")
    return encode_bcd(f"{d.year % 100:02d}{d.month:02d}{d.day:02d}", 3)


def parse_date_n6(b: bytes) -> datetime.date:
    """YYMMDD back to a date; 13th months and 30 February are errors, not clamps."""
    if len(b) != 3:
        raise BcdError(f"n6 date must be 3 bytes, got {len(b)}")
    text = decode_bcd(b)
    yy, mm, dd = int(text[0:2]), int(text[2:4]), int(text[4:6])
    try:
        return datetime.date(_year_from_yy(yy), mm, dd)
    except ValueError as exc:
        raise BcdError(f"invalid date {text}: {exc}") from None


def time_n6(t: datetime.time) -> bytes:
    """hhmmss (9F21); sub-second parts and time zones do not travel."""
    return encode_bcd(f"{t.hour:02d}{t.minute:02d}{t.second:02d}", 3)


def parse_time_n6(b: bytes) -> datetime.time:
    """hhmmss back to a time; 24:00:00 and 61 seconds are errors."""
    if len(b) != 3:
        raise BcdError(f"n6 time must be 3 bytes, got {len(b)}")
    text = decode_bcd(b)
    try:
        return datetime.time(int(text[0:2]), int(text[2:4]), int(text[4:6]))
    except ValueError as exc:
        raise BcdError(f"invalid time {text}: {exc}") from None


def encode_cn(pan: str, nbytes: int) -> bytes:
    """Format ``cn`` (PAN in 5A): digits left-aligned, right-padded with F nibbles."""
    _check_nbytes(nbytes)
    if not isinstance(pan, str):
        raise TypeError("cn digits must be a str (leading zeros matter)")
    text = _digit_string(pan)
    if len(text) > 2 * nbytes:
        raise BcdError(f"{len(text)} digits do not fit in {nbytes} bytes")
    return bytes.fromhex(text.ljust(2 * nbytes, "F"))


def decode_cn(b: bytes) -> str:
    """Format ``cn`` back to digits; a digit after the F padding, or an A-E nibble, is corruption."""
    text = bytes(b).hex().upper()
    digits = text.rstrip("F")
    if not _DIGITS.issuperset(digits):
        raise BcdError(f"invalid compressed numeric data {text}")
    return digits
