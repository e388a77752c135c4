"""ISO/IEC 9797-1 padding and DES-based MACs.

Algorithm 1 (plain single-DES CBC-MAC) is what the PBOC e-purse uses for MAC1/MAC2/TAC; algorithm 3 (the
"retail MAC") is what EMV/PBOC use for application cryptograms and ARPC method 2.
"""

from __future__ import annotations

from emvcore.crypto.des import BLOCK, des_decrypt, des_encrypt, tdes_cbc_encrypt

__all__ = ["mac_des_cbc", "mac_retail", "pad", "pad_method1", "pad_method2"]


def pad_method1(data: bytes, block: int = BLOCK) -> bytes:
    """ISO 9797-1 method 1: zero-fill to a block multiple; empty data still yields one block to MAC."""
    if block <= 0:
        raise ValueError(f"block size must be positive, not {block}")
    if not data:
        return bytes(block)
    return data + bytes(-len(data) % block)


def pad_method2(data: bytes, block: int = BLOCK) -> bytes:
    """ISO 9797-1 method 2: always append 80 then zeros, so trailing zero bytes stay significant."""
    return pad_method1(data + b"\x80", block)


def pad(data: bytes, padding: int, block: int = BLOCK) -> bytes:
    """Apply ISO 9797-1 padding method 1 or 2, the two that EMV/PBOC schemes choose between."""
    if padding == 1:
        return pad_method1(data, block)
    if padding == 2:
        return pad_method2(data, block)
    raise ValueError(f"padding method must be 1 or 2, not {padding}")


def _check_length(length: int) -> None:
    # ISO 9797-1 keeps at least 32 bits; a shorter MAC is a caller bug, not a valid truncation.
    if not 4 <= length <= BLOCK:
        raise ValueError(f"MAC length must be 4..{BLOCK} bytes, not {length}")


def _cbc_last_block(key8: bytes, padded: bytes) -> bytes:
    if len(key8) != 8:
        raise ValueError(f"single-DES key must be 8 bytes, not {len(key8)}")
    return tdes_cbc_encrypt(key8, padded)[-BLOCK:]


def mac_des_cbc(key8: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """ISO 9797-1 MAC algorithm 1 with single DES, IV 0: the e-purse MAC keyed by an 8-byte session key."""
    _check_length(length)
    return _cbc_last_block(key8, pad(data, padding))[:length]


def mac_retail(key16: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """ISO 9797-1 MAC algorithm 3: DES-CBC with K_L, then D(K_R) and E(K_L) on the last block only."""
    if len(key16) != 16:
        raise ValueError(f"retail MAC key must be 16 bytes, not {len(key16)}")
    _check_length(length)
    k_l, k_r = key16[:8], key16[8:]
    last = _cbc_last_block(k_l, pad(data, padding))
    return des_encrypt(k_l, des_decrypt(k_r, last))[:length]
