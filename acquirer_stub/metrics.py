"""/metrics in the Prometheus text format (prometheus-client), for the monitoring an acquirer already runs.

Business figures (authorizations by response code and issuer, decision latency, open batches, the exception
queue, tokens) are counted from the database at scrape time: every acquirer process writes there, so they are
right however many worker processes serve the API and survive a restart. Rate-limit refusals are counted in
memory, by the web process: the only one that refuses by rate limit (logins, SMS codes).

Not for anonymous clients: a scraper sends `Authorization: Bearer <metrics_token>` (from the instance's
config.json), an operator's browser session also works; `"metrics_public": true` opens it to anyone who can
reach the web listener.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from flask import Blueprint, Response, current_app
from flask_login import current_user
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from acquirer_stub import process_metrics
from acquirer_stub.process_metrics import PREFIX
from acquirer_stub.store import db, figures
from acquirer_stub.web import bearer_token

bp = Blueprint("metrics", __name__)

LATENCY_BOUNDS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

class StoreCollector(Collector):
    """Reads the figures on each scrape, in one short read on its own connection."""

    def __init__(self, database: object) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        yield from process_metrics.REGISTRY.collect()
        connection = db.connect(self.database)  # type: ignore[arg-type]
        try:
            authorizations = figures.authorizations(connection)
            latencies = figures.decision_latencies(connection, [s * 1000 for s in LATENCY_BOUNDS_SECONDS])
            open_batches = figures.open_batches(connection)
            exceptions = figures.exception_items(connection)
            tokens = figures.tokens_by_status(connection)
            token_events = figures.token_events(connection)
        finally:
            connection.close()
        counted = CounterMetricFamily(f"{PREFIX}authorizations", "Authorizations answered, by response code (DE39)"
                                      " and issuer.", labels=["rc", "issuer"])
        for rc, issuer, count in authorizations:
            counted.add_metric([rc, issuer or "none"], count)
        yield counted
        buckets = [(repr(bound), count) for bound, count in zip(LATENCY_BOUNDS_SECONDS, latencies.buckets,
                                                                  strict=True)]
        yield HistogramMetricFamily(f"{PREFIX}decision_seconds", "Host processing time of an authorization.",
                                    buckets=[*buckets, ("+Inf", latencies.count)],
                                    sum_value=latencies.total_ms / 1000)
        yield GaugeMetricFamily(f"{PREFIX}open_batches", "Terminals whose current batch holds messages.",
                                value=open_batches)
        queue = GaugeMetricFamily(f"{PREFIX}exception_items", "Exception queue items, by state.", labels=["state"])
        for state, count in sorted(exceptions.items()):
            queue.add_metric([state], count)
        yield queue
        gauge = GaugeMetricFamily(f"{PREFIX}tokens", "Payment tokens, by status.", labels=["status"])
        for status, count in sorted(tokens.items()):
            gauge.add_metric([status], count)
        yield gauge
        yield CounterMetricFamily(f"{PREFIX}token_events", "Token lifecycle events (provisioning, suspend, resume,"
                                  " wallet off and on).", value=token_events)


def _allowed() -> bool:
    instance = current_app.config["INSTANCE"]
    if instance.metrics_public:
        return True
    token = bearer_token()
    if token is not None and instance.metrics_token and hmac.compare_digest(token.encode(),
                                                                            instance.metrics_token.encode()):
        return True
    return bool(current_user.is_authenticated and current_user.role == "operator")


@bp.get("/metrics")
def metrics() -> Response:
    if not _allowed():
        return Response("metrics need the bearer token of the instance's config.json (metrics_token) or an"
                        " operator's login\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(current_app.config["DATABASE"]))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
