"""The JSON messages a terminal sends to the acquirer's `/api/v1`, and their validation.

Each message is declared once as a tree of field specs; the same tree validates a request (the first bad
field raises `MessageError` naming it, e.g. ``icc.9F02``) and renders the JSON Schema that the OpenAPI
document publishes, so the two cannot drift apart. Error messages never repeat a value: a PAN must not
reach a log through a validation error.

Numbers follow ISO 8583 / EMV: digit strings for n-fields (leading zeros matter), integers in fen for
amounts, ICC data (DE55) as an object of tag hex → value hex.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emvcore import epurse, tlv
from emvcore.bcd import MAX_AMOUNT_N12, BcdError, decode_bcd, decode_cn, parse_amount_n12, parse_date_n6

__all__ = [
    "CURRENCY_CNY",
    "MAX_AMOUNT",
    "REQUEST_SPECS",
    "RESPONSE_TEXT",
    "Financial",
    "Health",
    "MessageError",
    "NetworkManagement",
    "Reversal",
    "Settlement",
    "Totals",
    "TransitClearing",
    "TransitFare",
    "TransitLoad",
    "TransitLoadConfirmation",
    "parse_advice",
    "parse_authorization",
    "parse_echo",
    "parse_reversal",
    "parse_settlement",
    "parse_signon",
    "parse_transit_clearing",
    "parse_transit_load",
    "parse_transit_load_confirmation",
    "psam_id",
    "resolve_mmdd",
    "response_mti",
    "response_text",
]

CURRENCY_CNY = "156"
MAX_AMOUNT = MAX_AMOUNT_N12  # fen: the most an n12 amount (9F02, DE4) holds
MAX_ICC_BYTES = 255  # DE55 is b..255
ECR_MAX_RUN_SECONDS = 3600  # the most a terminal may ask for to run a virtual-ECR sale it accepts
REVERSAL_REASONS = ("98", "96", "A0", "06")  # no response, failed after approval, bad response MAC, other

RESPONSE_TEXT: dict[str, str] = {
    "00": "Approved",
    "01": "Refer to card issuer",
    "03": "Invalid merchant",
    "04": "Pick up card",
    "05": "Do not honour",
    "12": "Invalid transaction",
    "13": "Invalid amount",
    "14": "Invalid card number",
    "30": "Format error",
    "41": "Lost card",
    "43": "Stolen card",
    "46": "Closed account",
    "51": "Insufficient funds",
    "54": "Expired card",
    "55": "Incorrect PIN",
    "57": "Transaction not permitted to cardholder",
    "58": "Transaction not permitted to terminal",
    "61": "Exceeds withdrawal amount limit",
    "62": "Restricted card",
    "63": "Security violation",
    "65": "Exceeds withdrawal frequency limit",
    "68": "Response received too late",
    "70": "PIN required",
    "77": "Terminal not signed on or wrong batch",
    "88": "Cryptographic failure",
    "91": "Issuer or switch inoperative",
    "92": "Unable to route",
    "94": "Duplicate transmission",
    "96": "System malfunction",
    "97": "Terminal not registered",
}


def response_text(rc: str) -> str:
    """Words for a receipt or a log line, so that no side keeps its own table."""
    return RESPONSE_TEXT.get(rc, f"Declined (response code {rc})")


def response_mti(mti: str) -> str:
    """0200 → 0210, 0221 → 0230, 0401 → 0410: the response class, with the repeat digit dropped."""
    return f"{mti[:2]}{int(mti[2]) + 1}0"


class MessageError(ValueError):
    """A request (or answer) field that is missing or wrong; `field` is its dotted path (``totals.debit_amount``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- field specs: validate a value and describe it as JSON Schema -------------------------------------------


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@dataclass(frozen=True)
class Digits:
    """An ISO n-field as a string of ASCII digits (never an int: leading zeros are part of the value)."""

    length: int | tuple[int, int]
    description: str
    check: Callable[[str], str | None] | None = None  # returns what is wrong, or None

    def validate(self, value: object, path: str) -> str:
        low, high = (self.length, self.length) if isinstance(self.length, int) else self.length
        if not isinstance(value, str):
            raise MessageError(path, "must be a string of digits")
        if not re.fullmatch(r"[0-9]*", value):
            raise MessageError(path, "must contain only the digits 0-9")
        if not low <= len(value) <= high:
            raise MessageError(path, f"must be {low} digits" if low == high else f"must be {low} to {high} digits")
        problem = self.check(value) if self.check else None
        if problem:
            raise MessageError(path, problem)
        return value

    def schema(self) -> dict[str, Any]:
        low, high = (self.length, self.length) if isinstance(self.length, int) else self.length
        count = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
        return {"type": "string", "pattern": f"^[0-9]{count}$", "description": self.description}


@dataclass(frozen=True)
class Code:
    """A string from a fixed list (an MTI, a reason code)."""

    values: tuple[str, ...]
    description: str

    def validate(self, value: object, path: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise MessageError(path, "must be one of " + ", ".join(f'"{v}"' for v in self.values))
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values), "description": self.description}


