"""EMV Book 2 ODA: round trips through our own test PKI, tamper resistance, and published vectors."""

import dataclasses
import hashlib
import pickle
from collections.abc import Callable
from datetime import date
from typing import Any

import oda_vectors as v
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from emvcore.crypto.oda import (
    CaPublicKey,
    OdaError,
    RsaPublicKey,
    fdda_terminal_data,
    generate_rsa_key,
    make_icc_certificate,
    make_issuer_certificate,
    private_key_from_pem,
    private_key_to_pem,
    public_key_of,
    recover_icc_key,
    recover_issuer_key,
    rsa_recover,
    rsa_sign_raw,
    sign_dynamic_data,
    sign_static_data,
    static_data_to_authenticate,
    verify_dynamic_data,
    verify_static_data,
)

h = bytes.fromhex
TODAY = date(2026, 3, 15)
CERT_EXPIRY = date(2030, 12, 1)
PAN = "6212345678901234567"
RID = h("A000000333")
AIP = h("7C00")
RECORDS = [
    (1, h("70125F24033012315A0A6212345678901234567F")),
    (2, h("700A5F300202019F0702FF00")),
    (11, h("70068E0400000000")),
]
IDN = h("0001")
TERMINAL_DATA = fdda_terminal_data(1, h("12345678"), h("000000000100"), h("0156"), h("0100000000000000"))


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: rsa.RSAPrivateKey
    issuer: rsa.RSAPrivateKey
    icc: rsa.RSAPrivateKey


@dataclasses.dataclass(frozen=True)
class Chain:
    """Everything a terminal holds for one fDDA/DDA check, field names after their EMV tags."""

    capk: CaPublicKey
    cert90: bytes
    rem92: bytes
    exp9f32: bytes
    cert9f46: bytes
    rem9f48: bytes
    exp9f47: bytes
    pan: str
    static_data: bytes
    sdad: bytes
    terminal_data: bytes
    today: date


TAMPER_FIELDS = ("cert90", "rem92", "cert9f46", "rem9f48", "static_data", "sdad", "terminal_data")


def run_chain(c: Chain) -> bytes:
    issuer = recover_issuer_key(c.capk, c.cert90, c.rem92, c.exp9f32, c.pan, c.today)
    icc = recover_icc_key(issuer, c.cert9f46, c.rem9f48, c.exp9f47, c.pan, c.static_data, c.today)
    return verify_dynamic_data(icc, c.sdad, c.terminal_data)


def build_chain(pki: Pki, pan: str = PAN, index: int = 0xF1) -> Chain:
    static = static_data_to_authenticate(RECORDS, AIP, h("82"))
    issuer_pub, icc_pub = public_key_of(pki.issuer), public_key_of(pki.icc)
    cert90, rem92 = make_issuer_certificate(pki.ca, issuer_pub, pan[:6], CERT_EXPIRY, h("000001"))
    cert9f46, rem9f48 = make_icc_certificate(pki.issuer, icc_pub, pan, CERT_EXPIRY, h("000002"), static)
    return Chain(
        capk=CaPublicKey(RID, index, public_key_of(pki.ca)),
        cert90=cert90,
        rem92=rem92,
        exp9f32=issuer_pub.exponent,
        cert9f46=cert9f46,
        rem9f48=rem9f48,
        exp9f47=icc_pub.exponent,
        pan=pan,
        static_data=static,
        sdad=sign_dynamic_data(pki.icc, IDN, TERMINAL_DATA),
        terminal_data=TERMINAL_DATA,
        today=TODAY,
    )


def vector_chain() -> Chain:
    return Chain(
        capk=CaPublicKey(v.MC_RID, v.MC_INDEX, RsaPublicKey(v.MC_MODULUS, v.MC_EXPONENT)),
        cert90=v.DDA_ISSUER_CERT,
        rem92=v.DDA_ISSUER_REMAINDER,
        exp9f32=v.DDA_ISSUER_EXPONENT,
        cert9f46=v.DDA_ICC_CERT,
        rem9f48=v.DDA_ICC_REMAINDER,
        exp9f47=v.DDA_ICC_EXPONENT,
        pan=v.DDA_PAN,
        static_data=v.DDA_STATIC_DATA,
        sdad=v.DDA_SDAD,
        terminal_data=v.DDA_TERMINAL_DYNAMIC_DATA,
        today=date(2015, 6, 30),
    )


