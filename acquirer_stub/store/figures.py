"""What the acquirer's /metrics reports, read from the one database every acquirer process writes to.

Counting at scrape time from the stored rows (not in each process's memory) is what makes the figures right
however many processes serve the API, and keeps them across a restart.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Latencies:
    buckets: list[int]  # cumulative counts at or below each bound, in the bounds' order
    count: int
    total_ms: float


def authorizations(connection: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(response code, issuer code or "", count) of every authorization answered."""
    return [(row[0], row[1] or "", int(row[2])) for row in connection.execute(
        "SELECT rc, issuer, COUNT(*) FROM transactions WHERE kind = 'authorization' GROUP BY rc, issuer"
        " ORDER BY rc, issuer")]


def decision_latencies(connection: sqlite3.Connection, bounds_ms: Sequence[float]) -> Latencies:
    """The authorizations' host processing times against the histogram's bounds: each row counted in its own bucket
    (one CASE per row, the index covering it), the buckets then summed up to each bound."""
    case = " ".join(f"WHEN latency_ms <= {float(bound)!r} THEN {n}" for n, bound in enumerate(bounds_ms))
    per_bucket = [0] * (len(bounds_ms) + 1)
    total = 0.0
    for bucket, count, summed in connection.execute(
            f"SELECT CASE {case} ELSE {len(bounds_ms)} END AS bucket, COUNT(*), SUM(latency_ms) FROM transactions"
            " WHERE kind = 'authorization' AND latency_ms IS NOT NULL GROUP BY bucket"):
        per_bucket[int(bucket)] = int(count)
        total += float(summed)
    return Latencies(list(itertools.accumulate(per_bucket[:-1])), sum(per_bucket), total)


def open_batches(connection: sqlite3.Connection) -> int:
    """Terminals whose current batch holds at least one message (settlement closes it)."""
    return int(connection.execute(
        "SELECT COUNT(*) FROM terminals t WHERE EXISTS (SELECT 1 FROM transactions x WHERE x.tid = t.tid"
        " AND x.batch = t.batch)").fetchone()[0])


def exception_items(connection: sqlite3.Connection) -> dict[str, int]:
    found = {"open": 0, "resolved": 0}
    found.update({row[0]: int(row[1]) for row in connection.execute(
        "SELECT state, COUNT(*) FROM exception_items GROUP BY state")})
    return found


def tokens_by_status(connection: sqlite3.Connection) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in connection.execute("SELECT status, COUNT(*) FROM tokens GROUP BY status")}


def token_events(connection: sqlite3.Connection) -> int:
    """Token lifecycle events (suspend, resume, wallet off and on, provisioning) ever recorded."""
    return int(connection.execute("SELECT COUNT(*) FROM events WHERE kind = 'token'").fetchone()[0])
