"""Top-up at the counter: an e-purse load (doc emv-qpboc.md §13) authorized by the host, never credited twice.

INITIALIZE FOR LOAD gives the card's balance, online serial, a random and MAC1; the host (the acquirer, as the
card issuer's agent) checks MAC1 and answers MAC2 and the date-time; CREDIT FOR LOAD credits and answers the TAC,
which the terminal keeps and confirms to the host. The terminal holds no load key.

A card torn away after CREDIT was sent may or may not have been credited. The load is remembered (committed
before CREDIT leaves) and the next tap of that card asks GET TRANSACTION PROVE for its online serial: the MAC2
the terminal sent and a TAC mean it was credited (done, nothing credited again); "not found" and the card still
at that serial mean it never was (a fresh load follows, and the host voids the unused MAC2 by the same serial).

Pure logic like the other kernels: the card is reached only through ``transceive``, the host through `LoadHost`,
the durable memory through `LoadMemory` (the journal's `TransitLoads` on a terminal).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from emvcore import epurse
from emvcore.apdu import StatusWord, describe_sw
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.transit import TransitResult, _send, _Stop, guarded, select_card

__all__ = ["LoadAuthorization", "LoadHost", "LoadMemory", "load"]

_RECORD_FIELDS = ("card_number", "city_code", "online_serial", "balance_before", "amount", "terminal_id",
                  "date_time", "mac2", "host_stan", "host_local_date")


@dataclass(frozen=True)
class LoadAuthorization:
    """The host's answer to a load request: MAC2 and the date-time to credit with, only when approved."""

    approved: bool
    text: str
    mac2: bytes = field(default=b"", repr=False)
    date_time: bytes = b""
    reference: Mapping[str, str] = field(default_factory=dict)  # the request's STAN and date, for the confirmation


class LoadHost(Protocol):
    """Asks the acquirer for MAC2; `request` holds card number, city, amount, terminal id and the card's quote."""

    def authorize_load(self, request: Mapping[str, Any]) -> LoadAuthorization: ...


class LoadMemory(Protocol):
    """Durable memory of loads: each call commits before it returns."""

    def remember_credit(self, card_number: str, load: Mapping[str, Any]) -> None:
        """Before CREDIT FOR LOAD leaves: from then on the card may have been credited."""
        ...

    def credit_pending(self, card_number: str) -> Mapping[str, Any] | None: ...

    def forget_credit(self, card_number: str) -> None:
        """The card proved it never took that CREDIT."""
        ...

    def complete_load(self, card_number: str, load: Mapping[str, Any]) -> None:
        """The card was credited: the load (with its TAC, or None when only the serial proves it) is kept for the
        host's confirmation, and no longer pending, in one commit."""
        ...


def load(transceive: Callable[[bytes], bytes], host: LoadHost, memory: LoadMemory, terminal_id: bytes, amount: int,
         now: datetime) -> TransitResult:
    """Load `amount` fen on the e-purse in the field, or finish the load torn away on this card's last tap."""
    result = TransitResult(Outcome.END_APPLICATION, Message.CARD_ERROR, amount=amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= epurse.PURSE_LIMIT:
        result.message = Message.ENTER_AMOUNT
        result.reasons.append(f"invalid top-up {amount!r}")
        return result
    return guarded(lambda: _load(transceive, host, memory, terminal_id, amount, now, result), result)


def _pending(record: Mapping[str, Any]) -> dict[str, Any]:
    """A remembered load, checked: an unreadable one must stop the tap (the card may have been credited)."""
    try:
        checked = {name: record[name] for name in _RECORD_FIELDS}
        for name in ("online_serial", "amount", "balance_before"):
            checked[name] = int(checked[name])
        if len(bytes.fromhex(str(checked["mac2"]))) != 4 or len(bytes.fromhex(str(checked["date_time"]))) != 7:
            raise ValueError("MAC2 or date-time")
    except (KeyError, TypeError, ValueError):
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, "the record of a torn load on this card is "
                                                                 "unreadable") from None
    return checked


