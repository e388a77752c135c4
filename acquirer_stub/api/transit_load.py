"""E-purse loads (top-up at the counter): the acquirer makes MAC2 as the transit card issuer's agent.

A load request carries the card's INITIALIZE FOR LOAD answer. The host checks MAC1 with the card's load key
(EMV option A over the card number, from the city's load master key), then records the load `authorized` and
answers MAC2 with the date-time the card must credit with, in one transaction. A confirmation carries the TAC
of CREDIT FOR LOAD; checked with the card's TAC key, it marks the load `completed`.

The card's online serial is the truth about a MAC2 whose fate the terminal could not learn (card torn, answer
lost, terminal crashed). A MAC2 works only in the card session of its INITIALIZE, and every INITIALIZE FOR LOAD
that can ever be credited comes here first, so when a new request for the card arrives:

* an `authorized` load at the same serial was never credited (the card still counts that serial): `voided`;
* an `authorized` load at a lower serial was credited (the card counted past it): `credited`, counted once, its
  TAC may still come with a confirmation;
* a counted load at the same or a higher serial means the card is not telling the truth: refused (63).

Refusals (bad MAC1, unknown city, amount out of limits) store nothing; an accepted request and its answer are
stored together, so a retransmission gets the same MAC2 back (idempotent on TID, STAN, date like the rest).
"""

from __future__ import annotations

import hmac
import sqlite3

from acquirer_stub.api.service import Context, deciding, open_request, record_event, stored_answer
from acquirer_stub.store import answers, transit_loads
from emvcore import epurse
from emvcore.crypto import transit as transit_crypto
from emvcore.tags import mask_pan
from hostproto.messages import TransitLoad, TransitLoadConfirmation, resolve_mmdd, response_mti, response_text
from hostproto.responses import LoadAnswer, LoadConfirmationAnswer, LoadRefusal

__all__ = ["COUNTED", "confirm", "load"]

COUNTED = ("credited", "completed")  # the states whose money is on the card


def _refuse(context: Context, message: TransitLoad | TransitLoadConfirmation, rc: str, why: str) -> str:
    """An answer that stores nothing: the same request may come again and gets the same refusal."""
    return LoadRefusal(response_mti(message.mti), rc, response_text(rc), message.stan, why).to_json()


def _session_key(context: Context, message: TransitLoad) -> bytes | None:
    """SESLK of this load (the card's MAC1 and the host's MAC2 both use it); None without a load key for the city."""
    master = context.keys.transit_load_keys.get(message.city_code)
    if master is None:
        return None
    card_key = transit_crypto.diversify_card_key(master, message.card_number)
    return transit_crypto.load_session_key(card_key, message.quote.card_random, message.quote.online_serial)


def _check_load(message: TransitLoad, seslk: bytes | None) -> tuple[str, str] | None:
    """(rc, why) when the request must be refused; None when MAC1 proves the card's quote."""
    quote = message.quote
    if seslk is None:
        return "92", "no load key for this city"
    if quote.algorithm != 0x00:
        return "88", "unsupported algorithm"
    expected = transit_crypto.load_mac1(seslk, quote.balance, message.amount, epurse.TXN_EP_LOAD, message.terminal_id)
    if not hmac.compare_digest(expected, quote.mac1):
        return "88", "MAC1 does not verify"
    if quote.balance + message.amount > epurse.PURSE_LIMIT:
        return "13", "the balance would pass the purse limit"
    return None


def _settle_earlier(connection: sqlite3.Connection, card_hash: str, serial: int, now: str) -> str | None:
    """Apply the serial rule to this card's earlier loads; returns a reason to refuse, or None."""
    if transit_loads.counted_from(connection, card_hash, serial):
        return "a load at this serial was already credited"
    transit_loads.void_authorized(connection, card_hash, serial, now)
    transit_loads.credit_authorized_below(connection, card_hash, serial, now)
    return None


def _replayed(context: Context, table: str, message: TransitLoad | TransitLoadConfirmation, local_date: str,
              digest: str) -> str | None:
    """Spend the nonce; the stored answer of a retransmission (94 for other content under its key), else None."""
    open_request(context)
    return stored_answer(context, answers.find(context.connection, table, message.tid, message.stan, local_date),
                         digest, message.mti, message.stan)


