"""DES and triple-DES primitives for EMV/PBOC key derivation, cryptograms and transit MACs.

Every key reaches `cryptography` as a 24-byte ``TripleDES`` key from the ``decrepit`` module: 8- and
16-byte TripleDES keys and the old ``primitives`` location are deprecated there, and a warning in a
payment path is a future breakage. Single DES is TripleDES with K‖K‖K (EDE collapses to one DES).
"""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = [
    "BLOCK",
    "adjust_odd_parity",
    "des_decrypt",
    "des_encrypt",
    "expand_tdes_key",
    "kcv",
    "tdes_cbc_encrypt",
    "tdes_decrypt",
    "tdes_encrypt",
    "xor",
]

BLOCK = 8
"""DES block size in bytes."""


def expand_tdes_key(key: bytes) -> bytes:
    """Return the 24-byte form of an 8/16/24-byte key, so `cryptography` never sees a deprecated length."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return bytes(key)
    raise ValueError(f"DES/3DES key must be 8, 16 or 24 bytes, not {len(key)}")


def _check_blocks(data: bytes) -> None:
    if len(data) % BLOCK:
        raise ValueError(f"data length {len(data)} is not a multiple of {BLOCK}")


def _single_key(key8: bytes) -> bytes:
    if len(key8) != 8:
        raise ValueError(f"single-DES key must be 8 bytes, not {len(key8)}")
    return key8 * 3


def _ecb(key24: bytes, data: bytes, *, encrypt: bool) -> bytes:
    _check_blocks(data)
    cipher = Cipher(TripleDES(key24), modes.ECB())
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def des_encrypt(key8: bytes, data: bytes) -> bytes:
    """Single-DES ECB encryption: the primitive inside retail MACs and transit session MACs."""
    return _ecb(_single_key(key8), data, encrypt=True)


def des_decrypt(key8: bytes, data: bytes) -> bytes:
    """Single-DES ECB decryption: the K_R step of ISO 9797-1 MAC algorithm 3."""
    return _ecb(_single_key(key8), data, encrypt=False)


def tdes_encrypt(key: bytes, data: bytes) -> bytes:
    """3DES ECB encryption; blocks are independent, so one call can derive both halves of a key."""
    return _ecb(expand_tdes_key(key), data, encrypt=True)


def tdes_decrypt(key: bytes, data: bytes) -> bytes:
    """3DES ECB decryption, the inverse of `tdes_encrypt` (used to check ARPCs and key blocks)."""
    return _ecb(expand_tdes_key(key), data, encrypt=False)


def tdes_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """3DES CBC encryption; with an 8-byte key it is the single-DES CBC chain of MAC algorithms 1 and 3."""
    if len(iv) != BLOCK:
        raise ValueError(f"IV must be {BLOCK} bytes, not {len(iv)}")
    _check_blocks(data)
    ctx = Cipher(TripleDES(expand_tdes_key(key)), modes.CBC(iv)).encryptor()
    return ctx.update(data) + ctx.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    """XOR two equal-length byte strings; unequal lengths are a caller bug, not something to truncate."""
    if len(a) != len(b):
        raise ValueError(f"xor operands differ in length: {len(a)} != {len(b)}")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def adjust_odd_parity(key: bytes) -> bytes:
    """Set each byte's low bit so it has odd parity, as EMV requires of derived DES keys."""
    return bytes((b & 0xFE) | (((b >> 1).bit_count() & 1) ^ 1) for b in key)


def kcv(key: bytes, length: int = 3) -> bytes:
    """Key check value (3DES of a zero block) to compare keys without revealing them."""
    if not 1 <= length <= BLOCK:
        raise ValueError(f"KCV length must be 1..{BLOCK}, not {length}")
    return tdes_encrypt(key, bytes(BLOCK))[:length]
