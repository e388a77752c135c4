"""CVN 01 cryptograms and ARPCs: doc §12 vectors (pyemv HSM tests, Visa CVN 10, composed PBOC) and pyemv."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import ac as pyemv_ac
from pyemv import cvn as pyemv_cvn
from pyemv import kd as pyemv_kd

from emvcore.crypto.cryptogram import (
    CVN01_AC_TAGS,
    CVN01_TAG_LENGTHS,
    Algorithm,
    ac_input,
    arpc_method1,
    arpc_method2,
    compute_ac,
    compute_arpc1,
    derive_icc_master_key,
    derive_session_key,
    generate_ac,
)
from emvcore.crypto.des import adjust_odd_parity, kcv, tdes_decrypt, tdes_encrypt
from emvcore.crypto.keys import derive_icc_mk_a, derive_pboc_session_key
from emvcore.crypto.sm4 import (
    derive_icc_mk_sm4,
    derive_sm4_session_key,
    sm4_arpc_method1,
    sm4_generate_ac,
)

h = bytes.fromhex
IMK = h("0123456789ABCDEFFEDCBA9876543210")

key16 = st.binary(min_size=16, max_size=16)
arqc_st = st.binary(min_size=8, max_size=8)
arc_st = st.binary(min_size=2, max_size=2)

# Composed PBOC vector (doc §12).
PBOC_VALUES = {
    0x9F02: h("000000000100"),
    0x9F03: h("000000000000"),
    0x9F1A: h("0156"),
    0x95: h("0000000000"),
    0x5F2A: h("0156"),
    0x9A: h("260101"),
    0x9C: h("00"),
    0x9F37: h("12345678"),
    0x82: h("7C00"),
    0x9F36: h("0001"),
}
PBOC_CVR = h("03A00000")
PBOC_UDK = h("73AD54688CEF2934B0979857E3C719F1")
PBOC_SK = h("4371F589F9D733ED7740041EAC9A0C39")

# Visa CVN 10 vector (pyemv tests/test_cvn_hsm.py).
CVN10_VALUES = {
    0x9F02: h("000000004000"),
    0x9F03: h("000000000000"),
    0x9F1A: h("0124"),
    0x95: h("8000048000"),
    0x5F2A: h("0124"),
    0x9A: h("191105"),
    0x9C: h("01"),
    0x9F37: h("52BF4585"),
    0x82: h("1800"),
    0x9F36: h("001C"),
}
CVN10_CVR = h("03A06010")


def _common_session_key(icc_mk: bytes, r: bytes) -> bytes:
    """EMV common session key (odd parity), restated here only to reach the pyemv HSM test values."""
    left = r[:2] + b"\xf0" + r[3:]
    right = r[:2] + b"\x0f" + r[3:]
    return adjust_odd_parity(tdes_encrypt(icc_mk, left) + tdes_encrypt(icc_mk, right))


@pytest.fixture
def hsm_keys() -> tuple[bytes, bytes]:
    icc_mk = derive_icc_mk_a(IMK, "9901234567890123", "45")
    r = h("1234567890123456")
    sk_ac = _common_session_key(icc_mk, r)
    assert sk_ac == pyemv_kd.derive_common_sk(icc_mk, r)
    assert kcv(IMK, 2) == h("08D7")
    assert kcv(icc_mk, 2) == h("1DA5")
    assert kcv(sk_ac, 2) == h("0995")
    return icc_mk, sk_ac


# --- AC input ------------------------------------------------------------------------------------


def test_ac_input_order_and_length() -> None:
    data = ac_input(PBOC_VALUES, PBOC_CVR)
    assert data == h("000000000100 000000000000 0156 0000000000 0156 260101 00 12345678 7C00 0001 03A00000")
    assert len(data) == 37
    assert CVN01_AC_TAGS == (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)
    assert sum(CVN01_TAG_LENGTHS[t] for t in CVN01_AC_TAGS) == 33


def test_ac_input_ignores_extra_tags_and_dict_order() -> None:
    shuffled = dict(reversed(list(PBOC_VALUES.items())))
    shuffled[0x9F66] = h("26000080")
    assert ac_input(shuffled, PBOC_CVR) == ac_input(PBOC_VALUES, PBOC_CVR)


@pytest.mark.parametrize(("tag", "name"), [(0x9F37, "9F37"), (0x95, "95"), (0x9F36, "9F36")])
def test_ac_input_missing_tag_named(tag: int, name: str) -> None:
    values = {k: v for k, v in PBOC_VALUES.items() if k != tag}
    with pytest.raises(ValueError, match=f"tag {name} is missing"):
        ac_input(values, PBOC_CVR)


@pytest.mark.parametrize(("tag", "name"), [(0x9F02, "9F02"), (0x9C, "9C"), (0x5F2A, "5F2A")])
def test_ac_input_wrong_length_named(tag: int, name: str) -> None:
    values = dict(PBOC_VALUES)
    values[tag] = values[tag] + b"\x00"
    with pytest.raises(ValueError, match=f"tag {name} must be"):
        ac_input(values, PBOC_CVR)


@pytest.mark.parametrize("cvr", ["", "03A000", "03A0000000"])
def test_ac_input_cvr_length(cvr: str) -> None:
    with pytest.raises(ValueError, match="CVR"):
        ac_input(PBOC_VALUES, h(cvr))


# --- composed PBOC vector ------------------------------------------------------------------------


def test_composed_pboc_vector_end_to_end() -> None:
    udk = derive_icc_mk_a(IMK, "6212345678901234567", "01")
    assert udk == PBOC_UDK
    sk = derive_pboc_session_key(udk, 0x0001)
    assert sk == PBOC_SK
    assert kcv(sk) == h("42828C")
    data = ac_input(PBOC_VALUES, PBOC_CVR)
    arqc = generate_ac(sk, data)
    assert arqc == h("B1C97A42E50D2639")
    assert generate_ac(sk, data, padding=1) == h("A77920206956B805")
    assert arpc_method1(sk, arqc, b"00") == h("0855BDFD30EF18AF")
    # Same values from pyemv.
    assert pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.EMV) == arqc
    assert pyemv_ac.generate_ac(sk, data, pyemv_ac.PaddingType.VISA) == h("A77920206956B805")
    assert pyemv_ac.generate_arpc_1(sk, arqc, b"00") == h("0855BDFD30EF18AF")


def test_composed_pboc_vector_via_dispatch() -> None:
    udk = derive_icc_master_key(Algorithm.TDES, IMK, "6212345678901234567", "01")
    sk = derive_session_key(Algorithm.TDES, udk, 1)
    arqc = compute_ac(Algorithm.TDES, sk, ac_input(PBOC_VALUES, PBOC_CVR))
    assert (udk, sk, arqc) == (PBOC_UDK, PBOC_SK, h("B1C97A42E50D2639"))
    assert compute_arpc1(Algorithm.TDES, sk, arqc, b"00") == h("0855BDFD30EF18AF")


def test_session_key_parity_does_not_change_cryptograms() -> None:
    data = ac_input(PBOC_VALUES, PBOC_CVR)
    odd = adjust_odd_parity(PBOC_SK)
    assert odd != PBOC_SK
    assert generate_ac(odd, data) == generate_ac(PBOC_SK, data)
    arqc = generate_ac(PBOC_SK, data)
    assert arpc_method1(odd, arqc, b"00") == arpc_method1(PBOC_SK, arqc, b"00")


def test_arpc_method1_decrypts_to_arqc_xor_arc() -> None:
    arqc = h("B1C97A42E50D2639")
    plain = tdes_decrypt(PBOC_SK, arpc_method1(PBOC_SK, arqc, b"00"))
    assert plain == h("81F97A42E50D2639")  # B1C9 xor 3030


# --- pyemv HSM vectors (tests/test_ac_hsm.py) ----------------------------------------------------


def test_hsm_ac_emv_padding_and_arpc1(hsm_keys: tuple[bytes, bytes]) -> None:
    icc_mk, sk_ac = hsm_keys
    arqc = generate_ac(sk_ac, h("0123456789ABCDEF0123456789ABCDEF"))
    assert arqc == h("4B46013359B7A58B")
    assert arpc_method1(icc_mk, arqc, h("0000")) == h("F8C9CECAABD55AD1")


@pytest.mark.parametrize(
    ("data", "arqc", "arpc"),
    [
        ("0123456789ABCDEF0123456789ABCDEF", "922F3E83125EB46B", "8AE6E836084B0E80"),
        ("0123456789ABCDEF0123456789ABCDEF01", "2E141C6BC4A20DA8", "16A49AAB314B9262"),
    ],
)
def test_hsm_ac_visa_padding(hsm_keys: tuple[bytes, bytes], data: str, arqc: str, arpc: str) -> None:
    icc_mk, sk_ac = hsm_keys
    assert generate_ac(sk_ac, h(data), padding=1) == h(arqc)
    assert arpc_method1(icc_mk, h(arqc), h("0000")) == h(arpc)


def test_hsm_arpc_method2(hsm_keys: tuple[bytes, bytes]) -> None:
    _, sk_ac = hsm_keys
    arqc = h("4B46013359B7A58B")
    assert arpc_method2(sk_ac, arqc, h("00000000")) == h("7DFB1188")
    assert arpc_method2(sk_ac, arqc, h("00000000"), h("1234567890ABCDEF")) == h("4962B76C")


def test_pyemv_docstring_vectors() -> None:
    sk = h("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
    data = h("000000002000 000000000000 0124 0000008000 0124 110309 00 3804823E 5800 0001")
    assert generate_ac(sk, data) == h("3B76CF10FECD8789")
    assert arpc_method1(sk, h("1234567890ABCDEF"), h("0000")) == h("F5E6F44147E2F1B0")
    assert arpc_method2(sk, h("1234567890ABCDEF"), h("00000000")) == h("9308BEBC")


# --- Visa CVN 10 (pyemv tests/test_cvn_hsm.py) ---------------------------------------------------


def test_visa_cvn10_arqc_and_arpc() -> None:
    icc_mk = derive_icc_mk_a(IMK, "1234567890123456", "00")
    assert kcv(icc_mk, 2) == h("BAB0")
    data = ac_input(CVN10_VALUES, CVN10_CVR)
    # CVN 10 MACs with the ICC master key itself and zero padding.
    arqc = generate_ac(icc_mk, data, padding=1)
    assert arqc == h("29CCA15AE665FA2E")
    assert arpc_method1(icc_mk, arqc, h("3030")) == h("28993816AFAE4AEB")
    visa = pyemv_cvn.VisaCVN10(IMK, IMK, IMK, "1234567890123456", "00")
    args = {f"tag_{t:x}": v for t, v in CVN10_VALUES.items()}
    assert visa.generate_ac(**args, cvr=CVN10_CVR) == arqc
    assert visa.generate_arpc(tag_9f26=arqc, arpc_rc=h("3030")) == h("28993816AFAE4AEB")


# --- random cross-checks against pyemv -----------------------------------------------------------


@settings(deadline=None)
@given(key16, st.binary(max_size=64), st.sampled_from([1, 2]))
def test_generate_ac_matches_pyemv(sk: bytes, data: bytes, padding: int) -> None:
    ptype = pyemv_ac.PaddingType.EMV if padding == 2 else pyemv_ac.PaddingType.VISA
    assert generate_ac(sk, data, padding=padding) == pyemv_ac.generate_ac(sk, data, ptype)


@settings(deadline=None)
@given(key16, arqc_st, arc_st)
def test_arpc_method1_matches_pyemv(sk: bytes, arqc: bytes, arc: bytes) -> None:
    assert arpc_method1(sk, arqc, arc) == pyemv_ac.generate_arpc_1(sk, arqc, arc)


@settings(deadline=None)
@given(key16, arqc_st, st.binary(min_size=4, max_size=4), st.binary(max_size=8))
def test_arpc_method2_matches_pyemv(sk: bytes, arqc: bytes, csu: bytes, prop: bytes) -> None:
    expected = pyemv_ac.generate_arpc_2(sk, arqc, csu, prop or None)
    assert arpc_method2(sk, arqc, csu, prop) == expected
    assert len(expected) == 4


@settings(deadline=None)
@given(
    key16,
    st.text(alphabet="0123456789", min_size=12, max_size=19),
    st.integers(0, 99),
    st.integers(0, 0xFFFF),
    st.binary(min_size=37, max_size=37),
    arc_st,
)
def test_tdes_chain_matches_pyemv(imk: bytes, pan: str, psn: int, atc: int, data: bytes, arc: bytes) -> None:
    udk = derive_icc_master_key(Algorithm.TDES, imk, pan, psn)
    assert udk == pyemv_kd.derive_icc_mk_a(imk, pan, f"{psn:02d}")
    sk = derive_session_key(Algorithm.TDES, udk, atc)
    arqc = compute_ac(Algorithm.TDES, sk, data)
    assert arqc == pyemv_ac.generate_ac(sk, data)
    assert compute_arpc1(Algorithm.TDES, sk, arqc, arc) == pyemv_ac.generate_arpc_1(sk, arqc, arc)


# --- dispatch ------------------------------------------------------------------------------------


def test_algorithm_ids() -> None:
    assert Algorithm.TDES == 0x01
    assert Algorithm.SM4 == 0x04
    assert Algorithm(4) is Algorithm.SM4


def test_sm4_dispatch_uses_sm4_functions() -> None:
    mk = derive_icc_master_key(Algorithm.SM4, IMK, "6212345678901234567", "01")
    assert mk == derive_icc_mk_sm4(IMK, "6212345678901234567", "01")
    assert mk != PBOC_UDK
    sk = derive_session_key(Algorithm.SM4, mk, 1)
    assert sk == derive_sm4_session_key(mk, 1)
    data = ac_input(PBOC_VALUES, PBOC_CVR)
    arqc = compute_ac(Algorithm.SM4, sk, data)
    assert arqc == sm4_generate_ac(sk, data)
    assert len(arqc) == 8
    assert compute_arpc1(Algorithm.SM4, sk, arqc, b"00") == sm4_arpc_method1(sk, arqc, b"00")


def test_dispatch_accepts_plain_int_ids() -> None:
    assert derive_session_key(1, PBOC_UDK, 1) == PBOC_SK  # type: ignore[arg-type]
    assert derive_session_key(4, IMK, 1) == derive_sm4_session_key(IMK, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", [0, 2, 3, 5])
def test_dispatch_rejects_unknown_algorithm(alg: int) -> None:
    with pytest.raises(ValueError):
        derive_session_key(alg, PBOC_UDK, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compute_ac(alg, PBOC_SK, b"")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compute_arpc1(alg, PBOC_SK, bytes(8), b"00")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        derive_icc_master_key(alg, IMK, "1234567890123456", 0)  # type: ignore[arg-type]


# --- argument checks -----------------------------------------------------------------------------


def test_length_checks() -> None:
    with pytest.raises(ValueError, match="session key"):
        generate_ac(bytes(8), b"x")
    with pytest.raises(ValueError, match="session key"):
        arpc_method1(bytes(24), bytes(8), b"00")
    with pytest.raises(ValueError, match="ARQC"):
        arpc_method1(PBOC_SK, bytes(7), b"00")
    with pytest.raises(ValueError, match="ARC"):
        arpc_method1(PBOC_SK, bytes(8), b"0")
    with pytest.raises(ValueError, match="ARQC"):
        arpc_method2(PBOC_SK, bytes(9), bytes(4))
    with pytest.raises(ValueError, match="CSU"):
        arpc_method2(PBOC_SK, bytes(8), bytes(3))
    with pytest.raises(ValueError, match="proprietary"):
        arpc_method2(PBOC_SK, bytes(8), bytes(4), bytes(9))
