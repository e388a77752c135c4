"""ISO 7816-4 APDUs: the four cases in short and extended form, and every broken length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, StatusWord, describe_sw

PPSE_NAME = b"2PAY.SYS.DDF01"


# --- status words --------------------------------------------------------------------------------------


def test_status_word_values() -> None:
    expected = {
        "SUCCESS": 0x9000,
        "WRONG_LENGTH": 0x6700,
        "SECURITY_STATUS_NOT_SATISFIED": 0x6982,
        "AUTH_METHOD_BLOCKED": 0x6983,
        "REFERENCED_DATA_INVALIDATED": 0x6984,
        "CONDITIONS_NOT_SATISFIED": 0x6985,
        "COMMAND_NOT_ALLOWED": 0x6986,
        "SM_DATA_OBJECTS_MISSING": 0x6987,
        "WRONG_DATA": 0x6A80,
        "FUNCTION_NOT_SUPPORTED": 0x6A81,
        "FILE_NOT_FOUND": 0x6A82,
        "RECORD_NOT_FOUND": 0x6A83,
        "INCORRECT_P1P2": 0x6A86,
        "REFERENCED_DATA_NOT_FOUND": 0x6A88,
        "WRONG_P1P2": 0x6B00,
        "INS_NOT_SUPPORTED": 0x6D00,
        "CLA_NOT_SUPPORTED": 0x6E00,
        "UNKNOWN_ERROR": 0x6F00,
        "MAC_INVALID": 0x9302,
        "INSUFFICIENT_BALANCE": 0x9401,
        "KEY_INDEX_NOT_SUPPORTED": 0x9403,
    }
    assert {sw.name: sw.value for sw in StatusWord} == expected


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "SUCCESS"),
        (0x6986, "COMMAND_NOT_ALLOWED"),
        (0x9401, "INSUFFICIENT_BALANCE"),
        (0x6110, "61xx: 0x10 bytes available"),
        (0x6C21, "6Cxx: wrong Le, use 0x21"),
        (0x6A84, "unknown status 0x6A84"),
        (0x0000, "unknown status 0x0000"),
        (0x10000, "unknown status 65536"),
        (-1, "unknown status -1"),
    ],
)
def test_describe_sw(sw: int, text: str) -> None:
    assert describe_sw(sw) == text


def test_apdu_error_carries_the_status_word() -> None:
    err = ApduError("bad length")
    assert isinstance(err, ValueError)
    assert err.sw == 0x6700
    assert str(err) == "bad length"
    other = ApduError(sw=0x6A86)
    assert other.sw == StatusWord.INCORRECT_P1P2
    assert str(other) == "INCORRECT_P1P2"


# --- command APDUs: known encodings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("apdu", "raw", "case"),
    [
        # case 1: header only
        (CommandApdu(0x00, 0x70, 0x00, 0x00), "00700000", 1),
        # case 2 short: READ RECORD 1, SFI 1, Le 00 = 256
        (CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256), "00B2010C00", 2),
        (CommandApdu(0x80, 0x5C, 0x00, 0x02, le=4), "805C000204", 2),  # GET BALANCE
        # case 3 short
        (CommandApdu(0x80, 0x72, 0x00, 0x00, bytes.fromhex("56988A13")), "807200000456988A13", 3),
        # case 4 short: SELECT PPSE from the doc
        (
            CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE_NAME, 256),
            "00A404000E325041592E5359532E444446303100",
            4,
        ),
        # case 2 extended
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257), "00B00000000101", 2),
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000", 2),
        # case 3 extended
        (CommandApdu(0x00, 0xD6, 0x00, 0x00, bytes(300)), "00D6000000012C" + "00" * 300, 3),
        # case 4 extended: big data, small Le still goes in two bytes
        (CommandApdu(0x00, 0xD6, 0x00, 0x00, b"\xaa" * 256, 256), "00D60000000100" + "AA" * 256 + "0100", 4),
        # case 4 extended: small data, big Le
        (CommandApdu(0x00, 0xCA, 0x00, 0x00, b"\x01", 1000), "00CA000000000101" + "03E8", 4),
    ],
)
def test_known_command_encodings(apdu: CommandApdu, raw: str, case: int) -> None:
    assert apdu.case == case
    assert apdu.encode() == bytes.fromhex(raw)
    assert CommandApdu.decode(bytes.fromhex(raw)) == apdu


def test_gpo_with_the_unionpay_pdol_data() -> None:
    pdol_data = bytes(33)
    gpo = CommandApdu(0x80, 0xA8, 0x00, 0x00, b"\x83\x21" + pdol_data, 256)
    raw = gpo.encode()
    assert raw[:7] == bytes.fromhex("80A80000238321")
    assert raw[-1] == 0x00  # the Le the doc says must always be sent
    assert len(raw) == 5 + 35 + 1


def test_extended_form_of_small_sizes_is_accepted_on_decode() -> None:
    assert CommandApdu.decode(bytes.fromhex("00A40400 000002 3F00")) == CommandApdu(0x00, 0xA4, 0x04, 0x00, b"\x3f\x00")
    assert CommandApdu.decode(bytes.fromhex("00A40400 000002 3F00 0010")) == CommandApdu(
        0x00, 0xA4, 0x04, 0x00, b"\x3f\x00", 16
    )
    assert CommandApdu.decode(bytes.fromhex("00B00000 000010")) == CommandApdu(0x00, 0xB0, 0x00, 0x00, le=16)


# --- command APDUs: properties ---------------------------------------------------------------------------

commands = st.builds(
    CommandApdu,
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.one_of(st.binary(max_size=260), st.binary(min_size=250, max_size=700)),
    st.one_of(st.none(), st.integers(1, 300), st.integers(1, 65536)),
)


@given(commands)
def test_command_round_trip(apdu: CommandApdu) -> None:
    raw = apdu.encode()
    assert CommandApdu.decode(raw) == apdu
    extended = len(apdu.data) > 255 or (apdu.le is not None and apdu.le > 256)
    assert apdu.extended == extended
    expected_len = 4 + (len(apdu.data) + (1 if apdu.data else 0) + (1 if apdu.le is not None else 0))
    if extended:
        expected_len = 4 + 1 + (2 + len(apdu.data) if apdu.data else 0) + (2 if apdu.le is not None else 0)
    assert len(raw) == expected_len


@given(commands)
def test_case_matches_fields(apdu: CommandApdu) -> None:
    cases = {(False, False): 1, (False, True): 2, (True, False): 3, (True, True): 4}
    assert apdu.case == cases[(bool(apdu.data), apdu.le is not None)]


@given(commands, st.integers(1, 3))
def test_dropping_or_adding_bytes_is_wrong_length(apdu: CommandApdu, k: int) -> None:
    raw = apdu.encode()
    for broken in (raw + bytes(k), raw[:-k]):
        try:
            decoded = CommandApdu.decode(broken)
        except ApduError as err:
            assert err.sw == 0x6700
        else:
            # A few cut/extended forms are another valid case; then it must re-encode consistently.
            assert decoded != apdu
            assert CommandApdu.decode(decoded.encode()) == decoded


@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_6700(raw: bytes) -> None:
    try:
        apdu = CommandApdu.decode(raw)
    except ApduError as err:
        assert err.sw == 0x6700
    else:
        assert CommandApdu.decode(apdu.encode()) == apdu
        assert apdu.encode()[:4] == raw[:4]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00",
        "00A404",  # shorter than the header
        "00A40400 05 0102",  # Lc 5, 2 data bytes
        "00A40400 02 010203 00",  # Lc 2, 3 data bytes + Le
        "00A40400 01 010203",  # Lc 1 then two extra bytes
        "00A40400 0005",  # 00 xx is neither short nor extended
        "00A40400 000000 01",  # extended Lc 0000 is not allowed
        "00A40400 000000 0010",  # ... not even when it would look like an empty case 4
        "00A40400 000005 0102",  # extended Lc 5, 2 data bytes
        "00A40400 000002 0102 00",  # extended case 4 with a one-byte Le
        "00A40400 000002 0102 000000",  # extended Le of three bytes
    ],
)
def test_inconsistent_lengths_are_6700(raw: str) -> None:
    with pytest.raises(ApduError) as info:
        CommandApdu.decode(bytes.fromhex(raw))
    assert info.value.sw == 0x6700


@pytest.mark.parametrize(
    "kwargs",
    [
        {"le": 0},  # Le byte 00 is le=256; le=0 is refused, not guessed
        {"le": 65537},
        {"le": -1},
        {"data": bytes(65536)},
    ],
)
def test_command_construction_rejects_impossible_sizes(kwargs: dict[str, object]) -> None:
    with pytest.raises(ApduError):
        CommandApdu(0x00, 0xA4, 0x04, 0x00, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["cla", "ins", "p1", "p2"])
def test_command_header_bytes_must_be_bytes(field: str) -> None:
    fields = {"cla": 0, "ins": 0xA4, "p1": 4, "p2": 0, field: 256}
    with pytest.raises(ApduError):
        CommandApdu(**fields)


def test_command_normalises_bytearray_data() -> None:
    apdu = CommandApdu(0x00, 0xA4, 0x04, 0x00, bytearray(PPSE_NAME), 256)
    assert type(apdu.data) is bytes
    assert apdu == CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE_NAME, 256)


# --- response APDUs ------------------------------------------------------------------------------------


def test_response_decode_and_properties() -> None:
    resp = ResponseApdu.decode(bytes.fromhex("6F009000"))
    assert resp == ResponseApdu(b"\x6f\x00", 0x9000)
    assert resp.ok
    assert (resp.sw1, resp.sw2) == (0x90, 0x00)
    more = ResponseApdu.decode(bytes.fromhex("6110"))
    assert more.data == b""
    assert not more.ok
    assert (more.sw1, more.sw2) == (0x61, 0x10)


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_response_without_status_word(raw: bytes) -> None:
    with pytest.raises(ApduError):
        ResponseApdu.decode(raw)


@given(st.binary(max_size=600), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    resp = ResponseApdu(data, sw)
    raw = resp.encode()
    assert raw == data + bytes([sw >> 8, sw & 0xFF])
    assert ResponseApdu.decode(raw) == resp
    assert resp.ok == (sw == 0x9000)


def test_response_constructors() -> None:
    assert ResponseApdu.success().encode() == b"\x90\x00"
    assert ResponseApdu.success(b"\x01\x02").encode() == b"\x01\x02\x90\x00"
    assert ResponseApdu.error(StatusWord.FILE_NOT_FOUND).encode() == b"\x6a\x82"
    assert ResponseApdu.error(0x6986) == ResponseApdu(b"", 0x6986)
    assert ResponseApdu.status(0x6C21).sw2 == 0x21
    assert type(ResponseApdu.success().sw) is int
    with pytest.raises(ValueError):
        ResponseApdu.error(0x9000)


@pytest.mark.parametrize("sw", [-1, 0x10000])
def test_response_rejects_impossible_status_words(sw: int) -> None:
    with pytest.raises(ApduError):
        ResponseApdu(b"", sw)
