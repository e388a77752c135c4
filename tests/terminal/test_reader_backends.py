"""The whole terminal on each way a reader can be attached, other than the PN532's UART (tests/terminal/
test_pay_e2e.py): pn532pi's own `Pn532I2c` and `Pn532Spi` on simulated device nodes in front of the software
PN532 (issue #15 §1), and a PC/SC reader, pyscard → a real pcscd → vsmartcard's virtual reader → the emulated card
(issue #16). On each: a sale with See phone and the fingerprint, a plain card read offline (fDDA records), a metro
fare."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pcscd import READER
from readerconfig import with_reader
from waits import until

from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from firmware.simulator.devices import i2c_node, spi_node
from firmware.simulator.rig import SoftwareRig
from terminal import cli

BUS_NODES = {"i2c": i2c_node(1), "spi": spi_node(0, 0)}


@dataclass
class Backend:
    """How a test holds a card to this reader, and how many APDUs the card has answered since."""

    present: Callable[[Path], Callable[[], int]]
    fingerprint: Callable[[str, Path], bool]


@pytest.fixture(params=["i2c", "spi", "pcsc"])
def backend(request: pytest.FixtureRequest, config: Path) -> Iterator[Backend]:
    """The test's terminal.toml pointed at this reader, and the card side behind it."""
    if request.param == "pcsc":
        slot = request.getfixturevalue("vpcd_slot")

        def present_in_slot(path: Path) -> Callable[[], int]:
            slot.present(path)
            return lambda: slot.status()["apdus"]

        with_reader(config, f'type = "pcsc"\nname = "{READER}"\n')
        yield Backend(present_in_slot, lambda finger, path: slot.fingerprint(finger, path))
        return
    rig = SoftwareRig([], buses={"pos": BUS_NODES[request.param]})

    def present_in_field(path: Path) -> Callable[[], int]:
        card = rig.present(path)
        return lambda: card.exchanges

    with_reader(config, f'interface = "{request.param}"\n')
    try:
        yield Backend(present_in_field, lambda finger, path: rig.fingerprint(finger, path))
    finally:
        rig.close()


def _run(config: Path, capsys: pytest.CaptureFixture[str], *command: str) -> tuple[int, dict]:
    code = cli.main(["--config", str(config), *command, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_phone_sale_with_see_phone_and_fingerprint(backend: Backend, config: Path, world: World,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    answered = backend.present(world.demo_phone)

    def shopper() -> None:  # the locked phone answered the first tap (PPSE, SELECT, GPO 6986): "See phone"
        until(lambda: answered() >= 3, 20, "the first tap")
        time.sleep(0.3)
        backend.fingerprint("right-thumb", world.demo_phone)

    threading.Thread(target=shopper, daemon=True).start()
    code, sale = _run(config, capsys, "pay", "12.34", "--wait", "10")
    assert (code, sale["outcome"], sale["rc"]) == (0, "Approved", "00")
    assert sale["taps"] >= 2 and sale["cryptogram"] == "ARQC" and sale["charged"] == 1111


def test_plain_card_offline_with_its_records(backend: Backend, config: Path, world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    backend.present(world.path(Path(card["file"])))
    code, sale = _run(config, capsys, "pay", "8.00", "--wait", "5")
    assert (code, sale["outcome"], sale["cryptogram"]) == (0, "Approved", "TC")
    assert sale["oda"].startswith("fdda-v01")


def test_metro_fare(backend: Backend, config: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    card = world.path(Path(world.transit_cards()[0]["file"]))
    before = PlainCard.load(card).applications[0].state.balance
    backend.present(card)
    code, fare = _run(config, capsys, "fare", "2.00", "--wait", "5")
    assert (code, fare["outcome"], fare["balance_after"]) == (0, "Approved", before - 200), fare
    assert PlainCard.load(card).applications[0].state.balance == before - 200 and fare["tac"]
