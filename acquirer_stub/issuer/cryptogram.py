"""The issuer's side of PBOC CVN 01 (emv-qpboc.md §8): check the DE55 shape, recompute the AC, answer with tag 91.

Pure functions over tag → value maps, so the engine's database code and the cryptography stay apart and
the crypto can be tested without a database.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from emvcore.bcd import BcdError, parse_amount_n12
from emvcore.crypto.cryptogram import (
    CVN01_AC_TAGS,
    CVN01_TAG_LENGTHS,
    Algorithm,
    ac_input,
    compute_ac,
    compute_arpc1,
    derive_icc_master_key,
    derive_session_key,
)
from emvcore.qpboc import CVN_01, Cryptogram, Iad, IadError

__all__ = [
    "REQUIRED_TAGS",
    "IccError",
    "SessionKey",
    "check_icc",
    "cryptogram_type",
    "cvr",
    "icc_atc",
    "issuer_authentication_data",
    "session_key",
    "verify_ac",
]

REQUIRED_TAGS: tuple[int, ...] = (*CVN01_AC_TAGS, 0x9F10, 0x9F26)
"""What DE55 must carry for the host to recompute a CVN 01 cryptogram."""


class IccError(ValueError):
    """DE55 lacks a CVN 01 tag or holds one of the wrong shape: a format error (30), not a crypto failure."""


@dataclass(frozen=True)
class SessionKey:
    """The AC session key and its cipher: the ARPC must be made with both."""

    algorithm: Algorithm
    key: bytes


def check_icc(icc: Mapping[int, bytes]) -> None:
    """Refuse DE55 that cannot be recomputed, before any key is touched."""
    for tag in REQUIRED_TAGS:
        if tag not in icc:
            raise IccError(f"DE55: tag {tag:02X} is missing")
    for tag, length in CVN01_TAG_LENGTHS.items():
        if len(icc[tag]) != length:
            raise IccError(f"DE55: tag {tag:02X} must be {length} bytes, not {len(icc[tag])}")
    try:
        cvn = Iad.decode(icc[0x9F10]).cvn
    except IadError:
        cvn = None
    if cvn != CVN_01:
        raise IccError("DE55: 9F10 is not a CVN 01 issuer application data")
    if len(icc[0x9F26]) != 8:
        raise IccError("DE55: 9F26 must be 8 bytes")
    try:
        parse_amount_n12(icc[0x9F02])
        parse_amount_n12(icc[0x9F03])
    except BcdError as error:
        raise IccError(f"DE55: amount is not BCD ({error})") from None


def cvr(icc: Mapping[int, bytes]) -> bytes:
    """The 4-byte CVR inside 9F10, the only part of the IAD the CVN 01 MAC covers."""
    return Iad.decode(icc[0x9F10]).cvr


def cryptogram_type(icc: Mapping[int, bytes]) -> Cryptogram | None:
    """The cryptogram type is authoritative in CVR byte 2 (9F27 is the terminal's); None for a byte 2 that is
    none of the three values a qPBOC card writes."""
    try:
        return Cryptogram(Iad.decode(icc[0x9F10]).cvr[1])
    except ValueError:
        return None


def icc_atc(icc: Mapping[int, bytes]) -> int:
    return int.from_bytes(icc[0x9F36], "big")


def session_key(algorithm: Algorithm, imk: bytes, pan: str, psn: int, atc: int) -> SessionKey:
    """Issuer master key → card key (Option A, PAN + PSN) → the ATC's session key, as the card derived it."""
    icc_master_key = derive_icc_master_key(algorithm, imk, pan, psn)
    return SessionKey(algorithm, derive_session_key(algorithm, icc_master_key, atc))


def verify_ac(key: SessionKey, icc: Mapping[int, bytes]) -> bool:
    """Recompute 9F26 over the CVN 01 input; a constant-time compare keeps timing from leaking the MAC."""
    expected = compute_ac(key.algorithm, key.key, ac_input(icc, cvr(icc)))
    return hmac.compare_digest(expected, bytes(icc[0x9F26]))


def issuer_authentication_data(key: SessionKey, arqc: bytes, rc: str) -> bytes:
    """Tag 91 = ARPC method 1 ‖ ARC, the ARC being the response code in ASCII ("00" → 3030)."""
    arc = rc.encode("ascii")
    if len(arc) != 2:
        raise ValueError(f"ARC must be 2 characters, not {rc!r}")
    return compute_arpc1(key.algorithm, key.key, arqc, arc) + arc
