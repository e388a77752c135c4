"""The JSON answers of the acquirer's `/api/v1`, built by the host and validated by the terminal.

The host builds each answer as one of these dataclasses and sends `to_json()`, the exact bytes it also stores:
a retransmission gets those stored bytes back, so the key order and the set of keys are part of the contract
(the field order here *is* the key order). The terminal reads an answer with the matching `parse_*`: the host
is input too, and a malformed answer raises `MessageError` naming its field, which the terminal treats like a
garbled answer (the host may have acted; a sale is reversed).

Answers are specified with the same field specs as the requests (`hostproto.messages`), but *open*: a field
the terminal does not know is ignored. A conflicting retransmission is answered 94 with the short `Refusal`
whatever the request was, so every `parse_*` of an idempotent request may return one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hostproto.messages import (
    MAX_AMOUNT,
    MAX_FARES_PER_UPLOAD,
    Array,
    Boolean,
    Code,
    Digits,
    Integer,
    MessageError,
    Object,
    Spec,
    Text,
    Totals,
)

__all__ = [
    "ANSWER_SPECS",
    "AdviceAnswer",
    "Answer",
    "AuthorizationAnswer",
    "ClearingAnswer",
    "EchoAnswer",
    "FareResult",
    "Figures",
    "LoadAnswer",
    "LoadConfirmationAnswer",
    "LoadRefusal",
    "MessageError",
    "Refusal",
    "ReversalAnswer",
    "SettlementAnswer",
    "SettlementRefusal",
    "SignOnAnswer",
    "dumps",
    "parse_advice_answer",
    "parse_authorization_answer",
    "parse_clearing_answer",
    "parse_echo_answer",
    "parse_load_answer",
    "parse_load_confirmation_answer",
    "parse_reversal_answer",
    "parse_settlement_answer",
    "parse_signon_answer",
]


def dumps(payload: dict[str, Any]) -> str:
    """The host's JSON: compact, UTF-8 as is (a promotion's title stays readable in the stored answer)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    return value.as_dict() if hasattr(value, "as_dict") else value


class Answer:
    """`as_dict()` in field order; a field listed in `omitted_when_none` is left out rather than sent as null
    (the answers that never had it must keep their bytes)."""

    omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None and spec.name in self.omitted_when_none:
                continue
            result[spec.name] = [_plain(item) for item in value] if isinstance(value, tuple) else _plain(value)
        return result

    def to_json(self) -> str:
        return dumps(self.as_dict())

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Any:
        """The answer from its validated fields; one with nested objects turns them into their dataclasses."""
        return cls(**{name: value for name, value in fields.items()
                      if value is not None or name not in cls.omitted_when_none})


@dataclass(frozen=True)
class Figures:
    """A count and an amount (fen), as a settlement shows them."""

    count: int
    amount: int

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "amount": self.amount}


@dataclass(frozen=True)
class Refusal(Answer):
    """94: other content under a key already used. Nothing was decided; the earlier answer stands."""

    mti: str
    rc: str
    text: str
    stan: str


@dataclass(frozen=True)
class SignOnAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    batch: int
    host_time: int


@dataclass(frozen=True)
class EchoAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    signed_on: bool
    batch: int | None  # None when not signed on
    host_time: int


@dataclass(frozen=True)
class AuthorizationAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    rrn: str
    auth_code: str | None  # approved only
    amount: int
    charged: int
    discount: int
    promotion: str | None
    batch: int | None  # the host's batch; None on a 77 to a terminal not signed on
    icc: dict[str, str] | None = None  # {"91": ARPC ‖ ARC}, when the issuer authenticated itself

    omitted_when_none = frozenset({"icc"})

    @property
    def issuer_authentication_data(self) -> str | None:
        return self.icc["91"] if self.icc else None


@dataclass(frozen=True)
class AdviceAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    rrn: str
    amount: int
    charged: int
    discount: int
    promotion: str | None
    batch: int
    outcome: str  # accepted, or exception: acknowledged, the card not charged, an operator decides
    exception: str | None = None  # why, for an exception

    omitted_when_none = frozenset({"exception"})


@dataclass(frozen=True)
class ReversalAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    original_stan: str
    outcome: str


