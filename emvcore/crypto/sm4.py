"""SM4 (GB/T 32907) cryptogram scheme for PBOC 3.0 Part 17 cards (IAD algorithm id 04).

UNCONFIRMED: no public spec text or test vector fixes the SM4 cryptogram structure. Only the SM4 block
cipher itself is verified (GB/T 32907 vectors). The key derivation, session key, AC and ARPC below mirror
the 3DES scheme with one 16-byte SM4 block where 3DES uses two 8-byte halves (doc emv-qpboc.md §9, §17):

* ICC MK  = SM4_IMK(Y ‖ Y⊕FF*8), Y as in EMV Option A (no parity: SM4 keys have none);
* SK      = SM4_UDK(00*6 ‖ ATC ‖ 00*6 ‖ ATC⊕FFFF);
* AC      = SM4-CBC-MAC, padding method 2 to 16 bytes, IV 0, leftmost 8 bytes;
* ARPC m1 = leftmost 8 bytes of SM4_SK((ARQC ⊕ (ARC ‖ 00*6)) ‖ 00*8).

Card and host in this project share these functions, so they agree with each other; confirm against the
Part 17 text or an SM test card before talking to a real issuer.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.algorithms import SM4

from emvcore.crypto.des import xor
from emvcore.crypto.keys import atc_bytes, pan_psn_block
from emvcore.crypto.mac import pad_method2

__all__ = [
    "SM4_BLOCK",
    "derive_icc_mk_sm4",
    "derive_sm4_session_key",
    "sm4_arpc_method1",
    "sm4_cbc_mac",
    "sm4_encrypt",
    "sm4_generate_ac",
]

SM4_BLOCK = 16
"""SM4 block and key size in bytes."""


def _check_key(key16: bytes) -> None:
    if len(key16) != SM4_BLOCK:
        raise ValueError(f"SM4 key must be {SM4_BLOCK} bytes, not {len(key16)}")


def sm4_encrypt(key16: bytes, data: bytes) -> bytes:
    """SM4 ECB encryption: the block operation under every SM derivation and MAC here."""
    _check_key(key16)
    if len(data) % SM4_BLOCK:
        raise ValueError(f"data length {len(data)} is not a multiple of {SM4_BLOCK}")
    ctx = Cipher(SM4(key16), modes.ECB()).encryptor()
    return ctx.update(data) + ctx.finalize()


def sm4_cbc_mac(key16: bytes, data: bytes) -> bytes:
    """SM4 CBC-MAC (padding method 2, IV 0), leftmost 8 bytes so it fits where a 3DES AC goes."""
    _check_key(key16)
    ctx = Cipher(SM4(key16), modes.CBC(bytes(SM4_BLOCK))).encryptor()
    chained = ctx.update(pad_method2(data, SM4_BLOCK)) + ctx.finalize()
    return chained[-SM4_BLOCK:][:8]


def derive_icc_mk_sm4(imk16: bytes, pan: str, psn: str | int = 0) -> bytes:
    """SM4 ICC master key from the issuer key and Option A's Y, one block instead of two 3DES halves."""
    _check_key(imk16)
    y = pan_psn_block(pan, psn)
    return sm4_encrypt(imk16, y + xor(y, b"\xff" * 8))


def derive_sm4_session_key(udk16: bytes, atc: int) -> bytes:
    """SM4 AC session key from the ATC, so each transaction's cryptogram has a fresh key."""
    _check_key(udk16)
    return sm4_encrypt(udk16, bytes(6) + atc_bytes(atc) + bytes(6) + atc_bytes(atc ^ 0xFFFF))


def sm4_generate_ac(sk: bytes, data: bytes) -> bytes:
    """SM4 ARQC/TC/AAC over the CVN 01 input (see `cryptogram.ac_input`)."""
    return sm4_cbc_mac(sk, data)


def sm4_arpc_method1(sk: bytes, arqc: bytes, arc: bytes) -> bytes:
    """SM4 ARPC method 1: binds the issuer's response code to this card's ARQC."""
    _check_key(sk)
    if len(arqc) != 8:
        raise ValueError(f"ARQC must be 8 bytes, not {len(arqc)}")
    if len(arc) != 2:
        raise ValueError(f"ARC must be 2 bytes, not {len(arc)}")
    return sm4_encrypt(sk, xor(arqc, arc + bytes(6)) + bytes(8))[:8]