@dataclass(frozen=True)
class Text:
    """A short identifier of letters and digits (TID: ans8, kept to alphanumerics)."""

    pattern: str
    rule: str
    description: str

    def validate(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not re.fullmatch(self.pattern, value):
            raise MessageError(path, f"must be {self.rule}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{self.pattern}$", "description": self.description}


@dataclass(frozen=True)
class Integer:
    """A JSON integer in a range (amounts in fen, counts, batch numbers); 1.0 and true are not integers."""

    minimum: int
    maximum: int
    description: str

    def validate(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MessageError(path, "must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise MessageError(path, f"must be between {self.minimum} and {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum, "description": self.description}


@dataclass(frozen=True)
class Array:
    """A JSON array of one kind of item, with a size range (a batch of records)."""

    item: Object  # the records of a batch are objects
    minimum: int
    maximum: int
    description: str

    def validate(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise MessageError(path, "must be an array")
        if not self.minimum <= len(value) <= self.maximum:
            raise MessageError(path, f"must hold {self.minimum} to {self.maximum} items")
        return [self.item.validate(item, f"{path}[{index}]") for index, item in enumerate(value)]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "minItems": self.minimum, "maxItems": self.maximum,
                "description": self.description}


@dataclass(frozen=True)
class Boolean:
    """A JSON true or false (an answer's `balanced`); 0 and 1 are not booleans."""

    description: str

    def validate(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise MessageError(path, "must be true or false")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean", "description": self.description}


# Value lengths (bytes) of the DE55 tags we know, and which of them are BCD numbers.
_ICC_LENGTHS: dict[int, tuple[int, int]] = {
    0x5A: (1, 10), 0x5F24: (3, 3), 0x5F2A: (2, 2), 0x5F34: (1, 1), 0x82: (2, 2), 0x84: (5, 16), 0x91: (8, 16),
    0x95: (5, 5), 0x9A: (3, 3), 0x9C: (1, 1), 0x9F02: (6, 6), 0x9F03: (6, 6), 0x9F09: (2, 2), 0x9F10: (1, 32),
    0x9F1A: (2, 2), 0x9F1E: (8, 8), 0x9F26: (8, 8), 0x9F27: (1, 1), 0x9F33: (3, 3), 0x9F34: (3, 3),
    0x9F35: (1, 1), 0x9F36: (2, 2), 0x9F37: (4, 4), 0x9F41: (2, 4), 0x9F66: (4, 4),
}
_ICC_NUMERIC = frozenset({0x5F24, 0x5F2A, 0x5F34, 0x9A, 0x9C, 0x9F02, 0x9F03, 0x9F1A, 0x9F41})
# The EMV minimum for recomputing an ARQC/TC (acquirer.md §6); 9F27 is optional (qPBOC GPO has none).
ICC_MANDATORY = (0x9F26, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A, 0x9F03)


def _tag_name(tag: int) -> str:
    return f"{tag:X}"


@dataclass(frozen=True)
class IccData:
    """DE55 as a JSON object: {"9F26": "A1B2…", …}; tags are single primitive BER tags."""

    mandatory: tuple[int, ...]
    description: str

    def validate(self, value: object, path: str) -> dict[int, bytes]:
        if not isinstance(value, dict):
            raise MessageError(path, "must be an object of tag hex → value hex")
        result: dict[int, bytes] = {}
        encoded = 0
        for key, raw in value.items():
            where = _join(path, str(key)[:8].upper())
            tag = self._tag(key, where)
            if tag in result:
                raise MessageError(where, "tag appears twice")
            if not isinstance(raw, str) or not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", raw):
                raise MessageError(where, "must be a string of hex byte pairs")
            data = bytes.fromhex(raw)
            self._check_value(tag, data, where)
            result[tag] = data
            encoded += len(tlv.encode(tag, data))
        if encoded > MAX_ICC_BYTES:
            raise MessageError(path, f"encodes to more than {MAX_ICC_BYTES} bytes (DE55 limit)")
        for tag in self.mandatory:
            if tag not in result:
                raise MessageError(_join(path, _tag_name(tag)), "required")
        return result

    @staticmethod
    def _tag(key: str, where: str) -> int:
        if not re.fullmatch(r"[0-9A-Fa-f]{2}|[0-9A-Fa-f]{4}|[0-9A-Fa-f]{6}", key):
            raise MessageError(where, "tag must be 1 to 3 bytes of hex")
        raw = bytes.fromhex(key)
        try:
            tag, end = tlv.read_tag(raw)
        except tlv.TlvError:
            raise MessageError(where, "not a BER-TLV tag") from None
        if end != len(raw):
            raise MessageError(where, "not a single BER-TLV tag")
        if raw[0] & 0x20:
            raise MessageError(where, "templates (constructed tags) are not allowed")
        return tag

    @staticmethod
    def _check_value(tag: int, data: bytes, where: str) -> None:
        low, high = _ICC_LENGTHS.get(tag, (0, MAX_ICC_BYTES))
        if not low <= len(data) <= high:
            raise MessageError(where, f"must be {low} bytes" if low == high else f"must be {low} to {high} bytes")
        try:
            if tag in _ICC_NUMERIC:
                decode_bcd(data)
            if tag == 0x9A:
                parse_date_n6(data)
            if tag == 0x5A:
                decode_cn(data)
        except BcdError:
            # our own words: the library's message would quote the value (a PAN for 5A)
            raise MessageError(where, "not valid BCD for this tag") from None

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "description": self.description,
            "propertyNames": {"pattern": "^([0-9A-Fa-f]{2}){1,3}$"},
            "additionalProperties": {"type": "string", "pattern": "^([0-9A-Fa-f]{2})*$"},
            "required": [_tag_name(t) for t in self.mandatory],
        }


Spec = Digits | Code | Text | Integer | Boolean | IccData | Array


@dataclass(frozen=True)
class Object:
    """A JSON object with known fields; unknown fields are refused so that a typo is not silently ignored.
    Optional fields may be absent or null. An answer is `open`: its unknown fields are ignored, so that a host
    which grows a field does not make every terminal in the field reverse its sales."""

    fields: dict[str, Spec | Object]
    description: str
    optional: frozenset[str] = field(default_factory=frozenset)
    open: bool = False

    def validate(self, value: object, path: str = "") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise MessageError(path or "body", "must be a JSON object")
        for name in () if self.open else value:
            if name not in self.fields:
                raise MessageError(_join(path, str(name)[:40]), "unknown field")
        result: dict[str, Any] = {}
        for name, spec in self.fields.items():
            if value.get(name) is None:
                if name not in self.optional:
                    raise MessageError(_join(path, name), "required")
                result[name] = None
                continue
            result[name] = spec.validate(value[name], _join(path, name))
        return result

    def schema(self) -> dict[str, Any]:
        properties = {}
        for name, spec in self.fields.items():
            properties[name] = spec.schema()
            if name in self.optional:
                properties[name] = {"anyOf": [properties[name], {"type": "null"}]}
        return {
            "type": "object",
            "description": self.description,
            "properties": properties,
            "required": [name for name in self.fields if name not in self.optional],
            "additionalProperties": self.open,
        }


# --- field checks ----------------------------------------------------------------------------------------------


def _mmdd(value: str) -> str | None:
    month, day = int(value[:2]), int(value[2:])
    if not 1 <= month <= 12:
        return "month must be 01 to 12 (MMDD)"
    if not 1 <= day <= calendar.monthrange(2000, month)[1]:  # 2000: a leap year, so 0229 is allowed
        return "day does not exist in that month (MMDD)"
    return None


def _yymm(value: str) -> str | None:
    return None if 1 <= int(value[2:]) <= 12 else "month must be 01 to 12 (YYMM)"


def _not_zero(value: str) -> str | None:
    return "must not be all zeros" if int(value) == 0 else None


def _datetime14(value: str) -> str | None:
    try:
        datetime.datetime.strptime(value, "%Y%m%d%H%M%S")
    except ValueError:
        return "is not a date and time YYYYMMDDhhmmss"
    return None


def resolve_mmdd(mmdd: str, today: datetime.date) -> datetime.date:
    """The terminal's MMDD as the calendar date nearest to the host's today (a 31 December sale that arrives
    on 1 January belongs to last year)."""
    month, day = int(mmdd[:2]), int(mmdd[2:])
    candidates = []
    for year in (today.year - 1, today.year, today.year + 1):
        try:
            candidates.append(datetime.date(year, month, day))
        except ValueError:  # 29 February outside leap years
            continue
    return min(candidates, key=lambda d: abs((d - today).days))


# --- the messages ----------------------------------------------------------------------------------------------

_TID = Text("[0-9A-Za-z]{8}", "8 letters or digits", "Terminal ID (DE41); must equal the X-Terminal-Id header.")
_STAN = Digits(6, "System trace audit number (DE11), terminal-assigned.", _not_zero)
_DATE = Digits(4, "Terminal local date MMDD (DE13); with TID and STAN the idempotency key.", _mmdd)
_BATCH = Integer(1, 999_999, "Batch number (CUP 60.2) from the last sign-on.")
_AMOUNT = Integer(1, MAX_AMOUNT, "Amount in fen (DE4); must equal ICC tag 9F02.")
_TRANSIT_CARD = Digits(16, "Transit card number (from the card's public file). Handled like a PAN: never logged.")
_TRANSIT_CITY = Digits(4, "Transit city code (from the card's public file): which issuer's keys.")


def _hex(length: int, description: str) -> Text:
    return Text(f"[0-9A-F]{{{2 * length}}}", f"{length} bytes as upper-case hex", description)


MAX_FARES_PER_UPLOAD = 30  # fare records in one transit clearing request: ~6 KB, under the API body limit


def psam_id(tid: str) -> bytes:
    """The 6-byte terminal number of a terminal's software PSAM: the last 6 characters of its TID. The purse's
    TAC covers it, so the acquirer can tell that a fare was taken by the gate that uploads it."""
    return tid.encode("ascii")[-6:]


_FARE = Object(
    {
        "card_number": _TRANSIT_CARD,
        "city_code": _TRANSIT_CITY,
        "offline_serial": Integer(0, 0xFFFF, "The card's purse transaction number: with the card, the fare's key."),
        "amount": Integer(1, 0xFFFFFFFF, "The fare in fen, as debited from the purse."),
        "psam": _hex(6, "The PSAM's terminal number: must be this terminal's (the last 6 characters of its TID)."),
        "terminal_serial": _hex(4, "The PSAM's transaction serial."),
        "date_time": Digits(14, "Date and time sent in DEBIT FOR PURCHASE, YYYYMMDDhhmmss.", _datetime14),
        "tac": _hex(4, "The card's TAC over the purchase."),
    },
    "One fare a card paid at the gate, with the TAC that proves it.",
)


def _financial(mtis: tuple[str, ...], what: str) -> Object:
    return Object(
        {
            "mti": Code(mtis, "Message type."),
            "tid": _TID,
            "stan": _STAN,
            "local_date": _DATE,
            "batch": _BATCH,
            "pan": Digits((13, 19), "PAN (DE2): the card's, or the token (DPAN) of a phone wallet. Never logged."),
            "psn": Digits(2, "PAN sequence number (DE23 / 5F34)."),
            "expiry": Digits(4, "Expiry YYMM (DE14 / 5F24).", _yymm),
            "amount": _AMOUNT,
            "currency": Code((CURRENCY_CNY,), "Currency (DE49); must match ICC tag 5F2A."),
            "entry_mode": Digits(3, "POS entry mode (DE22): 07x qPBOC, 98x PBOC contactless, 96x phone SE."),
            "icc": IccData(ICC_MANDATORY, "ICC data (DE55). 57 and 5A are accepted but never stored."),
        },
        what,
        optional=frozenset({"psn"}),
    )


MAX_BACKLOG = 100_000  # journal items a terminal may report still to send
MAX_HEALTH_COUNT = 2**31 - 1  # reader resets, seconds of uptime: what a terminal reports, capped

_HEALTH = Object(
    {
        "reader": Code(("ok", "fault"), "The contactless reader: ok, or fault (its last tap ended in a reader "
                                        "error, not cleared by a tap since)."),
        "reader_resets": Integer(0, MAX_HEALTH_COUNT, "Reader resets since the terminal service started."),
        "pending_reversals": Integer(0, MAX_BACKLOG, "Reversals in the terminal's journal still to send."),
        "pending_advices": Integer(0, MAX_BACKLOG, "Offline advices in the terminal's journal still to send."),
        "uptime": Integer(0, MAX_HEALTH_COUNT, "Seconds since the terminal service started."),
    },
    "The terminal's own view of its health, shown on the acquirer's terminal page.",
)

REQUEST_SPECS: dict[str, Object] = {
    "signon": Object({"mti": Code(("0800",), "Network management."), "tid": _TID, "stan": _STAN,
                      "local_date": _DATE}, "Sign-on: opens a new batch."),
    "echo": Object({"mti": Code(("0800",), "Network management."), "tid": _TID, "stan": _STAN,
                    "local_date": _DATE, "health": _HEALTH}, "Echo test (heartbeat), with the terminal's health "
                   "when the service sends it.", optional=frozenset({"health"})),
    "authorization": _financial(("0200", "0100"), "Online purchase (0200) or authorization (0100) with an ARQC."),
    "advice": _financial(("0220", "0221"), "Offline-approved purchase (TC) reported after the fact."),
    "reversal": Object(
        {
            "mti": Code(("0400", "0401", "0420", "0421"), "Reversal request / advice (xxx1 = repeat)."),
            "tid": _TID,
            "stan": _STAN,
            "local_date": _DATE,
            "reason": Code(REVERSAL_REASONS, "98 no response in time, 96 failed after approval, A0 bad response "
                                             "MAC, 06 other."),
            "original_stan": Digits(6, "STAN of the transaction to reverse.", _not_zero),
            "original_local_date": Digits(4, "MMDD of the transaction to reverse.", _mmdd),
            "amount": _AMOUNT,
        },
        "Reversal of an earlier authorization.",
    ),
    "settlement": Object(
        {
            "mti": Code(("0500",), "Reconciliation."),
            "tid": _TID,
            "stan": _STAN,
            "local_date": _DATE,
            "batch": _BATCH,
            "totals": Object(
                {
                    "debit_count": Integer(0, 999, "Number of sales (CUP 借记: purchases, offline sales)."),
                    "debit_amount": Integer(0, MAX_AMOUNT, "Sum of the sales' amounts in fen."),
                    "credit_count": Integer(0, 999, "Number of refunds and voids (CUP 贷记)."),
                    "credit_amount": Integer(0, MAX_AMOUNT, "Sum of the refunds' amounts in fen."),
                },
                "The terminal's totals for the batch (CUP DE48, domestic cards).",
            ),
        },
        "Batch settlement: the terminal's totals against the host's.",
    ),
    "transit_clearing": Object(
        {"tid": _TID, "fares": Array(_FARE, 1, MAX_FARES_PER_UPLOAD, "The fares, oldest first.")},
        "Transit clearing: fares taken offline by a gate's PSAM, each verified by its TAC and cleared once.",
    ),
    "transit_load": Object(
        {
            "mti": Code(("0200",), "Financial request: an e-purse load (top-up) at the counter."),
            "tid": _TID,
            "stan": _STAN,
            "local_date": _DATE,
            "card_number": _TRANSIT_CARD,
            "city_code": _TRANSIT_CITY,
            "amount": Integer(1, epurse.PURSE_LIMIT, "Amount to load in fen; must equal the amount the card quoted."),
            "terminal_id": _hex(6, "The 6-byte terminal id sent in INITIALIZE FOR LOAD (bound by MAC1)."),
            "initialize": _hex(epurse.INITIALIZE_LOAD_ANSWER_LENGTH,
                               "The card's INITIALIZE FOR LOAD answer: balance(4) ‖ online serial(2) ‖ key version ‖ "
                               "algorithm ‖ random(4) ‖ MAC1(4)."),
        },
        "E-purse load: the host checks the card's MAC1 with the issuer's load key and answers MAC2 and the "
        "date-time to credit with.",
    ),
    "transit_load_confirmation": Object(
        {
            "mti": Code(("0220", "0221"), "Advice (xxx1 = repeat): the card credited the load."),
            "tid": _TID,
            "stan": _STAN,
            "local_date": _DATE,
            "original_stan": Digits(6, "STAN of the load request.", _not_zero),
            "original_local_date": Digits(4, "MMDD of the load request.", _mmdd),
            "card_number": _TRANSIT_CARD,
            "online_serial": Integer(0, 0xFFFF, "The card's online serial of the load (before the credit)."),
            "tac": _hex(4, "The load TAC the card answered to CREDIT FOR LOAD (or GET TRANSACTION PROVE)."),
        },
        "E-purse load confirmation: the host checks the TAC with the issuer's TAC key and counts the load "
        "completed.",
    ),
}


@dataclass(frozen=True)
class Health:
    reader: str
    reader_resets: int
    pending_reversals: int
    pending_advices: int
    uptime: int

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NetworkManagement:
    mti: str
    tid: str
    stan: str
    local_date: str
    health: Health | None = None  # an echo's, when the terminal service reports it


@dataclass(frozen=True)
class Financial:
    mti: str
    tid: str
    stan: str
    local_date: str
    batch: int
    pan: str
    psn: int | None
    expiry: str
    amount: int
    currency: str
    entry_mode: str
    icc: dict[int, bytes]


@dataclass(frozen=True)
class Reversal:
    mti: str
    tid: str
    stan: str
    local_date: str
    reason: str
    original_stan: str
    original_local_date: str
    amount: int


@dataclass(frozen=True)
class Totals:
    debit_count: int
    debit_amount: int
    credit_count: int
    credit_amount: int

    def as_dict(self) -> dict[str, int]:
        return {"debit_count": self.debit_count, "debit_amount": self.debit_amount,
                "credit_count": self.credit_count, "credit_amount": self.credit_amount}


@dataclass(frozen=True)
class Settlement:
    mti: str
    tid: str
    stan: str
    local_date: str
    batch: int
    totals: Totals


@dataclass(frozen=True)
class TransitFare:
    card_number: str = field(repr=False)
    city_code: str
    offline_serial: int
    amount: int
    psam: str
    terminal_serial: str
    date_time: str
    tac: str


@dataclass(frozen=True)
class TransitClearing:
    tid: str
    fares: tuple[TransitFare, ...]


@dataclass(frozen=True)
class TransitLoad:
    mti: str
    tid: str
    stan: str
    local_date: str
    card_number: str = field(repr=False)
    city_code: str
    amount: int
    terminal_id: bytes
    quote: epurse.LoadQuote


@dataclass(frozen=True)
class TransitLoadConfirmation:
    mti: str
    tid: str
    stan: str
    local_date: str
    original_stan: str
    original_local_date: str
    card_number: str = field(repr=False)
    online_serial: int
    tac: bytes


def parse_transit_load(body: object) -> TransitLoad:
    """A load request, its card answer decoded (the layout of `emvcore.epurse`)."""
    fields = REQUEST_SPECS["transit_load"].validate(body)
    quote = epurse.LoadQuote.decode(bytes.fromhex(fields.pop("initialize")))
    return TransitLoad(**{**fields, "terminal_id": bytes.fromhex(fields["terminal_id"]), "quote": quote})


def parse_transit_load_confirmation(body: object) -> TransitLoadConfirmation:
    fields = REQUEST_SPECS["transit_load_confirmation"].validate(body)
    return TransitLoadConfirmation(**{**fields, "tac": bytes.fromhex(fields["tac"])})


def parse_signon(body: object) -> NetworkManagement:
    return NetworkManagement(**REQUEST_SPECS["signon"].validate(body))


def parse_echo(body: object) -> NetworkManagement:
    fields = REQUEST_SPECS["echo"].validate(body)
    health = fields.pop("health")
    return NetworkManagement(**fields, health=None if health is None else Health(**health))


def _parse_financial(kind: str, body: object) -> Financial:
    fields = REQUEST_SPECS[kind].validate(body)
    icc: dict[int, bytes] = fields["icc"]
    if parse_amount_n12(icc[0x9F02]) != fields["amount"]:
        raise MessageError("amount", "does not match the amount in icc.9F02")
    if int(decode_bcd(icc[0x5F2A])) != int(fields["currency"]):
        raise MessageError("currency", "does not match the currency in icc.5F2A")
    psn = None if fields["psn"] is None else int(fields["psn"])
    if 0x5F34 in icc and psn is not None and int(decode_bcd(icc[0x5F34])) != psn:
        raise MessageError("psn", "does not match icc.5F34")
    if 0x5A in icc and decode_cn(icc[0x5A]) != fields["pan"]:
        raise MessageError("pan", "does not match icc.5A")
    return Financial(**{**fields, "psn": psn})


def parse_authorization(body: object) -> Financial:
    """A 0200/0100 with the cross-checks a host makes before any issuer sees it (DE4 = 9F02, DE49 = 5F2A)."""
    return _parse_financial("authorization", body)


def parse_advice(body: object) -> Financial:
    return _parse_financial("advice", body)


def parse_reversal(body: object) -> Reversal:
    return Reversal(**REQUEST_SPECS["reversal"].validate(body))


def parse_settlement(body: object) -> Settlement:
    fields = REQUEST_SPECS["settlement"].validate(body)
    return Settlement(**{**fields, "totals": Totals(**fields["totals"])})


def parse_transit_clearing(body: object) -> TransitClearing:
    fields = REQUEST_SPECS["transit_clearing"].validate(body)
    return TransitClearing(fields["tid"], tuple(TransitFare(**fare) for fare in fields["fares"]))
