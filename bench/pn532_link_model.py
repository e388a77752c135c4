"""How close the software PN532's measured times come to its link model's physical bound.

Runs pn532pi against a software PN532 with --link-model on a pseudo-terminal, for a bare command and a
three-APDU qPBOC tap, at 115200 and 921600 baud; prints a Markdown table of median measured time,
modelled time (UART bytes + ISO 14443 air time + modelled card time) and their ratio.

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

from firmware.issuing.build import create_world
from firmware.simulator.rig import SoftwareRig
from hardware.pn532 import command, open_pn532


def measure(repeat: int) -> list[tuple[str, int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        phone = create_world(root / "world")
        rig = SoftwareRig([root / "pos"], link_model=True)
        chip = rig.chips["pos"]
        rig.present(root / "world" / "cards" / "icbc-credit.json")
        pn532, interface = open_pn532(str(root / "pos"))
        try:
            pn532.SAMConfig()
            for code, baud in ((4, 115200), (7, 921600)):
                if chip.baud != baud:
                    command(interface, bytes([0x10, code]))
                    interface.abort()  # the host ACK after the response: both sides switch
                    time.sleep(0.01)
                for name, run in (
                    ("GetFirmwareVersion", lambda: pn532.getFirmwareVersion()),
                    ("list + PPSE/SELECT/GPO (online)", lambda: _tap(pn532, interface)),
                ):
                    measured, modelled = [], []
                    for _ in range(repeat):
                        chip.link.reset_account()
                        start = time.perf_counter()
                        run()
                        measured.append(time.perf_counter() - start)
                        modelled.append(chip.link.modelled_seconds)
                    rows.append((name, baud, statistics.median(measured), statistics.median(modelled)))
        finally:
            interface.close()
            rig.close()
        del phone
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
    print("| exchange | baud | measured ms | modelled ms | measured / modelled |")
    print("|---|---:|---:|---:|---:|")
    for name, baud, measured, modelled in rows:
        print(f"| {name} | {baud} | {measured * 1000:.2f} | {modelled * 1000:.2f} | {measured / modelled:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
