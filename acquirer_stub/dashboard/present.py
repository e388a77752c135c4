"""How stored values reach a person's screen: money in yuan, card numbers masked, ICC data named.

Everything the dashboard shows from a stored message passes through here, so a full PAN, track 2 or key
that slipped into a JSON column by mistake is still masked on screen (defence in depth, acquirer.md §12).
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from emvcore import bitfields
from emvcore.bcd import BcdError, decode_bcd
from emvcore.tags import mask_pan, mask_value, scrub_pans, tag_info
from hostproto.money import format_yuan

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_SECRET_KEYS = re.compile(r"(^|_)(pan|track2?|de35|de52|pin|pin_block|key|cvv|cvn|imk|tmk|mak|pik|tdk)($|_)", re.I)
_ALLOWED_KEYS = re.compile(r"(masked|kcv|_hash)$", re.I)
ENTRY_MODES = {"07": "Contactless chip (qPBOC)", "98": "Contactless chip (standard PBOC)",
               "96": "Mobile (SE in phone)", "91": "Contactless magnetic stripe", "05": "Contact chip",
               "02": "Magnetic stripe", "01": "Keyed"}
"""DE22 positions 1–2, PAN entry mode; position 3 the terminal's PIN entry capability (1 has a PIN pad, 2 has none)."""


def yuan(fen: int | None) -> str:
    """Integer fen to ¥ with two decimals; amounts are never floats on their way to the screen."""
    return "" if fen is None else format_yuan(fen)


def when(text: str | None) -> str:
    """Stored ISO times to the second, in the zone they were stamped in, named: "2026-05-09 18:30:20 UTC+08:00".

    The host stamps a sale in its local time (its date is the business day the search filters on), so that is
    the time shown; a naive stored time is UTC, as `charts.parse_time` reads it."""
    if not text:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text
    offset = moment.utcoffset()
    if offset:
        minutes = int(offset.total_seconds()) // 60
        sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
        zone = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    else:
        zone = "UTC"
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}"


def scrub(text: Any) -> str:
    """Any long run of digits is taken for a card number and cut to BIN + last 4; an AID stays whole, so the
    operator sees which scheme a line is about (emvcore's one scrubber, as in the terminal's logs)."""
    return scrub_pans("" if text is None else str(text))


def entry_mode(code: str | None) -> str:
    """DE22 as words, the code kept after them for whoever reads ISO 8583: "Contactless chip (qPBOC), no PIN pad
    (072)"."""
    if not code:
        return ""
    words = ENTRY_MODES.get(code[:2])
    if words is None:
        return scrub(code)
    pin = {"1": ", PIN pad", "2": ", no PIN pad"}.get(code[2:3], "")
    return f"{words}{pin} ({scrub(code)})"


REASONS = {
    "APPROVED": "Approved", "OFFLINE_APPROVED": "Approved offline by the card", "NO_ROUTE": "No issuer for this card",
    "ARQC_MISMATCH": "Cryptogram (ARQC) does not verify", "ATC_REPLAY": "Cryptogram counter (ATC) used before",
    "NOT_AN_ARQC": "Card did not ask to go online (no ARQC)", "NOT_A_TC": "Advice without an offline approval (TC)",
    "TC_UNVERIFIED": "Offline approval (TC) does not verify", "FORMAT_ICC": "Chip data (DE55) unusable",
    "WALLET_OFF": "Wallet turned off for a lost phone", "NO_ISSUER_KEY": "No issuer key for this card",
    "VELOCITY_COUNT": "Too many sales today", "VELOCITY_AMOUNT": "Daily amount exceeded",
    "ISSUER_DOWN": "Issuer unavailable", "FORCED_DECLINE": "Declined by the issuer switch (demo)",
}
"""Reasons that read better than their words; any other reason is shown as its words ("CARD_LOST" → "Card lost")."""


def reason_text(reason: str | None) -> str:
    """A stored reason (the engine's SCREAMING_CASE) in words for a person."""
    if not reason:
        return ""
    if reason in REASONS:
        return REASONS[reason]
    words = scrub(reason).replace("_", " ").strip().lower()
    return words[:1].upper() + words[1:]


