"""What each terminal message does to the database, decided and recorded in one write transaction.

The rule everywhere (acquirer.md §10): the decision, its effects (money, ATC, batch) and the exact response
text are committed together under BEGIN IMMEDIATE before the answer leaves, so a crash can lose an answer
but never leave money moved without its stored response. A retransmission (same idempotency key, same
canonical body) gets those stored bytes back; different content under the key gets 94 and changes nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from acquirer_stub import exception_queue
from acquirer_stub.api.security import Caller, remember_nonce
from acquirer_stub.issuer import engine
from acquirer_stub.keys import KeyStore
from acquirer_stub.store import events
from acquirer_stub.store.db import transaction
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


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


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


def record_event(context: Context, kind: str, body: dict[str, Any]) -> None:
    events.record(context.connection, kind, body, at=context.now)


def open_request(context: Context) -> sqlite3.Row:
    """Spend the nonce and note that the terminal was seen: every accepted request does both, in its transaction."""
    remember_nonce(context.connection, context.caller)
    context.connection.execute("UPDATE terminals SET last_seen = ? WHERE tid = ?",
                               (context.now.isoformat(), context.caller.tid))
    return context.connection.execute("SELECT * FROM terminals WHERE tid = ?", (context.caller.tid,)).fetchone()


def stored_answer(context: Context, table: str, where: str, key: tuple[Any, ...], digest: str, mti: str,
                  stan: str) -> str | None:
    """The stored answer for a retransmission, the 94 answer for a conflicting one, or None for a new request."""
    row = context.connection.execute(f"SELECT request_hash, response FROM {table} WHERE {where}", key).fetchone()
    if row is None:
        return None
    if row["request_hash"] == digest:
        record_event(context, "retransmission", {"tid": context.caller.tid, "stan": stan, "mti": mti,
                                                 "latency_ms": context.latency_ms()})
        return str(row["response"])
    record_event(context, "duplicate", {"tid": context.caller.tid, "stan": stan, "mti": mti, "rc": "94",
                                        "text": response_text("94"), "latency_ms": context.latency_ms()})
    return dumps({"mti": response_mti(mti), "rc": "94", "text": response_text("94"), "stan": stan})


def _rrn(context: Context) -> str:
    """12 digits (DE37): year, day of year and the next row number, unique without another table."""
    next_id = context.connection.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM transactions").fetchone()[0]
    return f"{context.now:%y}{context.now.timetuple().tm_yday:03d}{next_id % 10**7:07d}"


# --- network management ----------------------------------------------------------------------------------------


def sign_on(context: Context, message: NetworkManagement) -> str:
    """0800 sign-on: a new batch number, the terminal now signed on (CUP 60.3 001)."""
    with transaction(context.connection):
        terminal = open_request(context)
        batch = terminal["batch"] % MAX_BATCH + 1
        context.connection.execute("UPDATE terminals SET batch = ?, signed_on = 1 WHERE tid = ?",
                                   (batch, context.caller.tid))
        response = {"mti": "0810", "rc": "00", "text": response_text("00"), "stan": message.stan, "batch": batch,
                    "host_time": int(context.caller.received)}
        record_event(context, "signon", {"tid": context.caller.tid, "stan": message.stan, "mti": message.mti,
                                         "rc": "00", "batch": batch, "latency_ms": context.latency_ms()})
    return dumps(response)


def echo(context: Context, message: NetworkManagement) -> str:
    """0800 echo: liveness, and the host's view of the terminal (batch, clock) so it can resynchronise."""
    with transaction(context.connection):
        terminal = open_request(context)
    return dumps({"mti": "0810", "rc": "00", "text": response_text("00"), "stan": message.stan,
                  "signed_on": bool(terminal["signed_on"]),
                  "batch": terminal["batch"] if terminal["signed_on"] else None,
                  "host_time": int(context.caller.received)})


# --- authorizations and advices ----------------------------------------------------------------------------------


def _engine_request(context: Context, message: Financial, local_date: datetime.date) -> engine.AuthorizationRequest:
    return engine.AuthorizationRequest(
        tid=message.tid, stan=message.stan, pan=message.pan, psn=message.psn, expiry=message.expiry,
        amount=message.amount, currency=message.currency, entry_mode=message.entry_mode, icc=dict(message.icc),
        local_date=local_date,
    )


def _orphan_reversal(context: Context, stan: str, local_date: datetime.date) -> bool:
    return context.connection.execute(
        "SELECT 1 FROM transactions WHERE kind = 'reversal' AND tid = ? AND original_stan = ?"
        " AND original_local_date = ? AND state = 'orphan'",
        (context.caller.tid, stan, local_date.isoformat()),
    ).fetchone() is not None


