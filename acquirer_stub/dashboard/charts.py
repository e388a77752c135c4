"""KPIs from the transactions table and their charts as inline SVG.

The charts are drawn on the server so the dashboard needs no JavaScript library and nothing from a CDN;
the numbers are computed apart from the drawing so tests can check them without parsing SVG.
"""

from __future__ import annotations

import bisect
import datetime
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from acquirer_stub.dashboard.present import reason_text
from acquirer_stub.store import transactions
from hostproto import messages

PERCENTILES = (50, 95, 99)


def response_text(rc: str | None) -> str:
    """hostproto's table, shared with the terminal's receipts, so the two never word a code differently."""
    return messages.response_text(rc) if rc else ""


def parse_time(text: str | None) -> datetime.datetime | None:
    """Stored times are ISO 8601; naive ones are taken as UTC so buckets never shift with the server's zone."""
    if not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: always a latency that really happened, not an interpolation between two."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


BIN_MINUTES = {15: 1, 60: 2, 240: 10, 1440: 60}
"""Minutes per column for each window the page offers: 15 to 30 columns, readable at any volume."""
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 1000)
"""Upper bounds of the latency distribution's bars (and one bar above the last)."""


@dataclass
class Overview:
    """What the overview page shows for a window of authorizations ending at `now`."""

    now: datetime.datetime
    minutes: int
    total: int = 0
    approved: int = 0
    latency: dict[int, float | None] = field(default_factory=dict)
    per_minute: list[tuple[datetime.datetime, int, int]] = field(default_factory=list)  # (minute, approved, declined)
    bins: list[tuple[datetime.datetime, int, int]] = field(default_factory=list)  # (start, approved, declined)
    reasons_per_bin: list[Counter[str]] = field(default_factory=list)  # declines by reason, in `bins`' order
    latency_distribution: list[tuple[str, int]] = field(default_factory=list)  # (bucket label, authorizations)
    declines_by_code: list[tuple[str, int]] = field(default_factory=list)
    declines_by_bank: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bin_minutes(self) -> int:
        return BIN_MINUTES.get(self.minutes, max(1, self.minutes // 30))

    @property
    def declined(self) -> int:
        return self.total - self.approved

    @property
    def approval_rate(self) -> float | None:
        return 100 * self.approved / self.total if self.total else None

    @property
    def tps_now(self) -> float:
        """Over the current minute: one-second TPS would flicker between 0 and 1 at demo volumes."""
        return (self.per_minute[-1][1] + self.per_minute[-1][2]) / 60 if self.per_minute else 0.0

    @property
    def tps_peak(self) -> float:
        return max((a + d for _, a, d in self.per_minute), default=0) / 60

    @property
    def tps_average(self) -> float:
        return self.total / (60 * self.minutes) if self.minutes else 0.0


def _latency_label(n: int) -> str:
    if n == 0:
        return f"≤ {LATENCY_BUCKETS_MS[0]} ms"
    if n == len(LATENCY_BUCKETS_MS):
        return f"> {LATENCY_BUCKETS_MS[-1]} ms"
    return f"{LATENCY_BUCKETS_MS[n - 1]}–{LATENCY_BUCKETS_MS[n]} ms"


def overview(connection: sqlite3.Connection, *, now: datetime.datetime, minutes: int = 60) -> Overview:
    """Authorizations only: advices were decided by the card and reversals are not new sales."""
    now = now if now.tzinfo else now.replace(tzinfo=datetime.UTC)
    end = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    start = end - datetime.timedelta(minutes=minutes)
    # a text prefilter one day wide (stored offsets may differ); the exact window is applied below
    rows = transactions.authorizations_since(connection, (start - datetime.timedelta(days=1)).strftime("%Y-%m-%d"))
    result = Overview(now=now, minutes=minutes)
    buckets = {start + datetime.timedelta(minutes=n): [0, 0] for n in range(minutes)}
    reasons: dict[datetime.datetime, Counter[str]] = {}
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    banks: Counter[str] = Counter()
    for row in rows:
        created = parse_time(row.created)
        if created is None or not start <= created < end:
            continue
        result.total += 1
        approved = row.rc == "00"
        result.approved += approved
        minute = created.replace(second=0, microsecond=0)
        buckets[minute][0 if approved else 1] += 1
        if row.latency_ms is not None:
            latencies.append(float(row.latency_ms))
        if not approved:
            codes[row.rc] += 1
            banks[row.issuer_name or row.issuer or "(no issuer: unknown card)"] += 1
            reasons.setdefault(minute, Counter())[reason_text(row.reason) or response_text(row.rc)] += 1
    result.latency = {p: percentile(latencies, p) for p in PERCENTILES}
    result.per_minute = [(minute, a, d) for minute, (a, d) in sorted(buckets.items())]
    size = result.bin_minutes
    for n in range(0, len(result.per_minute), size):
        chunk = result.per_minute[n:n + size]
        result.bins.append((chunk[0][0], sum(c[1] for c in chunk), sum(c[2] for c in chunk)))
        result.reasons_per_bin.append(sum((reasons.get(c[0], Counter()) for c in chunk), Counter()))
    spread = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for value in latencies:
        spread[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
    result.latency_distribution = [(_latency_label(n), count) for n, count in enumerate(spread)] if latencies else []
    result.declines_by_code = sorted(codes.items(), key=lambda item: (-item[1], item[0]))
    result.declines_by_bank = sorted(banks.items(), key=lambda item: (-item[1], item[0]))
    return result


# --- drawing -------------------------------------------------------------------------------------------------

_WIDTH, _BAR_HEIGHT, _LABEL_WIDTH = 560, 18, 190


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _short(label: str, limit: int = 30) -> str:
    """Bank names run long; the full label stays in the bar's tooltip."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(items: Iterable[tuple[str, float]], *, title: str, unit: str = "") -> Markup:
    """Horizontal bars with their values written out: readable without hovering, also on a small screen."""
    items = list(items)
    height = max(1, len(items)) * (_BAR_HEIGHT + 6) + 28
    top = max((value for _, value in items), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not items:
        parts.append('<text x="0" y="42" class="chart-empty">no data in this window</text>')
    span = _WIDTH - _LABEL_WIDTH - 70
    for n, (label, value) in enumerate(items):
        y = 28 + n * (_BAR_HEIGHT + 6)
        width = max(1.0, span * value / top)
        parts.append(
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 13}" text-anchor="end" class="chart-label">'
            f"{escape(_short(label))}</text>"
            f'<rect x="{_LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{_BAR_HEIGHT}" class="bar">'
            f"<title>{escape(label)}: {escape(_number(value))}{escape(unit)}</title></rect>"
            f'<text x="{_LABEL_WIDTH + width + 4:.1f}" y="{y + 13}" class="chart-value">'
            f"{escape(_number(value))}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def column_chart(columns: Sequence[tuple[str, int, int]], *, title: str) -> Markup:
    """Stacked columns (approved below, declined on top) per time bucket."""
    height, base, left = 180, 150, 30
    top = max((a + d for _, a, d in columns), default=0) or 1
    step = (_WIDTH - left) / max(1, len(columns))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
        f'<text x="{left - 4}" y="34" text-anchor="end" class="chart-value">{top}</text>',
        f'<line x1="{left}" y1="{base}" x2="{_WIDTH}" y2="{base}" class="axis"/>',
    ]
    scale = (base - 30) / top
    for n, (label, approved, declined) in enumerate(columns):
        x = left + n * step
        width = max(1.0, step - 1)
        ok_height, bad_height = approved * scale, declined * scale
        tip = f"<title>{escape(label)}: {approved} approved, {declined} declined</title>"
        if approved:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_height:.1f}" width="{width:.1f}" height="{ok_height:.1f}"'
                         f' class="bar ok">{tip}</rect>')
        if declined:
            parts.append(f'<rect x="{x:.1f}" y="{base - ok_height - bad_height:.1f}" width="{width:.1f}"'
                         f' height="{bad_height:.1f}" class="bar bad">{tip}</rect>')
    if columns:
        parts.append(f'<text x="{left}" y="{base + 16}" class="chart-label">{escape(columns[0][0])}</text>'
                     f'<text x="{_WIDTH}" y="{base + 16}" text-anchor="end" class="chart-label">'
                     f"{escape(columns[-1][0])}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


SERIES = 6
"""Colours of a stacked chart (CSS classes s0…s5); more reasons than that share the last one, "other"."""


def stacked_chart(columns: Sequence[tuple[str, Counter[str]]], *, title: str) -> Markup:
    """Columns stacked by series (e.g. declines by reason per time bin), with a legend of the series drawn."""
    totals: Counter[str] = sum((counts for _, counts in columns), Counter())
    names = [name for name, _ in totals.most_common()]
    shown = names if len(names) <= SERIES else [*names[:SERIES - 1], "other"]
    slot = {name: min(n, SERIES - 1) for n, name in enumerate(names)}
    per_slot: Counter[int] = Counter()
    for name, count in totals.items():
        per_slot[slot[name]] += count
    legend_rows = math.ceil(len(shown) / 2)
    height, base, left = 180 + 16 * legend_rows, 150, 30
    top = max((sum(counts.values()) for _, counts in columns), default=0) or 1
    step = (_WIDTH - left) / max(1, len(columns))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{base}" x2="{_WIDTH}" y2="{base}" class="axis"/>',
    ]
    if not names:
        parts.append('<text x="0" y="42" class="chart-empty">no declines in this window</text>')
    else:
        parts.append(f'<text x="{left - 4}" y="34" text-anchor="end" class="chart-value">{top}</text>')
    scale = (base - 30) / top
    for n, (label, counts) in enumerate(columns):
        x, y = left + n * step, float(base)
        width = max(1.0, step - 1)
        by_slot: Counter[int] = Counter()
        for name, count in counts.items():
            by_slot[slot[name]] += count
        for index in sorted(by_slot):
            h = by_slot[index] * scale
            y -= h
            what = shown[index]
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" class="bar s{index}">'
                         f"<title>{escape(label)}: {by_slot[index]} × {escape(what)}</title></rect>")
    if columns:
        parts.append(f'<text x="{left}" y="{base + 16}" class="chart-label">{escape(columns[0][0])}</text>'
                     f'<text x="{_WIDTH}" y="{base + 16}" text-anchor="end" class="chart-label">'
                     f"{escape(columns[-1][0])}</text>")
    for n, name in enumerate(shown):
        x, y = (n % 2) * (_WIDTH // 2), base + 34 + 16 * (n // 2)
        parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" class="bar s{n}"/>'
                     f'<text x="{x + 14}" y="{y}" class="chart-label">{escape(_short(name, 40))}'
                     f" ({per_slot[n]})</text>")
    parts.append("</svg>")
    return Markup("".join(parts))
