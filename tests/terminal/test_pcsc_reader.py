"""The terminal's PC/SC reader (issue #16 §1): doctor names it, and says what to do when pcscd is not there; the
reader's own LED and buzzer. Sales and fares through pcscd: tests/terminal/test_reader_backends.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pcscd import READER, no_pcscd, running_pcscd
from readerconfig import with_reader

from emvcore.pcsc import LedBuzzer
from firmware.issuing.layout import World
from firmware.simulator.vpcd import VirtualSlot
from terminal import cli

GREEN, AMBER, SUCCESS_BEEP = LedBuzzer(False, True), LedBuzzer(True, True), LedBuzzer(None, None, 5)


def test_doctor_names_the_reader_and_says_when_pcscd_is_not_there(config: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pcsc_config = with_reader(config, f'type = "pcsc"\nname = "{READER}"\n')
    with no_pcscd():  # nor another test's meanwhile
        cli.main(["--config", str(pcsc_config), "doctor"])
    out = capsys.readouterr().out
    assert "pcscd" in out and ("is pcscd running?" in out or "Service not available" in out), out
    with running_pcscd(tmp_path / "pcscd"):
        cli.main(["--config", str(pcsc_config), "doctor"])
        out = capsys.readouterr().out
    assert f"PC/SC reader {READER} 00 00 (pcscd)" in out, out


def test_the_readers_own_led_and_buzzer_follow_a_tap(config: Path, world: World, vpcd_slot: VirtualSlot,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """[reader] feedback = "acr122u": the states of the tap reach the reader over the card's connection before the
    card is let go; vpcd has no escape, which doctor says, with the fix for a real reader's libccid."""
    pcsc_config = with_reader(config, f'type = "pcsc"\nname = "{READER}"\nfeedback = "acr122u"\n')
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    vpcd_slot.present(world.path(Path(card["file"])))
    code = cli.main(["--config", str(pcsc_config), "pay", "8.00", "--wait", "5", "--json"])
    sale = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (code, sale["outcome"], sale["cryptogram"]) == (0, "Approved", "TC")
    sent = list(vpcd_slot.indications)
    if sent[:1] == [GREEN]:  # "Present card" reaches the reader only when the card was in before it was shown
        sent.pop(0)
    assert sent == [AMBER, SUCCESS_BEEP, GREEN]  # read (amber), card read (beep, green); approved changes nothing
    assert vpcd_slot.status()["reader"] == {"red": False, "green": True, "beeps": 1}
    cli.main(["--config", str(pcsc_config), "doctor"])
    out = capsys.readouterr().out
    assert "reader feedback" in out and "ifdDriverOptions to 0x0001" in out, out
