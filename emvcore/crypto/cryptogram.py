"""PBOC/UICS CVN 01 application cryptograms (ARQC/TC/AAC) and ARPCs, 3DES and SM4 (doc emv-qpboc.md §8).

The input order (EMV Book 2 set plus the 4-byte CVR) and padding method 2 are [unconfirmed] for UICS
CVN 01; both are parameters or constants here so they can change in one place. The SM4 scheme is wholly
[unconfirmed] beyond the block cipher (see `emvcore.crypto.sm4`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from emvcore.crypto.des import tdes_encrypt, xor
from emvcore.crypto.keys import derive_icc_mk_a, derive_pboc_session_key
from emvcore.crypto.mac import mac_retail
from emvcore.crypto.sm4 import (
    derive_icc_mk_sm4,
    derive_sm4_session_key,
    sm4_arpc_method1,
    sm4_generate_ac,
)

__all__ = [
    "ALGORITHM_NAMES",
    "CVN01_AC_TAGS",
    "CVN01_TAG_LENGTHS",
    "Algorithm",
    "ac_input",
    "arpc_method1",
    "arpc_method2",
    "compute_ac",
    "compute_arpc1",
    "derive_icc_master_key",
    "derive_session_key",
    "generate_ac",
]

CVN01_AC_TAGS: tuple[int, ...] = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)
"""AC input tags, in MAC order; the 4-byte CVR follows them."""

CVN01_TAG_LENGTHS: Mapping[int, int] = {
    0x9F02: 6,  # amount, authorised (n12)
    0x9F03: 6,  # amount, other (n12)
    0x9F1A: 2,  # terminal country code
    0x95: 5,  # TVR
    0x5F2A: 2,  # transaction currency code
    0x9A: 3,  # transaction date YYMMDD
    0x9C: 1,  # transaction type
    0x9F37: 4,  # unpredictable number
    0x82: 2,  # AIP
    0x9F36: 2,  # ATC
}
"""Fixed value lengths of `CVN01_AC_TAGS`: a wrong length would silently shift every later field."""

CVR_LENGTH = 4


class Algorithm(IntEnum):
    """IAD algorithm identifier: which cipher family keys and MACs the cryptogram."""

    TDES = 0x01
    SM4 = 0x04

    @property
    def file_name(self) -> str:
        """How the world's issuer and card files spell it ("3des" / "sm4")."""
        return ALGORITHM_NAMES[self]

    @classmethod
    def named(cls, name: str) -> Algorithm:
        """The algorithm a file names; ValueError for any other spelling."""
        for algorithm, spelling in ALGORITHM_NAMES.items():
            if spelling == name:
                return algorithm
        expected = ", ".join(ALGORITHM_NAMES.values())
        raise ValueError(f"unknown cryptogram algorithm {name!r} (expected one of {expected})")


ALGORITHM_NAMES: Mapping[Algorithm, str] = {Algorithm.TDES: "3des", Algorithm.SM4: "sm4"}
"""The one spelling of each algorithm in files and configuration."""


def ac_input(values: Mapping[int, bytes], cvr: bytes) -> bytes:
    """Build the 37-byte CVN 01 AC input so card and host MAC byte-identical data."""
    parts: list[bytes] = []
    for tag in CVN01_AC_TAGS:
        if tag not in values:
            raise ValueError(f"AC input: tag {tag:02X} is missing")
        value = values[tag]
        if len(value) != CVN01_TAG_LENGTHS[tag]:
            raise ValueError(
                f"AC input: tag {tag:02X} must be {CVN01_TAG_LENGTHS[tag]} bytes, not {len(value)}"
            )
        parts.append(bytes(value))
    if len(cvr) != CVR_LENGTH:
        raise ValueError(f"AC input: CVR must be {CVR_LENGTH} bytes, not {len(cvr)}")
    parts.append(bytes(cvr))
    return b"".join(parts)


def _check_sk(session_key16: bytes) -> None:
    if len(session_key16) != 16:
        raise ValueError(f"session key must be 16 bytes, not {len(session_key16)}")


def _check_arqc(arqc8: bytes) -> None:
    if len(arqc8) != 8:
        raise ValueError(f"ARQC must be 8 bytes, not {len(arqc8)}")


def generate_ac(session_key16: bytes, data: bytes, *, padding: int = 2) -> bytes:
    """3DES ARQC/TC/AAC (MAC algorithm 3); padding is a parameter because CVN 01's is unconfirmed."""
    _check_sk(session_key16)
    return mac_retail(session_key16, data, padding=padding, length=8)


def arpc_method1(session_key16: bytes, arqc8: bytes, arc2: bytes) -> bytes:
    """ARPC method 1: proves to the card that the issuer saw its ARQC and chose this response code."""
    _check_sk(session_key16)
    _check_arqc(arqc8)
    if len(arc2) != 2:
        raise ValueError(f"ARC must be 2 bytes, not {len(arc2)}")
    return tdes_encrypt(session_key16, xor(arqc8, arc2 + bytes(6)))


def arpc_method2(session_key16: bytes, arqc8: bytes, csu4: bytes, proprietary: bytes = b"") -> bytes:
    """ARPC method 2 (EMV CSU): 4-byte MAC over ARQC‖CSU‖proprietary data, padding method 2."""
    _check_sk(session_key16)
    _check_arqc(arqc8)
    if len(csu4) != 4:
        raise ValueError(f"CSU must be 4 bytes, not {len(csu4)}")
    if len(proprietary) > 8:
        raise ValueError(f"proprietary authentication data must be 0..8 bytes, not {len(proprietary)}")
    return mac_retail(session_key16, arqc8 + csu4 + proprietary, padding=2, length=4)


def derive_icc_master_key(alg: Algorithm, imk: bytes, pan: str, psn: str | int = 0) -> bytes:
    """ICC master key for either scheme, so personalisation and host need not branch on the cipher."""
    if Algorithm(alg) is Algorithm.SM4:
        return derive_icc_mk_sm4(imk, pan, psn)
    return derive_icc_mk_a(imk, pan, psn)


def derive_session_key(alg: Algorithm, udk: bytes, atc: int) -> bytes:
    """AC session key for either scheme, selected by the IAD algorithm id."""
    if Algorithm(alg) is Algorithm.SM4:
        return derive_sm4_session_key(udk, atc)
    return derive_pboc_session_key(udk, atc)


def compute_ac(alg: Algorithm, sk: bytes, data: bytes) -> bytes:
    """8-byte AC for either scheme with the CVN 01 padding (method 2)."""
    if Algorithm(alg) is Algorithm.SM4:
        return sm4_generate_ac(sk, data)
    return generate_ac(sk, data)


def compute_arpc1(alg: Algorithm, sk: bytes, arqc: bytes, arc: bytes) -> bytes:
    """8-byte ARPC method 1 for either scheme; the host answers in the card's own algorithm."""
    if Algorithm(alg) is Algorithm.SM4:
        return sm4_arpc_method1(sk, arqc, arc)
    return arpc_method1(sk, arqc, arc)