def _record(context: Context, kind: str, message: Financial, local_date: datetime.date, digest: str,
            decision: engine.Decision, *, state: str, rc: str, batch: int | None, response: dict[str, Any],
            rrn: str, auth_code: str | None, summary: str | None = None) -> tuple[str, int]:
    """Store the row and its event; returns the response text and the row's id."""
    text = dumps(response)
    pan_masked = decision.pan_masked or mask_pan(message.pan)
    latency = context.latency_ms()
    cursor = context.connection.execute(
        "INSERT INTO transactions (kind, mti, tid, stan, local_date, request_hash, state, rc, reason, amount,"
        " charged, discount, promotion_id, currency, batch, issuer, account_id, token_id, pan_masked, entry_mode,"
        " atc, ac_verified, rrn, auth_code, response, icc_masked, latency_ms, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (kind, message.mti, message.tid, message.stan, local_date.isoformat(), digest, state, rc, decision.reason,
         message.amount, response["charged"], response["discount"], decision.promotion_id, message.currency, batch,
         decision.issuer, decision.account_id, decision.token_id, pan_masked, message.entry_mode, decision.atc,
         int(decision.cryptogram_verified), rrn, auth_code, text, mask_icc(message.icc), latency,
         context.now.isoformat()),
    )
    assert cursor.lastrowid is not None
    record_event(context, kind, {"tid": message.tid, "stan": message.stan, "mti": message.mti, "pan": pan_masked,
                                 "amount": message.amount, "charged": response["charged"], "rc": rc,
                                 "text": summary or response_text(rc), "reason": decision.reason,
                                 "issuer": decision.issuer, "entry_mode": message.entry_mode, "batch": batch,
                                 "rrn": rrn, "latency_ms": latency})
    return text, cursor.lastrowid


def authorize(context: Context, message: Financial, digest: str) -> str:
    """0200/0100: terminal state (77), orphan-reversal tombstone, then the issuer engine; stored before answering."""
    local_date = resolve_mmdd(message.local_date, context.today)
    text, delay_ms = _authorize(context, message, digest, local_date)
    if delay_ms:
        time.sleep(delay_ms / 1000)  # a slow issuer: the verdict is committed, its answer comes late
    return text


def _authorize(context: Context, message: Financial, digest: str, local_date: datetime.date) -> tuple[str, int]:
    with transaction(context.connection):
        terminal = open_request(context)
        stored = stored_answer(context, "transactions",
                               "kind = 'authorization' AND tid = ? AND stan = ? AND local_date = ?",
                               (message.tid, message.stan, local_date.isoformat()), digest, message.mti, message.stan)
        if stored is not None:
            return stored, 0
        batch: int | None = message.batch
        if not terminal["signed_on"] or terminal["batch"] != message.batch:
            reason = "BATCH_MISMATCH" if terminal["signed_on"] else "NOT_SIGNED_ON"
            decision = engine.Decision("77", reason, amount=message.amount)
            batch = terminal["batch"] if terminal["signed_on"] else None
        elif _orphan_reversal(context, message.stan, local_date):
            # the terminal already reversed this sale: approving it now would charge a sale nobody completed
            decision = engine.Decision("05", "ORPHAN_REVERSAL", amount=message.amount)
        else:
            decision = engine.authorize(context.connection, context.keys, context.vault,
                                        _engine_request(context, message, local_date), now=context.now)
        approved = decision.rc == "00"
        rrn = _rrn(context)
        auth_code = f"{secrets.randbelow(10**6):06d}" if approved else None
        response: dict[str, Any] = {
            "mti": response_mti(message.mti), "rc": decision.rc, "text": response_text(decision.rc),
            "stan": message.stan, "rrn": rrn, "auth_code": auth_code, "amount": message.amount,
            "charged": decision.charged if approved else 0, "discount": decision.discount if approved else 0,
            "promotion": decision.promotion_title if approved else None, "batch": batch,
        }
        if decision.issuer_authentication_data is not None:
            response["icc"] = {"91": decision.issuer_authentication_data.hex().upper()}
        text, _ = _record(context, "authorization", message, local_date, digest, decision,
                          state="approved" if approved else "declined", rc=decision.rc, batch=batch,
                          response=response, rrn=rrn, auth_code=auth_code)
        return text, decision.delay_ms


def floor_limit(connection: sqlite3.Connection, tid: str, icc: dict[int, bytes]) -> int:
    """The terminal's offline floor limit for the advice's AID (DE55 84, else 9F06 or 4F); a terminal with none
    configured has 0: no offline sale of it is accepted without a person looking at it."""
    aid = next((bytes(icc[tag]) for tag in (0x84, 0x9F06, 0x4F) if tag in icc), None)
    limits = {row["aid"]: row["floor_limit"] for row in connection.execute(
        "SELECT aid, floor_limit FROM terminal_floor_limits WHERE tid = ?", (tid,))}
    default = limits.pop("", 0)
    return floor_limit_for(aid, default, {bytes.fromhex(key): limit for key, limit in limits.items()})