def load(context: Context, message: TransitLoad, digest: str) -> str:
    """A load request: MAC1 checked, earlier loads of the card settled by the serial rule, MAC2 answered."""
    local_date = resolve_mmdd(message.local_date, context.today)
    with deciding(context) as context:
        connection = context.connection
        stored = _replayed(context, "transit_loads", message, local_date.isoformat(), digest)
        if stored is not None:
            return stored
        seslk = _session_key(context, message)
        refused = _check_load(message, seslk)
        if refused is not None:
            return _refuse(context, message, *refused)
        card_hash = context.vault.pan_hash(message.card_number)
        transit_loads.lock_card(connection, card_hash)
        now = context.now.isoformat()
        quote = message.quote
        why = _settle_earlier(connection, card_hash, quote.online_serial, now)
        if why is not None:
            return _refuse(context, message, "63", why)
        date_time = f"{context.now:%Y%m%d%H%M%S}"
        assert seslk is not None  # _check_load refused a city without a load key
        mac2 = transit_crypto.load_mac2(seslk, message.amount, epurse.TXN_EP_LOAD, message.terminal_id,
                                        bytes.fromhex(date_time))
        text = LoadAnswer(response_mti(message.mti), "00", response_text("00"), message.stan, message.amount,
                          mac2=mac2.hex().upper(), date_time=date_time).to_json()
        masked = mask_pan(message.card_number)
        transit_loads.add(connection, {
            "tid": message.tid, "stan": message.stan, "local_date": local_date.isoformat(), "request_hash": digest,
            "city_code": message.city_code, "card_hash": card_hash, "card_masked": masked,
            "online_serial": quote.online_serial, "balance_before": quote.balance, "amount": message.amount,
            "terminal_id": message.terminal_id.hex().upper(), "date_time": date_time, "state": "authorized",
            "response": text, "created": now, "updated": now})
        record_event(context, "transit_load", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                               "pan": masked, "amount": message.amount, "rc": "00",
                                               "text": "load authorized", "latency_ms": context.latency_ms()})
    return text


def confirm(context: Context, message: TransitLoadConfirmation, digest: str) -> str:
    """A load confirmation: the TAC checked against what was authorized; the load counted `completed`, once."""
    local_date = resolve_mmdd(message.local_date, context.today)
    original_date = resolve_mmdd(message.original_local_date, context.today)
    with deciding(context) as context:
        connection = context.connection
        stored = _replayed(context, "transit_load_confirmations", message, local_date.isoformat(), digest)
        if stored is not None:
            return stored
        card_hash = context.vault.pan_hash(message.card_number)
        transit_loads.lock_card(connection, card_hash)
        row = transit_loads.find(connection, message.tid, message.original_stan, original_date.isoformat())
        if (row is None or row.card_hash != card_hash
                or row.online_serial != message.online_serial):
            return _refuse(context, message, "12", "no such load")
        tac_master = context.keys.transit_tac_keys.get(row.city_code)
        if tac_master is None:
            return _refuse(context, message, "92", "no TAC key for this city")
        expected = transit_crypto.load_tac(
            transit_crypto.diversify_card_key(tac_master, message.card_number), row.balance_before + row.amount,
            row.online_serial, row.amount, epurse.TXN_EP_LOAD, bytes.fromhex(row.terminal_id),
            bytes.fromhex(row.date_time))
        if not hmac.compare_digest(expected, message.tac):
            return _refuse(context, message, "88", "the TAC does not verify")
        outcome = "already_completed" if row.state == "completed" else "completed"
        now = context.now.isoformat()
        if outcome == "completed":
            # the TAC proves the credit, whatever the serial rule had guessed
            transit_loads.complete(connection, row.id, message.tac.hex().upper(), now)
        text = LoadConfirmationAnswer(response_mti(message.mti), "00", response_text("00"), message.stan,
                                      message.original_stan, outcome).to_json()
        transit_loads.add_confirmation(connection, {
            "tid": message.tid, "stan": message.stan, "local_date": local_date.isoformat(), "request_hash": digest,
            "load_id": row.id, "response": text, "created": now})
        record_event(context, "transit_load", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                               "pan": row.card_masked, "amount": row.amount, "rc": "00",
                                               "text": f"load {outcome}", "latency_ms": context.latency_ms()})
    return text
