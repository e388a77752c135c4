"""Counts the tests keep for the end-of-session summary: crash points covered, hostile inputs tried per target.

Under pytest-xdist each worker counts its own tests; the top conftest sends a worker's counts to the controller
when it ends (``workeroutput``) and prints the merged summary there, so a parallel run reports what a serial
one does.
"""

from __future__ import annotations

from collections import Counter

CRASH_POINTS_COVERED: Counter[str] = Counter()
"""Crash points whose test passed (tests/crash)."""
FUZZ_INPUTS: Counter[str] = Counter()
"""Inputs tried per fuzzing target (tests/robustness)."""

TALLIES: dict[str, Counter[str]] = {"crash_points_covered": CRASH_POINTS_COVERED, "fuzz_inputs": FUZZ_INPUTS}


def export() -> dict[str, dict[str, int]]:
    return {name: dict(counts) for name, counts in TALLIES.items()}


def merge(exported: dict[str, dict[str, int]]) -> None:
    for name, counts in exported.items():
        TALLIES[name].update(counts)
