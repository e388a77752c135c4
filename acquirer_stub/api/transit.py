"""Transit clearing: the fares a gate's PSAM took offline, each proven by the card's TAC, cleared exactly once.

A gate uploads its journal's fares in batches and marks what was answered; a batch may come again after a lost
answer or a crash, so a fare already cleared with the same content is a *repeat* (answered as such, counted
once). The TAC is made by the card with its TAC key, which only the card issuer holds (here: the world's TAC
master key per city), over the amount, the PSAM's terminal number and serial and the time: it proves that this
card paid this fare at this gate. So a fare is refused, and nothing of it stored, when
- its TAC does not verify (altered amount or time, invented fare),
- its PSAM is not the uploading terminal's (a fare must be paid to the gate that took it),
- its card's purse transaction was already cleared with other content (a purse number counts once).
Refusals are answered per fare and shown on the dashboard's feed; the other fares of the batch are cleared.
"""

from __future__ import annotations

import datetime
import hmac

from acquirer_stub.api.service import Context, deciding, open_request, record_event
from acquirer_stub.store import transit as store
from emvcore import epurse
from emvcore.crypto.transit import diversify_card_key, purchase_tac
from emvcore.tags import mask_pan
from hostproto.messages import TransitClearing, TransitFare, psam_id
from hostproto.responses import ClearingAnswer, FareResult

CLEARED, REPEAT, REFUSED = "cleared", "repeat", "refused"


def _tac_ok(context: Context, fare: TransitFare) -> bool:
    master = context.keys.transit_tac_keys[fare.city_code]
    card_key = diversify_card_key(master, fare.card_number)
    expected = purchase_tac(card_key, fare.amount, epurse.TXN_EP_PURCHASE, bytes.fromhex(fare.psam),
                            bytes.fromhex(fare.terminal_serial), bytes.fromhex(fare.date_time))
    return hmac.compare_digest(expected.hex().upper(), fare.tac)


def _fare_time(fare: TransitFare) -> str:
    return datetime.datetime.strptime(fare.date_time, "%Y%m%d%H%M%S").isoformat()


def _clear(context: Context, fare: TransitFare) -> tuple[str, str | None]:
    """The fare's status and, when refused, why (words a gate's operator can act on; no card number)."""
    if fare.psam != psam_id(context.caller.tid).hex().upper():
        return REFUSED, "taken by another terminal's PSAM"
    if fare.city_code not in context.keys.transit_tac_keys:
        return REFUSED, f"no transit card issuer for city {fare.city_code}"
    if not _tac_ok(context, fare):
        return REFUSED, "the TAC does not verify"
    card_hash = context.vault.pan_hash(fare.card_number)
    cleared = store.find_fare(context.connection, card_hash, fare.offline_serial)
    if cleared is not None:
        same = (cleared.amount, cleared.psam, cleared.terminal_serial, cleared.fare_time, cleared.tac) == (
            fare.amount, fare.psam, fare.terminal_serial, _fare_time(fare), fare.tac)
        return (REPEAT, None) if same else (REFUSED, "the card's purse transaction was already cleared")
    store.add_fare(context.connection, store.ClearedFare(
        tid=context.caller.tid, psam=fare.psam, city_code=fare.city_code, card_hash=card_hash,
        card_masked=mask_pan(fare.card_number), offline_serial=fare.offline_serial, amount=fare.amount,
        terminal_serial=fare.terminal_serial, fare_time=_fare_time(fare), tac=fare.tac,
        received=context.now.isoformat()))
    return CLEARED, None


def clear_fares(context: Context, message: TransitClearing) -> str:
    """Every fare of the batch decided in one transaction with its answer: all of it stands, or none. A decision
    like a sale's (the gate's row locked first; a fare cleared twice at once is the unique key's Conflict, and the
    retry answers it as a repeat)."""
    with deciding(context) as context:
        open_request(context)
        results = []
        for fare in message.fares:
            status, reason = _clear(context, fare)
            results.append(FareResult(status, reason))
            if status == REFUSED:
                record_event(context, "transit_refused", {
                    "tid": message.tid, "city": fare.city_code, "card": mask_pan(fare.card_number),
                    "amount": fare.amount, "text": f"fare refused: {reason}"})
        counts = {status: sum(1 for r in results if r.status == status) for status in (CLEARED, REPEAT, REFUSED)}
        amount = sum(f.amount for f, r in zip(message.fares, results, strict=True) if r.status == CLEARED)
        record_event(context, "transit_clearing", {
            "tid": message.tid, "amount": amount, **counts, "latency_ms": context.latency_ms(),
            "text": f"transit clearing: {counts[CLEARED]} fare(s) cleared, {counts[REPEAT]} repeat(s), "
                    f"{counts[REFUSED]} refused"})
    return ClearingAnswer("00", "Transit fares received", **counts, amount=amount, results=tuple(results)).to_json()