# Key generation dominates the run time, so every key is made once per module.
@pytest.fixture(scope="module")
def pki3() -> Pki:
    """Exponent 3: CA 1408, issuer 1152 (4-byte remainder), ICC 768 (fits, BB-padded)."""
    return Pki(generate_rsa_key(1408), generate_rsa_key(1152), generate_rsa_key(768))


@pytest.fixture(scope="module")
def pki65537() -> Pki:
    """Exponent 65537: CA 1152, issuer 1024 (20-byte remainder), ICC 1024 (42-byte remainder)."""
    return Pki(generate_rsa_key(1152, 65537), generate_rsa_key(1024, 65537), generate_rsa_key(1024, 65537))


@pytest.fixture(scope="module", params=["e3", "e65537", "vector"])
def chain(request: pytest.FixtureRequest) -> Chain:
    if request.param == "vector":
        return vector_chain()
    return build_chain(request.getfixturevalue("pki3" if request.param == "e3" else "pki65537"))


def expected_idn(c: Chain) -> bytes:
    return v.DDA_ICC_DYNAMIC_NUMBER if c.pan == v.DDA_PAN else IDN


def tampered(c: Chain, field: str, position: int, delta: int) -> Chain:
    value = getattr(c, field)
    if not value:  # nothing to flip: an unexpected remainder must fail as well
        return dataclasses.replace(c, **{field: bytes([delta])})
    buf = bytearray(value)
    buf[position % len(buf)] ^= delta
    return dataclasses.replace(c, **{field: bytes(buf)})


def expect_oda_error(check: Callable[[], object], reason: str | None = None) -> OdaError:
    with pytest.raises(OdaError) as info:
        check()
    if reason is not None:
        assert info.value.reason == reason, str(info.value)
    return info.value


# --- keys and raw RSA ---------------------------------------------------------------------------


@pytest.mark.parametrize(("bits", "exponent"), [(512, 3), (1000, 65537), (1024, 3)])
def test_generate_rsa_key_size_and_exponent(bits: int, exponent: int) -> None:
    key = generate_rsa_key(bits, exponent)
    pub = public_key_of(key)
    assert key.key_size == bits
    assert pub.length == bits // 8
    assert pub.modulus[0] >= 0x80
    assert pub.e == exponent
    assert pub.exponent == (h("03") if exponent == 3 else h("010001"))


@pytest.mark.parametrize(("bits", "exponent"), [(504, 3), (1992, 3), (1025, 3), (1024, 5), (1024, 17)])
def test_generate_rsa_key_rejects_non_emv_parameters(bits: int, exponent: int) -> None:
    with pytest.raises(ValueError):
        generate_rsa_key(bits, exponent)


def test_pem_round_trip(pki3: Pki) -> None:
    for key in (pki3.ca, pki3.icc):
        pem = private_key_to_pem(key)
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert public_key_of(private_key_from_pem(pem)) == public_key_of(key)


def test_pem_rejects_non_rsa_key() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        private_key_from_pem(pem)


def test_raw_rsa_round_trip_matches_cryptography_numbers(pki65537: Pki) -> None:
    numbers = pki65537.issuer.public_key().public_numbers()
    pub = public_key_of(pki65537.issuer)
    assert (pub.n, pub.e) == (numbers.n, numbers.e)
    message = h("6A") + bytes(range(126)) + h("BC")
    signature = rsa_sign_raw(pki65537.issuer, message)
    # Independent check: textbook RSA with the numbers cryptography reports.
    assert pow(int.from_bytes(signature, "big"), numbers.e, numbers.n) == int.from_bytes(message, "big")
    assert rsa_recover(pub, signature) == message


