"""The emulated cards in a real pcscd (issue #16 §2): `pos-card vpcd` puts a card or the phone in the slot of
vsmartcard's virtual reader; pcsc_scan (Debian pcsc-tools) and pyscard, programs that know nothing of this project,
see it with its ATR and trade APDUs with it; taking it out and putting it back is seen as such."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pcscd import Pcscd
from smartcard import scard
from smartcard.System import readers
from waits import until

from emvcore import tlv
from firmware.apps.wallet.wallet import MAX_PAYMENT_CARDS, Wallet
from firmware.issuing.layout import World
from firmware.issuing.provisioning import add_card_to_wallet
from firmware.simulator.vpcd import VirtualSlot

CONTACTLESS_ATR = bytes.fromhex("3B80800101")  # PC/SC Part 3 for an ISO 14443-4 card without historical bytes
PPSE = list(bytes.fromhex("00A404000E325041592E5359532E444446303100"))


def _state(reader: str) -> int:
    """The slot's state bits as pcscd reports them now."""
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert result == scard.SCARD_S_SUCCESS
    try:
        result, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        assert result == scard.SCARD_S_SUCCESS
        return states[0][1]
    finally:
        scard.SCardReleaseContext(context)


def _present(reader: str) -> bool:
    return bool(_state(reader) & scard.SCARD_STATE_PRESENT)


@contextlib.contextmanager
def _connected(pcscd: Pcscd, slot: VirtualSlot, card: Path) -> Iterator[Any]:
    """`card` in the slot and a pyscard connection to it, released (its context too) before the test's pcscd stops."""
    slot.present(card)
    until(lambda: _present(pcscd.slot), 10, "the card in the slot")
    connection = next(r for r in readers() if str(r) == pcscd.slot).createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        connection.release()


def test_pcsc_scan_lists_the_emulated_card_with_its_atr(pcscd: Pcscd, vpcd_slot: VirtualSlot, world: World) -> None:
    vpcd_slot.present(world.path(Path(world.cards()[0]["file"])))
    until(lambda: _present(pcscd.slot), 10, "the card in the slot")
    scan = subprocess.run(["pcsc_scan", "-c", "-t", "1"], capture_output=True, text=True, timeout=30)
    lines = scan.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if pcscd.slot in line)
    block = "\n".join(lines[at : at + 4])
    assert "Card inserted" in block and "ATR: 3B 80 80 01 01" in block, scan.stdout


def test_pyscard_reads_the_phone_and_the_reader_answers_get_data_itself(pcscd: Pcscd, vpcd_slot: VirtualSlot,
                                                                         world: World) -> None:
    with _connected(pcscd, vpcd_slot, world.demo_phone) as connection:
        assert bytes(connection.getATR()) == CONTACTLESS_ATR
        uid, sw1, sw2 = connection.transmit([0xFF, 0xCA, 0x00, 0x00, 0x00])
        assert (sw1, sw2) == (0x90, 0x00) and len(uid) == 4 and uid[0] == 0x08  # a phone's random UID (RID 08)
        data, sw1, sw2 = connection.transmit(PPSE)
        assert (sw1, sw2) == (0x90, 0x00)
        aids = [obj.value for _, obj in tlv.walk(bytes(data)) if obj.tag == 0x4F]
        assert bytes.fromhex("A000000333010102") in aids  # the Bank of China credit token (UnionPay credit)
        assert bytes.fromhex("A000000632010105") in aids  # and the transit card (T-Union)
    assert vpcd_slot.status()["apdus"] == 1  # GET DATA never reached the card: the reader answered it


def test_an_extended_length_select_brings_a_full_phones_long_answer(pcscd: Pcscd, vpcd_slot: VirtualSlot,
                                                                     world: World) -> None:
    """Eight cards make the PPSE answer longer than a short APDU's 256 bytes: asked for with an extended Le
    (ISO/IEC 7816-4 §5.1: 00 Lc as three bytes, Le as two), it comes back whole through pyscard, pcscd and vpcd."""
    held = {card.id for card in Wallet.load(world.demo_phone).cards}
    for entry in (c for c in world.cards() if c["issuer"] not in held and c["issuer"].endswith(("-debit", "-credit"))):
        if len(Wallet.load(world.demo_phone).cards) == MAX_PAYMENT_CARDS:
            break
        add_card_to_wallet(world.root, world.demo_phone, world.path(Path(entry["file"])), entry["issuer"])
    assert len(Wallet.load(world.demo_phone).cards) == MAX_PAYMENT_CARDS
    name = b"2PAY.SYS.DDF01"
    with _connected(pcscd, vpcd_slot, world.demo_phone) as connection:
        data, sw1, sw2 = connection.transmit([0x00, 0xA4, 0x04, 0x00, 0x00, 0x00, len(name), *name, 0x00, 0x00])
    assert (sw1, sw2) == (0x90, 0x00) and len(data) > 256
    aids = [obj.value for _, obj in tlv.walk(bytes(data)) if obj.tag == 0x4F]
    assert len(aids) == MAX_PAYMENT_CARDS + 1  # the eight tokens and the transit card


def test_taking_the_card_out_and_putting_it_back(pcscd: Pcscd, vpcd_slot: VirtualSlot, world: World) -> None:
    card = world.path(Path(world.cards()[0]["file"]))
    vpcd_slot.present(card)
    until(lambda: _present(pcscd.slot), 10, "the card in the slot")
    vpcd_slot.remove()
    until(lambda: _state(pcscd.slot) & scard.SCARD_STATE_EMPTY, 10, "the slot empty")
    vpcd_slot.present(card, seconds=30)
    until(lambda: _present(pcscd.slot), 10, "the card back")
    assert vpcd_slot.status()["slot"] == {"card": card.name, "connected": True, "vpcd": f"127.0.0.1:{pcscd.port}"}


def test_pos_card_vpcd_with_a_wrong_file_names_the_file_first(world: World) -> None:
    """Before vpcd is even looked for (none answers at port 1)."""
    run = subprocess.run([sys.executable, "-m", "firmware.cli", "vpcd", "--present", str(world.root / "nope.json"),
                          "--vpcd", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (1, "")
    assert run.stderr.startswith("pos-card: ") and "nope.json: cannot read" in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_pos_card_vpcd_without_a_vpcd_is_one_line(world: World) -> None:
    run = subprocess.run([sys.executable, "-m", "firmware.cli", "vpcd", "--present", str(world.demo_phone),
                          "--vpcd", "127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("pos-card: no vpcd on 127.0.0.1:1 (Connection refused): is pcscd running")
    assert len(run.stderr.splitlines()) == 1
