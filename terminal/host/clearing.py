"""Transit clearing from the terminal's side: the journal's fares, uploaded in batches until none is waiting.

A fare stays waiting until the acquirer has answered for it, so a lost answer or a crash mid-upload only means
the batch goes again; the acquirer answers a fare it already cleared as a repeat (cleared once). A refused fare
is kept in the journal with the acquirer's reason and logged for the operator: sending it again would not help.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from hostproto.messages import MAX_FARES_PER_UPLOAD
from hostproto.responses import parse_clearing_answer
from terminal.host.client import HostClient, HostError, HostRejected, read_answer
from terminal.journal.crashpoints import crash_point
from terminal.journal.journal import TransitMemory

__all__ = ["TRANSIT_FARES", "ClearingResult", "clear_fares"]

log = logging.getLogger("terminal.host")

TRANSIT_FARES = "/api/v1/transit/fares"
_STATUSES = ("cleared", "repeat", "refused")


@dataclass(frozen=True)
class ClearingResult:
    cleared: int  # new on the acquirer's side, by this call
    repeat: int  # the acquirer had them already (an earlier answer was lost)
    refused: int
    waiting: int  # still to send: the upload stopped at `error`
    error: str | None = None

    @property
    def line(self) -> str:
        """The merchant's (or the gate operator's) line."""
        text = (f"transit clearing: {self.cleared} fare(s) cleared, {self.repeat} already cleared, "
                f"{self.refused} refused, {self.waiting} waiting")
        return f"{text} ({self.error})" if self.error else text


def _answers(batch: list[tuple[int, dict[str, object]]], answer: dict[str, object]) -> dict[int, str]:
    """Row id → "cleared" / "repeat" / "refused: why"; a malformed answer counts as no answer at all."""
    parsed = read_answer(parse_clearing_answer, answer, "transit clearing")
    if parsed.rc != "00" or len(parsed.results) != len(batch):
        raise HostError(f"transit clearing: unexpected answer (rc {parsed.rc})")
    answers = {}
    for (row_id, _fare), result in zip(batch, parsed.results, strict=True):
        reason = "".join(c if c.isprintable() else " " for c in result.reason or "no reason given")
        answers[row_id] = f"refused: {reason}" if result.status == "refused" else result.status
    return answers


def _format_refusal(batch: list[tuple[int, dict[str, object]]], failure: HostRejected) -> dict[int, str] | None:
    """A 400 naming one fare (``fares[3].tac``): that fare refused, the others sent again; else None."""
    match = re.fullmatch(r"fares\[(\d+)\].*", str(failure.details.get("field", "")))
    if failure.status != 400 or match is None or int(match.group(1)) >= len(batch):
        return None
    row_id = batch[int(match.group(1))][0]
    return {row_id: f"refused: unreadable record ({failure.details['field']}: {failure.error})"[:200]}


def clear_fares(client: HostClient, tid: str, memory: TransitMemory, *,
                batch_size: int = MAX_FARES_PER_UPLOAD) -> ClearingResult:
    """Upload every waiting fare, oldest first, a batch at a time; stops at the first batch not answered."""
    counts = dict.fromkeys(_STATUSES, 0)
    error = None
    while batch := memory.to_clear(batch_size):
        try:
            answer = client.post(TRANSIT_FARES, {"tid": tid, "fares": [fare for _row, fare in batch]})
            crash_point("fare.clearing_answered")
            answers = _answers(batch, answer)
        except HostRejected as failure:  # one unreadable record must not hold back every fare after it
            answers = _format_refusal(batch, failure)
            if answers is None:
                error = str(failure)
                break
        except HostError as failure:
            error = str(failure)
            break
        memory.cleared(answers)
        for row_id, text in answers.items():
            status = text.split(":")[0]
            counts[status] += 1
            if status == "refused":
                log.warning("transit clearing: fare #%d %s", row_id, text)
    waiting = memory.clearing_counts()["waiting"]
    result = ClearingResult(counts["cleared"], counts["repeat"], counts["refused"], waiting, error)
    if sum(counts.values()) or error:
        log.info("host: %s", result.line)
    return result