def _load(transceive: Callable[[bytes], bytes], host: LoadHost, memory: LoadMemory, terminal_id: bytes, amount: int,
          now: datetime, result: TransitResult) -> None:
    card_number, city_code = select_card(transceive, now, result)
    remembered = memory.credit_pending(card_number)
    torn = None if remembered is None else _pending(remembered)
    if torn is not None:
        proof = _prove(transceive, torn)
        if proof is not None:
            memory.complete_load(card_number, {**torn, "tac": proof.hex().upper()})
            _loaded(result, torn, proof, recovered=True)
            return
        if torn.get("not_ours"):
            memory.forget_credit(card_number)
            torn = None

    answer = _send(transceive, epurse.initialize_for_load(amount, terminal_id), "INITIALIZE FOR LOAD")
    if answer.sw == StatusWord.CONDITIONS_NOT_SATISFIED:
        raise _Stop(Outcome.DECLINED, Message.BALANCE_LIMIT, "INITIALIZE FOR LOAD: refused (balance limit)")
    if answer.sw == StatusWord.KEY_INDEX_NOT_SUPPORTED:
        raise _Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, "the card has no load key")
    if not answer.ok:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"INITIALIZE FOR LOAD: {describe_sw(answer.sw)}")
    quote = epurse.LoadQuote.decode(answer.data)
    result.balance_before, result.online_serial = quote.balance, quote.online_serial
    if torn is not None:
        if quote.online_serial > int(torn["online_serial"]):
            # no proof kept on the card, yet it counted past the torn load's serial: that CREDIT went through (the
            # host counts it by the same serial rule); the shopper is not loaded a second time
            memory.complete_load(card_number, {**torn, "tac": None})
            _loaded(result, torn, None, recovered=True)
            return
        memory.forget_credit(card_number)  # still at that serial: the torn CREDIT never happened
        result.reasons.append("the torn load was never credited; loading anew")

    request = {"card_number": card_number, "city_code": city_code, "amount": amount,
               "terminal_id": terminal_id.hex().upper(), "initialize": answer.data.hex().upper()}
    authorization = host.authorize_load(request)
    if not authorization.approved:
        raise _Stop(Outcome.DECLINED, f"Declined: {authorization.text}", f"host: {authorization.text}")
    if len(authorization.mac2) != 4 or len(authorization.date_time) != 7:
        raise _Stop(Outcome.END_APPLICATION, Message.DECLINED, "host: MAC2 or date-time of the wrong size")
    record = {"card_number": card_number, "city_code": city_code, "online_serial": quote.online_serial,
              "balance_before": quote.balance, "amount": amount, "terminal_id": terminal_id.hex().upper(),
              "date_time": authorization.date_time.hex(), "mac2": authorization.mac2.hex().upper(),
              "host_stan": authorization.reference.get("stan"),
              "host_local_date": authorization.reference.get("local_date")}
    result.date_time = authorization.date_time
    memory.remember_credit(card_number, record)  # from here on a tear may have credited the card
    try:
        answer = _send(transceive, epurse.credit_for_load(authorization.date_time, authorization.mac2),
                       "CREDIT FOR LOAD")
    except _Stop as stop:  # an unreadable answer may hide a credit: kept for GET TRANSACTION PROVE
        raise _Stop(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, stop.reason) from None
    if answer.ok and len(answer.data) != epurse.CREDIT_ANSWER_LENGTH:
        raise _Stop(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, f"CREDIT: {len(answer.data)}-byte answer")
    if not answer.ok:  # kept too: a refusal and a garbled answer look alike; the next tap's PROVE asks the card
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"CREDIT FOR LOAD: {describe_sw(answer.sw)}")
    memory.complete_load(card_number, {**record, "tac": answer.data.hex().upper()})
    _loaded(result, record, answer.data, recovered=False)


def _prove(transceive: Callable[[bytes], bytes], torn: dict[str, Any]) -> bytes | None:
    """The torn load's TAC when the card proves it took that very CREDIT; None otherwise (``not_ours`` set in
    `torn` when the card credited another load at that serial)."""
    command = epurse.get_transaction_prove(epurse.TXN_EP_LOAD, int(torn["online_serial"]))
    answer = _send(transceive, command, "GET TRANSACTION PROVE")
    if answer.sw == StatusWord.REFERENCED_DATA_NOT_FOUND:
        return None
    if not answer.ok or len(answer.data) != epurse.PROVE_ANSWER_LENGTH:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"GET TRANSACTION PROVE: {describe_sw(answer.sw)}")
    if not hmac.compare_digest(answer.data[0:4], bytes.fromhex(str(torn["mac2"]))):
        torn["not_ours"] = True
        return None
    return answer.data[4:8]


def _loaded(result: TransitResult, record: Mapping[str, Any], tac: bytes | None, *, recovered: bool) -> None:
    """Only once the card proved the credit (a TAC, or its serial counted past the load)."""
    result.amount, result.online_serial = int(record["amount"]), int(record["online_serial"])
    result.balance_before = int(record["balance_before"])
    result.balance_after = result.balance_before + result.amount
    result.mac2, result.tac, result.recovered = bytes.fromhex(str(record["mac2"])), tac, recovered
    result.date_time = bytes.fromhex(str(record["date_time"]))
    result.outcome, result.message = Outcome.APPROVED, str(Message.TOPPED_UP)
    result.reasons.append("recovered the torn load" if recovered else "card topped up")
