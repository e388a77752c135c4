"""The terminal over I2C and SPI: pn532pi's own `Pn532I2c` and `Pn532Spi`, unmodified, on simulated device nodes
(firmware/simulator/devices.py) in front of the software PN532. A sale with See phone and the fingerprint, a plain
card read offline (fDDA records), a metro fare, and a hung chip recovered, on each bus."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from waits import until

from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from firmware.simulator.devices import i2c_node, spi_node
from firmware.simulator.rig import SoftwareRig
from terminal import cli
from terminal.config import ReaderConfig
from terminal.reader.base import ReaderError
from terminal.reader.pn532 import Pn532Reader

NODES = {"i2c": i2c_node(1), "spi": spi_node(0, 0)}
WHERE = {"i2c": "I2C bus 1", "spi": "SPI0 CE0"}


@pytest.fixture(params=sorted(NODES))
def interface(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def bus_rig(interface: str) -> Iterator[SoftwareRig]:
    rig = SoftwareRig([], buses={"pos": NODES[interface]})
    yield rig
    rig.close()


@pytest.fixture
def bus_config(config: Path, interface: str) -> Path:
    """The test's terminal.toml with its reader on the bus instead of the UART."""
    text = config.read_text()
    reader = text.index("[reader]\n")
    end = text.index("\n[", reader + 1)
    config.write_text(text[:reader] + f'[reader]\ninterface = "{interface}"\n' + text[end:])
    return config


def _run(config: Path, capsys: pytest.CaptureFixture[str], *command: str) -> tuple[int, dict]:
    code = cli.main(["--config", str(config), *command, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_phone_sale_with_see_phone_and_fingerprint(bus_rig: SoftwareRig, bus_config: Path, world: World,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    phone = bus_rig.present(world.demo_phone)

    def shopper() -> None:  # the locked phone answered the first tap (PPSE, SELECT, GPO 6986): "See phone"
        until(lambda: phone.exchanges >= 3, 20, "the first tap")
        time.sleep(0.3)
        bus_rig.fingerprint("right-thumb", world.demo_phone)

    threading.Thread(target=shopper, daemon=True).start()
    code, sale = _run(bus_config, capsys, "pay", "12.34", "--wait", "10")
    assert (code, sale["outcome"], sale["rc"]) == (0, "Approved", "00")
    assert sale["taps"] >= 2 and sale["cryptogram"] == "ARQC" and sale["charged"] == 1111


def test_plain_card_offline_with_its_records(bus_rig: SoftwareRig, bus_config: Path, world: World,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    bus_rig.present(world.path(Path(card["file"])))
    code, sale = _run(bus_config, capsys, "pay", "8.00", "--wait", "5")
    assert (code, sale["outcome"], sale["cryptogram"]) == (0, "Approved", "TC")
    assert sale["oda"].startswith("fdda-v01")


def test_metro_fare(bus_rig: SoftwareRig, bus_config: Path, world: World,
                    capsys: pytest.CaptureFixture[str]) -> None:
    card = world.path(Path(world.transit_cards()[0]["file"]))
    before = PlainCard.load(card).applications[0].state.balance
    bus_rig.present(card)
    code, fare = _run(bus_config, capsys, "fare", "2.00", "--wait", "5")
    assert (code, fare["outcome"], fare["balance_after"]) == (0, "Approved", before - 200), fare
    assert PlainCard.load(card).applications[0].state.balance == before - 200 and fare["tac"]


def test_identify_names_the_bus(bus_rig: SoftwareRig, bus_config: Path, interface: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(bus_config), "read", "--wait", "0.2"]) in (0, 1)
    output = capsys.readouterr()
    assert f"on {WHERE[interface]}" in output.out + output.err


def test_a_bus_gone_mid_run_is_a_reader_error_not_a_traceback(bus_rig: SoftwareRig, interface: str) -> None:
    reader = Pn532Reader(ReaderConfig(interface=interface))
    reader.open()
    try:
        bus_rig.close()  # the node disappears under the open descriptor (an unplugged board, a Pi 5 bus error)
        with pytest.raises(ReaderError, match=f"cannot open the PN532 on {WHERE[interface]}: .*No such file"):
            reader.wait_for_card(0.2)
    finally:
        reader.close()
