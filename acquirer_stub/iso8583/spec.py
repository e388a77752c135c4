"""A UnionPay POS-terminal style ISO 8583 field spec for pyiso8583, and strict decode/encode around it.

Framing (acquirer.md §1): no length prefix (HTTP carries the length), then

* ``h``  11 bytes binary: 5-byte TPDU (``60`` ‖ destination address 2 ‖ source address 2) and the 6-byte CUP
  message header (application type, software version, terminal status, processing requirement). The decoded
  value is 22 hex digits. A response swaps the TPDU addresses and echoes the 6-byte header.
* ``t``  MTI, 2 bytes BCD (``02 00``).
* ``p``  primary bitmap, 8 bytes binary; ``1`` the secondary bitmap, only when a field 65–128 (here: 90) is
  present. A tertiary bitmap (bit 65) and any field not listed below are format errors.

Numeric fields are BCD with their length counted in **nibbles** (digits), as CUP terminals count them; an odd
digit count is padded to whole bytes. Fixed numeric fields (n3 DE22/DE23) are **left**-padded with ``0``
(``072`` → ``00 72``); variable ones (DE2, DE35, DE48, DE60) are left-aligned and **right**-padded with ``0``
(CUP "左靠右补0"), and their BCD length prefix is the digit count: LLVAR = 1 byte (``19`` → ``19``),
LLLVAR = 2 bytes (``11`` → ``00 11``). Binary LLLVAR fields (DE55, DE62) count bytes in a 2-byte BCD length.
Text fields are ASCII.

======  ============================  =========================================================================
DE      format                        notes
======  ============================  =========================================================================
2       n..19 LLVAR BCD               PAN (or token). Decoded as hex, so a non-digit nibble is caught later.
3       n6 BCD                        processing code
4       n12 BCD                       amount in fen
11      n6 BCD                        STAN
12/13   n6 / n4 BCD                   local time hhmmss / date MMDD
14      n4 BCD                        expiry YYMM
22      n3 BCD, left pad 0            POS entry mode (``072``)
23      n3 BCD, left pad 0            PAN sequence number (``001``)
25      n2 BCD                        POS condition code
35      z..37 LLVAR BCD               track 2 equivalent, separator ``=`` as nibble ``D``; checked, never kept
37      an12 ASCII                    RRN (responses)
38      an6 ASCII                     authorization code (responses)
39      an2 ASCII                     response code; in a 0400/0420 the reversal reason
41/42   ans8 / ans15 ASCII            TID / MID
44      ans..25 LLVAR ASCII           additional response data (responses): an advice taken as an exception
                                      names its reason (``TC_UNVERIFIED``), a reversal its outcome (``partial``)
48      n..322 LLLVAR BCD             CUP settlement totals (0500/0510)
49      an3 ASCII                     currency, ``156``: the CUP terminal spec sends it as text, not BCD
55      b..255 LLLVAR (BCD bytes)     ICC data, BER-TLV
60      n..17 LLLVAR BCD              60.1 type n2 ‖ 60.2 batch n6 ‖ 60.3 network code n3 (‖ 60.4 …)
62      b..512 LLLVAR                 CUP private (keys in a real 0810; not sent by this host)
63      ans..163 LLLVAR ASCII         CUP private (operator code)
64      b8                            MAC; accepted, not verified (no MAK: the HTTP signature covers the bytes)
90      n42 BCD                       original MTI 4 ‖ STAN 6 ‖ MMDDhhmmss 10 ‖ acquirer 11 ‖ forwarder 11
======  ============================  =========================================================================

pyiso8583 checks lengths but not content, and raises KeyError on a bitmap bit it has no spec for; `decode` turns
every such problem into `IsoFormatError` (naming the field, carrying whatever was decoded before it) so the
caller can still answer with DE39 30.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import iso8583

__all__ = ["FIELDS", "HEADER_BYTES", "SPEC", "TPDU_ID", "IsoFormatError", "decode", "encode"]

TPDU_ID = 0x60
HEADER_BYTES = 11  # TPDU 5 + CUP message header 6
_MTI_BYTES = 2
_BITMAP_BYTES = 8


def _fixed(data_enc: str, max_len: int, desc: str) -> dict[str, Any]:
    return {"data_enc": data_enc, "len_enc": "b", "len_type": 0, "max_len": max_len, "desc": desc}


def _n(digits: int, desc: str, *, left_pad: bool = False) -> dict[str, Any]:
    spec = {"data_enc": "b", "len_enc": "b", "len_type": 0, "len_count": "nibbles", "max_len": digits, "desc": desc}
    return {**spec, "left_pad": "0"} if left_pad else spec


def _nvar(len_type: int, max_digits: int, desc: str) -> dict[str, Any]:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "len_count": "nibbles", "right_pad": "0",
            "max_len": max_digits, "desc": desc}


def _bvar(max_bytes: int, desc: str) -> dict[str, Any]:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": 2, "max_len": max_bytes, "desc": desc}


SPEC: dict[str, dict[str, Any]] = {
    "h": _fixed("b", HEADER_BYTES, "TPDU + CUP message header"),
    "t": _fixed("b", _MTI_BYTES, "Message Type Indicator (BCD)"),
    "p": _fixed("b", _BITMAP_BYTES, "Bitmap, Primary"),
    "1": _fixed("b", _BITMAP_BYTES, "Bitmap, Secondary"),
    "2": _nvar(1, 19, "Primary Account Number"),
    "3": _n(6, "Processing Code"),
    "4": _n(12, "Amount, Transaction"),
    "11": _n(6, "System Trace Audit Number"),
    "12": _n(6, "Time, Local Transaction"),
    "13": _n(4, "Date, Local Transaction"),
    "14": _n(4, "Date, Expiration"),
    "22": _n(3, "POS Entry Mode", left_pad=True),
    "23": _n(3, "Card Sequence Number", left_pad=True),
    "25": _n(2, "POS Condition Code"),
    "35": _nvar(1, 37, "Track 2 Data"),
    "37": _fixed("ascii", 12, "Retrieval Reference Number"),
    "38": _fixed("ascii", 6, "Authorization ID Response"),
    "39": _fixed("ascii", 2, "Response Code"),
    "41": _fixed("ascii", 8, "Card Acceptor Terminal ID"),
    "42": _fixed("ascii", 15, "Card Acceptor ID Code"),
    "44": {"data_enc": "ascii", "len_enc": "bcd", "len_type": 1, "max_len": 25, "desc": "Additional Response Data"},
    "48": _nvar(2, 322, "Additional Data - Private (CUP settlement totals)"),
    "49": _fixed("ascii", 3, "Currency Code, Transaction"),
    "55": _bvar(255, "ICC Data"),
    "60": _nvar(2, 17, "Reserved Private (CUP: type, batch, network code)"),
    "62": _bvar(512, "Reserved Private"),
    "63": {"data_enc": "ascii", "len_enc": "bcd", "len_type": 2, "max_len": 163, "desc": "Reserved Private"},
    "64": _fixed("b", 8, "MAC"),
    "90": _n(42, "Original Data Elements"),
}

FIELDS: frozenset[int] = frozenset(int(key) for key in SPEC if key.isdigit() and key != "1")


class IsoFormatError(ValueError):
    """Bytes that are not a message of this spec; `field` names where it went wrong and `partial` holds the fields
    decoded before it (header and MTI, with luck) so that a 30 response can still be addressed."""

    def __init__(self, field: str, message: str, partial: Mapping[str, str]) -> None:
        super().__init__(f"field {field}: {message}")
        self.field = field
        self.message = message
        self.partial = dict(partial)


def _bits(bitmap: bytes, offset: int) -> set[int]:
    return {offset + index * 8 + bit + 1 for index, byte in enumerate(bitmap) for bit in range(8)
            if byte & (0x80 >> bit)}


def _check_bitmaps(raw: bytes) -> None:
    """Refuse a bit this spec has no field for, before pyiso8583 looks it up (it would raise KeyError)."""
    start = HEADER_BYTES + _MTI_BYTES
    partial = {}
    if len(raw) >= start:
        partial = {"h": raw[:HEADER_BYTES].hex().upper(), "t": raw[HEADER_BYTES:start].hex().upper()}
    primary = raw[start:start + _BITMAP_BYTES]
    if len(primary) < _BITMAP_BYTES:
        return  # pyiso8583 reports the short bitmap itself
    fields = _bits(primary, 0)
    if 1 in fields:
        secondary = raw[start + _BITMAP_BYTES:start + 2 * _BITMAP_BYTES]
        if len(secondary) < _BITMAP_BYTES:
            return
        fields |= _bits(secondary, 64)
        fields.discard(1)
    unknown = sorted(fields - FIELDS)
    if unknown:
        raise IsoFormatError(str(unknown[0]), "field not in this spec", partial)


def decode(raw: bytes) -> dict[str, str]:
    """Decode strictly: every length, pad and bitmap bit must fit the spec, and nothing may follow the last field."""
    _check_bitmaps(raw)
    try:
        doc, _ = iso8583.decode(bytes(raw), SPEC)
    except iso8583.DecodeError as error:
        # error.msg never quotes field data; keep only fields decoded before the failing one
        partial = {key: value for key, value in error.doc_dec.items() if key != error.field}
        raise IsoFormatError(error.field, error.msg, partial) from None
    return doc


def encode(doc: Mapping[str, str]) -> bytes:
    """Encode a copy (pyiso8583 adds the bitmaps to the dict it is given)."""
    raw, _ = iso8583.encode(dict(doc), SPEC)
    return bytes(raw)
