"""Pure translation between decoded ISO 8583 documents (`spec.decode`) and the JSON API's messages.

A request becomes the very JSON body a terminal would POST to `/api/v1` and is validated by `hostproto.messages`,
so both wire formats share one set of rules and one request hash: a sale sent as JSON and then as ISO under the
same TID/STAN/date is one transaction. Only what the decision uses goes into that body; DE35 (track 2) is checked
against DE2/DE14 and then dropped, never copied anywhere.

Which message is which (acquirer.md §2, §7):

=========================  ==================================================================================
request                    meaning
=========================  ==================================================================================
0800, 60.3 001/003/004     sign-on (new batch)
0800, 60.3 301             echo test
0200, DE3 000000, 60.1 22  purchase → authorization
0100, DE3 030000, 60.1 10  pre-authorization → authorization
0220/0221, DE3 000000,     offline-approved sale (60.1 30, CUP offline settlement) → advice
60.1 30
0400/0401/0420/0421        reversal: DE39 = reason, DE90 = original MTI (0100/0200), STAN, MMDD…; DE3 000000 or
                           030000
0500, 60.3 201             settlement: DE48 = debit amount n12 ‖ debit count n3 ‖ credit amount n12 ‖ credit
                           count n3 ‖ reconciliation code n1 (31 digits), optionally followed by the same block
                           for foreign cards, which must be all zero (this host acquires no foreign cards)
=========================  ==================================================================================

DE13 is optional in 0800 and 0500 (CUP terminals omit it there); the host's date stands in.

Problems answer with an ISO response, never an exception: DE39 ``30`` for anything malformed or missing
(the field named for the log), ``12`` for a well-formed transaction this host does not offer (a void, a balance
inquiry, another network-management code, another request MTI). Neither is stored.

Responses carry MTI + 10, the swapped TPDU, the request's DE3/4/11/12/13/41/42/49 echoed, DE39, and per kind:
DE37 RRN, DE38 approval code, DE55 tag 91 (ARPC ‖ ARC), DE60 = request 60.1 ‖ batch ‖ request 60.3, for 0510
DE48 = the **host's** totals with the reconciliation code (1 balanced, 2 not), the foreign block zero with ``1``
when the request had one, and DE44 = what the JSON answer says besides DE39: the reason of an advice taken as an
exception (no money moved, e.g. ``TC_UNVERIFIED``), a reversal's outcome (``reversed``, ``partial``,
``exceeds_original`` …).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acquirer_stub.iso8583.spec import TPDU_ID
from emvcore import tlv
from hostproto import messages
from hostproto.messages import Financial, MessageError, NetworkManagement, Reversal, Settlement

__all__ = [
    "ECHO_CODE",
    "SETTLEMENT_CODE",
    "SIGNON_CODES",
    "Rejected",
    "Request",
    "answerable",
    "reject",
    "to_request",
    "to_response",
    "unanswerable",
]

SIGNON_CODES = ("001", "003", "004")  # single-length keys, double-length, double-length + track key
ECHO_CODE = "301"
SETTLEMENT_CODE = "201"
_PURCHASE = ("000000", "22")  # (DE3, 60.1)
_PREAUTH = ("030000", "10")
_OFFLINE = ("000000", "30")
_REVERSIBLE_CODES = ("000000", "030000")
_ECHOED = ("3", "4", "11", "12", "13", "41", "42", "49")
# what an echoed field must look like to be sent back in a 30 response (it may come from a half-decoded message)
_ECHO_FORMAT = {"3": r"[0-9]{6}", "4": r"[0-9]{12}", "11": r"[0-9]{6}", "12": r"[0-9]{6}", "13": r"[0-9]{4}",
                "41": r"[\x20-\x7E]{8}", "42": r"[\x20-\x7E]{15}", "49": r"[0-9]{3}"}
# DE48 holds n12 amounts and n3 counts: a host total beyond them (exceptions from forged advices can add up to that)
# is shown at the maximum; such a batch cannot balance anyway, the terminal's own totals being n12 / n3
_DE48_MAX = {"debit_amount": 10**12 - 1, "debit_count": 999, "credit_amount": 10**12 - 1, "credit_count": 999}
_ANSWERABLE_MTI = re.compile(r"0[1-8][02][0-3]")  # a request or advice (incl. repeats): it has a response MTI
# JSON field (first path segment of a MessageError) → the data element it came from
_FIELD_DE = {"mti": "t", "tid": "41", "stan": "11", "local_date": "13", "batch": "60", "pan": "2", "psn": "23",
             "expiry": "14", "amount": "4", "currency": "49", "entry_mode": "22", "icc": "55", "reason": "39",
             "original_stan": "90", "original_local_date": "90", "totals": "48", "body": "t"}
_KINDS = {"0100": "authorization", "0200": "authorization", "0220": "advice", "0221": "advice",
          "0400": "reversal", "0401": "reversal", "0420": "reversal", "0421": "reversal",
          "0500": "settlement", "0800": "network"}

Message = NetworkManagement | Financial | Reversal | Settlement


@dataclass(frozen=True)
class Request:
    """An ISO request as the service functions take it."""

    kind: str  # signon, echo, authorization, advice, reversal, settlement: the service function to call
    body: dict[str, Any]  # the JSON API body for the same message: its hash is the idempotency content
    message: Message
    echo: dict[str, str]  # header, MTI and the fields the response carries back (no PAN, no track 2)
    foreign_block: bool = False  # a 0500 whose DE48 had the foreign-card block: the 0510 answers it too


@dataclass(frozen=True)
class Rejected:
    """A request answered without a decision: nothing stored, `field` says what was wrong (never its value)."""

    rc: str
    field: str
    response: dict[str, str]


class _Invalid(Exception):
    def __init__(self, field: str, rc: str = "30") -> None:
        super().__init__(field)
        self.field = field
        self.rc = rc


# --- requests -----------------------------------------------------------------------------------------------------


def unanswerable(doc: Mapping[str, str]) -> str | None:
    """The field (h or t) that leaves a response nothing to be addressed with (no CUP TPDU to swap, no request
    MTI to add 10 to), or None: such bytes are refused at the HTTP level instead."""
    header = doc.get("h", "")
    if not re.fullmatch(r"[0-9A-F]{22}", header) or header[:2] != f"{TPDU_ID:02X}":
        return "h"
    return None if _ANSWERABLE_MTI.fullmatch(doc.get("t", "")) else "t"


def answerable(doc: Mapping[str, str]) -> bool:
    """Whether an ISO response (30, 12 or a decision) can answer this document."""
    return unanswerable(doc) is None


def _get(doc: Mapping[str, str], field: str) -> str | None:
    value = doc.get(field)
    return value if value else None  # pyiso8583 decodes a zero-length field as ""


def _need(doc: Mapping[str, str], field: str) -> str:
    value = _get(doc, field)
    if value is None:
        raise _Invalid(field)
    return value


def _digits(doc: Mapping[str, str], field: str) -> str:
    """A required BCD field, refused when a nibble is A–F (pyiso8583 decodes BCD as hex)."""
    value = _need(doc, field)
    if not value.isdigit():
        raise _Invalid(field)
    return value


def _optional_digits(doc: Mapping[str, str], field: str) -> str | None:
    return None if _get(doc, field) is None else _digits(doc, field)


def _text(doc: Mapping[str, str], field: str, pattern: str) -> str:
    value = _need(doc, field)
    if not re.fullmatch(pattern, value):
        raise _Invalid(field)
    return value


@dataclass(frozen=True)
class _Field60:
    type_code: str
    batch: int
    network_code: str


def _field60(doc: Mapping[str, str]) -> _Field60:
    value = _digits(doc, "60")
    if len(value) < 11:
        raise _Invalid("60")
    return _Field60(value[:2], int(value[2:8]), value[8:11])


def _optional_date(doc: Mapping[str, str], today: datetime.date) -> str:
    """DE13 where CUP terminals may leave it out (0800, 0500): the host's date stands in."""
    value = _optional_digits(doc, "13")
    return value if value is not None else f"{today:%m%d}"


