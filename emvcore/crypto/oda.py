"""EMV Book 2 offline data authentication: RSA/SHA-1 certificates, SDA and (f)DDA signatures.

Card side (personalisation of test cards): build issuer/ICC public-key certificates and sign static
and dynamic data with our own test PKI. Terminal side: recover the key chain from a CA public key
and verify what the card returned.

EMV uses *raw* RSA (no PKCS#1 padding: the recovered block carries its own header, hash and
trailer), so signing and recovery are done with Python integers (``pow``); ``cryptography`` is only
used to generate and store private keys.
"""

import datetime
import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emvcore import tlv

__all__ = [
    "CaPublicKey",
    "OdaError",
    "RsaPublicKey",
    "fdda_terminal_data",
    "generate_rsa_key",
    "make_icc_certificate",
    "make_issuer_certificate",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_of",
    "recover_icc_key",
    "recover_issuer_key",
    "rsa_recover",
    "rsa_sign_raw",
    "sign_dynamic_data",
    "sign_static_data",
    "static_data_to_authenticate",
    "verify_dynamic_data",
    "verify_static_data",
]

_HEADER = 0x6A
_TRAILER = 0xBC
_PAD = 0xBB
_SHA1 = 0x01  # hash algorithm indicator
_RSA = 0x01  # public key algorithm indicator
_FORMAT_ISSUER = 0x02
_FORMAT_SSAD = 0x03
_FORMAT_ICC = 0x04
_FORMAT_SDAD = 0x05
_HASH_LEN = 20
_ISSUER_OVERHEAD = 36  # 6A + 14 header bytes + hash + BC
_ICC_OVERHEAD = 42  # 6A + 20 header bytes + hash + BC
_SSAD_OVERHEAD = 26  # 6A 03 algo DAC(2) + hash + BC
_SDAD_OVERHEAD = 25  # 6A 05 algo L_DD + hash + BC
_MIN_BITS = 512
_MAX_BITS = 1984
_EXPONENTS = (3, 65537)


class OdaError(ValueError):
    """A failed offline data authentication step; ``reason`` is a stable token for callers and logs."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason

    def __reduce__(self) -> tuple[type["OdaError"], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


@dataclass(frozen=True)
class RsaPublicKey:
    """An RSA public key as EMV stores it: big-endian modulus and exponent bytes."""

    modulus: bytes
    exponent: bytes

    def __post_init__(self) -> None:
        if not self.modulus or not self.exponent:
            raise ValueError("RSA modulus and exponent must not be empty")

    @property
    def n(self) -> int:
        """The modulus as an integer, for ``pow``."""
        return int.from_bytes(self.modulus, "big")

    @property
    def e(self) -> int:
        """The exponent as an integer, for ``pow``."""
        return int.from_bytes(self.exponent, "big")

    @property
    def length(self) -> int:
        """Modulus length in bytes: every certificate or signature under this key has this length."""
        return len(self.modulus)


@dataclass(frozen=True)
class CaPublicKey:
    """A terminal's CAPK entry, selected by RID and index (tag 8F)."""

    rid: bytes
    index: int
    key: RsaPublicKey
    expiry: datetime.date | None = None

    def __post_init__(self) -> None:
        if len(self.rid) != 5:
            raise ValueError("a RID is 5 bytes")
        if not 0 <= self.index <= 0xFF:
            raise ValueError("a CA public key index is one byte")

    def checksum(self) -> bytes:
        """SHA-1 over RID ‖ index ‖ modulus ‖ exponent, so a loaded CAPK table can be checked."""
        return hashlib.sha1(self.rid + bytes([self.index]) + self.key.modulus + self.key.exponent).digest()


# --- keys -------------------------------------------------------------------------------------


def _is_probable_prime(candidate: int, rounds: int = 40) -> bool:
    for small in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
        if candidate % small == 0:
            return candidate == small
    d, s = candidate - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(candidate - 3) + 2, d, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(s - 1):
            x = x * x % candidate
            if x == candidate - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, exponent: int) -> int:
    while True:
        # Two top bits set so that p*q has exactly 2*bits bits.
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if (candidate - 1) % exponent and _is_probable_prime(candidate):
            return candidate


def _small_rsa_key(bits: int, exponent: int) -> rsa.RSAPrivateKey:
    """Keys below 1024 bits, which ``cryptography`` refuses to generate but EMV ICC keys still use."""
    while True:
        p = _random_prime(bits // 2, exponent)
        q = _random_prime(bits - bits // 2, exponent)
        if p == q:
            continue
        lam = math.lcm(p - 1, q - 1)
        d = pow(exponent, -1, lam)
        public = rsa.RSAPublicNumbers(exponent, p * q)
        numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), public)
        return numbers.private_key()


