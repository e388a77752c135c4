"""The terminal service's /metrics in the Prometheus text format (prometheus-client).

Taps and the card-in-field time are counted as each sale or fare ends; reader resets, the journal's backlog and the
last host contact are read from the service's parts at scrape time, from values the worker thread keeps up to date
(the journal's database connection belongs to the worker: a scrape never touches it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from terminal.service.service import TerminalService

PREFIX = "quickpass_terminal_"
CARD_IN_FIELD_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)  # EMV's target is 0.5 s


class _Live(Collector):
    def __init__(self, service: TerminalService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        yield CounterMetricFamily(f"{PREFIX}reader_resets", "PN532 resets after a hung or silent chip.",
                                  value=service.parts.reader.resets)
        link = service.link_snapshot()
        backlog = GaugeMetricFamily(f"{PREFIX}journal_backlog", "Reversals and advices in the journal still to"
                                    " send to the host.", labels=["kind"])
        backlog.add_metric(["reversal"], link.get("pending_reversals", 0))
        backlog.add_metric(["advice"], link.get("pending_advices", 0))
        yield backlog
        yield GaugeMetricFamily(f"{PREFIX}signed_on", "1 while the terminal holds an open batch on the host.",
                                value=1 if link.get("signed_on") else 0)
        contact = service.parts.host.client.last_contact
        if contact is not None:  # absent until the host first answers: a gauge of 0 would read as 1970
            yield GaugeMetricFamily(f"{PREFIX}last_host_contact_timestamp_seconds", "When the host last answered"
                                    " (Unix time).", value=contact)


class ServiceMetrics:
    """One registry per service (a process may run several in tests), fed by the service's worker threads."""

    def __init__(self, service: TerminalService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._taps = Counter(f"{PREFIX}taps", "Sales, top-ups and fares that had a card or phone, by outcome.",
                             ["kind", "outcome"], registry=self.registry)
        self._in_field = Histogram(f"{PREFIX}card_in_field_seconds", "Time the card or phone had to stay in the"
                                   " field for one transaction.", ["kind"], buckets=CARD_IN_FIELD_BOUNDS,
                                   registry=self.registry)
        self.registry.register(_Live(service))

    def tapped(self, kind: str, outcome: str, card_in_field: float | None) -> None:
        self._taps.labels(kind=kind, outcome=outcome).inc()
        if card_in_field is not None:
            self._in_field.labels(kind=kind).observe(card_in_field)

    def render(self) -> bytes:
        return generate_latest(self.registry)

