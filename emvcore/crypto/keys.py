"""Card key derivation for PBOC/UICS CVN 01 with 3DES (doc emv-qpboc.md §8.2).

The ICC master key follows EMV Option A. The session key is PBOC's ATC-based one, which differs from the
EMV common session key (no F0/0F marker byte) and from Visa's or Mastercard's methods.
"""

from __future__ import annotations

from emvcore.crypto.des import adjust_odd_parity, tdes_encrypt, xor

__all__ = ["atc_bytes", "derive_icc_mk_a", "derive_pboc_session_key", "pan_psn_block"]

_PAN_MIN, _PAN_MAX = 8, 19  # ISO/IEC 7812-1 PAN length range


def _psn_digits(psn: str | int) -> str:
    if isinstance(psn, bool):
        raise ValueError("PSN must be an int 0..99 or a 2-digit string, not a bool")
    if isinstance(psn, int):
        if not 0 <= psn <= 99:
            raise ValueError(f"PSN must be 0..99, not {psn}")
        return f"{psn:02d}"
    if len(psn) != 2 or not (psn.isascii() and psn.isdigit()):
        raise ValueError(f"PSN must be 2 decimal digits, not {psn!r}")
    return psn


def pan_psn_block(pan: str, psn: str | int = 0) -> bytes:
    """Option A's Y: rightmost 16 digits of PAN‖PSN as BCD, shared by the 3DES and SM4 diversifications."""
    if not (pan.isascii() and pan.isdigit()):
        raise ValueError(f"PAN must be decimal digits only (strip any F padding first), not {pan!r}")
    if not _PAN_MIN <= len(pan) <= _PAN_MAX:
        raise ValueError(f"PAN must have {_PAN_MIN}..{_PAN_MAX} digits, not {len(pan)}")
    return bytes.fromhex((pan + _psn_digits(psn))[-16:].zfill(16))


def derive_icc_mk_a(imk16: bytes, pan: str, psn: str | int = 0) -> bytes:
    """EMV Option A ICC master key (UDK), odd parity, so issuer and card derive the same per-card key."""
    if len(imk16) != 16:
        raise ValueError(f"issuer master key must be 16 bytes, not {len(imk16)}")
    y = pan_psn_block(pan, psn)
    return adjust_odd_parity(tdes_encrypt(imk16, y + xor(y, b"\xff" * 8)))


def atc_bytes(atc: int) -> bytes:
    """ATC as the 2 big-endian bytes that key derivations embed; out-of-range counters must not wrap."""
    if isinstance(atc, bool) or not 0 <= atc <= 0xFFFF:
        raise ValueError(f"ATC must be 0..65535, not {atc!r}")
    return atc.to_bytes(2, "big")


def derive_pboc_session_key(udk16: bytes, atc: int) -> bytes:
    """PBOC AC session key 3DES_UDK(00*6‖ATC) ‖ 3DES_UDK(00*6‖ATC⊕FFFF); no parity fix (MACs ignore it)."""
    if len(udk16) != 16:
        raise ValueError(f"ICC master key must be 16 bytes, not {len(udk16)}")
    return tdes_encrypt(udk16, bytes(6) + atc_bytes(atc) + bytes(6) + atc_bytes(atc ^ 0xFFFF))
