"""A top-up (e-purse load) killed at each of its crash points is finished by the next load of that card after a
restart, never credited twice: SIGKILLed `pos-terminal load` processes over the same journal, the real acquirer."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from crashkit import Terminal
from hostdb import rows
from tallies import CRASH_POINTS_COVERED

from acquirer_stub.instance import Instance
from firmware.simulator.rig import SoftwareRig
from terminal.journal.journal import Journal

AMOUNT = 1_000


def _balance(card: Path) -> int:
    return int(json.loads(card.read_text())["applications"][0]["state"]["balance"])


def _host_states(instance: Instance) -> list[str]:
    return [row["state"] for row in rows(instance, "SELECT state FROM transit_loads ORDER BY id")]


def test_load_killed_after_the_credit_is_proven_after_restart_never_credited_twice(
        terminal: Terminal, rig: SoftwareRig, instance: Instance) -> None:
    card = terminal.world.path(Path("transit/chengdu.json"))
    before = _balance(card)
    rig.present(card)
    killed = terminal.run("load", "10.00", "--json", "--wait", "10", crash_at="load.credited")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _balance(card) == before + AMOUNT  # credited; the terminal died before it could record it
    assert _host_states(instance) == ["authorized"]  # no TAC reached the host

    restarted = terminal.run("load", "10.00", "--json", "--wait", "10")
    assert restarted.returncode == 0, restarted.stderr
    result = restarted.json()
    assert (result["outcome"], result["recovered"], result["amount"]) == ("Approved", True, AMOUNT)
    assert result["balance_after"] == before + AMOUNT == _balance(card)  # GET TRANSACTION PROVE: credited once
    assert _host_states(instance) == ["completed"]
    with Journal.open(terminal.journal) as journal:
        assert [(load["state"], load["tac"]) for load in journal.transit_loads().loads()] == [
            ("confirmed", result["tac"])]
    CRASH_POINTS_COVERED["load.credited"] += 1


def test_load_killed_before_the_credit_is_credited_once_after_restart(
        terminal: Terminal, rig: SoftwareRig, instance: Instance) -> None:
    card = terminal.world.path(Path("transit/guangzhou.json"))
    before = _balance(card)
    rig.present(card)
    killed = terminal.run("load", "10.00", "--json", "--wait", "10", crash_at="load.credit_saved")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _balance(card) == before  # the CREDIT never left

    restarted = terminal.run("load", "10.00", "--json", "--wait", "10")
    assert restarted.returncode == 0, restarted.stderr
    result = restarted.json()
    assert (result["outcome"], result["recovered"]) == ("Approved", False)
    assert _balance(card) == before + AMOUNT
    assert _host_states(instance) == ["voided", "completed"]  # the unused MAC2 voided by the same serial
    CRASH_POINTS_COVERED["load.credit_saved"] += 1
