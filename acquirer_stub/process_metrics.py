"""The few figures counted in this process's memory (prometheus-client), for `acquirer_stub.metrics` to serve.

Apart from the blueprint so that low-level modules (the rate limits) can count without importing the web layer.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

PREFIX = "quickpass_acquirer_"

REGISTRY = CollectorRegistry(auto_describe=True)
RATE_LIMIT_REFUSALS = Counter(f"{PREFIX}rate_limit_refusals", "Requests refused (429) because a rate limit was used"
                              " up, by limit.", ["limit"], registry=REGISTRY)


def refused(scope: str) -> None:
    RATE_LIMIT_REFUSALS.labels(limit=scope).inc()
