"""Unmodified PN532 drivers (pn532pi, nfcpy) against the software PN532 on a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import nfc
import nfc.clf
import nfc.clf.pn532
import nfc.clf.transport
import nfc.tag
import pytest
from pn532_reader import qpboc_tap
from pyemv import kd, mac, tools

from firmware.issuing.layout import World
from firmware.simulator.air import SOFTWARE_CARD_ATS
from firmware.simulator.emulate import emulate
from firmware.simulator.rig import SoftwareRig
from hardware.pn532 import Pn532Error, in_data_exchange, open_pn532

PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SoftwareRig]:
    rig = SoftwareRig([tmp_path / "pos", tmp_path / "card"])
    yield rig
    rig.close()


def _token_arqc_ok(world: World, card: dict[int, bytes], terminal: dict[int, bytes]) -> bool:
    """The issuer side with pyemv only: token keys from the world's token service."""
    token_pan = card[0x57].hex().upper().split("D")[0]
    udk = kd.derive_icc_mk_a(bytes.fromhex(world.tsp()["token_imk"]), token_pan, "00")
    atc = card[0x9F36]
    sk = tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + bytes(b ^ 0xFF for b in atc))
    data = b"".join(terminal[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37))
    data += card[0x82] + atc + card[0x9F10][3:7]
    return mac.mac_iso9797_3(sk[:8], sk[8:], data, 2) == card[0x9F26]


def test_pn532pi_lists_the_phone_and_runs_a_qpboc_tap(rig: SoftwareRig, world: World, tmp_path: Path) -> None:
    pn532, interface = open_pn532(str(tmp_path / "pos"))
    try:
        assert pn532.getFirmwareVersion() == 0x32010607
        assert pn532.SAMConfig()
        assert pn532.setPassiveActivationRetries(0x01)
        assert pn532.readPassiveTargetID(0, 500, inlist=True) == (False, bytearray())  # empty field
        rig.present(world.demo_phone)
        found, uid = pn532.readPassiveTargetID(0, 1000, inlist=True)
        assert found and len(uid) == 4 and uid[0] == 0x08
        card, _, sw = qpboc_tap(interface, 1234)
        assert sw == 0x6986  # see phone: no fingerprint yet
        assert pn532.inRelease()
        assert rig.fingerprint("right-thumb")
        found, second_uid = pn532.readPassiveTargetID(0, 1000, inlist=True)
        assert found and second_uid == uid  # it stayed in the field, powered: a phone keeps its random UID
        card, terminal, sw = qpboc_tap(interface, 1234)
        assert sw == 0x9000 and card[0x9F10][4] == 0xA0 and card[0x9F6C][1] & 0x80
        assert _token_arqc_ok(world, card, terminal)
    finally:
        interface.close()


def test_pn532pi_without_inlist_gets_status_27_as_from_a_real_chip(
    rig: SoftwareRig, world: World, tmp_path: Path
) -> None:
    pn532, interface = open_pn532(str(tmp_path / "pos"))
    try:
        pn532.SAMConfig()
        rig.present(world.path(Path(world.cards()[0]["file"])))
        assert pn532.readPassiveTargetID(0, 1000)[0]  # inlist=False: pn532pi keeps Tg 0
        ok, _data = pn532.inDataExchange(bytearray(PPSE))
        assert not ok
        with pytest.raises(Pn532Error) as error:
            in_data_exchange(interface, PPSE, target=0)
        assert error.value.status == 0x27
    finally:
        interface.close()


def test_the_port_can_be_closed_and_reopened(rig: SoftwareRig, tmp_path: Path) -> None:
    for _ in range(3):
        pn532, interface = open_pn532(str(tmp_path / "pos"))
        assert pn532.getFirmwareVersion() == 0x32010607
        interface.close()


def test_nfcpy_opens_the_chip_senses_the_card_and_speaks_iso_dep(
    rig: SoftwareRig, world: World, tmp_path: Path
) -> None:
    """nfcpy is strict: byte-exact replies, extended-frame Diagnose, baud change, registers, raw ISO-DEP."""
    rig.present(world.path(Path(world.cards()[0]["file"])))
    transport = nfc.clf.transport.TTY(os.path.realpath(tmp_path / "pos"))
    device = nfc.clf.pn532.init(transport)
    device._path = str(tmp_path / "pos")
    frontend = nfc.ContactlessFrontend()
    frontend.device = device
    try:
        assert "PN532v1.6" in str(device)
        assert rig.chips["pos"].baud == 921600  # nfcpy raised the UART speed with SetSerialBaudRate
        target = frontend.sense(nfc.clf.RemoteTarget("106A"))
        assert target is not None and target.sel_res == b"\x20"
        tag = nfc.tag.activate(frontend, target)
        answer = tag.transceive(PPSE)
        assert answer[-2:] == b"\x90\x00" and bytes.fromhex("A000000333") in answer
    finally:
        frontend.close()
    assert rig.chips["pos"].baud == 115200  # nfcpy's close puts the chip back to 115200
    assert rig.chips["pos"].power == "powerdown"