def _common(doc: Mapping[str, str], mti: str) -> dict[str, Any]:
    _text(doc, "42", r"[\x20-\x7E]{15}")  # required by the CUP terminal spec; the endpoint compares it
    _optional_digits(doc, "12")
    return {"mti": mti, "tid": _need(doc, "41"), "stan": _need(doc, "11")}


def _icc(doc: Mapping[str, str]) -> dict[str, str]:
    try:
        objects = tlv.parse(bytes.fromhex(_need(doc, "55")))
    except (ValueError, tlv.TlvError):
        raise _Invalid("55") from None
    icc: dict[str, str] = {}
    for obj in objects:
        tag = tlv.tag_bytes(obj.tag).hex().upper()
        if tag in icc:
            raise _Invalid("55")  # a dict would silently keep one of them
        icc[tag] = obj.value.hex().upper()
    return icc


def _check_track2(doc: Mapping[str, str], pan: str, expiry: str) -> None:
    """DE35 must agree with DE2 and DE14; it is used for nothing else and goes no further than this function."""
    track2 = _get(doc, "35")
    if track2 is None:
        return
    match = re.fullmatch(r"([0-9]{12,19})D([0-9]{4})[0-9]*", track2)
    if match is None or match.group(1) != pan or match.group(2) != expiry:
        raise _Invalid("35")


