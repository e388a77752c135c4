"""The terminal's PC/SC reader (issue #16 §1): doctor names it, and says what to do when pcscd is not there; the
reader's own LED and buzzer. Sales and fares through pcscd: tests/terminal/test_reader_backends.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import smartcard
from pcscd import READER, Pcscd, no_pcscd, running_pcscd
from readerconfig import with_reader
from smartcard import scard
from waits import until

from emvcore import pcsc
from emvcore.pcsc import LedBuzzer
from firmware.issuing.layout import World
from firmware.simulator.vpcd import VirtualSlot
from terminal import cli
from terminal.config import load_config
from terminal.reader.pcsc import PcscReader

GREEN, AMBER, RED = LedBuzzer(False, True), LedBuzzer(True, True), LedBuzzer(True, False)
SUCCESS_BEEP = LedBuzzer(None, None, 5)


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
    """[reader] feedback = "acr122u": the states of the tap reach the reader over the card's connection, the beep
    after the tap's last command; vpcd has no escape, which doctor says, with the fix for a real reader's libccid."""
    pcsc_config = with_reader(config, f'type = "pcsc"\nname = "{READER}"\nfeedback = "acr122u"\n')
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    vpcd_slot.present(world.path(Path(card["file"])))
    code = cli.main(["--config", str(pcsc_config), "pay", "8.00", "--wait", "5", "--json"])
    sale = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (code, sale["outcome"], sale["cryptogram"]) == (0, "Approved", "TC")
    sent = list(vpcd_slot.indications)
    if sent[:1] == [GREEN]:  # "Present card" reaches the reader only when the card was in before it was shown
        sent.pop(0)
    assert sent == [AMBER, SUCCESS_BEEP]  # read: amber; card read: the beep, amber kept (no escape: the outcome, told
    # after the card is let go, cannot follow, so no green a decline could not undo)
    assert vpcd_slot.status()["reader"] == {"red": True, "green": True, "beeps": 1, "detection_beep": False}
    cli.main(["--config", str(pcsc_config), "doctor"])
    out = capsys.readouterr().out
    assert "reader feedback" in out and "ifdDriverOptions to 0x0001" in out, out


class EscapingDriver:
    """pyscard's scard through the real pcscd, with what vpcd's driver lacks and a USB reader's has: a CCID escape,
    listed as Part 10 feature 0x13 (as libccid lists it once ifdDriverOptions allows it), which reaches the
    reader's LED and buzzer with no card in it; here the reader is vpcd's slot."""

    ESCAPE = 0x42000001  # libccid's SCARD_CTL_CODE(1)

    def __init__(self, slot: VirtualSlot) -> None:
        self._slot = slot
        self.controls: list[int] = []
        self.broken = False  # the next escape raises, as a driver binding might

    def __getattr__(self, name: str) -> Any:
        return getattr(scard, name)

    def SCardControl(self, handle: Any, code: int, data: list[int]) -> tuple[int, list[int]]:  # pyscard's name
        self.controls.append(code)
        if code == scard.SCARD_CTL_CODE(pcsc.GET_FEATURE_REQUEST):
            return scard.SCARD_S_SUCCESS, list(bytes([pcsc.FEATURE_CCID_ESC_COMMAND, 4]) + self.ESCAPE.to_bytes(4))
        if code == self.ESCAPE and self.broken:
            self.broken = False
            raise OSError("the reader went away mid-command")
        if code == self.ESCAPE:
            return scard.SCARD_S_SUCCESS, list(self._slot.reader_command(bytes(data)) or pcsc.SW_WRONG_P1P2)
        return scard.SCardControl(handle, code, data)


def test_with_the_escape_the_leds_follow_between_taps_too(config: Path, world: World, pcscd: Pcscd,
                                                          vpcd_slot: VirtualSlot,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    driver = EscapingDriver(vpcd_slot)
    monkeypatch.setattr(smartcard, "scard", driver)
    reader = PcscReader(load_config(with_reader(config, f'type = "pcsc"\nname = "{READER}"\nfeedback = "acr122u"\n')))
    reader.open()
    try:
        assert reader.escape_available()
        reader.indicate(RED.command())  # no card: through the escape, on a direct connection
        until(lambda: vpcd_slot.indications[-1:] == [RED], 10, "red through the escape")
        assert vpcd_slot.status()["reader"]["detection_beep"] is False  # turned off before the first command
        reader.reset()  # pcscd went away and back: the escape is looked up again, the indications go on
        reader.indicate(GREEN.command())
        until(lambda: vpcd_slot.indications[-1:] == [GREEN], 10, "green after a reset")
        driver.broken = True  # a command that raises is logged; the next one goes through
        reader.indicate(GREEN.command())
        reader.indicate(RED.command())
        until(lambda: vpcd_slot.indications[-1:] == [RED], 10, "red again")
        reader.close()  # closed and opened again: a new courier, the escape looked up again
        reader.open()
        reader.indicate(GREEN.command())
        until(lambda: vpcd_slot.indications[-1:] == [GREEN], 10, "green after close and open")
        reader.indicate(RED.command())
        until(lambda: vpcd_slot.indications[-1:] == [RED], 10, "red after close and open")
        vpcd_slot.present(world.path(Path(world.cards()[0]["file"])))
        assert reader.wait_for_card(10) is not None
        escapes = driver.controls.count(driver.ESCAPE)
        reader.indicate(AMBER.command())  # a card connected: over its connection, the escape untouched
        reader.release()
        assert vpcd_slot.indications[-1:] == [AMBER] and driver.controls.count(driver.ESCAPE) == escapes
    finally:
        reader.close()
    assert vpcd_slot.status()["reader"] == {"red": True, "green": True, "beeps": 0, "detection_beep": False}