@dataclass(frozen=True)
class SettlementRefusal(Answer):
    """77: the terminal is not signed on, or on another batch; nothing stored, the request may come again."""

    mti: str
    rc: str
    text: str
    stan: str
    batch: int | None


@dataclass(frozen=True)
class SettlementAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    batch: int
    balanced: bool
    reconciliation: str  # CUP: 1 balanced, 2 not
    host_totals: Totals
    accepted: Figures  # money moved, cleared
    exceptions: Figures  # offline sales queued for an operator, not cleared

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> SettlementAnswer:
        return cls(**{**fields, "host_totals": Totals(**fields["host_totals"]),
                      "accepted": Figures(**fields["accepted"]), "exceptions": Figures(**fields["exceptions"])})


@dataclass(frozen=True)
class LoadAnswer(Answer):
    """An e-purse load authorized: the MAC2 the card needs and the date-time it must credit with."""

    mti: str
    rc: str
    text: str
    stan: str
    amount: int
    mac2: str  # 4 bytes, upper-case hex
    date_time: str  # YYYYMMDDhhmmss


@dataclass(frozen=True)
class LoadConfirmationAnswer(Answer):
    mti: str
    rc: str
    text: str
    stan: str
    original_stan: str
    outcome: str  # completed, or already_completed


@dataclass(frozen=True)
class LoadRefusal(Answer):
    """A load or a load confirmation refused, with why; nothing stored, the same request gets the same refusal."""

    mti: str
    rc: str
    text: str
    stan: str
    reason: str


@dataclass(frozen=True)
class FareResult(Answer):
    status: str  # cleared, repeat or refused
    reason: str | None  # why, for a refused fare


@dataclass(frozen=True)
class ClearingAnswer(Answer):
    """Transit clearing: counts for the batch of fares, and one result per fare in the order sent."""

    rc: str
    text: str
    cleared: int
    repeat: int
    refused: int
    amount: int
    results: tuple[FareResult, ...]

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> ClearingAnswer:
        return cls(**{**fields, "results": tuple(FareResult(**result) for result in fields["results"])})


# --- the specs ---------------------------------------------------------------------------------------------------

_RC = Text("[0-9A-Z]{2}", "2 digits or capital letters", "Response code (DE39).")


def _words(description: str) -> Text:
    """Free text: any characters (a promotion's title is an operator's words), bounded only, and escaped by whoever
    prints it, since refusing the answer of an approved sale for a stray tab would reverse the sale."""
    return Text(r"[\s\S]{0,200}", "at most 200 characters", description)


_TEXT = _words("The response code in words (for a receipt or a log).")
_STAN = Digits(6, "The request's STAN (DE11), echoed.")
_BATCH = Integer(1, 999_999, "Batch number (CUP 60.2).")
_FEN = Integer(0, MAX_AMOUNT, "Fen.")
_COUNT = Integer(0, 999_999, "Count.")
_HOST_TIME = Integer(0, 10**11, "Host unix time: the terminal resynchronises to it.")
_OUTCOMES_REVERSAL = ("reversed", "partial", "orphan", "already_reversed", "not_approved", "settled",
                      "exceeds_original", "exceeds_remaining")


def _answer(mtis: tuple[str, ...], fields: dict[str, Spec | Object], what: str,
            optional: frozenset[str] = frozenset()) -> Object:
    head: dict[str, Spec | Object] = {"mti": Code(mtis, "Response message type."), "rc": _RC, "text": _TEXT,
                                      "stan": _STAN}
    return Object({**head, **fields}, what, optional, open=True)


def _figures(what: str) -> Object:
    return Object({"count": _COUNT, "amount": _FEN}, what, open=True)


_SALE = {
    "rrn": Digits(12, "Retrieval reference number (DE37)."),
    "amount": Integer(1, MAX_AMOUNT, "The request's amount (DE4), fen."),
    "charged": Integer(0, MAX_AMOUNT, "What the account paid (after a bank promotion), fen."),
    "discount": Integer(0, MAX_AMOUNT, "The bank promotion's discount, fen."),
    "promotion": _words("The promotion's title for the receipt, or null."),
}

