"""ISO 9797-1 padding and MAC algorithms 1 and 3, with pyemv 1.5.0 as oracle."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import mac as pyemv_mac
from pyemv import tools as pyemv_tools

from emvcore.crypto.des import des_decrypt, des_encrypt, xor
from emvcore.crypto.mac import mac_des_cbc, mac_retail, pad, pad_method1, pad_method2

h = bytes.fromhex

key8 = st.binary(min_size=8, max_size=8)
key16 = st.binary(min_size=16, max_size=16)
data_st = st.binary(max_size=70)
padding_st = st.sampled_from([1, 2])
length_st = st.integers(min_value=4, max_value=8)


# --- padding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "m1", "m2"),
    [
        ("", "0000000000000000", "8000000000000000"),
        ("1234", "1234000000000000", "1234800000000000"),
        ("0102030405060708", "0102030405060708", "01020304050607088000000000000000"),
        ("01020304050607", "0102030405060700", "0102030405060780"),
    ],
)
def test_padding_examples(data: str, m1: str, m2: str) -> None:
    assert pad_method1(h(data)) == h(m1)
    assert pad_method2(h(data)) == h(m2)
    assert pad(h(data), 1) == h(m1)
    assert pad(h(data), 2) == h(m2)


@given(data_st, st.sampled_from([8, 16]))
def test_padding_matches_pyemv(data: bytes, block: int) -> None:
    p1, p2 = pad_method1(data, block), pad_method2(data, block)
    assert p1 == pyemv_mac.pad_iso9797_1(data, block)
    assert p2 == pyemv_mac.pad_iso9797_2(data, block)
    assert len(p1) % block == 0 and len(p1) > 0
    assert len(p2) % block == 0 and len(p2) > len(data)
    assert p2.startswith(data + b"\x80")


@pytest.mark.parametrize("padding", [0, 3])
def test_unknown_padding_method_rejected(padding: int) -> None:
    with pytest.raises(ValueError, match="1 or 2"):
        pad(b"x", padding)
    with pytest.raises(ValueError, match="1 or 2"):
        mac_des_cbc(bytes(8), b"x", padding=padding)
    with pytest.raises(ValueError, match="1 or 2"):
        mac_retail(bytes(16), b"x", padding=padding)


def test_pad_rejects_non_positive_block() -> None:
    with pytest.raises(ValueError):
        pad_method1(b"x", 0)


# --- MAC algorithm 3 (retail MAC) ----------------------------------------------------------------


@settings(deadline=None)
@given(key16, data_st, padding_st, length_st)
def test_retail_mac_matches_pyemv(key: bytes, data: bytes, padding: int, length: int) -> None:
    expected = pyemv_mac.mac_iso9797_3(key[:8], key[8:], data, padding, length)
    assert mac_retail(key, data, padding=padding, length=length) == expected


@settings(deadline=None)
@given(key16, data_st)
def test_retail_mac_definition(key: bytes, data: bytes) -> None:
    """Independent restatement: CBC with K_L block by block, then D(K_R), E(K_L)."""
    k_l, k_r = key[:8], key[8:]
    padded = pad_method2(data)
    state = bytes(8)
    for i in range(0, len(padded), 8):
        state = des_encrypt(k_l, xor(state, padded[i : i + 8]))
    assert mac_retail(key, data) == des_encrypt(k_l, des_decrypt(k_r, state))


@settings(deadline=None)
@given(key8, data_st, padding_st)
def test_retail_mac_with_equal_halves_is_algorithm_1(key: bytes, data: bytes, padding: int) -> None:
    assert mac_retail(key + key, data, padding=padding) == mac_des_cbc(key, data, padding=padding)


def test_retail_mac_default_is_method_2_length_8() -> None:
    key = h("0123456789ABCDEFFEDCBA9876543210")
    data = h("0102030405060708")
    assert mac_retail(key, data) == mac_retail(key, data, padding=2, length=8)
    assert len(mac_retail(key, data)) == 8
    assert mac_retail(key, data, padding=1) != mac_retail(key, data, padding=2)


@pytest.mark.parametrize("length", [0, 8, 15, 17, 24])
def test_retail_mac_rejects_non_two_key(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        mac_retail(bytes(length), b"x")


# --- MAC algorithm 1 (single DES) ----------------------------------------------------------------


@settings(deadline=None)
@given(key8, data_st, padding_st, length_st)
def test_des_cbc_mac_matches_pyemv(key: bytes, data: bytes, padding: int, length: int) -> None:
    # MAC algorithm 3 with K_R == K_L collapses to algorithm 1 (D_K then E_K cancel).
    assert mac_des_cbc(key, data, padding=padding, length=length) == pyemv_mac.mac_iso9797_3(
        key, key, data, padding, length
    )
    padded = pyemv_mac.pad_iso9797_1(data) if padding == 1 else pyemv_mac.pad_iso9797_2(data)
    last = pyemv_tools.encrypt_tdes_cbc(key, bytes(8), padded)[-8:]
    assert mac_des_cbc(key, data, padding=padding, length=length) == last[:length]


def test_des_cbc_mac_single_block_is_one_des_encryption() -> None:
    key = h("0123456789ABCDEF")
    assert mac_des_cbc(key, h("4E6F772069732074"), padding=1) == h("3FA40E8A984D4815")


@pytest.mark.parametrize("length", [0, 3, 9])
def test_mac_length_bounds(length: int) -> None:
    with pytest.raises(ValueError, match="MAC length"):
        mac_des_cbc(bytes(8), b"x", length=length)
    with pytest.raises(ValueError, match="MAC length"):
        mac_retail(bytes(16), b"x", length=length)


@pytest.mark.parametrize("length", [0, 7, 16])
def test_des_cbc_mac_rejects_non_single_key(length: int) -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        mac_des_cbc(bytes(length), b"x")
