"""`pos-terminal run`: the terminal as a long-running service at the counter.

Sales come from two registers: the acquirer dashboard's virtual ECR (polled, because a terminal behind NAT
cannot be called) and a local HTTP endpoint (`terminal.service.endpoint`). Both feed one queue and one
worker, because there is one reader and one shopper: sales run strictly one at a time.

Threads, and who owns what:

* the worker is the thread that calls `start()` and `serve()`; it alone touches the reader, the kernel
  and the host link's journal (an SQLite connection belongs to the thread that opened it, and the journal
  is single-owner by design). The status endpoint therefore reads snapshots the worker refreshes, never
  the journal or the chip;
* the ECR poller only uses the signed HTTP client (`HostClient` keeps no per-request state);
* the HTTP server's threads only queue sales and wait for their outcome.

The virtual-ECR handover (`acquirer_stub.ecr`): a poll only *offers* a sale, under a lease; the poller accepts
that offer and queues the sale only when the host answers 200 to the acceptance. So, should the terminal stop
at any point:

* before the acceptance reached the host (a poll answer lost, a crash): the sale was not handed over; the next
  poll offers it again, or it goes back to pending when the lease ends. Nothing ran;
* the acceptance reached the host but its answer did not come back: the same offer is accepted again before
  the next poll (the host answers 200 again), then run. If the process dies first, the host never hands it
  out again: it shows as expired when its deadline passes. It never ran, and never runs twice;
* the sale ran (recorded in the journal like any other, with its reversal rules) but its result was not
  delivered: the host shows it as expired at the deadline ("check the terminal's transactions"); a result
  that comes late still completes it.

`stop()` only sets a flag, so it is safe in a signal handler. The worker notices within a quarter second:
a sale still waiting for a card is abandoned (ended "Cancelled"); one whose card is being read or that is
online runs to its outcome, since the journal and the reversal rules need it to finish.

systemd (`terminal.service.notify`): READY=1 once the reader and the ECR endpoint are up, WATCHDOG=1 from
the worker itself (between sales and while waiting for a card), so a hung worker stops the pings.
A host call blocks the worker for up to ``[host] timeout`` (twice when a reversal follows a lost answer):
keep WatchdogSec above that.
"""

from __future__ import annotations

import datetime
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emvcore import epurse
from emvcore.tags import mask_pan
from hostproto.messages import ECR_MAX_RUN_SECONDS, MAX_AMOUNT, MAX_BACKLOG, MAX_HEALTH_COUNT, Health, psam_id
from hostproto.money import format_yuan
from terminal.assemble import Parts, host_link
from terminal.config import TerminalConfig
from terminal.events import Event, Step
from terminal.host.client import HostError, HostRejected
from terminal.journal.journal import JournalError
from terminal.kernel.outcome import Outcome
from terminal.kernel.transit import TransitResult
from terminal.sale import NO_CARD, READER_ERROR, SaleResult
from terminal.service import notify
from terminal.service.endpoint import REQUEST_SECONDS, EcrServer, base_url, open_server
from terminal.service.metrics import ServiceMetrics

__all__ = ["SaleJob", "ServiceError", "TerminalService"]

log = logging.getLogger("terminal.service")

STARTING = "starting"
IDLE = "idle"
WAITING = "waiting for card"
READING = "reading"
ONLINE = "online"  # an authorization, or an offline approval's advice, with the host
STOPPING = "stopping"
STOPPED = "stopped"
_STATES = {Step.READY: WAITING, Step.SEE_PHONE: WAITING, Step.TRY_AGAIN: WAITING, Step.READING: READING,
           Step.ONLINE: ONLINE}
STOPPING_REASON = "the terminal is stopping"
GATE_WAIT_SECONDS = 30.0  # a gate's card wait between housekeeping rounds (it starts again at once)
GATE_RESULT_SECONDS = 1.5  # the fare's outcome stays on the gate's display at least this long

