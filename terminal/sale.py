"""One sale at the counter: reader, kernel, lights and tones, host link — in that order, and nothing else.

The card is told it may go as soon as the kernel has read it ("Remove card"); everything slow (fDDA,
the online authorization) happens after. "See phone" keeps the field on and restarts the transaction
when the phone comes back; "Try again" does the same for a card that left too early.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from terminal.host.link import HostAnswer, HostLink
from terminal.kernel import qpboc
from terminal.kernel.outcome import Outcome
from terminal.kernel.params import KernelParams
from terminal.reader.base import Reader, ReaderError
from terminal.ui.feedback import Feedback, format_amount

log = logging.getLogger(__name__)
ENTRY_MODE_QPBOC_NO_PIN = "072"
RETRY_OUTCOMES = (Outcome.SEE_PHONE, Outcome.TRY_AGAIN)
RETRY_PAUSE_SECONDS = 0.3


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
    taps: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def receipt(self, merchant: str) -> list[str]:
        lines = [merchant, f"{self.label or ''} {self.aid or ''}".strip(), f"Card {self.pan_masked or '-'}",
                 f"Amount {format_amount(self.amount)}"]
        if self.discount:
            lines += [f"Bank promotion -{format_amount(self.discount)}", f"Charged {format_amount(self.charged)}"]
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
    """The terminal's sale logic, given its parts (so tests can give it simulated ones)."""

    def __init__(self, reader: Reader, params: KernelParams, feedback: Feedback, host: HostLink, *,
                 printer: Callable[[SaleResult], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.reader = reader
        self.params = params
        self.feedback = feedback
        self.host = host
        self._printer = printer  # the paper receipt, when a printer is configured
        self._clock = clock

    def sale(self, amount: int, *, wait_seconds: float = 30.0) -> SaleResult:
        started = self._clock()
        deadline = started + wait_seconds
        self.feedback.ready(amount)
        force_online = False
        taps = 0
        while True:
            target = self._wait(deadline)
            if target is None:
                self.feedback.idle()
                return SaleResult(Outcome.END_APPLICATION, "No card presented", amount, taps=taps)
            taps += 1
            self.feedback.reading()
            result = qpboc.run(
                self.reader.transceive, self.params, amount, today=datetime.date.today(),
                unpredictable_number=os.urandom(4), on_card_read=self.feedback.card_read,
                force_online=force_online,
            )
            self.reader.release()
            for reason in result.reasons:
                log.info("kernel: %s", reason)
            if result.outcome in RETRY_OUTCOMES:
                force_online = force_online or result.retry_online
                if result.outcome == Outcome.SEE_PHONE:
                    self.feedback.see_phone()
                else:
                    self.feedback.try_again()
                time.sleep(RETRY_PAUSE_SECONDS)  # the field stays on; the phone comes back when unlocked
                continue
            sale = self._finish(result, amount)
            sale.taps = taps
            sale.timings = {**result.timings, "total": self._clock() - started}
            if self._printer is not None:
                self._printer(sale)
            return sale

    def _finish(self, result: qpboc.KernelResult, amount: int) -> SaleResult:
        sale = SaleResult(
            result.outcome, result.message, amount, pan_masked=result.pan_masked, aid=result.aid,
            label=result.label, atc=result.atc, cryptogram=result.cryptogram, cvm=result.cvm, oda=result.oda,
            field55_tags=[f"{tag:X}" for tag in result.field55],
        )
        if result.outcome == Outcome.ONLINE_REQUEST:
            answer = self.host.authorize(self._request(result, amount))
            return self._online(sale, answer)
        if result.outcome == Outcome.APPROVED:  # offline approval (TC + fDDA): the host hears of it as an advice
            self.host.advise(self._request(result, amount))
            sale.charged = amount
            self.feedback.approved(amount)
            return sale
        self.feedback.declined(result.message)
        return sale

    def _online(self, sale: SaleResult, answer: HostAnswer) -> SaleResult:
        sale.rc, sale.text = answer.rc, answer.text
        if answer.approved:
            sale.outcome, sale.message = Outcome.APPROVED, f"Approved {format_amount(answer.charged)}"
            sale.charged, sale.discount, sale.promotion = answer.charged, answer.discount, answer.promotion
            sale.approval_code, sale.rrn = answer.auth_code, answer.rrn
            self.feedback.approved(answer.charged, answer.discount)
        else:
            sale.outcome, sale.message = Outcome.DECLINED, f"Declined: {answer.text}"
            self.feedback.declined(answer.text)
        return sale

    @staticmethod
    def _request(result: qpboc.KernelResult, amount: int) -> dict[str, Any]:
        return {
            "pan": result.pan, "psn": f"{result.psn or 0:02d}", "expiry": result.expiry, "amount": amount,
            "currency": "156", "entry_mode": ENTRY_MODE_QPBOC_NO_PIN,
            "icc": {f"{tag:X}": value.hex().upper() for tag, value in result.field55.items()},
        }

    def _wait(self, deadline: float) -> Any:
        while (left := deadline - self._clock()) > 0:
            try:
                target = self.reader.wait_for_card(min(left, 1.0))
            except ReaderError as error:
                log.warning("reader: %s; resetting", error)
                self.reader.reset()
                continue
            if target is not None:
                return target
        return None

