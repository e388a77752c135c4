"""The terminal's reader over I2C and SPI: pn532pi's own `Pn532I2c` and `Pn532Spi`, unmodified, on simulated device
nodes (firmware/simulator/devices.py) in front of the software PN532: it names its bus, and a bus that goes away
mid-run is a clear ReaderError. Sales and fares over each bus: tests/terminal/test_reader_backends.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from readerconfig import with_reader

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
    return with_reader(config, f'interface = "{interface}"\n')


def _run(config: Path, capsys: pytest.CaptureFixture[str], *command: str) -> tuple[int, dict]:
    code = cli.main(["--config", str(config), *command, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


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
