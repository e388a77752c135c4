"""The PN532 reader over pn532pi against the software PN532 on a real pseudo-terminal."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.config import ReaderConfig
from terminal.kernel.errors import CardGone
from terminal.reader.base import CardRemoved, ReaderError, Target
from terminal.reader.pn532 import Pn532Reader
from terminal.ui.gpio import SimulatedGpio

PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
SELECT_DEBIT = bytes.fromhex("00A4040008A00000033301010100")
RESET_PIN = 4


@pytest.fixture
def card(world: World) -> Path:
    return world.path(Path(world.cards()[0]["file"]))


def _reader(tmp_path: Path, gpio: SimulatedGpio | None = None, **settings: object) -> Pn532Reader:
    reader = Pn532Reader(ReaderConfig(port=str(tmp_path / "pos"), **settings), gpio)  # type: ignore[arg-type]
    reader.open()
    return reader


@pytest.fixture
def reader(rig: SoftwareRig, tmp_path: Path) -> Iterator[Pn532Reader]:
    reader = _reader(tmp_path)
    yield reader
    reader.close()


def _wired(rig: SoftwareRig) -> SimulatedGpio:
    """RSTPDN: a low level on the pin resets the software chip, as the wire would."""
    gpio = SimulatedGpio()
    gpio.on_write(RESET_PIN, lambda high: None if high else rig.chips["pos"].reset())
    return gpio


def test_identify_names_chip_firmware_and_port(reader: Pn532Reader, tmp_path: Path) -> None:
    device = os.path.realpath(tmp_path / "pos")
    assert reader.identify() == f"PN532 v1.6 on {device} (via {tmp_path / 'pos'}) at 115200 baud"


def test_an_empty_field_times_out_quickly(reader: Pn532Reader) -> None:
    started = time.monotonic()
    assert reader.wait_for_card(0.2) is None
    assert 0.2 <= time.monotonic() - started < 2.0  # bounded by the timeout, not forever (no speed claim)


def test_lists_a_card_and_selects_the_ppse(reader: Pn532Reader, rig: SoftwareRig, card: Path) -> None:
    rig.present(card)
    target = reader.wait_for_card(1.0)
    assert isinstance(target, Target) and target.iso_dep
    assert target.sens_res == b"\x00\x04" and len(target.uid) == 4
    assert target.ats == bytes.fromhex("0578807002")  # the chip did RATS: APDUs can flow
    answer = reader.transceive(PPSE)
    assert answer[-2:] == b"\x90\x00" and bytes.fromhex("A000000333") in answer
    assert reader.transceive(SELECT_DEBIT)[-2:] in (b"\x90\x00", b"\x6a\x82")
    reader.release()
    assert rig.chips["pos"].targets == {}


@pytest.mark.parametrize("how", ["taken away", "torn during the command"])
def test_card_removed_mid_transaction(reader: Pn532Reader, rig: SoftwareRig, card: Path, how: str) -> None:
    rig.present(card)
    assert reader.wait_for_card(1.0) is not None
    assert reader.transceive(PPSE)[-2:] == b"\x90\x00"
    if how == "taken away":
        rig.remove()
    else:
        rig.remove_card_after(1, tear=True)
    with pytest.raises(CardRemoved, match="status 01") as caught:
        reader.transceive(PPSE)
    assert isinstance(caught.value, CardGone)  # the kernel catches it without importing the reader
    with pytest.raises(CardRemoved):
        reader.transceive(PPSE)  # nothing is activated any more
    assert reader.wait_for_card(0.05) is None


def test_status_errors_split_into_card_gone_and_reader_faults(
    reader: Pn532Reader, rig: SoftwareRig, card: Path
) -> None:
    rig.present(card)
    assert reader.wait_for_card(1.0) is not None
    rig.chips["pos"].faults.arm("status", 0x13)  # an RF framing error: the tap is torn, present again
    with pytest.raises(CardRemoved, match="status 13"):
        reader.transceive(PPSE)
    assert reader.wait_for_card(1.0) is not None
    rig.chips["pos"].faults.arm("status", 0x0E)  # the chip's own buffer overflowed
    with pytest.raises(ReaderError) as caught:
        reader.transceive(PPSE)
    assert caught.value.status == 0x0E


def test_a_phone_keeps_its_uid_while_in_the_field_and_is_still_selected_by_aid(
    reader: Pn532Reader, rig: SoftwareRig, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = itertools.count(1)  # the phone's random UIDs in a known order: the test counts draws, not random bytes
    monkeypatch.setattr(Wallet, "uid_for_tap", lambda self: bytes([0x08, 0x00, 0x00, next(drawn)]))
    rig.present(world.demo_phone)
    uids = []
    for _ in range(3):
        target = reader.wait_for_card(1.0)
        assert target is not None
        uids.append(target.uid)
        assert reader.transceive(PPSE)[-2:] == b"\x90\x00"
        reader.release()
    assert uids == [bytes.fromhex("08000001")] * 3  # powered all along: one UID
    rig.remove()
    rig.present(world.demo_phone)  # taken away and back: powered again, a new UID
    target = reader.wait_for_card(1.0)
    assert target is not None and target.uid == bytes.fromhex("08000002")


def test_a_chip_that_misses_an_ack_is_reopened_and_the_poll_goes_on(
    reader: Pn532Reader, rig: SoftwareRig, card: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig.present(card)
    rig.chips["pos"].faults.arm("drop_ack")
    with caplog.at_level(logging.INFO, logger="terminal.reader"):
        target = reader.wait_for_card(1.0)
    assert target is not None and "drop_ack" in rig.chips["pos"].faults.fired
    assert "resetting the PN532" in caplog.text and "reset done" in caplog.text
    assert reader.transceive(PPSE)[-2:] == b"\x90\x00"


def test_a_silent_chip_without_a_reset_line_is_a_reader_error_with_a_hint(
    reader: Pn532Reader, rig: SoftwareRig
) -> None:
    rig.chips["pos"].faults.arm("silent")
    with pytest.raises(ReaderError, match=r"no answer from a PN532 .*interface switches \(HSU\)"):
        reader.wait_for_card(0.5)
    rig.chips["pos"].reset()  # someone power-cycles the board
    reader.reset()
    assert reader.identify().startswith("PN532 v1.6")


def test_a_silent_chip_is_reset_through_rstpdn_and_the_reader_recovers(
    rig: SoftwareRig, tmp_path: Path, world: World
) -> None:
    gpio = _wired(rig)
    reader = _reader(tmp_path, gpio, reset_pin=RESET_PIN)
    try:
        pulse = [(RESET_PIN, "write", False), (RESET_PIN, "write", True)]
        assert gpio.events(RESET_PIN) == [(RESET_PIN, "setup", True), *pulse]  # a clean chip at start
        rig.present(world.demo_phone)
        assert reader.wait_for_card(1.0) is not None
        assert reader.transceive(PPSE)[-2:] == b"\x90\x00"

        rig.chips["pos"].faults.arm("silent")
        with pytest.raises(CardRemoved, match="reset"):
            reader.transceive(PPSE)  # the tap is lost, the reader is not
        assert gpio.events(RESET_PIN) == [(RESET_PIN, "setup", True), *pulse, *pulse]
        low, high = [t for t, pin, event, _ in gpio.timeline if pin == RESET_PIN and event == "write"][-2:]
        assert high - low >= 0.02

        assert reader.wait_for_card(1.0) is not None
        assert reader.transceive(PPSE)[-2:] == b"\x90\x00"

        rig.chips["pos"].faults.arm("silent")  # silent while polling: reset, then the card is found
        assert reader.wait_for_card(1.0) is not None
        assert gpio.events(RESET_PIN).count((RESET_PIN, "write", False)) == 3
        assert reader.identify().startswith("PN532 v1.6")
    finally:
        reader.close()


def test_a_faster_uart_is_negotiated_and_given_back_at_close(
    rig: SoftwareRig, tmp_path: Path, card: Path
) -> None:
    gpio = _wired(rig)
    reader = _reader(tmp_path, gpio, baud=921600, reset_pin=RESET_PIN)
    try:
        assert rig.chips["pos"].baud == 921600
        assert reader.identify().endswith("at 921600 baud")
        rig.present(card)
        assert reader.wait_for_card(1.0) is not None
        assert reader.transceive(PPSE)[-2:] == b"\x90\x00"
        reader.reset()  # RSTPDN puts the chip back at 115200: the reader raises it again
        assert rig.chips["pos"].baud == 921600
    finally:
        reader.close()
    assert rig.chips["pos"].baud == 115200


def test_misuse_and_missing_hardware_are_reader_errors(rig: SoftwareRig, tmp_path: Path) -> None:
    with pytest.raises(ReaderError, match="not open"):
        Pn532Reader(ReaderConfig(port=str(tmp_path / "pos"))).wait_for_card(0.1)
    with pytest.raises(ReaderError, match="reset_pin is configured"):
        Pn532Reader(ReaderConfig(port=str(tmp_path / "pos"), reset_pin=RESET_PIN))
    with pytest.raises(ReaderError, match=r"cannot open PN532 port .*check reader.port"):
        Pn532Reader(ReaderConfig(port=str(tmp_path / "nothing"))).open()
    master, slave = os.openpty()  # a serial line with nothing on the other end
    try:
        with pytest.raises(ReaderError, match=r"no answer from a PN532 .*at 115200 baud: check the wiring"):
            Pn532Reader(ReaderConfig(port=os.ttyname(slave))).open()
    finally:
        os.close(master)
        os.close(slave)


def test_transceive_before_any_card_is_card_removed(reader: Pn532Reader) -> None:
    with pytest.raises(CardRemoved, match="no card is activated"):
        reader.transceive(PPSE)


@pytest.mark.parametrize(("interface", "where"), [("i2c", "I2C bus 1"), ("spi", "SPI0 CE0")])
def test_i2c_and_spi_use_pn532pis_own_classes_and_fail_cleanly_without_the_bus(interface: str, where: str) -> None:
    if os.path.exists("/dev/i2c-1" if interface == "i2c" else "/dev/spidev0.0"):
        pytest.skip("this machine has the bus: the test is for machines without one")
    with pytest.raises(ReaderError, match=f"cannot open the PN532 on {where}"):
        Pn532Reader(ReaderConfig(interface=interface)).open()