TICK_SECONDS = 0.25  # how soon the worker notices stop() and a due watchdog ping
RESULT_SECONDS = 3.0  # the outcome stays on the lights and message line this long before idle
HEALTH_SECONDS = 60.0  # the service's health goes to the host with an echo this often (and at start)
ECR_NEXT = "/api/v1/ecr/next"
ECR_ACCEPT = "/api/v1/ecr/{id}/accept"
ECR_RESULT = "/api/v1/ecr/{id}/result"
MAX_POLL_BACKOFF = 10.0
ECR_TEXT_MAX = 64

# An ECR result needs a two-character code even when the host gave none; these are the EMV authorisation
# response codes a terminal assigns itself (EMV Book 4, Annex A).
RC_OFFLINE_APPROVED = "Y1"
RC_OFFLINE_DECLINED = "Z1"  # the card or the terminal declined, or no card came
RC_HOST_NOT_REACHED = "Z3"  # went online, but no answer: declined, reversal queued when a request left
RC_INVALID_AMOUNT = "13"


class ServiceError(Exception):
    """The service cannot start (e.g. the ECR address is in use); the message says what to change."""


def _now_text() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _parse_offer(item: dict[str, Any]) -> dict[str, Any] | None:
    """A virtual-ECR offer from the host: its id and offer token checked; the amount is checked once it is ours."""
    ecr_id, offer = item.get("id"), item.get("offer")
    if isinstance(ecr_id, bool) or not isinstance(ecr_id, int):
        return None
    if not isinstance(offer, str) or not 0 < len(offer) <= 64:
        return None
    return {"id": ecr_id, "amount": item.get("amount"), "offer": offer}


@dataclass
class SaleJob:
    """One sale asked for by a register; `done` is set when `result` holds its outcome."""

    amount: int
    source: str  # "local" (this machine's ECR endpoint) or "ecr" (the dashboard's virtual ECR)
    ecr_id: int | None = None
    kind: str = "sale"  # or "load": a top-up of a transit card (the keypad's "Top up transit card")
    done: threading.Event = field(default_factory=threading.Event)
    result: SaleResult | None = None
    stan: str | None = None
    receipt: list[str] = field(default_factory=list)

    def answer(self) -> dict[str, Any]:
        """What the local register gets: the SaleResult JSON plus the STAN and the (masked) receipt."""
        assert self.result is not None
        return {**self.result.to_json(), "stan": self.stan, "receipt": self.receipt}


def topup_sale(result: TransitResult) -> SaleResult:
    """A top-up as the register, the keypad and the status show a sale: `charged` is what was loaded, the card's
    new balance is in the message, the transit card number masked like a PAN."""
    approved = result.outcome == Outcome.APPROVED
    balance = f" (balance {format_yuan(result.balance_after)})" if approved and result.balance_after else ""
    return SaleResult(result.outcome, f"{result.message}{balance}", result.amount,
                      charged=result.amount if approved else 0,
                      pan_masked=mask_pan(result.card_number) if result.card_number else None,
                      aid=epurse.AID.hex().upper(), label="Transit top-up", taps=1 if result.card_number else 0)


