"""What each terminal message does to the database, decided and recorded in one write transaction.

The rule everywhere (acquirer.md §10): the decision, its effects (money, ATC, batch) and the exact response
text are committed together under BEGIN IMMEDIATE before the answer leaves, so a crash can lose an answer
but never leave money moved without its stored response. A retransmission (same idempotency key, same
canonical body) gets those stored bytes back; different content under the key gets 94 and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from acquirer_stub import exception_queue
from acquirer_stub.api.security import Caller, remember_nonce
from acquirer_stub.issuer import engine
from acquirer_stub.keys import KeyStore
from acquirer_stub.store import answers, events, settlements, terminals, transactions
from acquirer_stub.store.answers import StoredAnswer
from acquirer_stub.store.db import transaction
from acquirer_stub.store.terminals import Terminal
from acquirer_stub.vault import Vault
from emvcore.tags import mask_pan, tag_info
from hostproto.limits import floor_limit_for
from hostproto.messages import (
    Financial,
    NetworkManagement,
    Reversal,
    Settlement,
    Totals,
    resolve_mmdd,
    response_mti,
    response_text,
)
from hostproto.responses import (
    AdviceAnswer,
    AuthorizationAnswer,
    EchoAnswer,
    Figures,
    Refusal,
    ReversalAnswer,
    SettlementAnswer,
    SettlementRefusal,
    SignOnAnswer,
    dumps,
)

MAX_BATCH = 999_999


@dataclass(frozen=True)
class Context:
    """Everything one request's decision may use; built by the view, so this module needs no Flask."""

    connection: sqlite3.Connection
    keys: KeyStore
    vault: Vault
    caller: Caller
    now: datetime.datetime  # aware, host local time: its date is the business day
    started: float  # perf_counter() when the request arrived, for the latency figure

    @property
    def today(self) -> datetime.date:
        return self.now.date()

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)


def request_hash(body: dict[str, Any]) -> str:
    """Hash of the body's content, not its bytes: key order, spacing and the repeat digit of the MTI
    (0221 re-sends 0220, 0401/0421 re-send 0400/0420) do not make a retransmission "different"."""
    canonical = dict(body)
    mti = canonical.get("mti")
    if isinstance(mti, str) and len(mti) == 4:
        canonical["mti"] = mti[:3] + "0"
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def mask_icc(icc: dict[int, bytes]) -> str:
    """DE55 as it may be stored: without the PAN (5A), track 2 (57) or anything else the tag table calls secret."""
    kept = {f"{tag:X}": value.hex().upper() for tag, value in sorted(icc.items())
            if tag not in (0x57, 0x5A) and tag_info(tag).secret is None}
    return dumps(kept)


def mask_request(message: Financial | Reversal) -> str:
    """The request as received, as it may be stored (the dashboard shows it beside the response): the card number
    masked (as `pan_masked`), the expiry date left out, DE55 as `mask_icc` keeps it."""
    fields = {("pan_masked" if field.name == "pan" else field.name): getattr(message, field.name)
              for field in dataclasses.fields(message)}
    if "pan_masked" in fields:
        fields["pan_masked"] = mask_pan(fields["pan_masked"])
    if "expiry" in fields:
        fields["expiry"] = "****"
    if "icc" in fields:
        fields["icc"] = json.loads(mask_icc(fields["icc"]))
    return dumps(fields)


def record_event(context: Context, kind: str, body: dict[str, Any]) -> None:
    events.record(context.connection, kind, body, at=context.now)


@contextlib.contextmanager
def deciding(context: Context) -> Iterator[Context]:
    """The decision's transaction, and the context to decide in: its connection is the transaction's (on SQLite
    the group commit's, see `store.db.transaction`)."""
    with transaction(context.connection, serial=False) as connection:
        yield dataclasses.replace(context, connection=connection)