def _financial(doc: Mapping[str, str], mti: str, expected: tuple[str, str]) -> dict[str, Any]:
    processing = _digits(doc, "3")
    field60 = _field60(doc)
    if (processing, field60.type_code) != expected:
        raise _Invalid("3", "12")
    _optional_digits(doc, "25")
    body = _common(doc, mti)
    pan, expiry = _need(doc, "2"), _need(doc, "14")
    _check_track2(doc, pan, expiry)
    amount = _digits(doc, "4")
    body.update({"local_date": _need(doc, "13"), "batch": field60.batch, "pan": pan, "expiry": expiry,
                 "amount": int(amount), "currency": _need(doc, "49"), "entry_mode": _need(doc, "22"),
                 "icc": _icc(doc)})
    psn = _optional_digits(doc, "23")
    if psn is not None:
        if psn[0] != "0":
            raise _Invalid("23")
        body["psn"] = psn[1:]
    return body


def _reversal(doc: Mapping[str, str], mti: str) -> dict[str, Any]:
    if _digits(doc, "3") not in _REVERSIBLE_CODES:
        raise _Invalid("3", "12")
    if _get(doc, "60") is not None:
        _field60(doc)
    original = _digits(doc, "90")
    if original[:4] not in ("0100", "0200"):
        raise _Invalid("90", "12")  # only authorizations are reversible here
    amount = _digits(doc, "4")
    return {**_common(doc, mti), "local_date": _need(doc, "13"), "reason": _need(doc, "39"),
            "original_stan": original[4:10], "original_local_date": original[10:14], "amount": int(amount)}


def _totals(doc: Mapping[str, str]) -> dict[str, int]:
    value = _digits(doc, "48")
    if len(value) not in (31, 62) or (len(value) == 62 and int(value[31:61]) != 0):
        raise _Invalid("48")
    return {"debit_amount": int(value[0:12]), "debit_count": int(value[12:15]),
            "credit_amount": int(value[15:27]), "credit_count": int(value[27:30])}


def _parse(doc: Mapping[str, str], mti: str, today: datetime.date) -> tuple[str, dict[str, Any], Message]:
    kind = _KINDS.get(mti)
    if kind is None:
        raise _Invalid("t", "12")
    if kind == "network":
        field60 = _field60(doc)
        if field60.network_code in SIGNON_CODES:
            kind, parse = "signon", messages.parse_signon
        elif field60.network_code == ECHO_CODE:
            kind, parse = "echo", messages.parse_echo
        else:
            raise _Invalid("60", "12")
        body = {**_common(doc, mti), "local_date": _optional_date(doc, today)}
        return kind, body, parse(body)
    if kind == "settlement":
        field60 = _field60(doc)
        if field60.network_code != SETTLEMENT_CODE:
            raise _Invalid("60", "12")
        currency = _get(doc, "49")
        if currency is not None and currency != messages.CURRENCY_CNY:
            raise _Invalid("49")
        body = {**_common(doc, mti), "local_date": _optional_date(doc, today),
                "batch": field60.batch, "totals": _totals(doc)}
        return kind, body, messages.parse_settlement(body)
    if kind == "reversal":
        body = _reversal(doc, mti)
        return kind, body, messages.parse_reversal(body)
    if kind == "advice":
        body = _financial(doc, mti, _OFFLINE)
        return kind, body, messages.parse_advice(body)
    body = _financial(doc, mti, _PREAUTH if mti == "0100" else _PURCHASE)
    return kind, body, messages.parse_authorization(body)