def test_nfcpy_senses_one_phone_with_its_ats_however_often_it_polls(
    rig: SoftwareRig, world: World, tmp_path: Path
) -> None:
    """A phone keeps its random UID while the field stays on: polling again (InListPassiveTarget, through nfcpy's
    chipset layer) finds the same target. (nfcpy's own `sense` turns the field off first, so each `sense` meets a
    freshly powered phone, as with a real one.)"""
    rig.present(world.demo_phone)
    transport = nfc.clf.transport.TTY(os.path.realpath(tmp_path / "pos"))
    frontend = nfc.ContactlessFrontend()
    frontend.device = nfc.clf.pn532.init(transport)
    try:
        first = frontend.sense(nfc.clf.RemoteTarget("106A"))
        assert first is not None and first.sel_res == b"\x20" and first.sdd_res[0] == 0x08  # a random UID
        for _ in range(3):
            assert bytes(frontend.exchange(bytearray.fromhex("E080"), 0.03)) == SOFTWARE_CARD_ATS  # RATS → ATS
            frontend.exchange(bytearray.fromhex("C2"), 0.03)  # S(DESELECT), then poll again, field on
            again = frontend.device.chipset.in_list_passive_target(1, 0, b"")
            assert again is not None and bytes(again[4:]) == bytes(first.sdd_res)
    finally:
        frontend.close()


def test_libnfc_nfc_list_lists_one_phone_with_its_ats(rig: SoftwareRig, world: World, tmp_path: Path) -> None:
    """libnfc's own nfc-list (Debian libnfc-bin) polls, deselects and polls again until no new target answers:
    one phone in the field is one target, listed with its ATS."""
    if shutil.which("nfc-list") is None:
        pytest.fail("nfc-list is missing: install Debian's libnfc-bin (./scripts/test does this when it is absent)")
    rig.present(world.demo_phone)
    env = {**os.environ, "LIBNFC_DEVICE": f"pn532_uart:{os.path.realpath(tmp_path / 'pos')}",
           "LIBNFC_AUTO_SCAN": "false", "LIBNFC_INTRUSIVE_SCAN": "false", "LIBNFC_LOG_LEVEL": "1"}
    listed = subprocess.run(["nfc-list", "-v"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "1 ISO14443A passive target(s) found" in listed.stdout, listed.stdout
    assert len(re.findall(r"UID \(NFCID[0-9]\): 08 ", listed.stdout)) == 1  # one target, a random UID
    ats = "  ".join(f"{byte:02x}" for byte in SOFTWARE_CARD_ATS[1:])  # nfc-list prints the ATS without TL
    assert f"ATS: {ats}" in listed.stdout, listed.stdout


def test_two_pn532s_a_reader_and_a_card_emulator_both_driven_by_pn532pi(
    rig: SoftwareRig, world: World, tmp_path: Path
) -> None:
    assert rig.fingerprint("right-thumb", world.demo_phone)
    stop = threading.Event()
    served: list[int] = []
    lines: list[str] = []
    emulator = threading.Thread(
        target=lambda: served.append(
            emulate(str(tmp_path / "card"), world.demo_phone, taps=1, stop=stop, report=lines.append)
        ),
        daemon=True,
    )
    emulator.start()
    pn532, interface = open_pn532(str(tmp_path / "pos"))
    try:
        pn532.SAMConfig()
        found = False
        for _ in range(50):  # the emulator needs a moment to put its chip in target mode
            found, uid = pn532.readPassiveTargetID(0, 100, inlist=True)
            if found:
                break
        assert found and uid[0] == 0x08
        card, terminal, sw = qpboc_tap(interface, 4321)
        assert sw == 0x9000 and card[0x9F10][4] == 0xA0
        assert _token_arqc_ok(world, card, terminal)
        assert pn532.inRelease()
        emulator.join(timeout=5)
        assert served == [1] and any("3 APDUs" in line for line in lines)
    finally:
        stop.set()
        interface.close()
        emulator.join(timeout=5)
