"""DES/3DES wrapper: published vectors, pyemv 1.5.0 as oracle, and no deprecation warnings."""

import warnings
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import tools as pyemv_tools

from emvcore.crypto.des import (
    adjust_odd_parity,
    des_decrypt,
    des_encrypt,
    expand_tdes_key,
    kcv,
    tdes_cbc_encrypt,
    tdes_decrypt,
    tdes_encrypt,
    xor,
)

h = bytes.fromhex
IMK = h("0123456789ABCDEFFEDCBA9876543210")

key8 = st.binary(min_size=8, max_size=8)
key16 = st.binary(min_size=16, max_size=16)
key24 = st.binary(min_size=24, max_size=24)
blocks = st.integers(min_value=0, max_value=6).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))


# --- key expansion -------------------------------------------------------------------------------


def test_expand_single_key_repeats_it_three_times() -> None:
    k = h("0123456789ABCDEF")
    assert expand_tdes_key(k) == k + k + k


def test_expand_two_key_appends_k1() -> None:
    assert expand_tdes_key(IMK) == IMK + IMK[:8]


def test_expand_three_key_is_unchanged() -> None:
    k = bytes(range(24))
    assert expand_tdes_key(k) == k


@pytest.mark.parametrize("length", [0, 7, 9, 15, 17, 23, 25, 32])
def test_expand_rejects_other_lengths(length: int) -> None:
    with pytest.raises(ValueError, match="8, 16 or 24"):
        expand_tdes_key(bytes(length))


# --- single DES ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        # Classic worked DES example (Grabbe, "The DES Algorithm Illustrated").
        ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
        # FIPS 81 / "Now is t" example.
        ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
    ],
)
def test_des_published_vectors(key: str, plain: str, cipher: str) -> None:
    assert des_encrypt(h(key), h(plain)) == h(cipher)
    assert des_decrypt(h(key), h(cipher)) == h(plain)


@settings(deadline=None)
@given(key8, blocks)
def test_des_round_trip_and_matches_pyemv_single_key(key: bytes, data: bytes) -> None:
    ct = des_encrypt(key, data)
    assert des_decrypt(key, ct) == data
    # An 8-byte key in pyemv is single DES (deprecated path, warning filtered by the test config).
    assert ct == pyemv_tools.encrypt_tdes_ecb(key, data)


@pytest.mark.parametrize("length", [0, 7, 16, 24])
def test_des_rejects_non_single_keys(length: int) -> None:
    with pytest.raises(ValueError, match="8 bytes"):
        des_encrypt(bytes(length), bytes(8))
    with pytest.raises(ValueError, match="8 bytes"):
        des_decrypt(bytes(length), bytes(8))


# --- triple DES ----------------------------------------------------------------------------------


def test_tdes_pyemv_docstring_vector() -> None:
    assert tdes_encrypt(IMK, b"12345678") == h("41D2FFBA3CDC15FE")
    assert tdes_decrypt(IMK, h("41D2FFBA3CDC15FE")) == b"12345678"


@settings(deadline=None)
@given(st.one_of(key16, key24), blocks)
def test_tdes_ecb_matches_pyemv(key: bytes, data: bytes) -> None:
    ct = tdes_encrypt(key, data)
    assert ct == pyemv_tools.encrypt_tdes_ecb(key, data)
    assert tdes_decrypt(key, ct) == data


@settings(deadline=None)
@given(key16, blocks)
def test_two_key_equals_its_three_key_expansion(key: bytes, data: bytes) -> None:
    assert tdes_encrypt(key, data) == tdes_encrypt(key + key[:8], data)


@settings(deadline=None)
@given(key8, blocks)
def test_single_key_tdes_is_single_des(key: bytes, data: bytes) -> None:
    assert tdes_encrypt(key, data) == des_encrypt(key, data)


@settings(deadline=None)
@given(st.one_of(key8, key16, key24), st.binary(min_size=8, max_size=8), blocks)
def test_tdes_cbc_matches_pyemv(key: bytes, iv: bytes, data: bytes) -> None:
    assert tdes_cbc_encrypt(key, data, iv) == pyemv_tools.encrypt_tdes_cbc(key, iv, data)