def test_rsa_recover_length_checks(pki3: Pki) -> None:
    pub = public_key_of(pki3.icc)
    expect_oda_error(lambda: rsa_recover(pub, bytes(pub.length - 1)), "length")
    expect_oda_error(lambda: rsa_recover(pub, bytes(pub.length + 1)), "length")
    expect_oda_error(lambda: rsa_recover(pub, pub.modulus), "length")
    expect_oda_error(lambda: rsa_recover(pub, b"\xff" * pub.length), "length")


def test_rsa_sign_raw_length_checks(pki3: Pki) -> None:
    length = public_key_of(pki3.icc).length
    expect_oda_error(lambda: rsa_sign_raw(pki3.icc, bytes(length - 1)), "length")
    expect_oda_error(lambda: rsa_sign_raw(pki3.icc, b"\xff" * length), "length")


def test_key_dataclasses() -> None:
    key = RsaPublicKey(h("C0FFEE"), h("03"))
    assert (key.n, key.e, key.length) == (0xC0FFEE, 3, 3)
    with pytest.raises(ValueError):
        RsaPublicKey(b"", h("03"))
    with pytest.raises(ValueError):
        CaPublicKey(h("A0000003"), 1, key)
    with pytest.raises(ValueError):
        CaPublicKey(RID, 256, key)


def test_oda_error_carries_reason() -> None:
    err = OdaError("hash", "issuer certificate: hash mismatch")
    assert isinstance(err, ValueError)
    assert (err.reason, str(err)) == ("hash", "issuer certificate: hash mismatch")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, str(copy)) == ("hash", "issuer certificate: hash mismatch")
    assert str(OdaError("length")) == "length"


# --- the full chain -----------------------------------------------------------------------------


def test_full_chain_verifies(chain: Chain) -> None:
    assert run_chain(chain) == expected_idn(chain)


def test_recovered_keys_are_the_generated_ones(pki3: Pki, pki65537: Pki) -> None:
    for pki in (pki3, pki65537):
        c = build_chain(pki)
        issuer = recover_issuer_key(c.capk, c.cert90, c.rem92, c.exp9f32, c.pan, c.today)
        assert issuer == public_key_of(pki.issuer)
        icc = recover_icc_key(issuer, c.cert9f46, c.rem9f48, c.exp9f47, c.pan, c.static_data, c.today)
        assert icc == public_key_of(pki.icc)


def test_certificate_sizes_and_remainders(pki3: Pki, pki65537: Pki) -> None:
    c3, c65537 = build_chain(pki3), build_chain(pki65537)
    assert (len(c3.cert90), len(c3.rem92), len(c3.cert9f46), c3.rem9f48) == (176, 4, 144, b"")
    assert (len(c65537.cert90), len(c65537.rem92)) == (144, 20)
    assert (len(c65537.cert9f46), len(c65537.rem9f48)) == (128, 42)
    assert len(c3.sdad) == 96


def test_issuer_id_of_three_to_eight_digits(pki3: Pki) -> None:
    issuer_pub = public_key_of(pki3.issuer)
    capk = CaPublicKey(RID, 0xF1, public_key_of(pki3.ca))
    for digits in range(3, 9):
        cert, rem = make_issuer_certificate(pki3.ca, issuer_pub, PAN[:digits], CERT_EXPIRY, h("000001"))
        assert recover_issuer_key(capk, cert, rem, issuer_pub.exponent, PAN, TODAY) == issuer_pub


@pytest.mark.parametrize("issuer_id", ["62", "123456789", "62A4", ""])
def test_make_issuer_certificate_rejects_bad_issuer_id(pki3: Pki, issuer_id: str) -> None:
    with pytest.raises(ValueError):
        make_issuer_certificate(pki3.ca, public_key_of(pki3.issuer), issuer_id, CERT_EXPIRY, h("000001"))


def test_make_certificate_rejects_bad_serial(pki3: Pki) -> None:
    with pytest.raises(ValueError):
        make_issuer_certificate(pki3.ca, public_key_of(pki3.issuer), "621234", CERT_EXPIRY, h("0001"))
    with pytest.raises(ValueError):
        make_icc_certificate(pki3.issuer, public_key_of(pki3.icc), PAN, CERT_EXPIRY, h("00"), b"")


def test_odd_length_pan_given_f_padded(pki3: Pki) -> None:
    c = build_chain(pki3)
    assert run_chain(dataclasses.replace(c, pan=PAN + "F")) == IDN