def mask_phone(phone: str | None) -> str:
    """Chinese-style 138****8000: enough to tell phones apart, not enough to call one."""
    if not phone:
        return ""
    return phone[:3] + "*" * max(0, len(phone) - 7) + phone[-4:] if len(phone) > 7 else "*" * len(phone)


def mask_par(par: str | None) -> str:
    """The PAR links a token to its card (tag 9F24 is secret in emvcore): the ends suffice to match rows."""
    if not par:
        return ""
    return par[:4] + "…" + par[-4:] if len(par) > 8 else "…"


def safe_json(value: Any) -> Any:
    """A stored JSON document with secret-looking fields hidden and card numbers masked in every string."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            key_text = str(key)
            if _SECRET_KEYS.search(key_text) and not _ALLOWED_KEYS.search(key_text):
                result[key_text] = "<hidden>"
            else:
                result[key_text] = safe_json(item)
        return result
    if isinstance(value, list):
        return [safe_json(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 13:
        return scrub(str(value))
    return value


def json_text(text: str | None) -> str | None:
    """A stored JSON document as a person reads it: secrets hidden, card numbers masked, indented; None for none."""
    return None if text is None else json.dumps(safe_json(load_json(text)), indent=2, ensure_ascii=False)


def load_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {"unreadable": scrub(text)[:200]}


@dataclass(frozen=True)
class IccItem:
    tag: str
    name: str
    value: str
    meaning: str
    bits: tuple[str, ...] = ()  # a bit field in words (TVR, AIP, CVM results, TTQ, CTQ, the IAD's CVR)


def _icc_pairs(document: Any) -> list[tuple[str, Any]]:
    """icc_masked as written by the API: {tag: hex}, [[tag, hex]] or [{"tag", "value"}], all tolerated."""
    if isinstance(document, dict):
        return [(str(tag), value) for tag, value in document.items()]
    pairs = []
    for item in document if isinstance(document, list) else []:
        if isinstance(item, dict) and "tag" in item:
            pairs.append((str(item["tag"]), item.get("value")))
        elif isinstance(item, list | tuple) and len(item) == 2:
            pairs.append((str(item[0]), item[1]))
    return pairs


def _meaning(tag: int, raw: bytes) -> str:
    try:
        if tag in (0x9F02, 0x9F03) and len(raw) == 6:
            return yuan(int(decode_bcd(raw)))
        if tag == 0x9A and len(raw) == 3:
            digits = decode_bcd(raw)
            return f"20{digits[:2]}-{digits[2:4]}-{digits[4:]}"
        if tag == 0x9F36 and raw:
            return f"ATC {int.from_bytes(raw, 'big')}"
        if tag == 0x9F27 and len(raw) == 1:
            return {0x80: "ARQC (go online)", 0x40: "TC (approved offline)", 0x00: "AAC (declined)"}.get(
                raw[0] & 0xC0, "")
        if tag == 0x9C and len(raw) == 1:
            return {"00": "purchase", "01": "cash", "20": "refund", "31": "balance inquiry"}.get(raw.hex(), "")
        if tag in (0x5F2A, 0x9F1A) and len(raw) == 2:
            return {"0156": "CNY / China", "0344": "HKD / Hong Kong", "0446": "MOP / Macao"}.get(raw.hex(), "")
    except (BcdError, ValueError):
        return ""
    return ""


def icc_items(icc_masked: str | None) -> list[IccItem]:
    """The stored ICC data as rows with emvcore's tag names, re-masked through emvcore's secrecy classes."""
    items = []
    for tag_text, value in _icc_pairs(load_json(icc_masked)):
        try:
            tag = int(tag_text, 16)
        except ValueError:
            continue
        info = tag_info(tag)
        text = "" if value is None else str(value)
        raw = bytes.fromhex(text) if _HEX.match(text) else None
        if raw is not None:
            shown = mask_value(tag, raw)
        elif info.secret in ("key", "hidden", "track2"):
            shown = "<hidden>"
        elif info.secret == "pan" and "*" not in text:
            shown = mask_pan(text)
        else:
            shown = scrub(text)
        readable = raw is not None and info.secret is None
        meaning = _meaning(tag, raw) if readable else ""
        bits = tuple(bitfields.describe(tag, raw)) if readable and raw is not None else ()
        items.append(IccItem(tag_text.upper(), info.name, shown, meaning, bits))
    return items
