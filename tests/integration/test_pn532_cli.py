"""`pos-card pn532` as a process: ready line, control commands, clear errors, clean stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pn532_reader import qpboc_tap

from firmware.issuing.layout import World
from hardware.pn532 import open_pn532

POS_CARD = [sys.executable, "-m", "firmware.cli"]


def _start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([*POS_CARD, "pn532", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready"):
            return process
    process.kill()
    _, errors = process.communicate()
    raise AssertionError(f"no ready line: {lines} {errors}")


def _card(*args: str, control: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*POS_CARD, *args, "--control", str(control)], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture
def running(tmp_path: Path, world: World) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    process = _start("--link", str(tmp_path / "pos"), "--present", str(world.path(Path(world.cards()[0]["file"]))))
    yield process, tmp_path / "pos.ctl"
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_status_tap_fault_and_stop(running: tuple[subprocess.Popen[str], Path], world: World,
                                   tmp_path: Path) -> None:
    process, control = running
    assert os.readlink(tmp_path / "pos").startswith("/dev/pts/")
    status = _card("status", control=control)
    assert status.returncode == 0 and '"card"' in status.stdout
    assert _card("tap", str(world.demo_phone), "--seconds", "5", control=control).returncode == 0
    pn532, interface = open_pn532(str(tmp_path / "pos"))
    try:
        assert pn532.SAMConfig()
        found, uid = pn532.readPassiveTargetID(0, 1000, inlist=True)
        assert found and uid[0] == 0x08  # the phone replaced the card
        assert _card("fault", "silent", control=control).returncode == 0
        assert pn532.getFirmwareVersion() == 0  # the chip says nothing now
        assert _card("reset", control=control).returncode == 0
        assert pn532.getFirmwareVersion() == 0x32010607  # the reset brought it back
    finally:
        interface.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not (tmp_path / "pos").exists() and not control.exists()


def test_remove_after_shows_in_status_and_reset_clears_it(running: tuple[subprocess.Popen[str], Path]) -> None:
    _, control = running

    def field_faults() -> dict:
        status = _card("status", control=control)
        assert status.returncode == 0, status.stderr
        return json.loads(status.stdout)["field"]["faults_armed"]

    assert field_faults() == {}
    assert _card("fault", "remove_after", "3", "--tear", control=control).returncode == 0
    assert field_faults() == {"remove_after": {"exchanges_left": 3, "tear": True}}
    assert _card("reset", control=control).returncode == 0
    assert field_faults() == {}
    assert _card("fault", "remove_after", "2", control=control).returncode == 0
    assert field_faults() == {"remove_after": {"exchanges_left": 2, "tear": False}}


@pytest.mark.parametrize(("args", "message"), [
    (("fault", "melt"), "unknown fault 'melt'"),
    (("fault", "status", "0x99"), "status code is 00-3F"),
    (("fault", "remove_after", "0"), "exchange number"),
    (("fault", "drop_byte", "--chip", "nope"), "no chip 'nope'"),
    (("tap", "/nonexistent.json"), "cannot read"),
])
def test_a_bad_control_command_gets_a_clear_error(running: tuple[subprocess.Popen[str], Path],
                                                  args: tuple[str, ...], message: str) -> None:
    process, control = running
    result = _card(*args, control=control)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert process.poll() is None  # the rig is still running


def test_garbage_on_the_wire_does_not_kill_the_chip(running: tuple[subprocess.Popen[str], Path],
                                                    tmp_path: Path) -> None:
    process, _control = running
    with open(tmp_path / "pos", "wb", buffering=0) as wire:
        wire.write(os.urandom(4096) + bytes.fromhex("0000FF05FBD4") + os.urandom(300))
    time.sleep(0.2)
    pn532, interface = open_pn532(str(tmp_path / "pos"))
    try:
        assert pn532.getFirmwareVersion() == 0x32010607
    finally:
        interface.close()
    assert process.poll() is None


def test_a_second_rig_on_the_same_link_is_refused(running: tuple[subprocess.Popen[str], Path],
                                                  tmp_path: Path) -> None:
    result = subprocess.run([*POS_CARD, "pn532", "--link", str(tmp_path / "pos"), "--control",
                             str(tmp_path / "other.ctl")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "in use by another software PN532" in result.stderr


def test_no_rig_listening_is_a_clear_error(tmp_path: Path) -> None:
    result = _card("status", control=tmp_path / "none.ctl")
    assert result.returncode == 1 and "nothing is listening on" in result.stderr


def test_trace_writes_every_frame_both_ways_without_apdu_bytes(tmp_path: Path, world: World) -> None:
    """`--trace FILE`: GetFirmwareVersion and its reply as bytes, the APDU frames by size only; the card's
    number (in the GPO answer as track 2 and PAN) never, in any spelling."""
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    trace = tmp_path / "frames.log"
    process = _start("--link", str(tmp_path / "pos"), "--present", str(world.path(Path(card["file"]))),
                     "--trace", str(trace))
    try:
        pn532, interface = open_pn532(str(tmp_path / "pos"))
        try:
            assert pn532.getFirmwareVersion() == 0x32010607 and pn532.SAMConfig()
            assert pn532.readPassiveTargetID(0, 1000, inlist=True)[0]
            data, _, sw = qpboc_tap(interface, 250000)
            assert sw == 0x9000 and 0x57 in data  # track 2 crossed the link
        finally:
            interface.close()
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    assert f"frames in {trace}" in out
    assert stat.S_IMODE(trace.stat().st_mode) == 0o600
    lines = trace.read_text().splitlines()
    assert lines[0].startswith("# seconds")
    times = [float(line.split()[0]) for line in lines[1:]]
    assert times == sorted(times) and len(times) >= 12
    assert any("host→chip  D4 GetFirmwareVersion [02] 9 B" in line for line in lines)
    assert any("chip→host  D5 GetFirmwareVersion reply [03 32 01 06 07]" in line for line in lines)
    exchanges = [line for line in lines if "InDataExchange" in line]
    assert len(exchanges) == 6 and all(" B data]" in line for line in exchanges)  # PPSE, SELECT, GPO, replies
    assert sum("ACK" in line for line in lines) >= 6
    pan = card["pan"]
    text = trace.read_text().replace(" ", "").upper()
    assert pan not in text and "2PAY" not in text and b"2PAY".hex().upper() not in text