def open_request(context: Context) -> Terminal:
    """Note that the terminal was seen and spend the nonce: every accepted request does both, in its transaction.

    Seen first: on PostgreSQL that update locks the terminal's row until the decision commits, so one terminal's
    requests are decided one after another whichever process takes them (the same STAN at two processes: the
    second finds the first's stored answer)."""
    terminal = terminals.seen_and_find(context.connection, context.caller.tid, context.now.isoformat())
    assert terminal is not None  # the signature check found it
    remember_nonce(context.connection, context.caller)
    return terminal


def stored_answer(context: Context, stored: StoredAnswer | None, digest: str, mti: str, stan: str) -> str | None:
    """The stored answer for a retransmission, the 94 answer for a conflicting one, or None for a new request."""
    if stored is None:
        return None
    if stored.request_hash == digest:
        record_event(context, "retransmission", {"tid": context.caller.tid, "stan": stan, "mti": mti,
                                                 "latency_ms": context.latency_ms()})
        return stored.response
    record_event(context, "duplicate", {"tid": context.caller.tid, "stan": stan, "mti": mti, "rc": "94",
                                        "text": response_text("94"), "latency_ms": context.latency_ms()})
    return Refusal(response_mti(mti), "94", response_text("94"), stan).to_json()


def _rrn(context: Context) -> tuple[int, str]:
    """The new row's id and its RRN: 12 digits (DE37), year, day of year and the row's id, unique without another
    table."""
    row_id = transactions.reserve_id(context.connection)
    return row_id, f"{context.now:%y}{context.now.timetuple().tm_yday:03d}{row_id % 10**7:07d}"


# --- network management ----------------------------------------------------------------------------------------


def sign_on(context: Context, message: NetworkManagement) -> str:
    """0800 sign-on: a new batch number, the terminal now signed on (CUP 60.3 001)."""
    with deciding(context) as context:
        terminal = open_request(context)
        batch = terminal.batch % MAX_BATCH + 1
        terminals.sign_on(context.connection, context.caller.tid, batch)
        response = SignOnAnswer("0810", "00", response_text("00"), message.stan, batch, int(context.caller.received))
        record_event(context, "signon", {"tid": context.caller.tid, "stan": message.stan, "mti": message.mti,
                                         "rc": "00", "batch": batch, "latency_ms": context.latency_ms()})
    return response.to_json()


def echo(context: Context, message: NetworkManagement) -> str:
    """0800 echo: liveness, and the host's view of the terminal (batch, clock) so it can resynchronise."""
    with deciding(context) as context:
        terminal = open_request(context)
        if message.health is not None:
            terminals.record_health(context.connection, message.tid, dumps(message.health.as_dict()),
                                    context.now.isoformat())
    return EchoAnswer("0810", "00", response_text("00"), message.stan, signed_on=bool(terminal.signed_on),
                      batch=terminal.batch if terminal.signed_on else None,
                      host_time=int(context.caller.received)).to_json()


# --- authorizations and advices ----------------------------------------------------------------------------------


def _record(context: Context, kind: str, message: Financial, local_date: datetime.date, digest: str,
            decision: engine.Decision, *, state: str, rc: str, batch: int | None,
            response: AuthorizationAnswer | AdviceAnswer, row_id: int, rrn: str, auth_code: str | None,
            summary: str | None = None) -> str:
    """Store the row (with the id its RRN was made of) and its event; returns the response text."""
    text = response.to_json()
    pan_masked = decision.pan_masked or mask_pan(message.pan)
    latency = context.latency_ms()
    transactions.add_with_event(context.connection, {
        "id": row_id, "kind": kind, "mti": message.mti, "tid": message.tid, "stan": message.stan,
        "local_date": local_date.isoformat(), "request_hash": digest, "state": state, "rc": rc,
        "reason": decision.reason, "amount": message.amount, "charged": response.charged,
        "discount": response.discount, "promotion_id": decision.promotion_id, "currency": message.currency,
        "batch": batch, "issuer": decision.issuer, "account_id": decision.account_id, "token_id": decision.token_id,
        "pan_masked": pan_masked, "entry_mode": message.entry_mode, "atc": decision.atc,
        "ac_verified": int(decision.cryptogram_verified), "rrn": rrn, "auth_code": auth_code, "response": text,
        "icc_masked": mask_icc(message.icc), "request_masked": mask_request(message), "latency_ms": latency,
        "created": context.now.isoformat()},
        kind, {"tid": message.tid, "stan": message.stan, "mti": message.mti, "pan": pan_masked,
               "amount": message.amount, "charged": response.charged, "rc": rc, "text": summary or response_text(rc),
               "reason": decision.reason, "issuer": decision.issuer, "entry_mode": message.entry_mode, "batch": batch,
               "rrn": rrn, "latency_ms": latency}, at=context.now)
    return text