# --- tampering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", TAMPER_FIELDS)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("delta", [0x01, 0x80])
def test_flipping_a_byte_breaks_the_chain(chain: Chain, field: str, where: str, delta: int) -> None:
    length = max(len(getattr(chain, field)), 1)
    position = {"first": 0, "middle": length // 2, "last": length - 1}[where]
    expect_oda_error(lambda: run_chain(tampered(chain, field, position, delta)))


@pytest.mark.parametrize("field", TAMPER_FIELDS)
def test_every_byte_position_is_protected(chain: Chain, field: str) -> None:
    # Exhaustive over positions (verification is cheap; only signing is slow).
    for position in range(max(len(getattr(chain, field)), 1)):
        for delta in (0x01, 0xFF):
            expect_oda_error(lambda p=position, d=delta: run_chain(tampered(chain, field, p, d)))


@settings(max_examples=150, deadline=None)
@given(
    field=st.sampled_from(TAMPER_FIELDS),
    position=st.integers(min_value=0, max_value=255),
    delta=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_fails_with_oda_error(chain: Chain, field: str, position: int, delta: int) -> None:
    expect_oda_error(lambda: run_chain(tampered(chain, field, position, delta)))


@pytest.mark.parametrize("field", ["rem92", "rem9f48", "static_data", "terminal_data"])
def test_appending_or_dropping_bytes_breaks_the_chain(chain: Chain, field: str) -> None:
    value = getattr(chain, field)
    expect_oda_error(lambda: run_chain(dataclasses.replace(chain, **{field: value + h("00")})))
    if value:
        expect_oda_error(lambda: run_chain(dataclasses.replace(chain, **{field: value[:-1]})))


@pytest.mark.parametrize("field", ["exp9f32", "exp9f47"])
def test_wrong_exponent_breaks_the_chain(chain: Chain, field: str) -> None:
    other = h("010001") if getattr(chain, field) == h("03") else h("03")
    expect_oda_error(lambda: run_chain(dataclasses.replace(chain, **{field: other})), "hash")


def test_truncated_or_extended_signatures_fail_on_length(chain: Chain) -> None:
    for field in ("cert90", "cert9f46", "sdad"):
        value = getattr(chain, field)
        expect_oda_error(lambda f=field, x=value: run_chain(dataclasses.replace(chain, **{f: x[1:]})), "length")
        expect_oda_error(lambda f=field, x=value: run_chain(dataclasses.replace(chain, **{f: x + h("00")})))


def test_swapped_certificates_fail(chain: Chain) -> None:
    swapped = dataclasses.replace(chain, cert90=chain.cert9f46, cert9f46=chain.cert90)
    expect_oda_error(lambda: run_chain(swapped))


# --- expiry and PAN ----------------------------------------------------------------------------


def test_expired_issuer_certificate(pki3: Pki) -> None:
    c = build_chain(pki3)
    # Valid through the last day of the expiry month (12/30), expired on the first day after.
    assert run_chain(dataclasses.replace(c, today=date(2030, 12, 31))) == IDN
    err = expect_oda_error(lambda: run_chain(dataclasses.replace(c, today=date(2031, 1, 1))), "expired")
    assert "issuer" in str(err)


def test_expired_icc_certificate(pki3: Pki) -> None:
    c = build_chain(pki3)
    cert, rem = make_icc_certificate(
        pki3.issuer, public_key_of(pki3.icc), PAN, date(2026, 2, 28), h("000003"), c.static_data
    )
    stale = dataclasses.replace(c, cert9f46=cert, rem9f48=rem)
    assert run_chain(dataclasses.replace(stale, today=date(2026, 2, 1))) == IDN
    err = expect_oda_error(lambda: run_chain(stale), "expired")
    assert "ICC" in str(err)


def test_expired_ca_key(pki3: Pki) -> None:
    c = build_chain(pki3)
    capk = dataclasses.replace(c.capk, expiry=date(2026, 3, 14))
    expect_oda_error(lambda: run_chain(dataclasses.replace(c, capk=capk)), "expired")
    capk = dataclasses.replace(c.capk, expiry=TODAY)
    assert run_chain(dataclasses.replace(c, capk=capk)) == IDN


def test_pan_with_other_issuer_id_fails(chain: Chain) -> None:
    other = ("9" if chain.pan[0] != "9" else "8") + chain.pan[1:]
    expect_oda_error(lambda: run_chain(dataclasses.replace(chain, pan=other)), "issuer-id")


@pytest.mark.parametrize("change", ["last digit", "extra digit", "missing digit"])
def test_pan_differing_after_the_issuer_id_fails_on_icc_certificate(chain: Chain, change: str) -> None:
    pan = chain.pan
    other = {
        "last digit": pan[:-1] + ("0" if pan[-1] != "0" else "1"),
        "extra digit": pan + "0",
        "missing digit": pan[:-1],
    }[change]
    expect_oda_error(lambda: run_chain(dataclasses.replace(chain, pan=other)), "pan")


@pytest.mark.parametrize("pan", ["", "62123A", "6" * 20, "６２１２３４５６"])
def test_malformed_pan_fails(chain: Chain, pan: str) -> None:
    expect_oda_error(lambda: run_chain(dataclasses.replace(chain, pan=pan)))


# --- hand-made blocks: each Book 2 check in isolation ------------------------------------------


def signed_block(private: rsa.RSAPrivateKey, body: bytes, hashed_extra: bytes = b"", **over: int) -> bytes:
    """A test-side builder, independent of the module's: 6A body hash BC, then raw RSA."""
    length = private.key_size // 8
    body = body.ljust(length - 22, h("BB"))
    digest = hashlib.sha1(body + hashed_extra).digest()
    block = bytes([over.get("header", 0x6A)]) + body + digest + bytes([over.get("trailer", 0xBC)])
    numbers = private.private_numbers()
    signature = pow(int.from_bytes(block, "big"), numbers.d, numbers.public_numbers.n)
    return signature.to_bytes(length, "big")


def issuer_body(
    pki: Pki, fmt: int = 0x02, expiry: str = "1230", hash_algo: int = 1, pk_algo: int = 1, exp_len: int = 1
) -> tuple[bytes, bytes]:
    """Issuer certificate body (format .. key field) and the remainder, with one field overridable."""
    pub = public_key_of(pki.issuer)
    room = pki.ca.key_size // 8 - 36
    body = (
        bytes([fmt])
        + h("621234FF")
        + h(expiry)
        + h("000001")
        + bytes([hash_algo, pk_algo, pub.length, exp_len])
        + pub.modulus[:room]
    )
    return body, pub.modulus[room:]


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"header": 0x6B}, "header"),
        ({"trailer": 0xBD}, "trailer"),
        ({"fmt": 0x04}, "format"),
        ({"hash_algo": 0x02}, "algorithm"),
        ({"pk_algo": 0x02}, "algorithm"),
        ({"exp_len": 3}, "length"),
        ({"expiry": "1330"}, "format"),
        ({"expiry": "12A0"}, "format"),
    ],
)
def test_each_issuer_certificate_check(pki3: Pki, over: dict[str, Any], reason: str) -> None:
    capk = CaPublicKey(RID, 0xF1, public_key_of(pki3.ca))
    framing = {k: over.pop(k) for k in ("header", "trailer") if k in over}
    body, rem = issuer_body(pki3, **over)
    cert = signed_block(pki3.ca, body, rem + h("03"), **framing)
    expect_oda_error(lambda: recover_issuer_key(capk, cert, rem, h("03"), PAN, TODAY), reason)