def advise(context: Context, message: Financial, digest: str) -> str:
    """0220: an offline approval that already happened. Recorded once and always acknowledged with 00 (the goods
    are gone). Money moves only for an advice the engine accepts; any other is taken as an exception (`outcome`
    and `exception` in the answer): stored with its reason, queued for an operator, kept out of clearing."""
    local_date = resolve_mmdd(message.local_date, context.today)
    connection = context.connection
    with transaction(connection):
        open_request(context)
        stored = stored_answer(context, "transactions", "kind = 'advice' AND tid = ? AND stan = ? AND local_date = ?",
                               (message.tid, message.stan, local_date.isoformat()), digest, message.mti, message.stan)
        if stored is not None:
            return stored
        decision = engine.record_offline_advice(connection, context.keys, context.vault,
                                                _engine_request(context, message, local_date), now=context.now,
                                                floor_limit=floor_limit(connection, message.tid, message.icc))
        accepted = decision.approved
        rrn = _rrn(context)
        response: dict[str, Any] = {
            "mti": response_mti(message.mti), "rc": "00", "text": response_text("00"), "stan": message.stan,
            "rrn": rrn, "amount": message.amount, "charged": decision.charged, "discount": decision.discount,
            "promotion": decision.promotion_title, "batch": message.batch,
            "outcome": "accepted" if accepted else "exception",
        }
        if not accepted:
            response["exception"] = decision.reason
        text, row_id = _record(context, "advice", message, local_date, digest, decision,
                               state="accepted" if accepted else "exception", rc="00", batch=message.batch,
                               response=response, rrn=rrn, auth_code=None,
                               summary=None if accepted else f"taken as an exception: {decision.reason}")
        if not accepted:
            exception_queue.open_item(connection, row_id, {
                "tid": message.tid, "batch": message.batch, "amount": message.amount,
                "pan_masked": decision.pan_masked or mask_pan(message.pan), "issuer": decision.issuer,
                "reason": decision.reason, "created": context.now.isoformat()})
        return text


# --- reversals -----------------------------------------------------------------------------------------------------


def _batch_settled(context: Context, tid: str, batch: int | None) -> bool:
    return batch is not None and context.connection.execute(
        "SELECT 1 FROM settlements WHERE tid = ? AND batch = ? AND balanced = 1", (tid, batch)
    ).fetchone() is not None


def reverse(context: Context, message: Reversal, digest: str) -> str:
    """0400/0420: undo the original if it was approved, else leave a tombstone; always acknowledged with 00.

    DE4 says how much of the sale to undo: all of it, or part (`partial`: that share of the charge is given
    back, and later partials may take at most what still stands). More than the sale (`exceeds_original`) or
    than what still stands (`exceeds_remaining`) moves no money."""
    local_date = resolve_mmdd(message.local_date, context.today)
    original_date = resolve_mmdd(message.original_local_date, context.today)
    connection = context.connection
    with transaction(connection):
        open_request(context)
        stored = stored_answer(context, "transactions", "kind = 'reversal' AND tid = ? AND stan = ? AND local_date = ?",
                               (message.tid, message.stan, local_date.isoformat()), digest, message.mti, message.stan)
        if stored is not None:
            return stored
        original = connection.execute(
            "SELECT * FROM transactions WHERE kind = 'authorization' AND tid = ? AND stan = ? AND local_date = ?",
            (message.tid, message.original_stan, original_date.isoformat()),
        ).fetchone()
        refund = 0
        if original is None:
            outcome = "orphan"  # the tombstone: a late original with this key will be declined
        elif original["state"] == "reversed":
            outcome = "already_reversed"
        elif original["state"] != "approved":
            outcome = "not_approved"
        elif _batch_settled(context, message.tid, original["batch"]):
            outcome = "settled"  # money already reconciled: a person has to look at it
        elif message.amount > original["amount"]:
            outcome = "exceeds_original"  # more than was sold: nothing is given back
        elif message.amount > original["amount"] - original["reversed_amount"]:
            outcome = "exceeds_remaining"  # an earlier partial reversal already gave part of it back
        else:
            refund = engine.reverse(connection, original, message.amount)
            standing = original["amount"] - original["reversed_amount"] - message.amount
            connection.execute(
                "UPDATE transactions SET reversed_amount = reversed_amount + ?, reversed_charged = reversed_charged"
                " + ?, state = ? WHERE id = ?",
                (message.amount, refund, "approved" if standing else "reversed", original["id"]),
            )
            outcome = "reversed" if message.amount == original["amount"] else "partial"
        response = {"mti": response_mti(message.mti), "rc": "00", "text": response_text("00"), "stan": message.stan,
                    "original_stan": message.original_stan, "outcome": outcome}
        text = dumps(response)
        latency = context.latency_ms()
        found = original is not None
        connection.execute(
            "INSERT INTO transactions (kind, mti, tid, stan, local_date, request_hash, state, rc, reason, amount,"
            " charged, batch, issuer, account_id, token_id, pan_masked, original_stan, original_local_date, response,"
            " latency_ms, created) VALUES ('reversal', ?, ?, ?, ?, ?, ?, '00', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message.mti, message.tid, message.stan, local_date.isoformat(), digest, outcome, message.reason,
             message.amount, refund, original["batch"] if found else None, original["issuer"] if found else None,
             original["account_id"] if found else None, original["token_id"] if found else None,
             original["pan_masked"] if found else None, message.original_stan, original_date.isoformat(), text,
             latency, context.now.isoformat()),
        )
        record_event(context, "reversal", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                           "original_stan": message.original_stan,
                                           "pan": original["pan_masked"] if found else None, "amount": message.amount,
                                           "rc": "00", "text": response_text("00"), "reason": message.reason,
                                           "outcome": outcome, "latency_ms": latency})
    return text


