"""Data Object Lists (PDOL 9F38, CDOL 8C/8D, DDOL 9F49): EMV Book 3 §5.4.

A DOL is tag ‖ one-byte length pairs with no values. The terminal answers with the bare values, each fitted
to the requested length; the card cuts that blob back apart. Both sides must agree byte for byte, so the
fitting rules live here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from . import tlv
from .tags import tag_info

__all__ = [
    "DolEntries",
    "DolError",
    "build_dol_data",
    "dol_length",
    "encode_dol",
    "parse_dol",
    "split_dol_data",
]

DolEntries = Sequence[tuple[int, int]]


class DolError(ValueError):
    """A DOL that cannot be read, or DOL data that does not match its DOL."""


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """``(tag, length)`` pairs in card order; tags use the BER-TLV reader, lengths are one byte."""
    dol = bytes(dol)
    entries: list[tuple[int, int]] = []
    pos = 0
    while pos < len(dol):
        try:
            tag, pos = tlv.read_tag(dol, pos)
        except tlv.TlvError as exc:
            raise DolError(f"bad tag in DOL: {exc}") from None
        if pos >= len(dol):
            raise DolError(f"DOL ends after tag {tag:X} without its length")
        entries.append((tag, dol[pos]))
        pos += 1
    return entries


def encode_dol(entries: DolEntries) -> bytes:
    """Inverse of :func:`parse_dol`: what a card personalises into 9F38."""
    return b"".join(tlv.tag_bytes(tag) + bytes([length]) for tag, length in _checked(entries))


def _checked(entries: DolEntries) -> list[tuple[int, int]]:
    out = []
    for tag, length in entries:
        try:
            tlv.tag_bytes(tag)
        except tlv.TlvError as exc:
            raise DolError(str(exc)) from None
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= 0xFF:
            raise DolError(f"DOL length for tag {tag:X} must be 0..255, got {length!r}")
        out.append((tag, length))
    return out


def _entries(dol: bytes | DolEntries) -> list[tuple[int, int]]:
    if isinstance(dol, bytes | bytearray | memoryview):
        return parse_dol(bytes(dol))
    return _checked(dol)


def dol_length(dol: bytes | DolEntries) -> int:
    """Total size of the data the DOL asks for (33 for the usual UnionPay PDOL)."""
    return sum(length for _, length in _entries(dol))


def _fit(tag: int, value: bytes, length: int) -> bytes:
    if len(value) == length:
        return value
    fmt = tag_info(tag).fmt
    if fmt == "n":
        # Numbers keep their low-order digits: left-pad with 00, or drop the leftmost bytes.
        return value.rjust(length, b"\x00") if len(value) < length else value[len(value) - length :]
    if len(value) > length:
        return value[:length]
    return value.ljust(length, b"\xff" if fmt == "cn" else b"\x00")


def build_dol_data(dol: bytes | DolEntries, values: Mapping[int, bytes]) -> bytes:
    """The terminal side: values concatenated and fitted; unknown or constructed tags become zeros."""
    out = bytearray()
    for tag, length in _entries(dol):
        value = values.get(tag)
        if value is None or tlv.is_constructed(tag):
            out += bytes(length)
        else:
            out += _fit(tag, bytes(value), length)
    return bytes(out)


def split_dol_data(dol: bytes | DolEntries, data: bytes) -> dict[int, bytes]:
    """The card side: cut DOL data back into values; a repeated tag keeps its first value."""
    entries = _entries(dol)
    data = bytes(data)
    expected = sum(length for _, length in entries)
    if len(data) != expected:
        raise DolError(f"DOL asks for {expected} bytes, got {len(data)}")
    values: dict[int, bytes] = {}
    pos = 0
    for tag, length in entries:
        values.setdefault(tag, data[pos : pos + length])
        pos += length
    return values