def test_hand_made_issuer_certificate_is_accepted(pki3: Pki) -> None:
    capk = CaPublicKey(RID, 0xF1, public_key_of(pki3.ca))
    body, rem = issuer_body(pki3)
    cert = signed_block(pki3.ca, body, rem + h("03"))
    assert recover_issuer_key(capk, cert, rem, h("03"), PAN, TODAY) == public_key_of(pki3.issuer)


def test_remainder_present_when_key_fits(pki3: Pki) -> None:
    # The ICC key of pki3 fits its certificate, so a 9F48 that is also hashed is still refused.
    c = build_chain(pki3)
    issuer = public_key_of(pki3.issuer)
    icc = public_key_of(pki3.icc)
    pad = h("BB") * (issuer.length - 42 - icc.length)
    assert pad
    head = h("04") + h(PAN + "F") + h("1230") + h("000002") + h("0101") + bytes([icc.length, 1])
    body = head + icc.modulus + pad
    cert = signed_block(pki3.issuer, body, h("AA") + h("03") + c.static_data)
    expect_oda_error(lambda: recover_icc_key(issuer, cert, h("AA"), h("03"), PAN, c.static_data, TODAY), "length")
    cert = signed_block(pki3.issuer, body[:-1] + h("00"), h("03") + c.static_data)
    expect_oda_error(lambda: recover_icc_key(issuer, cert, b"", h("03"), PAN, c.static_data, TODAY), "format")