def test_tdes_cbc_default_iv_is_zero() -> None:
    data = bytes(range(24))
    assert tdes_cbc_encrypt(IMK, data) == tdes_cbc_encrypt(IMK, data, bytes(8))
    assert tdes_cbc_encrypt(IMK, data)[:8] == tdes_encrypt(IMK, data[:8])


@pytest.mark.parametrize("length", [1, 7, 9, 15])
def test_unaligned_data_is_rejected(length: int) -> None:
    for fn in (tdes_encrypt, tdes_decrypt, tdes_cbc_encrypt):
        with pytest.raises(ValueError, match="multiple of 8"):
            fn(IMK, bytes(length))
    with pytest.raises(ValueError, match="multiple of 8"):
        des_encrypt(IMK[:8], bytes(length))


@pytest.mark.parametrize("length", [0, 7, 16])
def test_cbc_rejects_bad_iv(length: int) -> None:
    with pytest.raises(ValueError, match="IV"):
        tdes_cbc_encrypt(IMK, bytes(8), bytes(length))


def test_tdes_rejects_bad_key_length() -> None:
    with pytest.raises(ValueError):
        tdes_encrypt(bytes(15), bytes(8))


# --- xor, parity, KCV ----------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=40).flatmap(
        lambda n: st.tuples(st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n))
    )
)
def test_xor_matches_pyemv(pair: tuple[bytes, bytes]) -> None:
    a, b = pair
    assert xor(a, b) == pyemv_tools.xor(a, b)
    assert xor(xor(a, b), b) == a


def test_xor_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        xor(b"\x00", b"\x00\x00")


def test_adjust_odd_parity_known_value() -> None:
    assert adjust_odd_parity(h("0000FFFE0102")) == h("0101FEFE0102")


@given(st.binary(max_size=24))
def test_adjust_odd_parity_matches_pyemv(key: bytes) -> None:
    adjusted = adjust_odd_parity(key)
    assert adjusted == pyemv_tools.adjust_key_parity(key)
    assert all(b.bit_count() % 2 == 1 for b in adjusted)
    assert all((a ^ b) & 0xFE == 0 for a, b in zip(adjusted, key, strict=True))
    assert adjust_odd_parity(adjusted) == adjusted


def test_kcv_pyemv_vector() -> None:
    assert kcv(IMK, 2) == h("08D7")
    assert kcv(IMK) == h("08D7B4")


@settings(deadline=None)
@given(st.one_of(key8, key16, key24), st.integers(min_value=1, max_value=8))
def test_kcv_matches_pyemv(key: bytes, length: int) -> None:
    assert kcv(key, length) == pyemv_tools.key_check_digits(key, length)


@pytest.mark.parametrize("length", [0, 9])
def test_kcv_rejects_bad_length(length: int) -> None:
    with pytest.raises(ValueError):
        kcv(IMK, length)


# --- no deprecated cryptography path -------------------------------------------------------------


def _record(fn: Callable[[], object]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return caught


def test_warning_harness_detects_deprecated_short_keys() -> None:
    """Guard for the test below: the harness does catch cryptography's short-key deprecation."""
    caught = _record(lambda: Cipher(TripleDES(IMK), modes.ECB()).encryptor().update(bytes(8)))
    assert caught, "a 16-byte TripleDES key should warn; if not, the no-warning test proves nothing"


def test_no_warning_is_emitted() -> None:
    def exercise() -> None:
        for key in (IMK[:8], IMK, IMK + IMK[:8]):
            tdes_decrypt(key, tdes_encrypt(key, bytes(16)))
            tdes_cbc_encrypt(key, bytes(16), bytes(8))
            kcv(key)
        des_decrypt(IMK[:8], des_encrypt(IMK[:8], bytes(8)))
        expand_tdes_key(IMK)
        xor(IMK, IMK)
        adjust_odd_parity(IMK)

    caught = _record(exercise)
    assert [str(w.message) for w in caught] == []
