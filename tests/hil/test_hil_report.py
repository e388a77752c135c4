"""The catalogue is complete and documented, and the reports never show card secrets."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hil_bench import Bench
from hil_report import ScenarioResult, render_html, render_junit
from hil_scenarios import CATALOGUE, scenario_by_name
from robustness.secret_scan import pan_like_runs, world_bins

from firmware.jsonfile import read_json

README = Path(__file__).with_name("README.md")


def test_the_catalogue_names_at_least_25_scenarios_and_the_readme_lists_each() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) >= 25 and len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9-]+", name) for name in names)
    text = README.read_text()
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"tests/hil/README.md does not list {missing}"


def test_a_report_of_an_offline_tap_shows_no_pan_track_2_or_key(bench: Bench) -> None:
    """An offline tap reads the records (PAN, certificates) and the GPO answer carries track 2: the richest
    case. The report is rendered without the writers' last-line PAN masking, so the recording itself is
    what is tested."""
    scenario_by_name("offline-fdda-approval").run(bench)
    result = ScenarioResult("hil::offline", "offline-fdda-approval", "passed", 1.0, trace=bench.trace)
    page = render_html([result], "sim", pans=[])
    junit = render_junit([result], "sim", pans=[])
    entry = bench.card_entry("icbc-debit")
    card_keys = bench.world.issuer_keys("icbc-debit")
    secrets = [c["pan"] for c in bench.world.cards()] + [t["token_pan"] for t in bench.world.tsp()["tokens"]]
    secrets += [value for value in card_keys.values() if isinstance(value, str) and len(value) >= 32]
    secrets += [read_json(bench.card("icbc-debit"))["applications"][0]["keys"]["icc_master_key"]]
    for secret in secrets:
        assert secret not in page and secret not in junit
        assert secret.lower() not in page.lower()
    bins = world_bins(bench.world.root)
    assert len(bins) == len(bench.world.issuers()) + 1
    assert not pan_like_runs(page, bins) and not pan_like_runs(junit, bins), "a card number in the report"
    masked = entry["pan"][:6] + "*" * (len(entry["pan"]) - 10) + entry["pan"][-4:]
    assert masked in page  # the PAN is there, masked: the APDU lane really shows the records
    lanes = {event.lane for event in bench.trace.sorted_events()}
    assert {"uart", "apdu", "ui", "host", "rig"} <= lanes
    assert "READ RECORD" in page and "InDataExchange" in page and "modelled" in page
    assert "<script" not in page and "http" not in page.split("</style>")[0]  # self-contained, no assets


def test_junit_counts_outcomes() -> None:
    results = [ScenarioResult("a::x", "x", "passed", 0.5), ScenarioResult("a::y", "y", "failed", 0.1, "boom"),
               ScenarioResult("a::z", "z", "skipped", 0.0, "no uart faults on hw")]
    suite = ET.fromstring(render_junit(results, "hw", pans=[]).split("?>", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    assert [case.get("name") for case in suite.iter("testcase")] == ["x", "y", "z"]
