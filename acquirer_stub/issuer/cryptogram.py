"""The issuer's side of PBOC CVN 01 (emv-qpboc.md §8): check the DE55 shape, recompute the AC, answer with tag 91.

Pure functions over tag → value maps, so the engine's database code and the cryptography stay apart and
the crypto can be tested without a database.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

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

__all__ = [
    "REQUIRED_TAGS",
    "CryptogramType",
    "IccError",
    "SessionKey",
    "algorithm_of",
    "check_icc",
    "cryptogram_type",
    "cvr",
    "icc_amount",
    "icc_atc",
    "issuer_authentication_data",
    "session_key",
    "verify_ac",
]

IAD_CVN_01 = 0x01
_IAD_MIN_LENGTH = 8  # length byte, DKI, CVN, 4-byte CVR, algorithm id
REQUIRED_TAGS: tuple[int, ...] = (*CVN01_AC_TAGS, 0x9F10, 0x9F26)
"""What DE55 must carry for the host to recompute a CVN 01 cryptogram."""


class IccError(ValueError):
    """DE55 lacks a CVN 01 tag or holds one of the wrong shape: a format error (30), not a crypto failure."""


class CryptogramType(IntEnum):
    """CVR byte 2 as qPBOC cards write it: the authoritative cryptogram type (9F27 is the terminal's)."""

    AAC = 0x80
    TC = 0x90
    ARQC = 0xA0


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
    iad = icc[0x9F10]
    if len(iad) < _IAD_MIN_LENGTH or iad[2] != IAD_CVN_01:
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
    return bytes(icc[0x9F10][3:7])


def cryptogram_type(icc: Mapping[int, bytes]) -> CryptogramType | None:
    """None for a CVR byte 2 that is none of the three, which no honest qPBOC card sends."""
    try:
        return CryptogramType(icc[0x9F10][4])
    except ValueError:
        return None


def icc_amount(icc: Mapping[int, bytes]) -> int:
    return parse_amount_n12(icc[0x9F02])


def icc_atc(icc: Mapping[int, bytes]) -> int:
    return int.from_bytes(icc[0x9F36], "big")


def algorithm_of(name: str) -> Algorithm:
    """The key store names ciphers as the issuer file does ("3des" / "sm4")."""
    try:
        return {"3des": Algorithm.TDES, "sm4": Algorithm.SM4}[name]
    except KeyError:
        raise ValueError(f"unknown cryptogram algorithm {name!r}") from None


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
