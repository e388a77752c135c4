"""The result table: one row per figure, with its reference, ratio and target; and the machine it ran on."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

COLUMNS = ("area", "what", "measured", "reference", "ratio", "target", "result")


@dataclass
class Row:
    """A figure; `value` and `reference` are numbers in `unit` (the smoke test checks they are positive)."""

    area: str
    what: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    target: str = ""
    met: bool | None = None  # None: no target for this row
    detail: str = ""  # printed after the figure, e.g. p50/p99

    @property
    def ratio(self) -> float | None:
        return None if not self.reference else self.value / self.reference

    def cells(self) -> list[str]:
        measured = _number(self.value, self.unit) + (f" ({self.detail})" if self.detail else "")
        reference = "—" if self.reference is None else f"{self.reference_label} {_number(self.reference, self.unit)}"
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        result = "—" if self.met is None else ("MET" if self.met else "MISSED")
        return [self.area, self.what, measured, reference.strip(), ratio, self.target or "—", result]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---|---|"]
        lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        return "\n".join(lines)


def _number(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms" if value < 100 else f"{value:.1f} ms"
    if unit == "/s":
        return f"{value:.0f}/s"
    if unit == "µs":
        return f"{value:.1f} µs"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:g} {unit}".strip()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 400 samples is the 396th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as stream:
            model = next((line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")), "")
    except OSError:
        pass
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return (f"{model or platform.processor() or platform.machine()}, {cores} cores ({usable} usable), "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