class TerminalService:
    """The sale loop, the ECR poller and the local endpoint around one assembled terminal (`Parts`)."""

    def __init__(self, config: TerminalConfig, parts: Parts, *, sale_wait: float = 30.0, poll_seconds: float = 1.0,
                 flush_seconds: float = 30.0, status_seconds: float = 5.0,
                 gate_result_seconds: float = GATE_RESULT_SECONDS, ecr_request_seconds: float = REQUEST_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.parts = parts
        self.sale_wait = sale_wait
        self.poll_seconds = poll_seconds
        self.ecr_request_seconds = ecr_request_seconds
        self.flush_seconds = flush_seconds
        self.status_seconds = status_seconds
        self.gate_result_seconds = gate_result_seconds
        self._clock = clock
        self.state = STARTING
        self.stop_requested = False  # a plain flag: stop() runs in signal handlers
        parts.counter.observers.append(self._observe)  # the one pipeline, with its lights and receipts
        self._lock = threading.Lock()
        self._jobs: queue.Queue[SaleJob] = queue.Queue()
        self._open_jobs = 0  # queued or running, under _lock
        self._current: SaleJob | None = None
        self._last_sale: dict[str, Any] | None = None
        self._last_fare: dict[str, Any] | None = None
        self._fares = 0
        self._clearing: dict[str, int] = {}  # a gate's fares by transit clearing state (its clearing thread's)
        self._clearing_error: str | None = None  # why a gate's last clearing round stopped short
        self._results: list[tuple[int, dict[str, Any]]] = []  # ECR results still to deliver, under _lock
        self._offer: dict[str, Any] | None = None  # an ECR offer not yet settled with the host (poller only)
        self._accepted: set[int] = set()  # ECR sales handed over to this process: each one runs once (poller only)
        self._halt = threading.Event()  # set by close(): wakes the poller at once
        self._started = clock()
        self._reader_identity = ""
        self._link: dict[str, Any] = {}
        self._link_error: str | None = None
        self._poll: dict[str, Any] = {"last": None, "error": None}
        self._server: EcrServer | None = None
        self._threads: list[threading.Thread] = []
        self._watchdog = notify.watchdog_interval()
        self._last_ping = 0.0
        self._last_flush = 0.0
        self._last_status = 0.0
        self._idle_at: float | None = None
        self._closed = False
        self._last_health = -math.inf
        self._reader_fault = False  # the last tap ended in a reader error (cleared by a tap that reads a card)
        self.metrics = ServiceMetrics(self)

    # -- what the endpoint and the CLI use ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self.stop_requested or self._closed

    @property
    def url(self) -> str | None:
        """The local endpoint's base URL, once it is bound."""
        return None if self._server is None else base_url(self._server)

    @property
    def local_wait_limit(self) -> float:
        """How long a local register may wait for an outcome: the card wait plus the slowest host exchange."""
        return self.sale_wait + 3 * self.config.host.timeout + 10

    @property
    def ecr_run_seconds(self) -> int:
        """How long the host waits for a virtual-ECR sale's result before showing it as expired: the sale, and a
        poll or two at the slowest to bring the result back."""
        needed = self.local_wait_limit + MAX_POLL_BACKOFF + 2 * self.config.host.timeout
        return min(ECR_MAX_RUN_SECONDS, math.ceil(needed))

    @property
    def gate(self) -> bool:
        """A metro gate charges its fare at every tap and takes no sales (`[transit] gate_fare`)."""
        return self.config.transit.gate_fare is not None

    def submit_local(self, amount: int, *, kind: str = "sale") -> SaleJob | None:
        """Queue a sale (or a top-up, `kind` "load") from the local register or keypad; None when one is already
        queued or running, when stopping, or at a gate (it runs no jobs)."""
        if self.gate:
            return None
        return self._submit(SaleJob(amount, "local", kind=kind), exclusive=True)

    def stop(self) -> None:
        """Ask the service to stop; safe from a signal handler (it only sets a flag)."""
        self.stop_requested = True

    def status(self) -> dict[str, Any]:
        """The status endpoint's object: no card data but the masked PAN of the receipt."""
        feedback = self.parts.feedback
        message, lights = feedback.message, list(feedback.lights)
        with self._lock:
            current = self._current
            sale = None if current is None else {"source": current.source, "ecr_id": current.ecr_id,
                                                 "amount": current.amount}
            return {
                "state": self.state,
                "message": message,
                "lights": lights,
                "sale": sale,
                "last_sale": self._last_sale,
                "gate": None if self.config.transit.gate_fare is None else {
                    "fare": self.config.transit.gate_fare, "fares": self._fares, "last_fare": self._last_fare,
                    "clearing": dict(self._clearing), "clearing_error": self._clearing_error},
                "reader": self._reader_identity,
                "host": {**self._link, "url": self.config.host.url, "last_error": self._link_error},
                "ecr": {"local": self.url, "poll": dict(self._poll), "results_to_send": len(self._results)},
                "tid": self.config.terminal.id,
                "uptime": round(self._clock() - self._started, 1),
            }

    # -- life cycle (the worker thread) -------------------------------------------------------------------------

    def run(self) -> None:
        """start(), serve() until stop(), close(): the whole service in the calling thread."""
        try:
            self.start()
            self.serve()
        finally:
            self.close()

    def start(self) -> None:
        """Reader identity, the host (a host that is down is not fatal), the endpoint and the poller; READY."""
        self._reader_identity = self.parts.reader.identify()
        self._connect_host(check=True)
        if self._link_error is not None:
            log.warning("host: %s: the service starts anyway; queued items go when the host answers",
                        self._link_error)
        if self.config.ecr.listen is not None:
            if self.config.ecr.secret is None:
                raise ServiceError('ecr.secret: missing while the local ECR is on; add it to [ecr], or listen = "" '
                                   "to turn the local ECR off")
            try:
                self._server = open_server(self.config.ecr.listen, self, self.config.ecr.secret,
                                           request_seconds=self.ecr_request_seconds)
            except OSError as error:
                host, port = self.config.ecr.listen
                raise ServiceError(f"ecr.listen: cannot listen on {host}:{port} ({error.strerror}); choose a free "
                                   'port, or listen = "" to turn the local ECR off') from None
            self._spawn("ecr-endpoint", self._serve_http)
        if self.gate:  # no sales from a register; its fares go to clearing beside the taps
            self._spawn("transit-clearing", self._clearing_loop)
        else:
            self._spawn("ecr-poller", self._poll_loop)
        self.parts.counter.tell(Step.IDLE)
        self.state = IDLE
        notify.ready(f"idle; ECR on {self.url}/sale" if self.url else "idle")
        log.info("service: ready (%s), reader %s", self.url or "no local ECR", self._reader_identity)

    def serve(self) -> None:
        """Run sales one at a time until stop() (a gate: a fare at every tap); housekeeping in between."""
        if self.config.transit.gate_fare is not None:
            self._gate(self.config.transit.gate_fare)
            return
        while not self.stop_requested:
            self.tick()
            try:
                job = self._jobs.get(timeout=TICK_SECONDS)
            except queue.Empty:
                self._between_sales()
                continue
            self._run(job)

    def close(self) -> None:
        """Abandon queued sales, stop the poller and the endpoint; the reader and journal are the Parts owner's."""
        if self._closed:
            return
        with self._lock:  # no sale can be queued after this, so the drain below sees them all
            self.stop_requested = True
        self.state = STOPPING
        notify.stopping()
        self._halt.set()
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            self._finish(job, SaleResult(Outcome.END_APPLICATION, f"Cancelled: {STOPPING_REASON}", job.amount))
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=15)
        self._deliver_results()  # a last try; results not delivered are in the log
        if self._server is not None:
            self._server.server_close()
        with self._lock:
            left = list(self._results)
        for ecr_id, result in left:
            log.warning("ecr: result of ECR sale #%d not delivered (%s %s)", ecr_id, result["rc"], result["text"])
        if self._offer is not None:  # the host shows it as expired at its deadline unless it lapses first
            log.warning("ecr: the hand-over of ECR sale #%d was not settled; it did not run", self._offer["id"])
        self._closed = True
        self.state = STOPPED
        log.info("service: stopped")

    def tick(self) -> None:
        """A watchdog ping when one is due; called by the worker only, so the pings prove it is alive."""
        if self._watchdog is not None and self._clock() - self._last_ping >= self._watchdog:
            self._last_ping = self._clock()
            notify.watchdog()

    # -- internals ----------------------------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve_http(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=TICK_SECONDS)

    def _submit(self, job: SaleJob, *, exclusive: bool) -> SaleJob | None:
        with self._lock:
            if self.stopping or (exclusive and self._open_jobs):
                return None
            self._open_jobs += 1
            self._jobs.put(job)
        return job

    def _run(self, job: SaleJob) -> None:
        with self._lock:
            self._current = job
        self._idle_at = None
        self.state = WAITING
        started = self._clock()
        try:
            if job.kind == "load":
                result = topup_sale(self.parts.counter.load(job.amount, wait_seconds=self.sale_wait,
                                                            cancelled=self._cancelled))
            else:
                result = self.parts.counter.sale(job.amount, wait_seconds=self.sale_wait, cancelled=self._cancelled)
        except Exception as error:  # one broken sale must not take the counter down; no message: it may hold data
            log.error("sale: unexpected %s", type(error).__name__)
            log.debug("sale: unexpected error", exc_info=True)
            self.parts.counter.tell(Step.DECLINED, message="Terminal error")
            result = SaleResult(Outcome.END_APPLICATION, "Terminal error", job.amount)
        job.stan = result.stan
        self._finish(job, result, self._clock() - started)
        self._refresh_link()
        self._idle_at = self._clock() + RESULT_SECONDS
        self.state = IDLE

    def _gate(self, fare: int) -> None:
        """A metro gate: the fare at every tap, each card charged once however long it stays on the reader."""
        counter = self.parts.counter
        while not self.stop_requested:
            self.tick()
            self.state = WAITING
            result = counter.fare(fare, wait_seconds=GATE_WAIT_SECONDS, cancelled=self._cancelled)
            if result.message == NO_CARD or self.stop_requested:
                self.state = IDLE
                self._between_sales()
                continue
            self._fare_done(result)
            shown_until = self._clock() + self.gate_result_seconds
            while not counter.wait_removed(wait_seconds=GATE_WAIT_SECONDS, cancelled=self._cancelled):
                if self.stop_requested:
                    return
            while self._clock() < shown_until and not self.stop_requested:  # the rider reads the outcome
                self.tick()
                time.sleep(TICK_SECONDS)
            self._between_sales()  # a busy gate still uploads its fares (every flush_seconds)

    def _fare_done(self, result: TransitResult) -> None:
        """The status's last fare and one log line; never the card number (kept out of logs like a PAN)."""
        last = {"finished": _now_text(), "outcome": result.outcome, "message": result.message,
                "amount": result.amount, "balance_after": result.balance_after, "city": result.city_code,
                "recovered": result.recovered}
        with self._lock:
            self._last_fare = last
            self._fares += 1
        self._tapped("fare", result, None)
        log.info("fare: %s city=%s amount=%s balance_after=%s recovered=%s", result.outcome, result.city_code or "-",
                 format_yuan(result.amount),
                 format_yuan(result.balance_after) if result.balance_after is not None else "-", result.recovered)
        notify.status(f"last fare: {result.outcome} {format_yuan(result.amount)}")

    def _observe(self, event: Event) -> None:
        """The pipeline's steps, as the status shows them."""
        state = _STATES.get(event.step)
        if state is not None:
            self.state = state

    def _cancelled(self) -> str | None:
        """Asked by the pipeline while it waits for a card: the worker is alive (watchdog), and is it stopping?"""
        self.tick()
        return STOPPING_REASON if self.stop_requested else None

    def _finish(self, job: SaleJob, result: SaleResult, seconds: float = 0.0) -> None:
        """Record the outcome (last sale, ECR result to send, the log line) and wake whoever waits for it."""
        job.result = result
        job.receipt = result.receipt(self.config.terminal.merchant_id)
        # total: from the sale's start, the card wait included (a sale with no card has no kernel timings)
        log.info("sale %s%s: %s rc=%s card=%s amount=%s charged=%s stan=%s taps=%d card_in_field=%.2fs "
                 "total=%.2fs", job.source, f" #{job.ecr_id}" if job.ecr_id is not None else "", result.outcome,
                 result.rc or "-", result.pan_masked or "-", format_yuan(result.amount),
                 format_yuan(result.charged), job.stan or "-", result.taps,
                 result.timings.get("card_in_field", 0.0), seconds)
        last = {"source": job.source, "ecr_id": job.ecr_id, "finished": _now_text(), "stan": job.stan,
                "outcome": result.outcome, "message": result.message, "rc": result.rc, "amount": result.amount,
                "charged": result.charged, "discount": result.discount, "pan_masked": result.pan_masked,
                "label": result.label, "cryptogram": result.cryptogram, "receipt": job.receipt,
                "seconds": round(seconds, 3)}
        if result.taps or result.message == READER_ERROR:
            self._tapped(job.kind, result, result.timings.get("card_in_field"))
        with self._lock:
            self._last_sale = last
            self._current = None
            self._open_jobs -= 1
            if job.ecr_id is not None:
                self._results.append((job.ecr_id, self._ecr_result(result, job.stan)))
        notify.status(f"last sale: {result.outcome} {format_yuan(result.amount)}")
        job.done.set()

    @staticmethod
    def _ecr_result(result: SaleResult, stan: str | None) -> dict[str, Any]:
        if result.rc:
            rc = result.rc
        elif result.outcome == Outcome.APPROVED:
            rc = RC_OFFLINE_APPROVED
        elif result.cryptogram == "ARQC":
            rc = RC_HOST_NOT_REACHED
        else:
            rc = RC_OFFLINE_DECLINED
        text = "".join(c if c.isprintable() else " " for c in result.message)[:ECR_TEXT_MAX]
        return {"rc": rc, "text": text, "stan": stan}

    def _between_sales(self) -> None:
        now = self._clock()
        if self._idle_at is not None and now >= self._idle_at:
            self._idle_at = None
            self.parts.counter.tell(Step.IDLE)
        if now - self._last_flush >= self.flush_seconds and not self.gate:  # a gate's uplink is its own thread
            self._connect_host(check=False)
        elif now - self._last_status >= self.status_seconds:
            self._refresh_link()

    def _connect_host(self, *, check: bool) -> None:
        """Signed on, then store-and-forward (queued reversals and advices, oldest first).

        Sign-on opens a new batch on the host, so a restart with a batch still open in the journal echoes
        instead (the echo signs us off if the host forgot that batch) and keeps it: signing on anyway would
        strand the open batch's sales outside any settlement.
        """
        self._last_flush = self._clock()
        host = self.parts.host
        try:
            if (check and host.journal.batch is not None) or self._clock() - self._last_health >= HEALTH_SECONDS:
                host.echo(self._health())
                self._last_health = self._clock()
            if host.journal.batch is None:
                host.sign_on()
            result = host.flush()
            self._link_error = result.error
            if self.parts.counter.psam is not None and not self.gate:  # fares go to clearing whatever sales do
                self._link_error = self._link_error or host.clear_fares().error
        except HostError as error:
            self._link_error = str(error)
        self._refresh_link()

    def link_snapshot(self) -> dict[str, Any]:
        """The host link as last seen by the worker (signed on, batch, backlog), safe to read from any thread."""
        with self._lock:
            return dict(self._link)

    def _health(self) -> Health:
        """What the acquirer's terminal page shows of this terminal (worker thread: it reads the journal)."""
        status = self.parts.host.status()
        return Health("fault" if self._reader_fault else "ok", min(self.parts.reader.resets, MAX_HEALTH_COUNT),
                      min(status.pending_reversals, MAX_BACKLOG), min(status.pending_advices, MAX_BACKLOG),
                      min(int(self._clock() - self._started), MAX_HEALTH_COUNT))

    def _tapped(self, kind: str, result: SaleResult | TransitResult, card_in_field: float | None) -> None:
        """A transaction that reached the reader: the reader's health, and the metrics when a card came."""
        if result.message == READER_ERROR:
            self._reader_fault = True
            return
        self._reader_fault = False
        self.metrics.tapped(kind, result.outcome, card_in_field)

    def _refresh_link(self) -> None:
        self._last_status = self._clock()
        status = self.parts.host.status()
        link = {"signed_on": status.batch is not None, "batch": status.batch,
                "pending_reversals": status.pending_reversals, "pending_advices": status.pending_advices}
        with self._lock:
            self._link = link

    # -- a gate's transit clearing (its own thread, journal connection and host client) --------------------------

    def _clearing_loop(self) -> None:
        """Upload the fares every `flush_seconds`, beside the taps: a slow or absent host never holds a rider at
        the gate (the host client's timeout would, in the tap loop). The journal is shared through SQLite (WAL):
        this thread has a connection of its own."""
        link = host_link(self.config)
        memory = link.journal.transit_memory(psam_id(self.config.terminal.id))
        try:
            while True:
                try:
                    error = link.clear_fares().error
                    counts = memory.clearing_counts()
                except (HostError, JournalError) as failure:
                    error, counts = str(failure), None
                except Exception as failure:  # one bad round must not end clearing; no message: it may hold data
                    log.error("transit clearing: unexpected %s", type(failure).__name__)
                    error, counts = f"unexpected {type(failure).__name__}", None
                with self._lock:
                    self._clearing_error = error
                    if counts is not None:
                        self._clearing = counts
                if self._halt.wait(self.flush_seconds):
                    break
        finally:
            link.journal.close()

    # -- the virtual ECR poller (its own thread: HTTP client only) ----------------------------------------------

    def _poll_loop(self) -> None:
        delay = self.poll_seconds
        while not self._halt.wait(delay):
            delay = self.poll_seconds if self._poll_once() else min(MAX_POLL_BACKOFF, delay * 2)

    def _poll_once(self) -> bool:
        """Deliver finished results, settle an offer left open, then take the next sale if the counter is free;
        False if the host failed."""
        if not self._deliver_results():
            return False
        if self._offer is not None:  # its acceptance had no answer: ask again before anything else
            return self._accept(self._offer)
        with self._lock:
            busy = self._open_jobs > 0
        if busy or self.stopping:
            return True
        try:
            item = self.parts.host.client.get(ECR_NEXT)  # the host knows us by the signature: no TID to send
        except HostError as error:
            self._note_poll(error=str(error))
            return False
        self._note_poll(last=_now_text(), error=None)
        if item is None:
            return True
        offer = _parse_offer(item)
        if offer is None:
            log.warning("ecr: the host offered a sale without a usable id or offer; ignored (it offers it again)")
            return True
        self._offer = offer
        return self._accept(offer)

    def _accept(self, offer: dict[str, Any]) -> bool:
        """Tell the host we take the offered sale, and queue it only once the host has handed it over (200)."""
        ecr_id, amount = offer["id"], offer["amount"]
        try:
            self.parts.host.client.post(ECR_ACCEPT.format(id=ecr_id), {"offer": offer["offer"],
                                                                      "seconds": self.ecr_run_seconds})
        except HostRejected as refused:  # the offer lapsed (or was never ours): the host keeps the sale
            log.warning("ecr: sale #%d not handed over (%s); the host offers it again", ecr_id, refused)
            self._offer = None
            return True
        except HostError as error:  # the host may have handed it over: the same offer is accepted again next time
            self._note_poll(error=str(error))
            return False
        self._offer = None
        if ecr_id in self._accepted:  # handed over twice: a sale from the queue never runs twice
            log.warning("ecr: sale #%d was handed over already; not run again", ecr_id)
            return True
        self._accepted.add(ecr_id)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            with self._lock:
                self._results.append((ecr_id, {"rc": RC_INVALID_AMOUNT, "text": "Invalid amount", "stan": None}))
            return True
        log.info("ecr: sale #%d for %s from the virtual ECR", ecr_id, format_yuan(amount))
        if self._submit(SaleJob(amount, "ecr", ecr_id), exclusive=False) is None:  # stopping meanwhile
            with self._lock:
                self._results.append((ecr_id, {"rc": RC_OFFLINE_DECLINED, "text": f"Cancelled: {STOPPING_REASON}",
                                               "stan": None}))
        return True

    def _note_poll(self, **values: Any) -> None:
        with self._lock:
            self._poll.update(values)

    def _deliver_results(self) -> bool:
        """POST each finished ECR sale's result, oldest first; False when the host did not answer."""
        while True:
            with self._lock:
                if not self._results:
                    return True
                ecr_id, result = self._results[0]
            try:
                self.parts.host.client.post(ECR_RESULT.format(id=ecr_id), result)
            except HostRejected as refused:  # 404 / 409 / 400: resending the same result cannot help
                log.warning("ecr: result of ECR sale #%d refused (%s)", ecr_id, refused)
            except HostError as error:
                self._note_poll(error=str(error))
                return False
            with self._lock:
                self._results.pop(0)