ANSWER_SPECS: dict[str, Object] = {
    "refusal": _answer(("0110", "0210", "0230", "0410", "0430", "0510"), {},
                       "94: different content under an idempotency key already used; nothing changed."),
    "signon": _answer(("0810",), {"batch": Integer(1, 999_999, "The new batch number (CUP 60.2)."),
                                  "host_time": _HOST_TIME}, "0810: the batch now open."),
    "echo": _answer(("0810",), {"signed_on": Boolean("Whether the host has the terminal signed on."),
                                "batch": Integer(1, 999_999, "The open batch, or null when none is open."),
                                "host_time": _HOST_TIME},
                    "0810: liveness and the host's view of the terminal.", frozenset({"batch"})),
    "authorization": _answer(
        ("0210", "0110"),
        {**_SALE, "auth_code": Text("[0-9A-Za-z]{6}", "6 letters or digits",
                                    "Approval code (DE38) on approval, else null."),
         "batch": Integer(1, 999_999, "The host's batch, or null when the terminal is not signed on."),
         "icc": Object({"91": Text("(?:[0-9A-F]{2}){8,16}", "8 to 16 bytes as upper-case hex",
                                   "Issuer authentication data: ARPC ‖ ARC.")},
                       "Response DE55 when the issuer computed an ARPC; absent otherwise.", open=True)},
        "0210/0110: the decision, stored before it was sent.", frozenset({"auth_code", "promotion", "batch", "icc"})),
    "advice": _answer(
        ("0230",),
        {**_SALE, "batch": _BATCH, "outcome": Code(("accepted", "exception"), "Whether money moved."),
         "exception": _words("Why no money moved (TC_UNVERIFIED, NOT_A_TC, OVER_FLOOR_LIMIT, UNKNOWN_CARD, "
                             "NO_ROUTE, ATC_REPLAY, TOKEN_SUSPENDED, CARD_LOST, …); absent when accepted.")},
        "0230: the advice is recorded and acknowledged (never declined: the goods are gone). `outcome` says whether "
        "money moved: accepted (the TC verified, the card paid) or exception (no money moved; `exception` says why, "
        "and an operator resolves it).", frozenset({"promotion", "exception"})),
    "reversal": _answer(
        ("0410", "0430"),
        {"original_stan": Digits(6, "STAN of the transaction reversed."),
         "outcome": Code(_OUTCOMES_REVERSAL,
                         "reversed: all of the sale undone; partial: the amount (DE4) is less than the sale's, that "
                         "share of the charge was given back; orphan: original unknown, a tombstone now declines it "
                         "if it arrives late; settled: its batch was already settled; exceeds_original / "
                         "exceeds_remaining: more than the sale, or than what still stands of it after partial "
                         "reversals. Only reversed and partial move money.")},
        "0410/0430: always 00; `outcome` says what the host did."),
    "settlement_refusal": _answer(("0510",), {"batch": Integer(1, 999_999, "The open batch, or null when none.")},
                                  "0510 with rc 77: not signed on, or the batch is not the open one; nothing "
                                  "stored, the same request may come again after a sign-on.", frozenset({"batch"})),
    "settlement": _answer(
        ("0510",),
        {"batch": _BATCH, "balanced": Boolean("true closes the batch: sign on again for a new one."),
         "reconciliation": Code(("1", "2"), "1 balanced, 2 not balanced."),
         "host_totals": Object({name: (_FEN if name.endswith("amount") else _COUNT)
                                for name in ("debit_count", "debit_amount", "credit_count", "credit_amount")},
                               "Counts and amounts (fen) of the host's batch.", open=True),
         "accepted": _figures("The host's sales that moved money (cleared)."),
         "exceptions": _figures("Advices taken as exceptions: in host_totals (the terminal rightly counts them), "
                                "not cleared.")},
        "0510: the reconciliation result, stored before it was sent."),
    "transit_load": _answer(
        ("0210",),
        {"amount": _FEN, "mac2": Text("[0-9A-F]{8}", "4 bytes as upper-case hex", "MAC2 for CREDIT FOR LOAD."),
         "date_time": Digits(14, "YYYYMMDDhhmmss, host time: the card credits with it.")},
        "0210: 00 with MAC2 and the date-time to send in CREDIT FOR LOAD (stored before it was sent)."),
    "transit_load_confirmation": _answer(
        ("0230",),
        {"original_stan": Digits(6, "STAN of the load request."),
         "outcome": Code(("completed", "already_completed"), "The load is counted completed (once).")},
        "0230: 00 when the TAC verifies."),
    "transit_load_refusal": _answer(
        ("0210", "0230"), {"reason": _words("Why, in words.")},
        "A load or a load confirmation refused; nothing stored. Loads: 88 MAC1 does not verify, 92 no load key for "
        "the city, 13 amount past the purse limit, 63 a load at this serial was already credited. Confirmations: "
        "88 a TAC that does not verify, 12 no such load, 92 no TAC key for the city."),
    "transit_clearing": Object(
        {"rc": _RC, "text": _TEXT, "cleared": Integer(0, 999_999, "Fares cleared now."),
         "repeat": Integer(0, 999_999, "Fares already cleared with the same content (a resend)."),
         "refused": Integer(0, 999_999, "Fares refused; nothing of them was stored."),
         "amount": Integer(0, MAX_AMOUNT, "The sum of the fares cleared now, fen."),
         "results": Array(Object({"status": Code(("cleared", "repeat", "refused"), "What became of the fare."),
                                  "reason": _words("Why it was refused; null otherwise.")},
                                 "One fare's fate.", frozenset({"reason"}), open=True),
                          1, MAX_FARES_PER_UPLOAD, "One result per fare, in request order.")},
        "The batch's fares, each cleared, a repeat or refused (in request order).", open=True),
}