def authorize(context: Context, message: Financial, digest: str) -> str:
    """0200/0100: terminal state (77), orphan-reversal tombstone, then the issuer engine; stored before answering."""
    local_date = resolve_mmdd(message.local_date, context.today)
    text, delay_ms = _authorize(context, message, digest, local_date)
    if delay_ms:
        time.sleep(delay_ms / 1000)  # a slow issuer: the verdict is committed, its answer comes late
    return text


def _authorize(context: Context, message: Financial, digest: str, local_date: datetime.date) -> tuple[str, int]:
    with deciding(context) as context:
        terminal = open_request(context)
        found, orphaned = transactions.authorization_key(context.connection, message.tid, message.stan,
                                                         local_date.isoformat())
        stored = stored_answer(context, found, digest, message.mti, message.stan)
        if stored is not None:
            return stored, 0
        batch: int | None = message.batch
        if not terminal.signed_on or terminal.batch != message.batch:
            reason = "BATCH_MISMATCH" if terminal.signed_on else "NOT_SIGNED_ON"
            decision = engine.Decision("77", reason, amount=message.amount)
            batch = terminal.batch if terminal.signed_on else None
        elif orphaned:
            # the terminal already reversed this sale: approving it now would charge a sale nobody completed
            decision = engine.Decision("05", "ORPHAN_REVERSAL", amount=message.amount)
        else:
            decision = engine.authorize(context.connection, context.keys, context.vault, message, now=context.now)
        approved = decision.rc == "00"
        row_id, rrn = _rrn(context)
        auth_code = f"{secrets.randbelow(10**6):06d}" if approved else None
        arpc = decision.issuer_authentication_data
        response = AuthorizationAnswer(
            response_mti(message.mti), decision.rc, response_text(decision.rc), message.stan, rrn=rrn,
            auth_code=auth_code, amount=message.amount, charged=decision.charged if approved else 0,
            discount=decision.discount if approved else 0,
            promotion=decision.promotion_title if approved else None, batch=batch,
            icc=None if arpc is None else {"91": arpc.hex().upper()})
        text = _record(context, "authorization", message, local_date, digest, decision,
                       state="approved" if approved else "declined", rc=decision.rc, batch=batch,
                       response=response, row_id=row_id, rrn=rrn, auth_code=auth_code)
        return text, decision.delay_ms


def floor_limit(connection: sqlite3.Connection, tid: str, icc: dict[int, bytes]) -> int:
    """The terminal's offline floor limit for the advice's AID (DE55 84, else 9F06 or 4F); a terminal with none
    configured has 0: no offline sale of it is accepted without a person looking at it."""
    aid = next((bytes(icc[tag]) for tag in (0x84, 0x9F06, 0x4F) if tag in icc), None)
    limits = terminals.floor_limits(connection, tid)
    default = limits.pop("", 0)
    return floor_limit_for(aid, default, {bytes.fromhex(key): limit for key, limit in limits.items()})