def test_sdad_with_bad_dynamic_data_length(pki3: Pki) -> None:
    icc = public_key_of(pki3.icc)
    for dynamic in (h("05") + h("01") + h("0102"), h("02") + h("09") + h("0102"), h("FF")):
        sdad = signed_block(pki3.icc, h("0501") + dynamic, TERMINAL_DATA)
        expect_oda_error(lambda s=sdad: verify_dynamic_data(icc, s, TERMINAL_DATA), "dynamic-data")


def test_wrong_format_for_the_slot(pki3: Pki) -> None:
    c = build_chain(pki3)
    issuer = public_key_of(pki3.issuer)
    expect_oda_error(lambda: verify_static_data(issuer, c.cert9f46, c.static_data), "format")
    ssad = sign_static_data(pki3.issuer, h("DAC1"), c.static_data)
    expect_oda_error(lambda: recover_icc_key(issuer, ssad, b"", h("03"), PAN, c.static_data, TODAY), "format")


# --- SDA ---------------------------------------------------------------------------------------


def test_sda_round_trip(pki3: Pki, pki65537: Pki) -> None:
    for pki in (pki3, pki65537):
        c = build_chain(pki)
        issuer = recover_issuer_key(c.capk, c.cert90, c.rem92, c.exp9f32, c.pan, c.today)
        ssad = sign_static_data(pki.issuer, h("DAC1"), c.static_data)
        assert len(ssad) == issuer.length
        assert verify_static_data(issuer, ssad, c.static_data) == h("DAC1")


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(["ssad", "static_data"]),
    position=st.integers(min_value=0, max_value=255),
    delta=st.integers(min_value=1, max_value=255),
)
def test_sda_tampering_fails(pki65537: Pki, field: str, position: int, delta: int) -> None:
    c = build_chain(pki65537)
    issuer = public_key_of(pki65537.issuer)
    data = {"ssad": sign_static_data(pki65537.issuer, h("DAC1"), c.static_data), "static_data": c.static_data}
    buf = bytearray(data[field])
    buf[position % len(buf)] ^= delta
    data[field] = bytes(buf)
    expect_oda_error(lambda: verify_static_data(issuer, data["ssad"], data["static_data"]))


def test_signers_reject_bad_arguments(pki3: Pki) -> None:
    with pytest.raises(ValueError):
        sign_static_data(pki3.issuer, h("DA"), b"")
    for idn in (h("01"), bytes(9)):
        with pytest.raises(ValueError):
            sign_dynamic_data(pki3.icc, idn, TERMINAL_DATA)


@pytest.mark.parametrize("idn", [h("0001"), h("7A33FB8C9546E1E7")])
def test_dynamic_number_lengths(pki3: Pki, idn: bytes) -> None:
    sdad = sign_dynamic_data(pki3.icc, idn, h("CAFEBABE"))
    assert verify_dynamic_data(public_key_of(pki3.icc), sdad, h("CAFEBABE")) == idn


# --- fDDA terminal dynamic data -----------------------------------------------------------------


def test_fdda_v00_hashes_only_the_unpredictable_number() -> None:
    assert fdda_terminal_data(0, h("12345678")) == h("12345678")
    assert fdda_terminal_data(0, h("12345678"), h("000000000100"), h("0156"), h("00")) == h("12345678")


