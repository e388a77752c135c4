"""The terminal SIGKILLed with a sale in flight, then restarted: the host and the journal agree again."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal import cli

ISSUER = "icbc-debit"


def _host_rows(instance: Instance) -> tuple[list, int]:
    connection = db.connect(instance.database)
    try:
        rows = connection.execute("SELECT kind, state, rc FROM transactions ORDER BY id").fetchall()
        balance = connection.execute("SELECT balance FROM accounts WHERE issuer = ?", (ISSUER,)).fetchone()[0]
        return [tuple(row) for row in rows], balance
    finally:
        connection.close()


def _journal_states(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return [row[0] for row in connection.execute("SELECT state FROM entries WHERE kind = 'sale'")]
        finally:
            connection.close()
    except sqlite3.Error:
        return []


def test_killed_while_the_host_decides_then_restarted_reverses_and_settles(
    rig: SoftwareRig, world: World, config: Path, instance: Instance
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == ISSUER)
    rig.present(world.path(Path(card["file"])))
    _, balance_before = _host_rows(instance)
    connection = db.connect(instance.database)
    connection.execute("UPDATE issuers SET added_latency_ms = 1500 WHERE code = ?", (ISSUER,))
    connection.close()

    terminal = subprocess.Popen([sys.executable, "-m", "terminal.cli", "--config", str(config), "pay", "2500.00",
                                 "--json", "--wait", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    journal = config.parent.parent / "journal.sqlite3"  # beside the world (the config fixture's choice)
    while time.monotonic() < deadline and _journal_states(journal) != ["INTENT"]:
        time.sleep(0.02)  # until the sale's intent is committed: the request is on its way
    assert _journal_states(journal) == ["INTENT"]
    time.sleep(0.3)
    terminal.send_signal(signal.SIGKILL)
    terminal.communicate()
    time.sleep(1.5)  # the host finishes its decision: it approved a sale the terminal never heard about
    rows, balance = _host_rows(instance)
    assert ("authorization", "approved", "00") in rows and balance == balance_before - 250_000

    connection = db.connect(instance.database)
    connection.execute("UPDATE issuers SET added_latency_ms = 0 WHERE code = ?", (ISSUER,))
    connection.close()
    # restarted: the journal finds the sale in flight, reverses it (98), then the batch settles balanced
    assert cli.main(["--config", str(config), "settle", "--json"]) == 0
    rows, balance = _host_rows(instance)
    assert ("authorization", "reversed", "00") in rows and any(kind == "reversal" for kind, _, _ in rows)
    assert balance == balance_before  # to the cent: nothing charged for a sale the shopper never saw approved
