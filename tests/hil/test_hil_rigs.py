"""`--rig=hw` as a person runs it: its own code path (real serial ports, no software chip to reach into)
against two software PN532s given as plain serial paths, as if they were two USB–serial adapters; and the
one-line stop when a port cannot be reached. `--rig=pcsc`: the terminal's PC/SC backend through a pcscd of the
run's own and vsmartcard's virtual reader, the cards in its slot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
ALONE = {name: value for name, value in os.environ.items() if not name.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
"""The inner run's environment: not a worker of this one (its reports would go to a worker's folder)."""


def test_hw_rig_without_ports_stops_at_once_with_one_line(tmp_path: Path) -> None:
    for options, says in ((["--rig=hw"], "--rig=hw needs --reader-port: the terminal's PN532"),
                          (["--rig=hw", "--reader-port", str(tmp_path / "none"), "--card-port", "/dev/null"],
                           f"the reader PN532 on {tmp_path / 'none'}: no such device; check the cable"),
                          (["--interface", "hsu,usb"], "--interface: usb is not one of hsu, i2c, spi"),
                          (["--i2c-hz", "1000000"], "--i2c-hz: the PN532's I2C runs at 10 kHz to 400 kHz")):
        run = subprocess.run([*PYTEST, "tests/hil", *options], cwd=REPOSITORY, capture_output=True, text=True,
                             timeout=120, env=ALONE)
        lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        assert run.returncode == 4 and len(lines) == 1, (run.returncode, lines)
        assert lines[0].startswith("ERROR: ") and says in lines[0]


@pytest.mark.parametrize("scenarios", ["online-approval or see-phone-fingerprint or reader-silent-reset"])
def test_hw_rig_against_two_software_pn532s_on_serial_paths(tmp_path: Path, scenarios: str) -> None:
    emulator = subprocess.Popen([sys.executable, "-m", "firmware.cli", "pn532", "--link", str(tmp_path / "pos"),
                                 "--link", str(tmp_path / "card")], stdout=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not emulator.stdout.readline().startswith("ready"):
            pass
        run = subprocess.run(
            [*PYTEST, "tests/hil/test_hil_scenarios.py", "--rig=hw", "--reader-port", str(tmp_path / "pos"),
             "--card-port", str(tmp_path / "card"), "--hil-report", str(tmp_path / "report"),
             "--basetemp", str(tmp_path / "inner"), "-k", scenarios, "-rs"],
            cwd=REPOSITORY, capture_output=True, text=True, timeout=600, env=ALONE)
    finally:
        emulator.terminate()
        emulator.communicate(timeout=10)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    junit = ElementTree.parse(tmp_path / "report" / "junit.xml").getroot()
    results = {case.get("name"): [child.tag for child in case] for case in junit.iter("testcase")}
    assert len(results) == 3 and sum("skipped" in tags for tags in results.values()) == 1, results
    assert not any({"failure", "error"} & set(tags) for tags in results.values()), results
    assert "skipped" in results["reader-silent-reset"]
    assert "cannot pulse the reader PN532's RSTPDN" in run.stdout  # the one thing it cannot do off a Pi
    assert 'name="rig" value="hw"' in (tmp_path / "report" / "junit.xml").read_text()


def test_pcsc_rig_runs_the_scenarios_pcsc_can_express(tmp_path: Path) -> None:
    scenarios = "see-phone-fingerprint or card-removed-at-gpo or torn-transit-recovered or corrupted-uart-frame"
    run = subprocess.run(
        [*PYTEST, "tests/hil/test_hil_scenarios.py", "--rig=pcsc", "--hil-report", str(tmp_path / "report"),
         "--basetemp", str(tmp_path / "inner"), "-k", scenarios, "-rs"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600, env=ALONE)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    junit = ElementTree.parse(tmp_path / "report" / "junit.xml").getroot()
    results = {case.get("name"): [child.tag for child in case] for case in junit.iter("testcase")}
    assert len(results) == 4 and not any({"failure", "error"} & set(tags) for tags in results.values()), results
    assert [name for name, tags in results.items() if "skipped" in tags] == ["corrupted-uart-frame"]
    assert 'name="rig" value="pcsc"' in (tmp_path / "report" / "junit.xml").read_text()