def generate_rsa_key(bits: int, exponent: int = 3) -> rsa.RSAPrivateKey:
    """A fresh RSA key for a test CA, issuer or card; EMV allows only exponents 3 and 65537."""
    if bits % 8 or not _MIN_BITS <= bits <= _MAX_BITS:
        raise ValueError(f"EMV RSA keys are a multiple of 8 bits in {_MIN_BITS}..{_MAX_BITS}, not {bits}")
    if exponent not in _EXPONENTS:
        raise ValueError(f"EMV RSA exponents are 3 or 65537, not {exponent}")
    if bits < 1024:
        return _small_rsa_key(bits, exponent)
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def public_key_of(private: rsa.RSAPrivateKey) -> RsaPublicKey:
    """The EMV byte form of a private key's public half (what goes into certificates and CAPK lists)."""
    numbers = private.public_key().public_numbers()
    return RsaPublicKey(modulus=_int_bytes(numbers.n), exponent=_int_bytes(numbers.e))


def private_key_to_pem(private: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the test world keeps its keys in plain files."""
    return private.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def private_key_from_pem(pem: bytes) -> rsa.RSAPrivateKey:
    """Load a key written by :func:`private_key_to_pem`; anything but RSA is a configuration error."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


# --- raw RSA ----------------------------------------------------------------------------------


def rsa_recover(key: RsaPublicKey, data: bytes) -> bytes:
    """data^e mod n: EMV 'recovery' of a signed block, which must be exactly one modulus long."""
    if len(data) != key.length:
        raise OdaError("length", f"signed data is {len(data)} bytes, the key modulus is {key.length}")
    value = int.from_bytes(data, "big")
    if value >= key.n:
        raise OdaError("length", "signed data is not smaller than the modulus")
    return pow(value, key.e, key.n).to_bytes(key.length, "big")


def rsa_sign_raw(private: rsa.RSAPrivateKey, message: bytes) -> bytes:
    """message^d mod n without padding, because the EMV block format is its own padding."""
    numbers = private.private_numbers()
    n = numbers.public_numbers.n
    length = (n.bit_length() + 7) // 8
    if len(message) != length:
        raise OdaError("length", f"message is {len(message)} bytes, the key modulus is {length}")
    value = int.from_bytes(message, "big")
    if value >= n:
        raise OdaError("length", "message is not smaller than the modulus")
    # CRT: about three times faster than pow(value, d, n) for the big CA keys.
    m1 = pow(value, numbers.dmp1, numbers.p)
    m2 = pow(value, numbers.dmq1, numbers.q)
    h = numbers.iqmp * (m1 - m2) % numbers.p
    return (m2 + h * numbers.q).to_bytes(length, "big")


# --- shared helpers ---------------------------------------------------------------------------


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _sign_block(private: rsa.RSAPrivateKey, body: bytes, hashed_extra: bytes) -> bytes:
    """6A ‖ body ‖ SHA-1(body ‖ extra) ‖ BC, signed with the raw private key."""
    block = bytes([_HEADER]) + body + _sha1(body, hashed_extra) + bytes([_TRAILER])
    return rsa_sign_raw(private, block)


def _open_block(key: RsaPublicKey, signed: bytes, fmt: int, what: str) -> bytes:
    """Recover a signed block and check trailer, header and format (Book 2 steps 1-4)."""
    block = rsa_recover(key, signed)
    if block[-1] != _TRAILER:
        raise OdaError("trailer", f"{what}: recovered data does not end with BC")
    if block[0] != _HEADER:
        raise OdaError("header", f"{what}: recovered data does not start with 6A")
    if block[1] != fmt:
        raise OdaError("format", f"{what}: format {block[1]:02X}, expected {fmt:02X}")
    return block


def _check_hash(block: bytes, algo_at: int, hashed_extra: bytes, what: str) -> None:
    """Book 2 steps 5-7: only SHA-1 is defined, so any other indicator is an algorithm failure."""
    if block[algo_at] != _SHA1:
        raise OdaError("algorithm", f"{what}: hash algorithm {block[algo_at]:02X} is not SHA-1")
    body = block[1 : -(_HASH_LEN + 1)]
    if _sha1(body, hashed_extra) != block[-(_HASH_LEN + 1) : -1]:
        raise OdaError("hash", f"{what}: hash mismatch")


def _pan_digits(pan: str) -> str:
    digits = pan.strip().upper().rstrip("F")
    if not digits.isdigit() or not 1 <= len(digits) <= 19 or not digits.isascii():
        raise OdaError("pan", "the PAN is not 1-19 decimal digits")
    return digits


def _encode_expiry(expiry: datetime.date) -> bytes:
    if not 1950 <= expiry.year <= 2049:
        raise ValueError("EMV certificate expiry years are 1950..2049 (two digits)")
    return bytes.fromhex(f"{expiry.month:02d}{expiry.year % 100:02d}")


def _check_expiry(mmyy: bytes, today: datetime.date, what: str) -> None:
    text = mmyy.hex()
    if not text.isdigit() or not 1 <= int(text[:2]) <= 12:
        raise OdaError("format", f"{what}: expiry {text.upper()} is not MMYY")
    yy = int(text[2:])
    year = 2000 + yy if yy < 50 else 1900 + yy
    # Valid through the last day of the month.
    if (year, int(text[:2])) < (today.year, today.month):
        raise OdaError("expired", f"{what}: expired at the end of {text[:2]}/{year}")


def _check_serial(serial: bytes) -> None:
    if len(serial) != 3:
        raise ValueError("a certificate serial number is 3 bytes")


def _key_field(public: RsaPublicKey, room: int) -> tuple[bytes, bytes]:
    """Split a modulus into the part inside the certificate (BB-padded to ``room``) and the remainder."""
    if public.length > 0xFF or len(public.exponent) not in (1, 3):
        raise ValueError("EMV keys have at most 255 modulus bytes and a 1- or 3-byte exponent")
    if public.length <= room:
        return public.modulus + bytes([_PAD]) * (room - public.length), b""
    return public.modulus[:room], public.modulus[room:]


def _recover_key(block: bytes, offset: int, remainder: bytes, exponent: bytes, what: str) -> RsaPublicKey:
    """Rebuild the certified key from ``hash algo | pk algo | len | exp len | field`` at ``offset``."""
    if block[offset + 1] != _RSA:
        raise OdaError("algorithm", f"{what}: public key algorithm {block[offset + 1]:02X} is not RSA")
    key_len, exp_len = block[offset + 2], block[offset + 3]
    field = block[offset + 4 : -(_HASH_LEN + 1)]
    if exp_len != len(exponent) or exp_len not in (1, 3):
        raise OdaError("length", f"{what}: exponent length {exp_len} does not match {len(exponent)} bytes")
    if key_len <= len(field):
        if remainder:
            raise OdaError("length", f"{what}: a remainder is present but the key fits the certificate")
        if any(b != _PAD for b in field[key_len:]):
            raise OdaError("format", f"{what}: key field padding is not BB")
        modulus = field[:key_len]
    else:
        if len(field) + len(remainder) != key_len:
            raise OdaError("length", f"{what}: remainder is {len(remainder)} bytes, {key_len - len(field)} expected")
        modulus = field + remainder
    if key_len == 0 or modulus[0] == 0:
        raise OdaError("length", f"{what}: the certified modulus is empty or has a leading zero")
    return RsaPublicKey(modulus=modulus, exponent=exponent)


# --- issuer public key certificate (90 / 92 / 9F32) ------------------------------------------


def make_issuer_certificate(
    ca_private: rsa.RSAPrivateKey,
    issuer_public: RsaPublicKey,
    issuer_id: str,
    expiry: datetime.date,
    serial: bytes,
) -> tuple[bytes, bytes]:
    """Certify an issuer key with our test CA; returns (90 certificate, 92 remainder or b"")."""
    if not (issuer_id.isdigit() and issuer_id.isascii() and 3 <= len(issuer_id) <= 8):
        raise ValueError("the issuer identifier is the leftmost 3-8 PAN digits")
    _check_serial(serial)
    ca_len = public_key_of(ca_private).length
    field, remainder = _key_field(issuer_public, ca_len - _ISSUER_OVERHEAD)
    body = (
        bytes([_FORMAT_ISSUER])
        + bytes.fromhex(issuer_id.ljust(8, "F"))
        + _encode_expiry(expiry)
        + serial
        + bytes([_SHA1, _RSA, issuer_public.length, len(issuer_public.exponent)])
        + field
    )
    return _sign_block(ca_private, body, remainder + issuer_public.exponent), remainder


def recover_issuer_key(
    capk: CaPublicKey,
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    pan: str,
    today: datetime.date,
) -> RsaPublicKey:
    """Terminal side: trust the issuer key only if every Book 2 §5.3 check on tag 90 passes."""
    what = "issuer certificate"
    if capk.expiry is not None and today > capk.expiry:
        raise OdaError("expired", f"CA key {capk.rid.hex().upper()}/{capk.index:02X} expired {capk.expiry}")
    if capk.key.length <= _ISSUER_OVERHEAD:
        raise OdaError("length", f"{what}: CA key too short")
    block = _open_block(capk.key, cert, _FORMAT_ISSUER, what)
    _check_hash(block, 11, remainder + exponent, what)
    digits = _pan_digits(pan)
    issuer_id = block[2:6].hex().upper()
    prefix = issuer_id.rstrip("F")
    if not (3 <= len(prefix) <= 8 and prefix.isdigit() and issuer_id == digits[: len(prefix)].ljust(8, "F")):
        raise OdaError("issuer-id", f"{what}: issuer identifier {issuer_id} does not match the PAN")
    _check_expiry(block[6:8], today, what)
    return _recover_key(block, 11, remainder, exponent, what)


# --- ICC public key certificate (9F46 / 9F48 / 9F47) -----------------------------------------


def make_icc_certificate(
    issuer_private: rsa.RSAPrivateKey,
    icc_public: RsaPublicKey,
    pan: str,
    expiry: datetime.date,
    serial: bytes,
    static_data: bytes,
) -> tuple[bytes, bytes]:
    """Certify a card key, binding it to the PAN and static data; returns (9F46, 9F48 or b"")."""
    digits = pan.upper().rstrip("F")
    if not (digits.isdigit() and digits.isascii() and len(digits) <= 19):
        raise ValueError("the PAN is 1-19 decimal digits")
    _check_serial(serial)
    issuer_len = public_key_of(issuer_private).length
    field, remainder = _key_field(icc_public, issuer_len - _ICC_OVERHEAD)
    body = (
        bytes([_FORMAT_ICC])
        + bytes.fromhex(digits.ljust(20, "F"))
        + _encode_expiry(expiry)
        + serial
        + bytes([_SHA1, _RSA, icc_public.length, len(icc_public.exponent)])
        + field
    )
    return _sign_block(issuer_private, body, remainder + icc_public.exponent + static_data), remainder


def recover_icc_key(
    issuer_key: RsaPublicKey,
    cert: bytes,
    remainder: bytes,
    exponent: bytes,
    pan: str,
    static_data: bytes,
    today: datetime.date,
) -> RsaPublicKey:
    """Terminal side: recover the card key from 9F46; this also authenticates the static data."""
    what = "ICC certificate"
    if issuer_key.length <= _ICC_OVERHEAD:
        raise OdaError("length", f"{what}: issuer key too short")
    block = _open_block(issuer_key, cert, _FORMAT_ICC, what)
    _check_hash(block, 17, remainder + exponent + static_data, what)
    digits = _pan_digits(pan)
    if block[2:12].hex().upper() != digits.ljust(20, "F"):
        raise OdaError("pan", f"{what}: certified PAN {block[2:12].hex().upper()} is not the card's PAN")
    _check_expiry(block[12:14], today, what)
    return _recover_key(block, 17, remainder, exponent, what)


# --- SDA: signed static application data (93 → 9F45) -----------------------------------------


def sign_static_data(issuer_private: rsa.RSAPrivateKey, dac: bytes, static_data: bytes) -> bytes:
    """Build tag 93 for an SDA card: the issuer signs the DAC together with the static data."""
    if len(dac) != 2:
        raise ValueError("the data authentication code is 2 bytes")
    issuer_len = public_key_of(issuer_private).length
    if issuer_len <= _SSAD_OVERHEAD:
        raise ValueError("issuer key too short for signed static data")
    body = bytes([_FORMAT_SSAD, _SHA1]) + dac + bytes([_PAD]) * (issuer_len - _SSAD_OVERHEAD)
    return _sign_block(issuer_private, body, static_data)


def verify_static_data(issuer_key: RsaPublicKey, ssad: bytes, static_data: bytes) -> bytes:
    """Check tag 93 against the static data; returns the DAC (9F45) the terminal may store."""
    what = "signed static data"
    if issuer_key.length <= _SSAD_OVERHEAD:
        raise OdaError("length", f"{what}: issuer key too short")
    block = _open_block(issuer_key, ssad, _FORMAT_SSAD, what)
    _check_hash(block, 2, static_data, what)
    return block[3:5]


# --- DDA / fDDA: signed dynamic application data (9F4B) --------------------------------------


def sign_dynamic_data(icc_private: rsa.RSAPrivateKey, icc_dynamic_number: bytes, terminal_dynamic_data: bytes) -> bytes:
    """Build tag 9F4B: the card signs its dynamic number together with the terminal's challenge."""
    if not 2 <= len(icc_dynamic_number) <= 8:
        raise ValueError("the ICC dynamic number is 2-8 bytes")
    icc_len = public_key_of(icc_private).length
    dynamic = bytes([len(icc_dynamic_number)]) + icc_dynamic_number
    pad = icc_len - _SDAD_OVERHEAD - len(dynamic)
    if pad < 0:
        raise ValueError("ICC key too short for signed dynamic data")
    body = bytes([_FORMAT_SDAD, _SHA1, len(dynamic)]) + dynamic + bytes([_PAD]) * pad
    return _sign_block(icc_private, body, terminal_dynamic_data)


def verify_dynamic_data(icc_key: RsaPublicKey, sdad: bytes, terminal_dynamic_data: bytes) -> bytes:
    """Check tag 9F4B against the data the terminal sent; returns the ICC dynamic number (9F4C)."""
    what = "signed dynamic data"
    if icc_key.length <= _SDAD_OVERHEAD:
        raise OdaError("length", f"{what}: ICC key too short")
    block = _open_block(icc_key, sdad, _FORMAT_SDAD, what)
    _check_hash(block, 2, terminal_dynamic_data, what)
    dd_len = block[3]
    if dd_len > icc_key.length - _SDAD_OVERHEAD:
        raise OdaError("dynamic-data", f"{what}: dynamic data length {dd_len} exceeds the block")
    dynamic = block[4 : 4 + dd_len]
    if not dynamic or not 2 <= dynamic[0] <= 8 or 1 + dynamic[0] > dd_len:
        raise OdaError("dynamic-data", f"{what}: no valid ICC dynamic number")
    return dynamic[1 : 1 + dynamic[0]]


def fdda_terminal_data(
    version: int,
    unpredictable_number: bytes,
    amount: bytes = b"",
    currency: bytes = b"",
    card_auth_data: bytes = b"",
) -> bytes:
    """The terminal half of the fDDA hash: v00 signs only 9F37, v01 also binds amount and currency."""
    if len(unpredictable_number) != 4:
        raise OdaError("length", "the unpredictable number (9F37) is 4 bytes")
    if version == 0:
        return unpredictable_number
    if version != 1:
        raise OdaError("version", f"fDDA version {version:02X} is not supported")
    if len(amount) != 6 or len(currency) != 2:
        raise OdaError("length", "fDDA v01 needs 9F02 (6 bytes) and 5F2A (2 bytes)")
    if len(card_auth_data) not in (7, 8):
        raise OdaError("length", "card authentication related data (9F69) is 7 or 8 bytes")
    if card_auth_data[0] != 0x01:
        raise OdaError("version", f"9F69 names fDDA version {card_auth_data[0]:02X}, not 01")
    return unpredictable_number + amount + currency + card_auth_data


# --- static data to be authenticated (Book 3 §10.3) ------------------------------------------


def _tag_list(data: bytes) -> list[int]:
    """The tags of a tag list such as 9F4A (tags only, no lengths)."""
    tags, offset = [], 0
    try:
        while offset < len(data):
            tag, offset = tlv.read_tag(data, offset)
            tags.append(tag)
    except tlv.TlvError as exc:
        raise OdaError("tag-list", f"bad SDA tag list (9F4A): {exc}") from None
    return tags


def static_data_to_authenticate(records: Iterable[tuple[int, bytes]], aip: bytes, tag_list: bytes = b"") -> bytes:
    """The byte string both certificate hashes cover: AFL records flagged for ODA, then 9F4A's AIP."""
    out = bytearray()
    for sfi, record in records:
        if 1 <= sfi <= 10:
            try:
                template = tlv.parse_one(record)
            except tlv.TlvError as exc:
                raise OdaError("record", f"record in SFI {sfi} is not valid TLV: {exc}") from None
            if template.tag != 0x70:
                raise OdaError("record", f"record in SFI {sfi} is {template.tag:X}, not a 70 template")
            out += template.value
        elif 11 <= sfi <= 30:
            out += record
        else:
            raise OdaError("record", f"SFI {sfi} is outside 1..30")
    tags = _tag_list(tag_list)
    if tags:
        if tags != [0x82]:
            raise OdaError("tag-list", "the SDA tag list (9F4A) may only contain 82")
        if len(aip) != 2:
            raise OdaError("length", "the AIP (82) is 2 bytes")
        out += aip
    return bytes(out)
