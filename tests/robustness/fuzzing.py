"""Shared by the robustness tests: hypothesis budgets per profile, and the count of inputs tried per target.

Every fuzz test calls :func:`tried` once per example with the name of what it attacks; the top conftest prints
the totals at the end of the session, so a run says how many hostile inputs each parser actually saw.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from tallies import FUZZ_INPUTS

_RELAXED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
            HealthCheck.filter_too_much, HealthCheck.large_base_example]


def long_mode() -> bool:
    """True under ``--hypothesis-profile=long`` (or a profile derived from it, e.g. with a verbosity)."""
    return settings.get_current_profile_name().startswith("long")


def fuzz(ci_examples: int) -> settings:
    """``ci_examples`` in the default "ci" profile (scaled by its max_examples / 100, so a smaller or larger "ci"
    scales the whole folder), and the profile's own max_examples in the long one (every target the same)."""
    budget = settings.default.max_examples
    examples = budget if long_mode() else max(1, round(ci_examples * budget / 100))
    return settings(max_examples=examples, deadline=None, suppress_health_check=_RELAXED, derandomize=False)


def tried(target: str, count: int = 1) -> None:
    FUZZ_INPUTS[target] += count
