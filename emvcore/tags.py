"""Tag dictionary (EMV Book 3 Annex A plus the PBOC/UICS and transit tags we meet) for readable logs.

Each tag carries its data format (the DOL filler needs it) and a secrecy class, so that logs built with
:func:`mask_value` and :func:`dump` never contain a full PAN, track data or key material.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import tlv
from .bcd import BcdError, decode_bcd, decode_cn

__all__ = [
    "FORMATS",
    "SECRET_CLASSES",
    "TAGS",
    "TagInfo",
    "dump",
    "mask_pan",
    "mask_value",
    "scrub_pans",
    "tag_info",
    "tag_name",
]

FORMATS: frozenset[str] = frozenset({"n", "cn", "an", "ans", "b", "a"})
SECRET_CLASSES: frozenset[str] = frozenset({"pan", "track2", "key", "hidden"})

_PAN_KEEP_FIRST = 6
_PAN_KEEP_LAST = 4
_PAN_MIN_MASKABLE = 13
"""Below this length first-6/last-4 would leave almost nothing hidden, so everything is masked."""


@dataclass(frozen=True)
class TagInfo:
    """What a tag is called, how its value is encoded, and whether a log may show it."""

    name: str
    fmt: str
    secret: str | None = None

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown data format {self.fmt!r}")
        if self.secret is not None and self.secret not in SECRET_CLASSES:
            raise ValueError(f"unknown secret class {self.secret!r}")


_UNKNOWN = TagInfo("unknown", "b")

_TAG_TABLE: dict[int, TagInfo] = {
    # Templates
    0x61: TagInfo("Application Template", "b"),
    0x6F: TagInfo("File Control Information (FCI) Template", "b"),
    0x70: TagInfo("READ RECORD Response Template", "b"),
    0x71: TagInfo("Issuer Script Template 1", "b"),
    0x72: TagInfo("Issuer Script Template 2", "b"),
    0x77: TagInfo("Response Message Template Format 2", "b"),
    0x80: TagInfo("Response Message Template Format 1", "b"),
    0x83: TagInfo("Command Template", "b"),
    0xA5: TagInfo("FCI Proprietary Template", "b"),
    0xBF0C: TagInfo("FCI Issuer Discretionary Data", "b"),
    # Card: application selection and identity
    0x4F: TagInfo("Application Identifier (AID) - card", "b"),
    0x50: TagInfo("Application Label", "ans"),
    0x56: TagInfo("Track 1 Data", "ans", "hidden"),
    0x57: TagInfo("Track 2 Equivalent Data", "b", "track2"),
    0x5A: TagInfo("Application Primary Account Number (PAN)", "cn", "pan"),
    0x5F20: TagInfo("Cardholder Name", "ans", "hidden"),
    0x5F24: TagInfo("Application Expiration Date", "n"),
    0x5F25: TagInfo("Application Effective Date", "n"),
    0x5F28: TagInfo("Issuer Country Code", "n"),
    0x5F2D: TagInfo("Language Preference", "an"),
    0x5F30: TagInfo("Service Code", "n"),
    0x5F34: TagInfo("Application PAN Sequence Number", "n"),
    0x84: TagInfo("Dedicated File (DF) Name", "b"),
    0x87: TagInfo("Application Priority Indicator", "b"),
    0x88: TagInfo("Short File Identifier (SFI)", "b"),
    0x9D: TagInfo("Directory Definition File (DDF) Name", "b"),
    0x9F0B: TagInfo("Cardholder Name Extended", "ans", "hidden"),
    0x9F0C: TagInfo("Issuer Discretionary FCI Data (transit card number)", "b", "hidden"),
    0x9F11: TagInfo("Issuer Code Table Index", "n"),
    0x9F12: TagInfo("Application Preferred Name", "ans"),
    0x9F1F: TagInfo("Track 1 Discretionary Data", "ans", "hidden"),
    0x9F24: TagInfo("Payment Account Reference (PAR)", "an", "pan"),
    0x9F29: TagInfo("Extended Selection", "b"),
    0x9F2A: TagInfo("Kernel Identifier", "b"),
    0x9F6B: TagInfo("Track 2 Data", "b", "track2"),
    # Card: processing
    0x82: TagInfo("Application Interchange Profile (AIP)", "b"),
    0x8C: TagInfo("Card Risk Management DOL 1 (CDOL1)", "b"),
    0x8D: TagInfo("Card Risk Management DOL 2 (CDOL2)", "b"),
    0x8E: TagInfo("Cardholder Verification Method (CVM) List", "b"),
    0x94: TagInfo("Application File Locator (AFL)", "b"),
    0x9F07: TagInfo("Application Usage Control", "b"),
    0x9F08: TagInfo("Application Version Number - card", "b"),
    0x9F0D: TagInfo("Issuer Action Code - Default", "b"),
    0x9F0E: TagInfo("Issuer Action Code - Denial", "b"),
    0x9F0F: TagInfo("Issuer Action Code - Online", "b"),
    0x9F10: TagInfo("Issuer Application Data (IAD)", "b"),
    0x9F13: TagInfo("Last Online ATC Register", "b"),
    0x9F14: TagInfo("Lower Consecutive Offline Limit", "b"),
    0x9F17: TagInfo("PIN Try Counter", "b"),
    0x9F26: TagInfo("Application Cryptogram", "b"),
    0x9F27: TagInfo("Cryptogram Information Data", "b"),
    0x9F36: TagInfo("Application Transaction Counter (ATC)", "b"),
    0x9F38: TagInfo("Processing Options DOL (PDOL)", "b"),
    0x9F42: TagInfo("Application Currency Code", "n"),
    0x9F49: TagInfo("Dynamic Data Authentication DOL (DDOL)", "b"),
    0x9F4D: TagInfo("Log Entry", "b"),
    0x9F4F: TagInfo("Log Format", "b"),
    0x9F51: TagInfo("Application Currency Code (PBOC)", "n"),
    0x9F5D: TagInfo("Available Offline Spending Amount", "n"),
    0x9F63: TagInfo("Card Product Identification (PBOC)", "b"),
    0x9F69: TagInfo("Card Authentication Related Data", "b"),
    0x9F6C: TagInfo("Card Transaction Qualifiers (CTQ)", "b"),
    0x9F6D: TagInfo("Electronic Cash Reset Threshold (PBOC)", "n"),
    0x9F6E: TagInfo("Form Factor Indicator", "b"),
    0x9F74: TagInfo("Electronic Cash Issuer Authorisation Code (PBOC)", "a"),
    0x9F79: TagInfo("Electronic Cash Balance (PBOC)", "n"),
    0xDF61: TagInfo("Segmented Deduction Indicator (PBOC)", "b"),
    # Offline data authentication
    0x8F: TagInfo("Certification Authority Public Key Index", "b"),
    0x90: TagInfo("Issuer Public Key Certificate", "b"),
    0x92: TagInfo("Issuer Public Key Remainder", "b"),
    0x93: TagInfo("Signed Static Application Data", "b"),
    0x9F32: TagInfo("Issuer Public Key Exponent", "b"),
    0x9F45: TagInfo("Data Authentication Code", "b"),
    0x9F46: TagInfo("ICC Public Key Certificate", "b"),
    0x9F47: TagInfo("ICC Public Key Exponent", "b"),
    0x9F48: TagInfo("ICC Public Key Remainder", "b"),
    0x9F4A: TagInfo("Static Data Authentication Tag List", "b"),
    0x9F4B: TagInfo("Signed Dynamic Application Data", "b"),
    0x9F4C: TagInfo("ICC Dynamic Number", "b"),
    # Terminal and transaction
    0x89: TagInfo("Authorisation Code", "an"),
    0x8A: TagInfo("Authorisation Response Code", "an"),
    0x86: TagInfo("Issuer Script Command", "b"),
    0x91: TagInfo("Issuer Authentication Data", "b"),
    0x95: TagInfo("Terminal Verification Results (TVR)", "b"),
    0x9A: TagInfo("Transaction Date", "n"),
    0x9B: TagInfo("Transaction Status Information (TSI)", "b"),
    0x9C: TagInfo("Transaction Type", "n"),
    0x5F2A: TagInfo("Transaction Currency Code", "n"),
    0x9F01: TagInfo("Acquirer Identifier", "n"),
    0x9F02: TagInfo("Amount, Authorised (Numeric)", "n"),
    0x9F03: TagInfo("Amount, Other (Numeric)", "n"),
    0x9F06: TagInfo("Application Identifier (AID) - terminal", "b"),
    0x9F09: TagInfo("Application Version Number - terminal", "b"),
    0x9F15: TagInfo("Merchant Category Code", "n"),
    0x9F16: TagInfo("Merchant Identifier", "ans"),
    0x9F1A: TagInfo("Terminal Country Code", "n"),
    0x9F1B: TagInfo("Terminal Floor Limit", "b"),
    0x9F1C: TagInfo("Terminal Identification", "an"),
    0x9F1E: TagInfo("Interface Device (IFD) Serial Number", "an"),
    0x9F21: TagInfo("Transaction Time", "n"),
    0x9F33: TagInfo("Terminal Capabilities", "b"),
    0x9F34: TagInfo("Cardholder Verification Method (CVM) Results", "b"),
    0x9F35: TagInfo("Terminal Type", "n"),
    0x9F37: TagInfo("Unpredictable Number", "b"),
    0x9F39: TagInfo("Point-of-Service (POS) Entry Mode", "n"),
    0x9F40: TagInfo("Additional Terminal Capabilities", "b"),
    0x9F41: TagInfo("Transaction Sequence Counter", "n"),
    0x9F4E: TagInfo("Merchant Name and Location", "ans"),
    0x9F66: TagInfo("Terminal Transaction Qualifiers (TTQ)", "b"),
    0x9F7A: TagInfo("Electronic Cash Terminal Support Indicator (PBOC)", "b"),
    0x9F7B: TagInfo("Electronic Cash Terminal Transaction Limit (PBOC)", "n"),
    0xDF31: TagInfo("Issuer Script Results", "b"),
    0xDF60: TagInfo("CAPP Transaction Indicator (PBOC)", "b"),
    0xDF69: TagInfo("SM Algorithm Supported Indicator (PBOC)", "b"),
}

TAGS: Mapping[int, TagInfo] = MappingProxyType(_TAG_TABLE)
"""Read-only: a shared table that one caller could edit would silently unmask another's logs."""


