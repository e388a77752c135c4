"""SM4 block cipher (GB/T 32907 vectors + an independent reference) and the [unconfirmed] SM4 scheme."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emvcore.crypto.sm4 import (
    derive_icc_mk_sm4,
    derive_sm4_session_key,
    sm4_arpc_method1,
    sm4_cbc_mac,
    sm4_encrypt,
    sm4_generate_ac,
)

h = bytes.fromhex
GBT_KEY = h("0123456789ABCDEFFEDCBA9876543210")
GBT_ONE = h("681EDF34D206965E86B3E94F536E4246")
GBT_MILLION = h("595298C7C6FD271F0402F804C33D3F66")

key16 = st.binary(min_size=16, max_size=16)
block16 = st.binary(min_size=16, max_size=16)

# --- independent pure-Python SM4, written from the GB/T 32907 definition -------------------------

_SBOX = bytes.fromhex(
    "d690e9fecce13db716b614c228fb2c05"
    "2b679a762abe04c3aa44132649860699"
    "9c4250f491ef987a33540b43edcfac62"
    "e4b31ca9c908e89580df94fa758f3fa6"
    "4707a7fcf37317ba83593c19e6854fa8"
    "686b81b27164da8bf8eb0f4b70569d35"
    "1e240e5e6358d1a225227c3b01217887"
    "d40046579fd327524c3602e7a0c4c89e"
    "eabf8ad240c738b5a3f7f2cef96115a1"
    "e0ae5da49b341a55ad933230f58cb1e3"
    "1df6e22e8266ca60c02923ab0d534e6f"
    "d5db3745defd8e2f03ff6a726d6c5b51"
    "8d1baf92bbddbc7f11d95c411f105ad8"
    "0ac13188a5cd7bbd2d74d012b8e5b4b0"
    "8969974a0c96777e65b9f109c56ec684"
    "18f07dec3adc4d2079ee5f3ed7cb3948"
)
_FK = (0xA3B1BAC6, 0x56AA3350, 0x677D9197, 0xB27022DC)
# CK_i = (ck_i0, ck_i1, ck_i2, ck_i3) with ck_ij = (4i + j) * 7 mod 256.
_CK = tuple(int.from_bytes(bytes(((4 * i + j) * 7) % 256 for j in range(4)), "big") for i in range(32))
_M32 = 0xFFFFFFFF


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def _tau(x: int) -> int:
    return int.from_bytes(bytes(_SBOX[b] for b in x.to_bytes(4, "big")), "big")


def _t(x: int) -> int:  # round function: L(τ(x))
    b = _tau(x)
    return b ^ _rol(b, 2) ^ _rol(b, 10) ^ _rol(b, 18) ^ _rol(b, 24)


def _t_key(x: int) -> int:  # key schedule: L'(τ(x))
    b = _tau(x)
    return b ^ _rol(b, 13) ^ _rol(b, 23)


def _round_keys(key: bytes) -> list[int]:
    k = [int.from_bytes(key[4 * i : 4 * i + 4], "big") ^ _FK[i] for i in range(4)]
    for i in range(32):
        k.append(k[i] ^ _t_key(k[i + 1] ^ k[i + 2] ^ k[i + 3] ^ _CK[i]))
    return k[4:]


def ref_sm4_block(key: bytes, block: bytes) -> bytes:
    rk = _round_keys(key)
    x = [int.from_bytes(block[4 * i : 4 * i + 4], "big") for i in range(4)]
    for i in range(32):
        x.append(x[i] ^ _t(x[i + 1] ^ x[i + 2] ^ x[i + 3] ^ rk[i]))
    return b"".join(v.to_bytes(4, "big") for v in reversed(x[-4:]))


def ref_sm4_mac8(key: bytes, data: bytes) -> bytes:
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    state = bytes(16)
    for i in range(0, len(padded), 16):
        state = ref_sm4_block(key, bytes(a ^ b for a, b in zip(state, padded[i : i + 16], strict=True)))
    return state[:8]


def test_reference_sbox_is_a_permutation() -> None:
    assert len(_SBOX) == 256
    assert sorted(_SBOX) == list(range(256))


def test_reference_matches_gbt_vector() -> None:
    assert ref_sm4_block(GBT_KEY, GBT_KEY) == GBT_ONE


# --- the SM4 block cipher --------------------------------------------------------------------------


def test_gbt32907_single_block() -> None:
    assert sm4_encrypt(GBT_KEY, GBT_KEY) == GBT_ONE


def test_gbt32907_one_million_iterations() -> None:
    """GB/T 32907 Appendix A.2 vector through the public wrapper (about 5 s)."""
    block = GBT_KEY
    for _ in range(1_000_000):
        block = sm4_encrypt(GBT_KEY, block)
    assert block == GBT_MILLION


@settings(deadline=None, max_examples=60)
@given(key16, block16)
def test_sm4_encrypt_matches_reference(key: bytes, block: bytes) -> None:
    assert sm4_encrypt(key, block) == ref_sm4_block(key, block)


@settings(deadline=None, max_examples=30)
@given(key16, st.lists(block16, min_size=0, max_size=3))
def test_sm4_ecb_is_blockwise(key: bytes, blocks: list[bytes]) -> None:
    assert sm4_encrypt(key, b"".join(blocks)) == b"".join(ref_sm4_block(key, b) for b in blocks)


@pytest.mark.parametrize("length", [1, 8, 15, 17])
def test_sm4_encrypt_rejects_unaligned(length: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        sm4_encrypt(GBT_KEY, bytes(length))


@pytest.mark.parametrize("length", [0, 8, 24, 32])
def test_sm4_rejects_bad_key(length: int) -> None:
    for fn in (sm4_encrypt, sm4_cbc_mac, sm4_generate_ac):
        with pytest.raises(ValueError, match="SM4 key"):
            fn(bytes(length), bytes(16))
    with pytest.raises(ValueError, match="SM4 key"):
        derive_icc_mk_sm4(bytes(length), "1234567890123456", 0)
    with pytest.raises(ValueError, match="SM4 key"):
        derive_sm4_session_key(bytes(length), 1)
    with pytest.raises(ValueError, match="SM4 key"):
        sm4_arpc_method1(bytes(length), bytes(8), b"00")


# --- SM4 CBC-MAC and the [unconfirmed] cryptogram scheme ------------------------------------------


@settings(deadline=None, max_examples=40)
@given(key16, st.binary(max_size=50))
def test_sm4_cbc_mac_matches_reference(key: bytes, data: bytes) -> None:
    mac = sm4_cbc_mac(key, data)
    assert mac == ref_sm4_mac8(key, data)
    assert sm4_generate_ac(key, data) == mac


def test_sm4_cbc_mac_padding_always_added() -> None:
    # 16 aligned bytes still get a full 80 00.. block, so the MAC differs from a bare encryption.
    assert sm4_cbc_mac(GBT_KEY, GBT_KEY) != GBT_ONE[:8]
    assert (
        sm4_cbc_mac(GBT_KEY, GBT_KEY)
        == ref_sm4_block(GBT_KEY, bytes(a ^ b for a, b in zip(GBT_ONE, b"\x80" + bytes(15), strict=True)))[:8]
    )


@settings(deadline=None, max_examples=40)
@given(key16, st.text(alphabet="0123456789", min_size=12, max_size=19), st.integers(0, 99))
def test_derive_icc_mk_sm4_matches_reference(imk: bytes, pan: str, psn: int) -> None:
    y = bytes.fromhex((pan + f"{psn:02d}")[-16:].zfill(16))
    expected = ref_sm4_block(imk, y + bytes(b ^ 0xFF for b in y))
    assert derive_icc_mk_sm4(imk, pan, psn) == expected
    assert derive_icc_mk_sm4(imk, pan, f"{psn:02d}") == expected


@settings(deadline=None, max_examples=40)
@given(key16, st.integers(0, 0xFFFF))
def test_derive_sm4_session_key_matches_reference(udk: bytes, atc: int) -> None:
    block = bytes(6) + atc.to_bytes(2, "big") + bytes(6) + (0xFFFF - atc).to_bytes(2, "big")
    assert derive_sm4_session_key(udk, atc) == ref_sm4_block(udk, block)


@settings(deadline=None, max_examples=40)
@given(key16, st.binary(min_size=8, max_size=8), st.binary(min_size=2, max_size=2))
def test_sm4_arpc_method1_matches_reference(sk: bytes, arqc: bytes, arc: bytes) -> None:
    x = bytes([arqc[0] ^ arc[0], arqc[1] ^ arc[1]]) + arqc[2:] + bytes(8)
    assert sm4_arpc_method1(sk, arqc, arc) == ref_sm4_block(sk, x)[:8]


def test_sm4_scheme_regression_values() -> None:
    """Pins this project's (unconfirmed) SM4 scheme so card and host cannot drift apart silently."""
    mk = derive_icc_mk_sm4(GBT_KEY, "6212345678901234567", "01")
    sk = derive_sm4_session_key(mk, 1)
    data = h("000000000100 000000000000 0156 0000000000 0156 260101 00 12345678 7C00 0001 03A00000")
    arqc = sm4_generate_ac(sk, data)
    arpc = sm4_arpc_method1(sk, arqc, b"00")
    y = h("4567890123456701")
    assert mk == ref_sm4_block(GBT_KEY, y + bytes(b ^ 0xFF for b in y))
    assert sk == ref_sm4_block(mk, h("000000000000 0001 000000000000 FFFE"))
    assert arqc == ref_sm4_mac8(sk, data)
    assert mk == h("ACE24A72D661E611877ADA764F16F1AA")
    assert sk == h("ACFBF96DD09DE33A4E07D5E885C1E8D3")
    assert arqc == h("D72386D1AEB4264D")
    assert arpc == h("0228227534AB26BD")


def test_sm4_rejects_bad_session_inputs() -> None:
    with pytest.raises(ValueError, match="ARQC"):
        sm4_arpc_method1(GBT_KEY, bytes(7), b"00")
    with pytest.raises(ValueError, match="ARC"):
        sm4_arpc_method1(GBT_KEY, bytes(8), b"000")
    with pytest.raises(ValueError, match="ATC"):
        derive_sm4_session_key(GBT_KEY, 0x10000)
    with pytest.raises(ValueError, match="PAN"):
        derive_icc_mk_sm4(GBT_KEY, "12345678901234AB", 0)
