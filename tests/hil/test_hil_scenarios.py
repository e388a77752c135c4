"""The scenario catalogue on the chosen rig (--rig=sim by default): one test per named scenario and interface
(the pairs: conftest.pytest_generate_tests)."""

from __future__ import annotations

from hil_bench import Bench
from hil_scenarios import Scenario


def test_scenario(scenario: Scenario, bench: Bench) -> None:
    for capability in sorted(scenario.needs):
        bench.require(capability)
    scenario.run(bench)