@pytest.mark.parametrize("card_auth", [h("01020304050607"), h("0102030405060708")])
def test_fdda_v01_concatenation(card_auth: bytes) -> None:
    data = fdda_terminal_data(1, h("12345678"), h("000000000100"), h("0156"), card_auth)
    assert data == h("12345678") + h("000000000100") + h("0156") + card_auth


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((1, h("12345678"), h("000000000100"), h("0156"), h("00000000000000")), "version"),
        ((1, h("12345678"), h("000000000100"), h("0156"), h("020000000000000000"[:16])), "version"),
        ((1, h("12345678"), h("000000000100"), h("0156"), h("010000000000")), "length"),
        ((1, h("12345678"), h("000000000100"), h("0156"), h("010000000000000000")), "length"),
        ((1, h("12345678"), h("0100"), h("0156"), h("01000000000000")), "length"),
        ((1, h("12345678"), h("000000000100"), h("56"), h("01000000000000")), "length"),
        ((0, h("123456")), "length"),
        ((2, h("12345678")), "version"),
    ],
)
def test_fdda_terminal_data_rejects(args: tuple[Any, ...], reason: str) -> None:
    expect_oda_error(lambda: fdda_terminal_data(*args), reason)


def test_fdda_v01_binds_the_amount(pki3: Pki) -> None:
    c = build_chain(pki3)
    other = fdda_terminal_data(1, h("12345678"), h("000000000200"), h("0156"), h("0100000000000000"))
    expect_oda_error(lambda: run_chain(dataclasses.replace(c, terminal_data=other)), "hash")
    v00 = fdda_terminal_data(0, h("12345678"))
    expect_oda_error(lambda: run_chain(dataclasses.replace(c, terminal_data=v00)), "hash")


# --- static data to be authenticated ------------------------------------------------------------


def test_static_data_from_records() -> None:
    data = static_data_to_authenticate(RECORDS, AIP, h("82"))
    assert data == (h("5F24033012315A0A6212345678901234567F") + h("5F300202019F0702FF00") + h("70068E0400000000") + AIP)
    assert static_data_to_authenticate(RECORDS, AIP) == data[:-2]
    assert static_data_to_authenticate([], AIP, h("82")) == AIP


def test_static_data_long_form_length() -> None:
    value = h("9F0D05") + bytes(5) + h("5F25030101") * 30
    assert static_data_to_authenticate([(3, h("7081") + bytes([len(value)]) + value)], AIP) == value


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([(1, h("7703820200"))], "record"),  # not a 70 template
        ([(2, h("7005820200"))], "record"),  # truncated
        ([(2, h("70038202"))], "record"),  # value runs past the record
        ([(2, h("700382020082"))], "record"),  # trailing object after the template
        ([(10, b"")], "record"),
        ([(0, h("7000"))], "record"),
        ([(31, h("7000"))], "record"),
    ],
)
def test_static_data_bad_records(records: list[tuple[int, bytes]], reason: str) -> None:
    expect_oda_error(lambda: static_data_to_authenticate(records, AIP, h("82")), reason)


@pytest.mark.parametrize("tag_list", [h("5A"), h("8282"), h("825A"), h("9F"), h("9F4A")])
def test_static_data_tag_list_may_only_hold_the_aip(tag_list: bytes) -> None:
    expect_oda_error(lambda: static_data_to_authenticate(RECORDS, AIP, tag_list))


def test_static_data_aip_must_be_two_bytes() -> None:
    expect_oda_error(lambda: static_data_to_authenticate(RECORDS, h("7C"), h("82")), "length")


# --- published vectors (lumag/emv-tools, via proxmark3 client/src/emv/test/*_test.c) -------------


VISA_CAPK = CaPublicKey(v.VISA_RID, v.VISA_INDEX, RsaPublicKey(v.VISA_MODULUS, v.VISA_EXPONENT))
MC_CAPK = CaPublicKey(v.MC_RID, v.MC_INDEX, RsaPublicKey(v.MC_MODULUS, v.MC_EXPONENT))


def test_vector_capk_checksums() -> None:
    assert VISA_CAPK.checksum() == v.VISA_CHECKSUM
    assert MC_CAPK.checksum() == v.MC_CHECKSUM


