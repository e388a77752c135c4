"""One sale, fare or card read at the counter: reader, kernel, host link, and observers that show it.

The card is told it may go as soon as the kernel has read it ("Remove card"); everything slow (fDDA,
the online authorization) happens after. "See phone" keeps the field on and restarts the transaction
when the phone comes back; "Try again" does the same for a card that left too early.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from hostproto.messages import psam_id
from hostproto.money import format_yuan
from terminal.cardview import CardView, read_card
from terminal.config import ConfigError
from terminal.events import Event, Observer, Step, tell
from terminal.host.link import HostAnswer, HostLink
from terminal.host.transit_load import LoadLink
from terminal.kernel import qpboc, transit, transit_load
from terminal.kernel.outcome import Outcome
from terminal.kernel.params import KernelParams
from terminal.kernel.transit import Psam, TransitResult
from terminal.kernel.transit_load import LoadAuthorization
from terminal.reader.base import Reader, ReaderError, Target

log = logging.getLogger(__name__)
ENTRY_MODE_QPBOC_NO_PIN = "072"
RETRY_OUTCOMES = (Outcome.SEE_PHONE, Outcome.TRY_AGAIN)
RETRY_PAUSE_SECONDS = 0.3  # after "See phone" or "Present card again", before polling again
WAIT_SLICE = 0.25  # seconds of card wait between two questions to `cancelled`
READER_ERROR = "Reader error"
NO_CARD = "No card presented"
UNANSWERED = {  # why a sale ended without a card after the shopper was asked to act, and that went unanswered
    Step.SEE_PHONE: "No payment: the shopper never confirmed on the phone (See phone timed out)",
    Step.TRY_AGAIN: "No payment: the card was not presented again (Present card again timed out)",
}
Cancel = Callable[[], str | None]
"""Asked while waiting for a card: a reason ("the terminal is stopping") ends the transaction unstarted."""


@dataclass
class SaleResult:
    """What the counter shows and prints; never a full PAN."""

    outcome: str
    message: str
    amount: int
    charged: int = 0
    discount: int = 0
    promotion: str | None = None
    rc: str | None = None
    text: str = ""
    approval_code: str | None = None
    rrn: str | None = None
    pan_masked: str | None = None
    aid: str | None = None
    label: str | None = None
    atc: int | None = None
    cryptogram: str | None = None
    cvm: str = "none"
    oda: str = "not-performed"
    field55_tags: list[str] = field(default_factory=list)
    taps: int = 0  # cards presented: 0 when none came
    stan: str | None = None  # of the authorization or advice that carried it to the host
    timings: dict[str, float] = field(default_factory=dict)

    def receipt(self, merchant: str) -> list[str]:
        lines = [merchant, f"{self.label or ''} {self.aid or ''}".strip(), f"Card {self.pan_masked or '-'}",
                 f"Amount {format_yuan(self.amount)}"]
        if self.discount:
            lines += [f"Bank promotion -{format_yuan(self.discount)}", f"Charged {format_yuan(self.charged)}"]
        lines.append(f"{self.outcome} {self.rc or ''}".strip())
        if self.approval_code:
            lines.append(f"Approval {self.approval_code}  RRN {self.rrn}")
        if self.cryptogram:
            lines.append(f"{self.cryptogram} ATC {self.atc}")
        if self.cvm == "signature" and self.outcome == Outcome.APPROVED:
            lines.append("Signature required: ____________________")
        return lines

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Counter:
    """The one pipeline for a sale, a fare and a card read, built once per terminal (`terminal.assemble`) and
    used by every command and the service. Its observers see every step (`terminal.events`); `cancelled`,
    asked every `WAIT_SLICE` seconds while no card is in the field, ends a transaction that has not started
    (the service stops there, and pings its watchdog from it)."""

    def __init__(self, reader: Reader, params: KernelParams, host: HostLink, *,
                 observers: Iterable[Observer] = (), psam: Psam | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.reader = reader
        self.params = params
        self.host = host
        self.observers: list[Observer] = list(observers)
        self.psam = psam  # the transit PSAM, when [transit] keys are configured
        self._clock = clock

    def tell(self, step: Step, **details: Any) -> None:
        """Tell every observer one step (the service's own too: idle after a result, a terminal error)."""
        tell(self.observers, Event(step, **details))

    def sale(self, amount: int, *, wait_seconds: float = 30.0, cancelled: Cancel | None = None) -> SaleResult:
        started = self._clock()
        deadline = started + wait_seconds
        self.tell(Step.READY, amount=amount)
        force_online = False
        taps = 0
        asked: Step | None = None  # the last "See phone" or "Present card again"
        while True:
            target = self._wait(deadline, cancelled)
            if not isinstance(target, Target):
                message = (f"Cancelled: {target}" if target is not None else
                           UNANSWERED[asked] if asked is not None else NO_CARD)
                return self._nothing(SaleResult(Outcome.END_APPLICATION, message, amount, taps=taps))
            taps += 1
            self.tell(Step.READING)
            try:
                result = qpboc.run(
                    self.reader.transceive, self.params, amount, today=datetime.date.today(),
                    unpredictable_number=os.urandom(4), on_card_read=lambda: self.tell(Step.CARD_READ),
                    force_online=force_online,
                )
                self.reader.release()
            except ReaderError as error:
                return self._reader_failed(error, SaleResult(Outcome.END_APPLICATION, READER_ERROR, amount,
                                                             taps=taps))
            for reason in result.reasons:
                log.info("kernel: %s", reason)
            if result.outcome in RETRY_OUTCOMES:
                force_online = force_online or result.retry_online
                step = Step.SEE_PHONE if result.outcome == Outcome.SEE_PHONE else Step.TRY_AGAIN
                self.tell(step, again=step == asked)
                asked = step
                time.sleep(RETRY_PAUSE_SECONDS)  # the field stays on; the phone comes back when unlocked
                continue
            sale = self._finish(result, amount)
            sale.taps = taps
            sale.timings = {**result.timings, "total": self._clock() - started}
            self.tell(Step.DONE, result=sale)
            return sale

    def fare(self, amount: int, *, wait_seconds: float = 30.0, cancelled: Cancel | None = None) -> TransitResult:
        """A transit fare on the e-purse; a purchase torn away is finished by the re-tap (the PSAM and the
        journal remember it across a restart), never charged twice."""
        if self.psam is None:
            raise ConfigError("transit.keys", "no PSAM keys configured", 'add [transit] keys = "transit/psam.json"')
        psam = self.psam
        return self._transit(lambda: transit.fare(self.reader.transceive, psam, amount, datetime.datetime.now()),
                             amount, wait_seconds, cancelled)

    def load(self, amount: int, *, wait_seconds: float = 30.0, cancelled: Cancel | None = None) -> TransitResult:
        """A top-up of a transit card, MAC2 from the host; a load torn away is finished by the re-tap (the journal
        remembers it across a restart), never credited twice. The loads' TACs go to the host before and after."""
        loads = LoadLink(self.host)
        loads.flush()
        online = _OnlineLoads(loads, lambda: self.tell(Step.ONLINE))
        terminal_id = psam_id(self.host.tid)  # loads carry the PSAM's terminal number too
        result = self._transit(lambda: transit_load.load(self.reader.transceive, online, loads.memory, terminal_id,
                                                         amount, datetime.datetime.now()),
                               amount, wait_seconds, cancelled)
        loads.flush()
        return result

    def _transit(self, run: Callable[[], TransitResult], amount: int, wait_seconds: float,
                 cancelled: Cancel | None) -> TransitResult:
        """One e-purse transaction: wait for the card, run, and on a tear "Present card again" until it is back."""
        deadline = self._clock() + wait_seconds
        self.tell(Step.READY, amount=amount)
        torn: TransitResult | None = None
        while True:
            target = self._wait(deadline, cancelled)
            if not isinstance(target, Target):  # a torn transaction stays in the journal for the card's next tap
                message = NO_CARD if target is None else f"Cancelled: {target}"
                return self._nothing(torn or TransitResult(Outcome.END_APPLICATION, message, amount=amount))
            self.tell(Step.READING)
            try:
                result = run()
                self.reader.release()
            except ReaderError as error:
                return self._reader_failed(error, TransitResult(Outcome.END_APPLICATION, READER_ERROR,
                                                                amount=amount))
            for reason in result.reasons:
                log.info("transit: %s", reason)
            if result.outcome != Outcome.TRY_AGAIN:
                break
            torn = result
            self.tell(Step.TRY_AGAIN)
            time.sleep(RETRY_PAUSE_SECONDS)
        if result.outcome == Outcome.APPROVED:
            self.tell(Step.APPROVED, amount=result.amount)
        else:
            self.tell(Step.DECLINED, message=result.message)
        self.tell(Step.DONE, result=result)
        return result

    def read(self, *, wait_seconds: float = 30.0, cancelled: Cancel | None = None) -> CardView | None:
        """What a card offers, without paying; None if no card came (or cancelled)."""
        target = self._wait(self._clock() + wait_seconds, cancelled)
        return read_card(self.reader, target) if isinstance(target, Target) else None

    def wait_removed(self, *, wait_seconds: float, cancelled: Cancel | None = None) -> bool:
        """Until no card is in the field (EMV: the next transaction waits for the card to go); False if one is
        still there after `wait_seconds`, or cancelled."""
        deadline = self._clock() + wait_seconds
        while self._clock() < deadline:
            if cancelled is not None and cancelled():
                return False
            try:
                if self.reader.wait_for_card(WAIT_SLICE) is None:
                    return True
                self.reader.release()
            except ReaderError as error:
                log.warning("reader: %s; resetting", error)
                self.reader.reset()
            time.sleep(WAIT_SLICE)
        return False

    def _nothing(self, result: SaleResult | TransitResult) -> Any:
        """No card came, or cancelled: back to idle."""
        self.tell(Step.IDLE)
        self.tell(Step.DONE, result=result)
        return result

    def _reader_failed(self, error: ReaderError, result: SaleResult | TransitResult) -> Any:
        log.error("reader: %s", error)
        self.tell(Step.DECLINED, message=READER_ERROR)
        self.tell(Step.DONE, result=result)
        return result

    def _finish(self, result: qpboc.KernelResult, amount: int) -> SaleResult:
        sale = SaleResult(
            result.outcome, result.message, amount, pan_masked=result.pan_masked, aid=result.aid,
            label=result.label, atc=result.atc, cryptogram=result.cryptogram, cvm=result.cvm, oda=result.oda,
            field55_tags=[f"{tag:X}" for tag in result.field55],
        )
        if result.outcome == Outcome.ONLINE_REQUEST:
            self.tell(Step.ONLINE)
            answer = self.host.authorize(self._request(result, amount))
            sale.stan = answer.stan
            return self._online(sale, answer)
        if result.outcome == Outcome.APPROVED:  # offline approval (TC + fDDA): the host hears of it as an advice
            self.tell(Step.ONLINE)
            sale.stan = self.host.advise(self._request(result, amount)).stan
            sale.charged = amount
            self.tell(Step.APPROVED, amount=amount)
            return sale
        self.tell(Step.DECLINED, message=result.message)
        return sale

    def _online(self, sale: SaleResult, answer: HostAnswer) -> SaleResult:
        sale.rc, sale.text = answer.rc, answer.text
        if answer.approved:
            sale.outcome, sale.message = Outcome.APPROVED, f"Approved {format_yuan(answer.charged)}"
            sale.charged, sale.discount, sale.promotion = answer.charged, answer.discount, answer.promotion
            sale.approval_code, sale.rrn = answer.auth_code, answer.rrn
            self.tell(Step.APPROVED, amount=answer.charged, discount=answer.discount)
        else:
            sale.outcome, sale.message = Outcome.DECLINED, f"Declined: {answer.text}"
            self.tell(Step.DECLINED, message=answer.text)
        return sale

    @staticmethod
    def _request(result: qpboc.KernelResult, amount: int) -> dict[str, Any]:
        return {
            "pan": result.pan, "psn": f"{result.psn or 0:02d}", "expiry": result.expiry, "amount": amount,
            "currency": "156", "entry_mode": ENTRY_MODE_QPBOC_NO_PIN,
            "icc": {f"{tag:X}": value.hex().upper() for tag, value in result.field55.items()},
        }

    def _wait(self, deadline: float, cancelled: Cancel | None) -> Target | str | None:
        """A card in the field; None when none came by `deadline`; the reason when `cancelled` gave one."""
        while (left := deadline - self._clock()) > 0:
            if cancelled is not None and (reason := cancelled()):
                return reason
            try:
                target = self.reader.wait_for_card(min(left, WAIT_SLICE))
            except ReaderError as error:
                log.warning("reader: %s; resetting", error)
                self.reader.reset()
                continue
            if target is not None:
                return target
        return None


class _OnlineLoads:
    """The load kernel's host, telling the observers that the counter is online while it asks."""

    def __init__(self, loads: LoadLink, online: Callable[[], None]) -> None:
        self._loads, self._online = loads, online

    def authorize_load(self, request: Mapping[str, Any]) -> LoadAuthorization:
        self._online()
        return self._loads.authorize_load(request)
