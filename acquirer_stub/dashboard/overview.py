"""The overview page's headline figures and charts, as the page is first drawn and as it refreshes live.

One function makes both, so the figures a browser receives over `/dashboard/overview.json` (after each sale
the live feed reports, and every half minute so the window slides) are exactly those of a reload.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass

from markupsafe import Markup

from acquirer_stub.dashboard import charts
from acquirer_stub.dashboard.charts import Overview

WINDOWS = (15, 60, 240, 1440)
DEFAULT_WINDOW = 60


@dataclass(frozen=True)
class Figures:
    stats: Overview
    kpis: dict[str, str]  # element id → text
    svg: dict[str, Markup]  # chart name → SVG


def window(value: int | None) -> int:
    return value if value in WINDOWS else DEFAULT_WINDOW


def _label(moment: datetime.datetime, minutes: int) -> str:
    return moment.strftime("%m-%d %H:%M" if minutes >= 1440 else "%H:%M")


def figures(connection: sqlite3.Connection, *, now: datetime.datetime, minutes: int) -> Figures:
    stats = charts.overview(connection, now=now, minutes=minutes)
    latency = " / ".join("—" if v is None else f"{v:.0f}" for v in stats.latency.values())
    kpis = {
        "kpi-approval": "—" if stats.approval_rate is None else f"{stats.approval_rate:.1f} %",
        "kpi-approval-detail": f"{stats.approved} approved / {stats.declined} declined",
        "kpi-tps": f"{stats.tps_now:.3f}",
        "kpi-tps-detail": f"peak {stats.tps_peak:.3f}, average {stats.tps_average:.3f}",
        "kpi-latency": f"{latency} ms",
        "kpi-latency-detail": f"host processing, {stats.total} authorizations",
    }
    per = "minute" if stats.bin_minutes == 1 else f"{stats.bin_minutes} min"
    zone = now.strftime("%Z") or "UTC"
    svg = {
        "volume": charts.column_chart([(_label(start, minutes), a, d) for start, a, d in stats.bins],
                                      title=f"Authorizations per {per} ({zone}): approved, declined"),
        "reasons": charts.stacked_chart([(_label(start, minutes), counts) for (start, _, _), counts
                                         in zip(stats.bins, stats.reasons_per_bin, strict=True)],
                                        title=f"Declines by reason per {per}"),
        "latency": charts.bar_chart(stats.latency_distribution, title="Host processing time: authorizations"),
        "codes": charts.bar_chart([(f"{rc} {charts.response_text(rc)}", n) for rc, n in stats.declines_by_code],
                                  title="Declines by response code"),
        "banks": charts.bar_chart(stats.declines_by_bank, title="Declines by bank"),
    }
    return Figures(stats, kpis, svg)
