"""The terminal's conversation with the acquirer: sign-on, sales, reversals, advices and settlement, each
step written to the journal before the host can act on it (acquirer.md §10).

The rules it keeps:

* write ahead: a sale is INTENT in the journal before its request leaves;
* a sale whose answer is lost (timeout, connection lost, 5xx) is reversed with reason 98: at once if the host
  answers, and in any case before the next authorization (CUP 自动冲正) — a sale never goes out while a
  reversal is unacknowledged;
* offline approvals are queued first and forwarded when the host answers (store-and-forward);
* settlement sends every queued item first, then the journal's totals; a balanced batch is closed and a new
  one opened by signing on again.

Reversal and advice resends are safe because the host is idempotent on (TID, STAN, date): a repeat (0401 /
0221) of a message it already processed gets the stored answer back and moves no money.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hostproto.messages import Health, Totals, psam_id
from hostproto.responses import (
    AdviceAnswer,
    AuthorizationAnswer,
    EchoAnswer,
    MessageError,
    Refusal,
    ReversalAnswer,
    SettlementAnswer,
    parse_advice_answer,
    parse_authorization_answer,
    parse_echo_answer,
    parse_reversal_answer,
    parse_settlement_answer,
    parse_signon_answer,
)
from terminal.host.clearing import ClearingResult, clear_fares
from terminal.host.client import HostClient, HostError, HostRejected, HostUnavailable, read_answer, summarize
from terminal.journal.crashpoints import crash_point
from terminal.journal.journal import EntryId, Journal, PendingItem, SaleId

__all__ = ["AdviceReceipt", "FlushResult", "HostAnswer", "HostLink", "LinkStatus", "SettlementResult"]

log = logging.getLogger("terminal.host")

SIGNON = "/api/v1/signon"
ECHO = "/api/v1/echo"
AUTHORIZATIONS = "/api/v1/authorizations"
ADVICES = "/api/v1/advices"
REVERSALS = "/api/v1/reversals"
SETTLEMENTS = "/api/v1/settlements"

_LINK_FIELDS = ("tid", "stan", "local_date", "batch")  # assigned here, never by the kernel

OUTCOME_APPROVED = "approved"
OUTCOME_DECLINED = "declined"
OUTCOME_NO_ANSWER = "no answer"  # the request may have been processed: reversal 98 queued
OUTCOME_UNAVAILABLE = "unavailable"  # nothing was sent (host unreachable, or a reversal still pending)
OUTCOME_REJECTED = "rejected"  # the host refused the message (4xx): nothing stored there


@dataclass(frozen=True)
class HostAnswer:
    """What the kernel needs from an online authorization; `approved` is the only thing it may act on."""

    outcome: str
    rc: str | None
    text: str
    approved: bool
    charged: int
    discount: int
    promotion: str | None
    rrn: str | None
    auth_code: str | None
    issuer_authentication_data: str | None  # hex of tag 91 (ARPC ‖ ARC), for the card if it is still there
    raw: dict[str, Any] = field(default_factory=dict)
    stan: str | None = None
    sale_id: SaleId | None = None

    @classmethod
    def from_host(cls, answer: AuthorizationAnswer | Refusal, raw: Mapping[str, Any], sale_id: SaleId) -> HostAnswer:
        """The parsed answer (a 94 `Refusal` is a decline); `raw` is what the host sent, for the journal."""
        if isinstance(answer, Refusal):
            return cls(outcome=OUTCOME_DECLINED, rc=answer.rc, text=answer.text, approved=False, charged=0,
                       discount=0, promotion=None, rrn=None, auth_code=None, issuer_authentication_data=None,
                       raw=dict(raw), stan=answer.stan, sale_id=sale_id)
        approved = answer.rc == "00"
        return cls(
            outcome=OUTCOME_APPROVED if approved else OUTCOME_DECLINED, rc=answer.rc, text=answer.text,
            approved=approved, charged=answer.charged, discount=answer.discount, promotion=answer.promotion,
            rrn=answer.rrn, auth_code=answer.auth_code,
            issuer_authentication_data=answer.issuer_authentication_data, raw=dict(raw), stan=answer.stan,
            sale_id=sale_id,
        )

    @classmethod
    def without_answer(cls, outcome: str, text: str, *, stan: str | None = None,
                       sale_id: SaleId | None = None) -> HostAnswer:
        return cls(outcome=outcome, rc=None, text=text, approved=False, charged=0, discount=0, promotion=None,
                   rrn=None, auth_code=None, issuer_authentication_data=None, raw={}, stan=stan, sale_id=sale_id)


@dataclass(frozen=True)
class AdviceReceipt:
    entry_id: EntryId
    stan: str
    delivered: bool  # False: queued, `flush()` forwards it when the host answers


@dataclass(frozen=True)
class FlushResult:
    sent: int
    remaining: int
    error: str | None  # why sending stopped, when it did

    @property
    def complete(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class SettlementResult:
    batch: int
    rc: str
    balanced: bool
    terminal_totals: Totals
    host_totals: Totals | None
    new_batch: int | None  # the batch opened by signing on again after a balanced settlement
    raw: dict[str, Any]


@dataclass(frozen=True)
class LinkStatus:
    pending_reversals: int
    pending_advices: int
    batch: int | None
    states: dict[str, int]


class _Undelivered(Exception):
    """A queued item the host answered with something other than an acknowledgement (94, or not 00)."""


def _local_now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


class HostLink:
    """One terminal's host link over one journal, used by one caller at a time (the sale loop). Constructing it
    recovers a crashed previous run: sales left in INTENT get their reversals queued (they go out with the next
    `flush()` or before the next sale)."""

    def __init__(self, client: HostClient, journal: Journal, *, tid: str,
                 clock: Callable[[], datetime.datetime] = _local_now) -> None:
        self.client = client
        self.journal = journal
        self.tid = tid
        self._clock = clock
        recovered = journal.recover()
        if recovered:
            log.warning("host: %d sale(s) without an answer from a previous run: reversal 98 queued (STAN %s)",
                        len(recovered), ", ".join(item.body["original_stan"] for item in recovered))

    def _today(self) -> str:
        return f"{self._clock():%m%d}"

    def _management(self) -> dict[str, Any]:
        local_date = self._today()
        return {"mti": "0800", "tid": self.tid, "stan": self.journal.next_stan(local_date), "local_date": local_date}

    # --- network management ------------------------------------------------------------------------------------

    def sign_on(self) -> int:
        """0800 sign-on: opens a new batch on the host; every sale carries it until the batch is settled."""
        answer = self.client.post(SIGNON, self._management())
        try:
            signon = parse_signon_answer(answer)
        except MessageError as error:  # a refusal has no batch
            raise HostRejected(200, f"sign-on refused ({error})", answer) from None
        if signon.rc != "00":
            raise HostRejected(200, f"sign-on refused: rc {signon.rc}", answer)
        batch = signon.batch
        self.journal.set_batch(batch)
        log.info("host: signed on, batch %06d", batch)
        return batch

    def echo(self, health: Health | None = None) -> EchoAnswer:
        """0800 echo: liveness, and a chance to notice that the host no longer has us signed on; the service adds
        its health, which the acquirer's terminal page shows."""
        body = self._management()
        if health is not None:
            body["health"] = health.as_dict()
        answer = self.client.post(ECHO, body)
        echo = read_answer(parse_echo_answer, answer, "echo")
        if echo.rc == "00" and self.journal.batch is not None and (
                not echo.signed_on or echo.batch != self.journal.batch):
            log.warning("host: the host's batch is %s, ours %s: signing on before the next sale",
                        echo.batch, self.journal.batch)
            self.journal.sign_off()
        return echo

    # --- authorizations ----------------------------------------------------------------------------------------

    def authorize(self, request_body: Mapping[str, Any]) -> HostAnswer:
        """An online sale (0200, or 0100 when `mti` says so). The link fills in TID, STAN, date and batch.

        Pending reversals go first; if one cannot be delivered, the sale is not sent (outcome "unavailable").
        A lost answer returns outcome "no answer" (the kernel declines) with reversal 98 queued and tried once.
        A 77 (not signed on / wrong batch) signs on again and retries once under a new STAN.
        """
        try:
            self._send_queued(only="reversal")
        except (HostError, _Undelivered) as error:
            log.warning("host: a pending reversal was not acknowledged (%s): sale not sent", error)
            return HostAnswer.without_answer(OUTCOME_UNAVAILABLE, "Host unavailable (pending reversal)")
        for attempt in range(2):
            if self.journal.batch is None:
                try:
                    self.sign_on()
                except HostError as error:
                    log.warning("host: sign-on failed (%s): sale not sent", error)
                    return HostAnswer.without_answer(OUTCOME_UNAVAILABLE, "Host unavailable (sign-on)")
            answer = self._authorize_once(request_body)
            if answer.rc == "77" and attempt == 0:
                log.warning("host: 77 on STAN %s: signing on again and retrying", answer.stan)
                self.journal.sign_off()
                continue
            return answer
        raise AssertionError("unreachable")

    def _authorize_once(self, request_body: Mapping[str, Any]) -> HostAnswer:
        local_date = self._today()
        stan = self.journal.next_stan(local_date)
        body = {k: v for k, v in request_body.items() if k not in _LINK_FIELDS}
        body.setdefault("mti", "0200")
        body.update(tid=self.tid, stan=stan, local_date=local_date, batch=self.journal.batch)
        sale_id = self.journal.begin_sale(stan, local_date, int(body["amount"]), body)
        crash_point("sale.intent")
        try:
            answer = self.client.post(AUTHORIZATIONS, body)
            crash_point("sale.sent")
        except HostError as error:
            if not error.maybe_processed:
                self.journal.mark_failed(sale_id, str(error))
                outcome = OUTCOME_REJECTED if isinstance(error, HostRejected) else OUTCOME_UNAVAILABLE
                return HostAnswer.without_answer(outcome, f"Host: {error}", stan=stan, sale_id=sale_id)
            return self._no_answer(sale_id, stan, "98", str(error))
        try:
            parsed = parse_authorization_answer(answer)
        except MessageError as error:  # garbled: as good as none
            return self._no_answer(sale_id, stan, "06", f"malformed answer ({error})")
        if parsed.stan != stan:
            # not the answer to this request: as good as none
            return self._no_answer(sale_id, stan, "06", "answer does not match the request")
        self.journal.record_answer(sale_id, parsed)
        crash_point("sale.answered")
        return HostAnswer.from_host(parsed, answer, sale_id)

    def _no_answer(self, sale_id: SaleId, stan: str, reason: str, why: str) -> HostAnswer:
        self.journal.queue_reversal(sale_id, reason)
        crash_point("reversal.queued")
        log.warning("host: no answer to sale STAN %s (%s): reversal %s queued", stan, why, reason)
        try:
            self._send_queued(only="reversal")
        except (HostError, _Undelivered) as error:
            log.warning("host: reversal of STAN %s not acknowledged yet (%s): it goes before the next sale",
                        stan, error)
        return HostAnswer.without_answer(OUTCOME_NO_ANSWER, "No answer from the host", stan=stan, sale_id=sale_id)

    def reverse(self, sale_id: SaleId, reason: str = "96") -> bool:
        """Undo an answered sale the terminal could not complete (96), or whose answer failed its MAC (A0).
        Returns True once the host acknowledged; otherwise it stays queued for the next flush or sale."""
        self.journal.queue_reversal(sale_id, reason)
        crash_point("reversal.queued")
        try:
            self._send_queued(only="reversal")
        except (HostError, _Undelivered) as error:
            log.warning("host: reversal of sale %d queued, not yet acknowledged (%s)", sale_id, error)
            return False
        return True

    # --- advices and the queue ---------------------------------------------------------------------------------

    def advise(self, request_body: Mapping[str, Any]) -> AdviceReceipt:
        """An offline approval (0220): queued in the journal first, then forwarded if the host answers."""
        if self.journal.batch is None:
            try:
                self.sign_on()
            except HostError as error:  # the sale already happened: queue it under the last batch
                log.warning("host: sign-on failed (%s): advice queued under batch %s", error, self.journal.last_batch)
        local_date = self._today()
        stan = self.journal.next_stan(local_date)
        body = {k: v for k, v in request_body.items() if k not in _LINK_FIELDS}
        body["mti"] = "0220"
        body.update(tid=self.tid, stan=stan, local_date=local_date,
                    batch=self.journal.batch or self.journal.last_batch or 1)
        entry_id = self.journal.queue_advice(stan, body)
        crash_point("advice.queued")
        result = self.flush()
        delivered = all(item.entry_id != entry_id for item in self.journal.pending())
        if not delivered:
            log.info("host: advice STAN %s queued (%s)", stan, result.error)
        return AdviceReceipt(entry_id, stan, delivered)

    def flush(self) -> FlushResult:
        """Send queued reversals and advices in the order they were queued, stopping at the first failure
        (a later item must not overtake an earlier one)."""
        sent = 0
        error: str | None = None
        try:
            sent = self._send_queued()
        except (HostError, _Undelivered) as failure:
            error = str(failure)
        remaining = len(self.journal.pending())
        return FlushResult(sent=sent, remaining=remaining, error=error)

    def _send_queued(self, *, only: str | None = None) -> int:
        sent = 0
        for item in self.journal.pending():
            if only is not None and item.kind != only:
                continue
            self._send_item(item)
            sent += 1
        return sent

    def _send_item(self, item: PendingItem) -> None:
        attempts = self.journal.note_attempt(item.entry_id)
        body = dict(item.body)
        if attempts > 1:  # a repeat: 0401 / 0221, the same message to the host
            body["mti"] = body["mti"][:3] + "1"
        path = REVERSALS if item.kind == "reversal" else ADVICES
        answer = self.client.post(path, body)
        crash_point(f"{item.kind}.sent")
        parse = parse_reversal_answer if item.kind == "reversal" else parse_advice_answer
        parsed = read_answer(parse, answer, f"{item.kind} STAN {item.stan}")
        if parsed.rc != "00" or parsed.stan != item.stan:
            raise _Undelivered(f"{item.kind} STAN {item.stan}: host answered rc {parsed.rc}")
        if isinstance(parsed, ReversalAnswer):
            self.journal.reversal_done(item.entry_id, parsed)
        elif isinstance(parsed, AdviceAnswer):  # rc 00: not a Refusal
            self.journal.advice_done(item.entry_id, parsed)
            if parsed.outcome == "exception":  # acknowledged, but the card was not charged
                log.warning("host: advice STAN %s taken as an exception (%s): the acquirer's operator resolves it",
                            item.stan, parsed.exception)
        log.info("host: %s acknowledged (%s), attempt %d", item.kind, summarize(answer), attempts)

    def clear_fares(self) -> ClearingResult:
        """Transit clearing for the fares this terminal's PSAM took (`terminal.host.clearing`)."""
        return clear_fares(self.client, self.tid, self.journal.transit_memory(psam_id(self.tid)))

    # --- settlement and status ---------------------------------------------------------------------------------

    def settle(self) -> SettlementResult:
        """0500 for the open batch: queued items first (they change the totals), then the journal's totals.
        Raises HostError if the queue cannot be emptied or the host does not answer; the same settlement is
        resent next time (same STAN), since the host may have closed the batch on it.

        With no open batch (never signed on, or the last one closed and the terminal stopped before it signed on
        again) it signs on first and settles the new, empty batch: a settle command always ends with an answer.
        """
        batch = self.journal.batch
        if batch is None:
            batch = self.sign_on()
        result = self.flush()
        if not result.complete:
            raise HostUnavailable(f"{result.remaining} queued item(s) not delivered: {result.error}")
        ticket = self.journal.begin_settlement(batch, self.journal.totals(batch))
        crash_point("settlement.begun")
        body = {"mti": "0500", "tid": self.tid, "stan": ticket.stan, "local_date": ticket.local_date,
                "batch": batch, "totals": ticket.totals.as_dict()}
        answer = self.client.post(SETTLEMENTS, body)
        crash_point("settlement.sent")
        parsed = read_answer(parse_settlement_answer, answer, f"settlement STAN {ticket.stan}")
        self.journal.record_settlement(ticket, parsed)
        crash_point("settlement.recorded")
        host = parsed.host_totals if isinstance(parsed, SettlementAnswer) else None
        balanced = isinstance(parsed, SettlementAnswer) and parsed.balanced
        new_batch = None
        if balanced:
            log.info("host: batch %06d balanced and closed", batch)
            try:
                new_batch = self.sign_on()
            except HostError as error:
                log.warning("host: batch closed, sign-on failed (%s): the next sale signs on", error)
        else:
            log.warning("host: batch %06d not balanced (rc %s): ours %s, host's %s", batch, parsed.rc,
                        ticket.totals.as_dict(), host.as_dict() if host else None)
        return SettlementResult(
            batch=batch, rc=parsed.rc, balanced=balanced, terminal_totals=ticket.totals, host_totals=host,
            new_batch=new_batch, raw=answer,
        )

    def status(self) -> LinkStatus:
        pending = self.journal.pending()
        return LinkStatus(
            pending_reversals=sum(1 for item in pending if item.kind == "reversal"),
            pending_advices=sum(1 for item in pending if item.kind == "advice"),
            batch=self.journal.batch, states=self.journal.counts(),
        )
