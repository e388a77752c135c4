"""KPIs from the transactions table and their charts as inline SVG.

The charts are drawn on the server so the dashboard needs no JavaScript library and nothing from a CDN;
the numbers are computed apart from the drawing so tests can check them without parsing SVG.
"""

from __future__ import annotations

import datetime
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

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


@dataclass
class Overview:
    """What the overview page shows for a window of authorizations ending at `now`."""

    now: datetime.datetime
    minutes: int
    total: int = 0
    approved: int = 0
    latency: dict[int, float | None] = field(default_factory=dict)
    per_minute: list[tuple[datetime.datetime, int, int]] = field(default_factory=list)  # (minute, approved, declined)
    declines_by_code: list[tuple[str, int]] = field(default_factory=list)
    declines_by_bank: list[tuple[str, int]] = field(default_factory=list)

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

    def approval_rate_per_minute(self) -> list[tuple[datetime.datetime, float | None]]:
        return [(minute, 100 * a / (a + d) if a + d else None) for minute, a, d in self.per_minute]


def overview(connection: sqlite3.Connection, *, now: datetime.datetime, minutes: int = 60) -> Overview:
    """Authorizations only: advices were decided by the card and reversals are not new sales."""
    now = now if now.tzinfo else now.replace(tzinfo=datetime.UTC)
    end = now.replace(second=0, microsecond=0) + datetime.timedelta(minutes=1)
    start = end - datetime.timedelta(minutes=minutes)
    # a text prefilter one day wide (stored offsets may differ); the exact window is applied below
    rows = transactions.authorizations_since(connection, (start - datetime.timedelta(days=1)).strftime("%Y-%m-%d"))
    result = Overview(now=now, minutes=minutes)
    buckets = {start + datetime.timedelta(minutes=n): [0, 0] for n in range(minutes)}
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
        buckets[created.replace(second=0, microsecond=0)][0 if approved else 1] += 1
        if row.latency_ms is not None:
            latencies.append(float(row.latency_ms))
        if not approved:
            codes[row.rc] += 1
            banks[row.issuer_name or row.issuer or "(no route)"] += 1
    result.latency = {p: percentile(latencies, p) for p in PERCENTILES}
    result.per_minute = [(minute, a, d) for minute, (a, d) in sorted(buckets.items())]
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


def line_chart(
    points: Sequence[tuple[str, float | None]], *, title: str, maximum: float = 100, unit: str = "%"
) -> Markup:
    """A polyline with gaps where a bucket had no data (no data is not 0 %)."""
    height, base, left = 180, 150, 36
    step = (_WIDTH - left) / max(1, len(points) - 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}"'
        f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
        f'<text x="{left - 4}" y="34" text-anchor="end" class="chart-value">{_number(maximum)}{escape(unit)}</text>',
        f'<text x="{left - 4}" y="{base}" text-anchor="end" class="chart-value">0</text>',
        f'<line x1="{left}" y1="{base}" x2="{_WIDTH}" y2="{base}" class="axis"/>',
    ]
    segment: list[str] = []
    segments: list[list[str]] = []
    for n, (label, value) in enumerate(points):
        if value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x, y = left + n * step, base - (base - 30) * value / maximum
        segment.append(f"{x:.1f},{y:.1f}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" class="dot">'
                     f"<title>{escape(label)}: {_number(value)}{escape(unit)}</title></circle>")
    if segment:
        segments.append(segment)
    parts.extend(f'<polyline points="{" ".join(s)}" class="line"/>' for s in segments)
    parts.append("</svg>")
    return Markup("".join(parts))
