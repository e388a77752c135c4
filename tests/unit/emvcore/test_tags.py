"""Tag dictionary and masked logging: no full PAN or track 2 may ever reach a log line."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore import tlv
from emvcore.bcd import encode_cn
from emvcore.tags import TAGS, TagInfo, dump, mask_pan, mask_value, scrub_pans, tag_info, tag_name

REQUIRED = [
    0x4F, 0x50, 0x57, 0x5A, 0x5F20, 0x5F24, 0x5F25, 0x5F28, 0x5F2A, 0x5F2D, 0x5F30, 0x5F34, 0x61, 0x6F,
    0x70, 0x77, 0x80, 0x82, 0x84, 0x87, 0x88, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95,
    0x9A, 0x9B, 0x9C, 0x9D, 0xA5, 0xBF0C, 0x9F02, 0x9F03, 0x9F07, 0x9F08, 0x9F09, 0x9F0D, 0x9F0E, 0x9F0F,
    0x9F10, 0x9F12, 0x9F13, 0x9F14, 0x9F1A, 0x9F1B, 0x9F1E, 0x9F1F, 0x9F21, 0x9F24, 0x9F26, 0x9F27, 0x9F32,
    0x9F33, 0x9F34, 0x9F35, 0x9F36, 0x9F37, 0x9F38, 0x9F41, 0x9F42, 0x9F45, 0x9F46, 0x9F47, 0x9F48, 0x9F49,
    0x9F4A, 0x9F4B, 0x9F4C, 0x9F4D, 0x9F4E, 0x9F51, 0x9F5D, 0x9F63, 0x9F66, 0x9F69, 0x9F6C, 0x9F6D, 0x9F74,
    0x9F79, 0x9F7A, 0x9F7B, 0xDF60, 0xDF61, 0xDF69, 0x9F0C,
]  # fmt: skip

PPSE = bytes.fromhex(
    "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101"
)
PAN = "6212345678901234"


def track2(pan: str, rest: str = "25062010000000000000") -> bytes:
    nibbles = pan + "D" + rest
    if len(nibbles) % 2:
        nibbles += "F"
    return bytes.fromhex(nibbles)


# --- dictionary ----------------------------------------------------------------------------------------


def test_required_tags_are_covered() -> None:
    missing = [f"{tag:X}" for tag in REQUIRED if tag not in TAGS]
    assert missing == []


def test_every_entry_is_a_valid_tag_with_a_known_format() -> None:
    for tag, info in TAGS.items():
        assert tlv.tag_bytes(tag)  # encodable
        assert info.fmt in {"n", "cn", "an", "ans", "b", "a"}
        assert info.secret in {None, "pan", "track2", "key", "hidden"}
        assert info.name and info.name != "unknown"


@pytest.mark.parametrize(
    ("tag", "fmt", "secret"),
    [
        (0x5A, "cn", "pan"),
        (0x57, "b", "track2"),
        (0x9F24, "an", "pan"),
        (0x9F02, "n", None),
        (0x9A, "n", None),
        (0x5F2A, "n", None),
        (0x50, "ans", None),
        (0x9F66, "b", None),
    ],
)
def test_selected_formats_and_secrets(tag: int, fmt: str, secret: str | None) -> None:
    assert tag_info(tag).fmt == fmt
    assert tag_info(tag).secret == secret


@pytest.mark.parametrize("tag", [0x9F1F, 0x9F0C, 0x5F20, 0x56])
def test_data_that_must_never_be_shown(tag: int) -> None:
    assert tag_info(tag).secret in {"key", "hidden"}


def test_unknown_tag() -> None:
    assert tag_info(0xDF7F) == TagInfo("unknown", "b", None)
    assert tag_name(0xDF7F) == "unknown"
    assert tag_name(0x9F26) == "Application Cryptogram"


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TAGS[0x5A] = TagInfo("PAN", "cn")  # type: ignore[index]


def test_taginfo_validates() -> None:
    with pytest.raises(ValueError):
        TagInfo("x", "z")
    with pytest.raises(ValueError):
        TagInfo("x", "b", "visible")


# --- masking -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("6212345678901234", "621234******1234"),
        ("6212345678901234567", "621234*********4567"),
        ("4111111111111", "411111***1111"),
        ("621234567890", "************"),  # too short to keep 10 digits visible
        ("1234", "****"),
        ("", ""),
    ],
)
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_mask_pan_keeps_length_and_hides_the_middle(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked[:6] == pan[:6]
    assert masked[-4:] == pan[-4:]
    assert set(masked[6:-4]) == {"*"}


def test_mask_value_pan_and_track2() -> None:
    assert mask_value(0x5A, encode_cn(PAN, 10)) == "621234******1234"
    assert mask_value(0x57, track2(PAN)) == "621234******1234D****"
    assert mask_value(0x9F6B, track2(PAN)) == "621234******1234D****"
    assert mask_value(0x9F24, b"5001" + b"A" * 25) == "5001AA" + "*" * 19 + "AAAA"


def test_mask_value_hides_secrets() -> None:
    assert mask_value(0x5F20, b"ZHANG/SAN" + b" " * 11) == "<20 bytes hidden>"
    assert mask_value(0x9F1F, b"12345") == "<5 bytes hidden>"
    assert mask_value(0x9F0C, bytes.fromhex("0310400012345678")) == "<8 bytes hidden>"


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (0x5A, bytes.fromhex("6212345678901234AFFF")),  # not cn: must not fall back to hex
        (0x57, bytes.fromhex("62123456789012342506")),  # no separator
        (0x57, bytes.fromhex("D2506201")),  # no PAN before the separator
        (0x9F24, b"\x00\x01 not text"),
    ],
)
def test_undecodable_secrets_are_hidden_not_dumped(tag: int, value: bytes) -> None:
    assert mask_value(tag, value) == f"<{len(value)} bytes hidden>"


def test_mask_value_plain_tags() -> None:
    assert mask_value(0x50, b"PBOC DEBIT") == '"PBOC DEBIT"'
    assert mask_value(0x5F2D, b"zh") == '"zh"'
    assert mask_value(0x50, b'say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert mask_value(0x50, b"\x01\x02") == "0102"  # not printable: hex
    assert mask_value(0x9F02, bytes.fromhex("000000056399")) == "000000056399"
    assert mask_value(0x9F66, bytes.fromhex("26000080")) == "26000080"


def test_unknown_tags_get_long_digit_runs_masked() -> None:
    assert mask_value(0xDF7F, bytes.fromhex("AB") + encode_cn(PAN, 8)) == "AB621234******1234"
    assert mask_value(0xDF7F, bytes.fromhex("A1B2")) == "A1B2"


# --- dump ----------------------------------------------------------------------------------------------


def test_dump_ppse_tree() -> None:
    assert dump(PPSE) == "\n".join(
        [
            "6F File Control Information (FCI) Template [48]",
            "  84 Dedicated File (DF) Name [14]: 325041592E5359532E4444463031",
            "  A5 FCI Proprietary Template [30]",
            "    BF0C FCI Issuer Discretionary Data [27]",
            "      61 Application Template [25]",
            "        4F Application Identifier (AID) - card [8]: A000000333010101",
            '        50 Application Label [10]: "PBOC DEBIT"',
            "        87 Application Priority Indicator [1]: 01",
        ]
    )


def test_dump_indent_shifts_every_line() -> None:
    lines = dump(PPSE, indent=4).splitlines()
    assert lines[0] == "    6F File Control Information (FCI) Template [48]"
    assert all(line.startswith("    ") for line in lines)
    assert lines[1].startswith("      84 ")


def test_dump_empty() -> None:
    assert dump(b"") == ""


@given(
    st.text(alphabet="0123456789", min_size=13, max_size=19),
    st.text(alphabet="0123456789", min_size=7, max_size=20),
)
def test_dump_never_shows_a_full_pan_or_track2(pan: str, discretionary: str) -> None:
    t2 = track2(pan, discretionary)
    record = tlv.constructed(
        0x70,
        tlv.encode(0x57, t2),
        tlv.encode(0x5A, encode_cn(pan, 10)),
        tlv.encode(0x5F20, b"ZHANG/SAN"),
        tlv.encode(0x9F1F, discretionary.encode()),
        tlv.constructed(0x77, tlv.encode(0x9F6B, t2)),
    )
    out = dump(record)
    assert pan not in out
    assert t2.hex().upper() not in out
    assert t2.hex() not in out
    assert discretionary not in out.replace(mask_pan(pan), "")
    assert "ZHANG" not in out
    assert mask_pan(pan) + "D****" in out
    assert f"5A Application Primary Account Number (PAN) [10]: {mask_pan(pan)}" in out


def test_dump_invalid_tlv_gives_hex_with_a_note() -> None:
    out = dump(bytes.fromhex("9F0206000000"))
    assert "not valid TLV" in out
    assert out.endswith("9F0206000000")


def test_dump_invalid_tlv_still_hides_a_bcd_pan() -> None:
    truncated = tlv.constructed(0x70, tlv.encode(0x5A, encode_cn(PAN, 8)), tlv.encode(0x57, track2(PAN)))[:-3]
    out = dump(truncated)
    assert "not valid TLV" in out
    assert PAN not in out
    assert "****" in out
    assert PAN[:12] not in out


def test_dump_non_bytes_does_not_raise() -> None:
    assert "not bytes" in dump("6F00")  # type: ignore[arg-type]


@given(st.binary(max_size=120), st.integers(0, 8))
def test_dump_never_raises(data: bytes, indent: int) -> None:
    out = dump(data, indent)
    assert isinstance(out, str)
    if data.strip(b"\x00\xff"):
        assert out.startswith(" " * indent)


@pytest.mark.parametrize("aid", [
    "A000000333010101", "A000000333010102", "A000000333010103", "A0000003330101",  # UnionPay, partial
    "A0000000031010", "A0000000041010", "A000000632010105",  # Visa, Mastercard, T-Union
])
def test_log_scrubbing_shows_aids(aid: str) -> None:
    line = f"PPSE lists no supported AID ({aid}); SELECT {aid.lower()}: 6A82"
    assert scrub_pans(line) == line


@pytest.mark.parametrize(("text", "hidden"), [
    ("pan 6212345678901234567 refused", "6212345678901234567"),
    ("57 6212345678901234D25122201000000F", "6212345678901234"),  # track 2 in hex
    ("5A086212345678901234", "6212345678901234"),  # a BCD PAN inside a hex dump
    ("A0000062123456789012", "62123456789012"),  # a PAN dressed as an AID: its PIX digits run too long
    ("A000000333010101621234567890123456", "621234567890123456"),  # an AID followed by a PAN: not an AID
])
def test_log_scrubbing_never_lets_a_pan_through(text: str, hidden: str) -> None:
    scrubbed = scrub_pans(text)
    assert hidden not in scrubbed and "*" in scrubbed


@given(st.sampled_from(["", "A0000", "A000000333", "x A00000"]), st.text(alphabet="0123456789ADF ", max_size=40))
def test_no_pan_length_number_survives_scrubbing(prefix: str, text: str) -> None:
    # An AID's digits may run to 15 (A000000333010101), but they start with the RID's zeros: no run that starts
    # like a card number (a non-zero digit) and is 13 digits or longer is ever left.
    assert re.search(r"[1-9][0-9]{12,}", scrub_pans(prefix + text)) is None