def test_vector_sda_dac() -> None:
    issuer = recover_issuer_key(
        VISA_CAPK, v.SDA_ISSUER_CERT, v.SDA_ISSUER_REMAINDER, v.SDA_ISSUER_EXPONENT, v.SDA_PAN, date(2009, 12, 31)
    )
    assert issuer.length == 128
    assert verify_static_data(issuer, v.SDA_SSAD, v.SDA_STATIC_DATA) == v.SDA_DAC


def test_vector_sda_static_data_rebuilt_from_a_record() -> None:
    body = v.SDA_STATIC_DATA[:-2]
    record = h("70") + bytes([len(body)]) + body
    assert static_data_to_authenticate([(1, record)], v.SDA_AIP, h("82")) == v.SDA_STATIC_DATA


def test_vector_sda_issuer_certificate_expired_in_2010() -> None:
    expect_oda_error(
        lambda: recover_issuer_key(
            VISA_CAPK, v.SDA_ISSUER_CERT, v.SDA_ISSUER_REMAINDER, v.SDA_ISSUER_EXPONENT, v.SDA_PAN, date(2010, 1, 1)
        ),
        "expired",
    )


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0, max_value=127), delta=st.integers(min_value=1, max_value=255))
def test_vector_sda_tampering_fails(position: int, delta: int) -> None:
    issuer = recover_issuer_key(
        VISA_CAPK, v.SDA_ISSUER_CERT, v.SDA_ISSUER_REMAINDER, v.SDA_ISSUER_EXPONENT, v.SDA_PAN, date(2009, 12, 31)
    )
    ssad = bytearray(v.SDA_SSAD)
    ssad[position] ^= delta
    expect_oda_error(lambda: verify_static_data(issuer, bytes(ssad), v.SDA_STATIC_DATA))
    static = bytearray(v.SDA_STATIC_DATA)
    static[position % len(static)] ^= delta
    expect_oda_error(lambda: verify_static_data(issuer, v.SDA_SSAD, bytes(static)), "hash")


def test_vector_dda_icc_dynamic_number() -> None:
    assert run_chain(vector_chain()) == v.DDA_ICC_DYNAMIC_NUMBER


def test_vector_dda_static_data_rebuilt_from_records() -> None:
    body = v.DDA_STATIC_DATA[:-2]
    split = 6 + 6 + 10  # 5F25, 5F24 and 5A in the first record, the rest in the second
    records = [(1, h("70") + bytes([split]) + body[:split]), (2, h("7081") + bytes([len(body) - split]) + body[split:])]
    assert static_data_to_authenticate(records, v.DDA_AIP, h("82")) == v.DDA_STATIC_DATA


def test_vector_cda_icc_dynamic_number_cid_and_ac() -> None:
    c = vector_chain()
    issuer = recover_issuer_key(c.capk, c.cert90, c.rem92, c.exp9f32, c.pan, c.today)
    icc = recover_icc_key(issuer, c.cert9f46, c.rem9f48, c.exp9f47, c.pan, c.static_data, c.today)
    assert verify_dynamic_data(icc, v.CDA_SDAD, v.CDA_UNPREDICTABLE_NUMBER) == v.CDA_ICC_DYNAMIC_NUMBER
    # The rest of the CDA dynamic data, read from the recovered block with a separate parse:
    # L_DD | L_IDN IDN | CID | AC | transaction data hash code.
    block = pow(int.from_bytes(v.CDA_SDAD, "big"), 3, int.from_bytes(icc.modulus, "big")).to_bytes(112, "big")
    dynamic = block[4 : 4 + block[3]]
    assert dynamic[0] == 8
    assert dynamic[9:10] == v.CDA_CID
    assert dynamic[10:18] == v.CDA_AC
    assert dynamic[18:38] == hashlib.sha1(v.CDA_CDOL1_DATA + v.CDA_RESPONSE_TLVS).digest()
    expect_oda_error(lambda: verify_dynamic_data(icc, v.CDA_SDAD, v.DDA_TERMINAL_DYNAMIC_DATA), "hash")
