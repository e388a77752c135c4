"""Robustness tests: the inputs-tried summary at the end of the session (see README.md in this folder)."""

from __future__ import annotations

import pytest
from fuzzing import COUNTS, long_mode
from hypothesis import settings


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    profile = settings.get_current_profile_name()
    terminalreporter.section(f"robustness: inputs tried (hypothesis profile {profile!r})")
    for target, count in sorted(COUNTS.items()):
        terminalreporter.line(f"{target:<44} {count:>9}")
    terminalreporter.line(f"{'total':<44} {sum(COUNTS.values()):>9}" + ("  (long mode)" if long_mode() else ""))