def to_request(doc: Mapping[str, str], *, today: datetime.date) -> Request | Rejected:
    """The request, or its 30/12 answer. `today` only stands in for a DE13 that 0800/0500 may leave out."""
    if not answerable(doc):
        raise ValueError("no TPDU or request MTI to answer: refuse at the HTTP level")
    mti = doc["t"]
    try:
        kind, body, message = _parse(doc, mti, today)
    except _Invalid as invalid:
        return reject(doc, invalid.field, invalid.rc)
    except MessageError as error:
        return reject(doc, _FIELD_DE.get(error.field.split(".")[0], "t"))
    echo = {key: doc[key] for key in ("h", "t", *_ECHOED, "60") if _get(doc, key) is not None}
    return Request(kind, body, message, echo, foreign_block=kind == "settlement" and len(doc["48"]) == 62)


# --- responses ----------------------------------------------------------------------------------------------------


def _response_header(header: str) -> str:
    """TPDU ``60 DDDD SSSS`` → ``60 SSSS DDDD``; the 6-byte CUP header is echoed."""
    return header[:2] + header[6:10] + header[2:6] + header[10:]


def reject(doc: Mapping[str, str], field: str, rc: str = "30") -> Rejected:
    """The answer to a request the host will not decide on; echoes only well-formed fields of a perhaps
    half-decoded message, so the response itself always encodes."""
    if not answerable(doc):
        raise ValueError("no TPDU or request MTI to answer: refuse at the HTTP level")
    response = {"h": _response_header(doc["h"]), "t": messages.response_mti(doc["t"])}
    for key in _ECHOED:
        value = doc.get(key)
        if value and re.fullmatch(_ECHO_FORMAT[key], value):
            response[key] = value
    response["39"] = rc
    return Rejected(rc, field, response)


def _field60_response(request: Request, batch: object, default_type: str, default_code: str) -> str:
    field60 = request.echo.get("60", "")
    type_code = field60[:2] if len(field60) >= 11 else default_type
    network_code = field60[8:11] if len(field60) >= 11 else default_code
    return f"{type_code}{batch if isinstance(batch, int) else 0:06d}{network_code}"


def to_response(request: Request, stored: str) -> dict[str, str]:
    """The ISO answer for the stored JSON answer: the same decision, byte-stable for the same request."""
    answer = json.loads(stored)
    echo = request.echo
    response = {"h": _response_header(echo["h"]), "t": str(answer.get("mti") or messages.response_mti(echo["t"]))}
    response.update({key: echo[key] for key in _ECHOED if key in echo})
    response["39"] = str(answer["rc"])
    if answer.get("rrn"):
        response["37"] = str(answer["rrn"])
    if answer.get("auth_code"):
        response["38"] = str(answer["auth_code"])
    arpc = (answer.get("icc") or {}).get("91")
    if arpc:
        response["55"] = tlv.encode(0x91, bytes.fromhex(arpc)).hex().upper()
    if request.kind in ("signon", "echo"):
        response["60"] = _field60_response(request, answer.get("batch"), "00", "000")
    elif request.kind == "settlement":
        if answer.get("reconciliation"):
            totals = {key: min(value, _DE48_MAX[key]) for key, value in answer["host_totals"].items()}
            block = (f"{totals['debit_amount']:012d}{totals['debit_count']:03d}{totals['credit_amount']:012d}"
                     f"{totals['credit_count']:03d}{answer['reconciliation']}")
            response["48"] = block + ("0" * 30 + "1" if request.foreign_block else "")
        response["60"] = _field60_response(request, answer.get("batch"), "00", SETTLEMENT_CODE)
    elif request.kind in ("authorization", "advice"):
        response["60"] = _field60_response(request, answer.get("batch"), "00", "000")
    elif "60" in echo:
        response["60"] = echo["60"]
    if request.kind == "advice" and answer.get("outcome") == "exception":
        response["44"] = str(answer["exception"])[:25]
    elif request.kind == "reversal" and answer.get("outcome"):
        response["44"] = str(answer["outcome"])[:25]
    return response
