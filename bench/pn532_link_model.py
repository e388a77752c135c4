"""How close the software PN532's measured times come to its link model's physical bound.

Runs pn532pi against a software PN532 with --link-model, for a bare command and a three-APDU qPBOC tap: on a
pseudo-terminal at 115200 and 921600 baud, and with pn532pi's own Pn532I2c (100 and 400 kHz) and Pn532Spi (1 MHz)
on simulated device nodes; prints a Markdown table of median measured time, modelled time (link bytes + ISO
14443 air time + modelled card time) and their ratio. On the buses the modelled time is not a bound: it counts every
status poll pn532pi makes (one each millisecond, and I2C reads each answer twice: its length, then after a NACK the
whole frame), and those polls overlap the chip's air and card time.

    .venv/bin/python bench/pn532_link_model.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from pn532_reader import qpboc_tap
from pn532pi.nfc.pn532 import Pn532

from firmware.issuing.build import create_world
from firmware.simulator.chip import Pn532Chip
from firmware.simulator.rig import SoftwareRig
from hardware.pn532 import bus_interface, command, open_pn532

EXCHANGES = (
    ("GetFirmwareVersion", lambda pn532, interface: pn532.getFirmwareVersion()),
    ("list + PPSE/SELECT/GPO (online)", lambda pn532, interface: _tap(pn532, interface)),
)
BUSES = (("I2C 100 kHz", "/dev/i2c-1", 100_000, "i2c"), ("I2C 400 kHz", "/dev/i2c-1", 400_000, "i2c"),
         ("SPI 1 MHz", "/dev/spidev0.0", 1_000_000, "spi"))


Row = tuple[str, str, float, float]  # exchange, link, measured seconds, modelled seconds


def measure(repeat: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        create_world(root / "world")
        card = root / "world" / "cards" / "icbc-credit.json"
        rig = SoftwareRig([root / "pos"], link_model=True)
        chip = rig.chips["pos"]
        rig.present(card)
        pn532, interface = open_pn532(str(root / "pos"))
        try:
            pn532.SAMConfig()
            for code, baud in ((4, 115200), (7, 921600)):
                if chip.baud != baud:
                    command(interface, bytes([0x10, code]))
                    interface.abort()  # the host ACK after the response: both sides switch
                    time.sleep(0.01)
                rows += _rows(f"UART {baud}", pn532, interface, chip, repeat)
        finally:
            interface.close()
            rig.close()
        for link, node, clock, kind in BUSES:  # pn532pi's own Pn532I2c / Pn532Spi on a simulated node
            rig = SoftwareRig([], link_model=True, buses={"pos": node}, i2c_hz=clock)
            rig.present(card)
            interface = bus_interface(kind, spi_speed_hz=clock)
            pn532 = Pn532(interface)
            try:
                pn532.begin()
                pn532.SAMConfig()
                rows += _rows(link, pn532, interface, rig.chips["pos"], repeat)
            finally:
                rig.close()
    return rows


def _rows(link: str, pn532: Pn532, interface: object, chip: Pn532Chip, repeat: int) -> list[Row]:
    rows = []
    for name, run in EXCHANGES:
        measured, modelled = [], []
        for _ in range(repeat):
            chip.link.reset_account()
            start = time.perf_counter()
            run(pn532, interface)
            measured.append(time.perf_counter() - start)
            modelled.append(chip.link.modelled_seconds)
        rows.append((name, link, statistics.median(measured), statistics.median(modelled)))
    return rows


def _tap(pn532, interface) -> None:
    pn532.readPassiveTargetID(0, 1000, inlist=True)
    qpboc_tap(interface, 150_000)
    pn532.inRelease()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rows = measure(args.repeat)
    print(f"machine: {platform.machine()} {platform.processor() or ''} Python {platform.python_version()}; "
          f"median of {args.repeat}")
    print()
    print("| exchange | link | measured ms | modelled ms | measured / modelled |")
    print("|---|---|---:|---:|---:|")
    for name, link, measured, modelled in rows:
        print(f"| {name} | {link} | {measured * 1000:.2f} | {modelled * 1000:.2f} | {measured / modelled:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