def advise(context: Context, message: Financial, digest: str) -> str:
    """0220: an offline approval that already happened. Recorded once and always acknowledged with 00 (the goods
    are gone). Money moves only for an advice the engine accepts; any other is taken as an exception (`outcome`
    and `exception` in the answer): stored with its reason, queued for an operator, kept out of clearing."""
    local_date = resolve_mmdd(message.local_date, context.today)
    with deciding(context) as context:
        connection = context.connection
        open_request(context)
        stored = stored_answer(context, answers.find(connection, "transactions", message.tid, message.stan,
                                                     local_date.isoformat(), kind="advice"),
                               digest, message.mti, message.stan)
        if stored is not None:
            return stored
        decision = engine.record_offline_advice(connection, context.keys, context.vault, message,
                                                sale_date=local_date,
                                                floor_limit=floor_limit(connection, message.tid, message.icc))
        accepted = decision.approved
        row_id, rrn = _rrn(context)
        response = AdviceAnswer(
            response_mti(message.mti), "00", response_text("00"), message.stan, rrn=rrn, amount=message.amount,
            charged=decision.charged, discount=decision.discount, promotion=decision.promotion_title,
            batch=message.batch, outcome="accepted" if accepted else "exception",
            exception=None if accepted else decision.reason)
        text = _record(context, "advice", message, local_date, digest, decision,
                       state="accepted" if accepted else "exception", rc="00", batch=message.batch,
                       response=response, row_id=row_id, rrn=rrn, auth_code=None,
                       summary=None if accepted else f"taken as an exception: {decision.reason}")
        if not accepted:
            exception_queue.open_item(connection, row_id, {
                "tid": message.tid, "batch": message.batch, "amount": message.amount,
                "pan_masked": decision.pan_masked or mask_pan(message.pan), "issuer": decision.issuer,
                "reason": decision.reason, "created": context.now.isoformat()})
        return text


# --- reversals -----------------------------------------------------------------------------------------------------


def _batch_settled(context: Context, tid: str, batch: int | None) -> bool:
    return batch is not None and settlements.balanced(context.connection, tid, batch)


def reverse(context: Context, message: Reversal, digest: str) -> str:
    """0400/0420: undo the original if it was approved, else leave a tombstone; always acknowledged with 00.

    DE4 says how much of the sale to undo: all of it, or part (`partial`: that share of the charge is given
    back, and later partials may take at most what still stands). More than the sale (`exceeds_original`) or
    than what still stands (`exceeds_remaining`) moves no money."""
    local_date = resolve_mmdd(message.local_date, context.today)
    original_date = resolve_mmdd(message.original_local_date, context.today)
    with deciding(context) as context:
        connection = context.connection
        open_request(context)
        stored = stored_answer(context, answers.find(connection, "transactions", message.tid, message.stan,
                                                     local_date.isoformat(), kind="reversal"),
                               digest, message.mti, message.stan)
        if stored is not None:
            return stored
        original = transactions.authorization(connection, message.tid, message.original_stan,
                                              original_date.isoformat())
        refund = 0
        if original is None:
            outcome = "orphan"  # the tombstone: a late original with this key will be declined
        elif original.state == "reversed":
            outcome = "already_reversed"
        elif original.state != "approved":
            outcome = "not_approved"
        elif _batch_settled(context, message.tid, original.batch):
            outcome = "settled"  # money already reconciled: a person has to look at it
        elif message.amount > original.amount:
            outcome = "exceeds_original"  # more than was sold: nothing is given back
        elif message.amount > original.amount - original.reversed_amount:
            outcome = "exceeds_remaining"  # an earlier partial reversal already gave part of it back
        else:
            refund = engine.reverse(connection, original, message.amount)
            standing = original.amount - original.reversed_amount - message.amount
            transactions.mark_reversed(connection, original.id, message.amount, refund,
                                       "approved" if standing else "reversed")
            outcome = "reversed" if message.amount == original.amount else "partial"
        text = ReversalAnswer(response_mti(message.mti), "00", response_text("00"), message.stan,
                              message.original_stan, outcome).to_json()
        latency = context.latency_ms()
        transactions.add(connection, {
            "kind": "reversal", "mti": message.mti, "tid": message.tid, "stan": message.stan,
            "local_date": local_date.isoformat(), "request_hash": digest, "state": outcome, "rc": "00",
            "reason": message.reason, "amount": message.amount, "charged": refund,
            "batch": original.batch if original else None, "issuer": original.issuer if original else None,
            "account_id": original.account_id if original else None,
            "token_id": original.token_id if original else None,
            "pan_masked": original.pan_masked if original else None, "original_stan": message.original_stan,
            "original_local_date": original_date.isoformat(), "response": text, "latency_ms": latency,
            "request_masked": mask_request(message), "created": context.now.isoformat()})
        record_event(context, "reversal", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                           "original_stan": message.original_stan,
                                           "pan": original.pan_masked if original else None, "amount": message.amount,
                                           "rc": "00", "text": response_text("00"), "reason": message.reason,
                                           "outcome": outcome, "latency_ms": latency})
    return text


