"""The benchmark command's machinery at tiny counts: the table has its shape and every figure is a positive
number. No timing is asserted here (targets are the benchmark's to judge, on the machine it runs on)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["area", "what", "measured", "reference", "ratio", "target", "result"]
NUMBER = re.compile(r"^(?:[A-Za-z ]+ )?([0-9]+(?:\.[0-9]+)?) ?(?:ms|µs|s|MB|/s)\b")
REFERENCE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?(?:ms|µs|s|MB|/s)$")  # after its label, which may hold digits


def test_the_quick_benchmark_prints_a_complete_table() -> None:
    run = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "Python" in lines[0] and "cores" in lines[0]
    table = [line for line in lines if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header == COLUMNS
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert all(len(row) == len(COLUMNS) for row in rows)
    areas = {row[0] for row in rows}
    assert areas == {"card-in-field", "tap-to-outcome", "host", "terminal"}
    for row in rows:
        measured = NUMBER.match(row[2])
        assert measured and float(measured.group(1)) > 0, row
        if row[3] != "—":
            reference = REFERENCE.search(row[3])
            assert reference and float(reference.group(1)) > 0, row
            assert float(row[4]) > 0, row
        assert row[6] in ("MET", "MISSED", "—"), row
        assert (row[5] == "—") == (row[6] == "—"), row
    kinds = " ".join(row[1] for row in rows)
    for what in ("online tap", "offline tap", "See-Phone re-tap", "transit fare", "115200 baud", "921600 baud",
                 "1 terminal", "10 terminals", "50 terminals", "open loop", "ISO 8583", "ARQC verification", "READY=1",
                 "resident memory", "PC/SC (pcscd + vsmartcard's vpcd)"):
        assert what in kinds, what
    assert sum(row[6] != "—" for row in rows) >= 14  # every target of the issue is judged
    assert any(line.startswith("responses by rc, host: ") for line in lines)
    assert re.search(r"^runtime: [0-9.]+ s$", run.stdout, re.MULTILINE)


def test_the_link_model_benchmark_covers_the_uart_and_both_buses() -> None:
    run = subprocess.run([sys.executable, "bench/pn532_link_model.py", "--repeat", "1"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in run.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| exchange")]
    links = {row[1] for row in rows}
    assert links == {"UART 115200", "UART 921600", "I2C 100 kHz", "I2C 400 kHz", "SPI 1 MHz"}
    assert len(rows) == 2 * len(links)
    for row in rows:
        measured, modelled, ratio = (float(cell) for cell in row[2:])
        assert measured > 0 and modelled > 0
        assert abs(ratio - measured / modelled) <= 0.05 * ratio + 0.01  # the printed ms are rounded
