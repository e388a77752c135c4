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

from emvcore.bcd import BcdError, decode_bcd
from emvcore.tags import mask_pan, mask_value, scrub_pans, tag_info

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
_SECRET_KEYS = re.compile(r"(^|_)(pan|track2?|de35|de52|pin|pin_block|key|cvv|cvn|imk|tmk|mak|pik|tdk)($|_)", re.I)
_ALLOWED_KEYS = re.compile(r"(masked|kcv|_hash)$", re.I)
ENTRY_MODES = {"07": "qPBOC contactless chip", "98": "CUP standard-PBOC contactless", "96": "CUP-Mobile (SE in phone)",
               "91": "contactless magnetic stripe", "05": "contact chip", "02": "magnetic stripe", "01": "keyed"}


def yuan(fen: int | None) -> str:
    """Integer fen to ¥ with two decimals; amounts are never floats on their way to the screen."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def when(text: str | None) -> str:
    """Stored ISO times to seconds in UTC: microseconds and offsets are noise on an operator's screen."""
    if not text:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def scrub(text: Any) -> str:
    """Any long run of digits is taken for a card number and cut to BIN + last 4; an AID stays whole, so the
    operator sees which scheme a line is about (emvcore's one scrubber, as in the terminal's logs)."""
    return scrub_pans("" if text is None else str(text))


def entry_mode(code: str | None) -> str:
    if not code:
        return ""
    return f"{code} {ENTRY_MODES.get(code[:2], '')}".strip()


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
        meaning = _meaning(tag, raw) if raw is not None and info.secret is None else ""
        items.append(IccItem(tag_text.upper(), info.name, shown, meaning))
    return items
