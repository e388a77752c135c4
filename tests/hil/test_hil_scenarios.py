"""The scenario catalogue on the chosen rig (--rig=sim by default): one test per named scenario."""

from __future__ import annotations

import pytest
from hil_bench import Bench
from hil_scenarios import CATALOGUE, Scenario


@pytest.mark.parametrize("scenario", CATALOGUE, ids=str)
def test_scenario(scenario: Scenario, bench: Bench) -> None:
    for capability in sorted(scenario.needs):
        bench.require(capability)
    scenario.run(bench)