# --- settlement ----------------------------------------------------------------------------------------------------


def host_totals(connection: sqlite3.Connection, tid: str, batch: int) -> Totals:
    """Sales still standing in the batch: approved authorizations less what was reversed of them, plus every
    offline advice, exceptions included (the terminal approved those itself and rightly counts them; the
    settlement shows them as their own figure). Refunds and voids (the credit side) do not exist in this API yet."""
    count, amount = transactions.batch_debits(connection, tid, batch)
    return Totals(debit_count=count, debit_amount=amount, credit_count=0, credit_amount=0)


def batch_figures(connection: sqlite3.Connection, tid: str, batch: int) -> dict[str, dict[str, int]]:
    """The host's totals split in two: accepted (money moved, cleared) and exceptions (queued, not cleared)."""
    host = host_totals(connection, tid, batch)
    exceptions = exception_queue.batch_exceptions(connection, tid, batch)
    accepted = Figures(host.debit_count - exceptions.count, host.debit_amount - exceptions.amount)
    return {"accepted": accepted.as_dict(), "exceptions": exceptions.as_dict()}


def settle(context: Context, message: Settlement, digest: str) -> str:
    """0500: compare the terminal's totals with the host's; balanced (1) closes the batch, not balanced (2)
    leaves it open for the terminal to find the difference (batch upload) and settle again."""
    local_date = resolve_mmdd(message.local_date, context.today)
    with deciding(context) as context:
        connection = context.connection
        terminal = open_request(context)
        stored = stored_answer(context, answers.find(connection, "settlements", message.tid, message.stan,
                                                     local_date.isoformat()),
                               digest, message.mti, message.stan)
        if stored is not None:
            return stored
        if not terminal.signed_on or terminal.batch != message.batch:
            # nothing to reconcile: not stored, so the same request may be retried after a sign-on
            record_event(context, "settlement", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                                 "batch": message.batch, "rc": "77", "text": response_text("77"),
                                                 "latency_ms": context.latency_ms()})
            return SettlementRefusal("0510", "77", response_text("77"), message.stan,
                                     terminal.batch if terminal.signed_on else None).to_json()
        host = host_totals(connection, message.tid, message.batch)
        figures = batch_figures(connection, message.tid, message.batch)
        balanced = host == message.totals
        text = SettlementAnswer("0510", "00", response_text("00"), message.stan, message.batch, balanced,
                                reconciliation="1" if balanced else "2", host_totals=host,
                                accepted=Figures(**figures["accepted"]),
                                exceptions=Figures(**figures["exceptions"])).to_json()
        settlements.add(connection, {
            "tid": message.tid, "batch": message.batch, "terminal_totals": dumps(message.totals.as_dict()),
            "host_totals": dumps(host.as_dict()), "balanced": int(balanced), "created": context.now.isoformat(),
            "stan": message.stan, "local_date": local_date.isoformat(), "request_hash": digest, "response": text,
            "figures": dumps(figures)})
        if balanced:
            terminals.sign_off(connection, message.tid)
        record_event(context, "settlement", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                             "batch": message.batch, "rc": "00", "balanced": balanced,
                                             "terminal_totals": message.totals.as_dict(), "host_totals": host.as_dict(),
                                             **figures, "latency_ms": context.latency_ms()})
    return text