def tag_info(tag: int) -> TagInfo:
    """Known tags by table, unknown ones as opaque binary (shown as hex, never decoded)."""
    return TAGS.get(tag, _UNKNOWN)


def tag_name(tag: int) -> str:
    """Human name for logs; ``"unknown"`` for tags outside the table."""
    return tag_info(tag).name


def mask_pan(pan: str) -> str:
    """First 6 and last 4 kept (PCI DSS display rule); short numbers masked entirely."""
    if len(pan) < _PAN_MIN_MASKABLE:
        return "*" * len(pan)
    hidden = len(pan) - _PAN_KEEP_FIRST - _PAN_KEEP_LAST
    return pan[:_PAN_KEEP_FIRST] + "*" * hidden + pan[-_PAN_KEEP_LAST:]


_LONG_DIGIT_RUN = re.compile(r"[0-9]{12,}")
_HEX_WORD = re.compile(r"[0-9A-Fa-f]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
# An AID: a registered RID (A0000 + 5 hex) and a PIX of 1-11 bytes. Its digits run on from the RID into the PIX
# (A000000333010101 holds 15), so the PIX's own run is capped instead: with at most 5 RID digits before it, no
# run of 13 or more digits (a PAN) can pass as an AID.
_AID_WORD = re.compile(r"A0000[0-9A-F]{5}(?:[0-9A-F]{2}){1,11}", re.IGNORECASE)
_PIX_MAX_DIGIT_RUN = 7


def _is_aid(word: str) -> bool:
    if not _AID_WORD.fullmatch(word):
        return False
    return max((len(run) for run in _DIGIT_RUN.findall(word[10:])), default=0) <= _PIX_MAX_DIGIT_RUN


def scrub_pans(text: str) -> str:
    """Mask every run of 12 or more digits (a PAN, the PAN of track 2 or 5A in hex) except inside a word that is
    an AID, so logs name the scheme (A000000333010103) and never a card number. For any text bound for a log."""

    def word(match: re.Match[str]) -> str:
        found = match.group()
        if _is_aid(found):
            return found
        return _LONG_DIGIT_RUN.sub(lambda run: mask_pan(run.group()), found)

    return _HEX_WORD.sub(word, text)


def _scrub_hex(hex_text: str) -> str:
    # Undecodable data is shown raw, but a BCD PAN would then appear as a plain digit run; mask runs.
    return scrub_pans(hex_text)


def _hidden(value: bytes) -> str:
    return f"<{len(value)} bytes hidden>"


def _printable_ascii(value: bytes) -> str | None:
    if value and all(0x20 <= byte < 0x7F for byte in value):
        return value.decode("ascii")
    return None


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mask_pan_value(info: TagInfo, value: bytes) -> str:
    try:
        if info.fmt == "cn":
            digits = decode_cn(value)
        elif info.fmt == "n":
            digits = decode_bcd(value)
        elif info.fmt in ("a", "an", "ans"):
            text = _printable_ascii(value)
            if text is None:
                return _hidden(value)
            digits = text
        else:
            return _hidden(value)
    except BcdError:
        return _hidden(value)
    return mask_pan(digits)


def _mask_track2(value: bytes) -> str:
    nibbles = value.hex().upper()
    pan, sep, _ = nibbles.partition("D")
    if not sep or not pan or not pan.isdigit():
        return _hidden(value)
    return mask_pan(pan) + "D****"


def mask_value(tag: int, value: bytes) -> str:
    """One value as a log may show it: hex, quoted text, or masked/hidden according to the tag."""
    value = bytes(value)
    info = tag_info(tag)
    if info.secret in ("key", "hidden"):
        return _hidden(value)
    if info.secret == "pan":
        return _mask_pan_value(info, value)
    if info.secret == "track2":
        return _mask_track2(value)
    if info.fmt in ("a", "an", "ans"):
        text = _printable_ascii(value)
        if text is not None:
            return _quoted(text)
    if info is _UNKNOWN:
        # Proprietary tags may well hold a card number; we cannot know, so mask what looks like one.
        return _scrub_hex(value.hex().upper())
    return value.hex().upper()


def _tag_hex(tag: int) -> str:
    return tlv.tag_bytes(tag).hex().upper()


def dump(data: bytes, indent: int = 0) -> str:
    """Multi-line tree for logs, values masked; ``indent`` = leading spaces, +2 per nesting level.

    Never raises: a log call must not turn bad card data into a crash. Data that is not TLV comes back
    as hex with a note (long digit runs still masked, in case a PAN is inside).
    """
    pad = " " * max(indent, 0)
    if not isinstance(data, bytes | bytearray | memoryview):
        return f"{pad}<not bytes: {type(data).__name__}>"
    data = bytes(data)
    try:
        objects = tlv.walk(data)
    except tlv.TlvError as exc:
        return f"{pad}<not valid TLV: {exc}> {_scrub_hex(data.hex().upper())}"
    lines = []
    for depth, obj in objects:
        head = f"{pad}{'  ' * depth}{_tag_hex(obj.tag)} {tag_name(obj.tag)} [{len(obj.value)}]"
        if obj.constructed:
            lines.append(head)
        else:
            lines.append(f"{head}: {mask_value(obj.tag, obj.value)}")
    return "\n".join(lines)
