"""The terminal's side of e-purse loads with the acquirer: MAC2 requests and TAC confirmations.

A load request whose answer is lost is sent once more under the same STAN: the host answers a retransmission
from its store (the same MAC2), so the card, still in its session, can be credited. No answer at all ends the
load before any CREDIT: the host's unused MAC2 is voided by the card's next load request at the same serial.

Confirmations go from the journal (`TransitLoads`): each credited load keeps its STAN once given, so a resend is
a retransmission; those not acknowledged wait for the next `flush` (before and after every load).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hostproto.responses import (
    LoadAnswer,
    LoadRefusal,
    MessageError,
    parse_load_answer,
    parse_load_confirmation_answer,
)
from terminal.host.client import HostError, read_answer
from terminal.host.link import HostLink
from terminal.journal.journal import LoadToConfirm, TransitLoads
from terminal.kernel.transit_load import LoadAuthorization

__all__ = ["LOADS", "LOAD_CONFIRMATIONS", "LoadLink"]

log = logging.getLogger("terminal.host")

LOADS = "/api/v1/transit/loads"
LOAD_CONFIRMATIONS = "/api/v1/transit/load-confirmations"
_REFUSED_FOR_GOOD = ("12", "88", "92")  # the host will never accept that confirmation: kept aside, logged


class LoadLink:
    """`LoadHost` for the load kernel over the terminal's host link and journal."""

    def __init__(self, link: HostLink) -> None:
        self.link = link
        self.memory: TransitLoads = link.journal.transit_loads()

    def authorize_load(self, request: Mapping[str, Any]) -> LoadAuthorization:
        """MAC2 for the card's quote; not approved with the host's words, or why no answer came."""
        journal = self.link.journal
        local_date = journal.today()
        stan = journal.next_stan(local_date)
        body = {"mti": "0200", "tid": self.link.tid, "stan": stan, "local_date": local_date, **request}
        answer: dict[str, Any] = {}
        for attempt in (1, 2):
            try:
                answer = self.link.client.post(LOADS, body)
                break
            except HostError as error:
                if not error.maybe_processed or attempt == 2:
                    log.warning("host: load STAN %s: no answer (%s)", stan, error)
                    return LoadAuthorization(False, "No answer from the host")
                log.warning("host: load STAN %s: answer lost (%s); asking again", stan, error)
        try:
            parsed = parse_load_answer(answer)
        except MessageError as error:  # no usable MAC2: the card is not credited
            log.warning("host: load STAN %s: malformed answer (%s)", stan, error)
            return LoadAuthorization(False, "the host's answer is malformed")
        if parsed.stan != stan:
            return LoadAuthorization(False, "the host's answer does not match the request")
        if not isinstance(parsed, LoadAnswer):
            why = parsed.reason if isinstance(parsed, LoadRefusal) else parsed.text
            log.info("host: load STAN %s refused: rc %s (%s)", stan, parsed.rc, why)
            return LoadAuthorization(False, f"{parsed.text} ({parsed.rc})")
        return LoadAuthorization(True, parsed.text, bytes.fromhex(parsed.mac2), bytes.fromhex(parsed.date_time),
                                 {"stan": stan, "local_date": local_date})

    def flush(self) -> int:
        """Send every credited load's TAC not yet acknowledged; returns how many are still waiting."""
        waiting = self.memory.to_confirm()
        for index, item in enumerate(waiting):
            try:
                self._confirm(item)
            except HostError as error:
                log.warning("host: load confirmations wait for the host (%s)", error)
                return len(waiting) - index
        return 0

    def _confirm(self, item: LoadToConfirm) -> None:
        journal, record = self.link.journal, item.record
        stan, local_date, repeat = item.stan, item.local_date, item.stan is not None
        if stan is None or local_date is None:
            local_date = journal.today()
            stan = journal.next_stan(local_date)
            self.memory.give_stan(item.load_id, stan, local_date)
        body = {"mti": "0221" if repeat else "0220", "tid": self.link.tid, "stan": stan, "local_date": local_date,
                "original_stan": record["host_stan"], "original_local_date": record["host_local_date"],
                "card_number": record["card_number"], "online_serial": int(record["online_serial"]),
                "tac": str(record["tac"]).upper()}
        answer = self.link.client.post(LOAD_CONFIRMATIONS, body)
        parsed = read_answer(parse_load_confirmation_answer, answer, f"load confirmation STAN {stan}")
        if parsed.stan == stan and parsed.rc == "00":
            self.memory.confirmed(item.load_id, accepted=True)
        elif isinstance(parsed, LoadRefusal) and parsed.rc in _REFUSED_FOR_GOOD:
            log.error("host: load confirmation STAN %s refused for good: rc %s (%s)", stan, parsed.rc, parsed.reason)
            self.memory.confirmed(item.load_id, accepted=False)
        else:
            raise HostError(f"confirmation STAN {stan}: rc {parsed.rc}")