# --- settlement ----------------------------------------------------------------------------------------------------


def host_totals(connection: sqlite3.Connection, tid: str, batch: int) -> Totals:
    """Sales still standing in the batch: approved authorizations less what was reversed of them, plus every
    offline advice, exceptions included (the terminal approved those itself and rightly counts them; the
    settlement shows them as their own figure). Refunds and voids (the credit side) do not exist in this API yet."""
    count, amount = connection.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount - reversed_amount), 0) FROM transactions WHERE tid = ? AND batch = ?"
        " AND ((kind = 'authorization' AND state = 'approved') OR kind = 'advice')",
        (tid, batch),
    ).fetchone()
    return Totals(debit_count=count, debit_amount=amount, credit_count=0, credit_amount=0)


def batch_figures(connection: sqlite3.Connection, tid: str, batch: int) -> dict[str, dict[str, int]]:
    """The host's totals split in two: accepted (money moved, cleared) and exceptions (queued, not cleared)."""
    host = host_totals(connection, tid, batch)
    exceptions = exception_queue.batch_exceptions(connection, tid, batch)
    accepted = exception_queue.Figures(host.debit_count - exceptions.count, host.debit_amount - exceptions.amount)
    return {"accepted": accepted.as_dict(), "exceptions": exceptions.as_dict()}


def settle(context: Context, message: Settlement, digest: str) -> str:
    """0500: compare the terminal's totals with the host's; balanced (1) closes the batch, not balanced (2)
    leaves it open for the terminal to find the difference (batch upload) and settle again."""
    local_date = resolve_mmdd(message.local_date, context.today)
    connection = context.connection
    with transaction(connection):
        terminal = open_request(context)
        stored = stored_answer(context, "settlements", "tid = ? AND stan = ? AND local_date = ?",
                               (message.tid, message.stan, local_date.isoformat()), digest, message.mti, message.stan)
        if stored is not None:
            return stored
        if not terminal["signed_on"] or terminal["batch"] != message.batch:
            # nothing to reconcile: not stored, so the same request may be retried after a sign-on
            record_event(context, "settlement", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                                 "batch": message.batch, "rc": "77", "text": response_text("77"),
                                                 "latency_ms": context.latency_ms()})
            return dumps({"mti": "0510", "rc": "77", "text": response_text("77"), "stan": message.stan,
                          "batch": terminal["batch"] if terminal["signed_on"] else None})
        host = host_totals(connection, message.tid, message.batch)
        figures = batch_figures(connection, message.tid, message.batch)
        balanced = host == message.totals
        response = {"mti": "0510", "rc": "00", "text": response_text("00"), "stan": message.stan,
                    "batch": message.batch, "balanced": balanced, "reconciliation": "1" if balanced else "2",
                    "host_totals": host.as_dict(), **figures}
        text = dumps(response)
        connection.execute(
            "INSERT INTO settlements (tid, batch, terminal_totals, host_totals, balanced, created, stan, local_date,"
            " request_hash, response, figures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (message.tid, message.batch, dumps(message.totals.as_dict()), dumps(host.as_dict()), int(balanced),
             context.now.isoformat(), message.stan, local_date.isoformat(), digest, text,
             dumps(figures)),
        )
        if balanced:
            connection.execute("UPDATE terminals SET signed_on = 0 WHERE tid = ?", (message.tid,))
        record_event(context, "settlement", {"tid": message.tid, "stan": message.stan, "mti": message.mti,
                                             "batch": message.batch, "rc": "00", "balanced": balanced,
                                             "terminal_totals": message.totals.as_dict(), "host_totals": host.as_dict(),
                                             **figures, "latency_ms": context.latency_ms()})
    return text