_T = TypeVar("_T", bound=Answer)
_R = TypeVar("_R", bound=Answer)


def _parse(kind: str, cls: type[_T], body: object) -> _T:
    """`body` validated by its spec, as a `cls`."""
    answer: _T = cls.from_fields(ANSWER_SPECS[kind].validate(body))
    return answer


def _decided(body: object, kind: str, cls: type[_T], refusal_kind: str, refusal: type[_R]) -> _T | _R | Refusal:
    """The three answers a decided message may get: 94 (`Refusal`), a refusal of its own kind (any other rc
    than 00: nothing stored), or the answer itself (00)."""
    if isinstance(body, dict) and body.get("rc") not in ("00", "94"):
        return _parse(refusal_kind, refusal, body)
    return _or_refusal(body, kind, cls)


def _refused(body: object) -> bool:
    """The short 94 answer to a conflicting retransmission, whatever the request was."""
    return isinstance(body, dict) and body.get("rc") == "94"


def parse_signon_answer(body: object) -> SignOnAnswer:
    return _parse("signon", SignOnAnswer, body)


def parse_echo_answer(body: object) -> EchoAnswer:
    return _parse("echo", EchoAnswer, body)


def _or_refusal(body: object, kind: str, cls: type[_T]) -> _T | Refusal:
    return _parse("refusal", Refusal, body) if _refused(body) else _parse(kind, cls, body)


def parse_authorization_answer(body: object) -> AuthorizationAnswer | Refusal:
    """Approved or declined (any rc, all fields), or a conflicting retransmission (94)."""
    return _or_refusal(body, "authorization", AuthorizationAnswer)


def parse_advice_answer(body: object) -> AdviceAnswer | Refusal:
    return _or_refusal(body, "advice", AdviceAnswer)


def parse_reversal_answer(body: object) -> ReversalAnswer | Refusal:
    return _or_refusal(body, "reversal", ReversalAnswer)


def parse_settlement_answer(body: object) -> SettlementAnswer | SettlementRefusal | Refusal:
    """Balanced or not (00), not signed on or another batch (77), or a conflicting retransmission (94)."""
    return _decided(body, "settlement", SettlementAnswer, "settlement_refusal", SettlementRefusal)


def parse_load_answer(body: object) -> LoadAnswer | LoadRefusal | Refusal:
    """MAC2 (00), refused with a reason, or a conflicting retransmission (94)."""
    return _decided(body, "transit_load", LoadAnswer, "transit_load_refusal", LoadRefusal)


def parse_load_confirmation_answer(body: object) -> LoadConfirmationAnswer | LoadRefusal | Refusal:
    return _decided(body, "transit_load_confirmation", LoadConfirmationAnswer, "transit_load_refusal", LoadRefusal)


def parse_clearing_answer(body: object) -> ClearingAnswer:
    return _parse("transit_clearing", ClearingAnswer, body)
