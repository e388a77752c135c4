"""ICC master key (EMV Option A) and PBOC session key derivation: pyemv 1.5.0 oracle and doc §12 vectors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import kd as pyemv_kd
from pyemv import tools as pyemv_tools

from emvcore.crypto.des import kcv
from emvcore.crypto.keys import atc_bytes, derive_icc_mk_a, derive_pboc_session_key, pan_psn_block

h = bytes.fromhex
IMK = h("0123456789ABCDEFFEDCBA9876543210")

key16 = st.binary(min_size=16, max_size=16)
pan_st = st.text(alphabet="0123456789", min_size=8, max_size=19)
psn_st = st.integers(min_value=0, max_value=99)
atc_st = st.integers(min_value=0, max_value=0xFFFF)


# --- Option A ------------------------------------------------------------------------------------


def test_option_a_pyemv_docstring_vector() -> None:
    assert derive_icc_mk_a(IMK, "12345678901234567", "01") == h("73AD54688CEF2934B0979857E3C719F1")


def test_option_a_pyemv_test_ac_hsm_kcv() -> None:
    mk = derive_icc_mk_a(IMK, "9901234567890123", "45")
    assert kcv(mk, 2) == h("1DA5")


def test_option_a_visa_cvn10_kcv() -> None:
    assert kcv(derive_icc_mk_a(IMK, "1234567890123456", "00"), 2) == h("BAB0")
    assert kcv(derive_icc_mk_a(IMK, "1234567890123456"), 2) == h("BAB0")


def test_option_a_composed_pboc_vector() -> None:
    assert derive_icc_mk_a(IMK, "6212345678901234567", "01") == h("73AD54688CEF2934B0979857E3C719F1")
    assert derive_icc_mk_a(IMK, "6212345678901234567", 1) == h("73AD54688CEF2934B0979857E3C719F1")


@settings(deadline=None)
@given(key16, pan_st, psn_st)
def test_option_a_matches_pyemv(imk: bytes, pan: str, psn: int) -> None:
    mk = derive_icc_mk_a(imk, pan, psn)
    assert mk == pyemv_kd.derive_icc_mk_a(imk, pan, f"{psn:02d}")
    assert mk == derive_icc_mk_a(imk, pan, f"{psn:02d}")
    assert all(b.bit_count() % 2 == 1 for b in mk)


@given(pan_st, psn_st)
def test_pan_psn_block_is_rightmost_16_digits(pan: str, psn: int) -> None:
    digits = (pan + f"{psn:02d}")[-16:].rjust(16, "0")
    assert pan_psn_block(pan, psn).hex() == digits


def test_pan_psn_block_short_pan_is_left_zero_filled() -> None:
    assert pan_psn_block("12345678", 9) == h("0000001234567809")


@pytest.mark.parametrize(
    "pan", ["", "1234567", "12345678901234567890", "123456789012345F", "1234 5678 9012", "١٢٣٤٥٦٧٨٩"]
)
def test_bad_pan_rejected(pan: str) -> None:
    with pytest.raises(ValueError, match="PAN"):
        derive_icc_mk_a(IMK, pan, 0)


@pytest.mark.parametrize("psn", [-1, 100, "1", "001", "0A", True])
def test_bad_psn_rejected(psn: object) -> None:
    with pytest.raises(ValueError, match="PSN"):
        derive_icc_mk_a(IMK, "1234567890123456", psn)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 8, 24])
def test_option_a_requires_two_key_imk(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        derive_icc_mk_a(bytes(length), "1234567890123456", 0)


# --- PBOC session key ----------------------------------------------------------------------------


def test_pboc_session_key_composed_vector() -> None:
    udk = h("73AD54688CEF2934B0979857E3C719F1")
    sk = derive_pboc_session_key(udk, 0x0001)
    assert sk == h("4371F589F9D733ED7740041EAC9A0C39")
    assert kcv(sk) == h("42828C")


@settings(deadline=None)
@given(key16, atc_st)
def test_pboc_session_key_matches_pyemv_ecb(udk: bytes, atc: int) -> None:
    r = bytes(6) + atc.to_bytes(2, "big") + bytes(6) + (atc ^ 0xFFFF).to_bytes(2, "big")
    assert derive_pboc_session_key(udk, atc) == pyemv_tools.encrypt_tdes_ecb(udk, r)


def test_pboc_session_key_is_not_emv_common_session_key() -> None:
    udk = h("73AD54688CEF2934B0979857E3C719F1")
    r = bytes(6) + b"\x00\x01"
    assert derive_pboc_session_key(udk, 1) != pyemv_kd.derive_common_sk(udk, r)


def test_session_keys_differ_per_atc() -> None:
    udk = h("73AD54688CEF2934B0979857E3C719F1")
    assert derive_pboc_session_key(udk, 1) != derive_pboc_session_key(udk, 2)


@pytest.mark.parametrize("atc", [-1, 0x10000, True])
def test_bad_atc_rejected(atc: int) -> None:
    with pytest.raises(ValueError, match="ATC"):
        derive_pboc_session_key(IMK, atc)
    with pytest.raises(ValueError, match="ATC"):
        atc_bytes(atc)


def test_atc_bytes_big_endian() -> None:
    assert atc_bytes(0x001C) == h("001C")
    assert atc_bytes(0xFFFF) == h("FFFF")


@pytest.mark.parametrize("length", [0, 8, 24])
def test_session_key_requires_two_key_udk(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        derive_pboc_session_key(bytes(length), 1)
