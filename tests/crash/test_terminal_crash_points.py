"""Issue #7 "Crashes": the real `pos-terminal` process SIGKILLed at every journal state, then restarted.

Each test runs `python -m terminal.cli … pay/settle` against the acquirer over HTTP and a software PN532, with
``POS_TERMINAL_CRASH_AT`` naming the step at which the terminal kills itself (`terminal/journal/crashpoints.py`:
deterministic, no racing the process with sleeps). The restart is what a terminal does at start: `settle`
(recover the journal: in-flight sales get reversal 98; send every queued reversal and advice; settle the batch).
Afterwards, host and terminal must agree: every authorization on the host is approved-and-approved-in-the-journal,
declined, or reversed; every journal sale is final; an offline approval is on the host as an advice exactly once;
the settlement is balanced, the host's totals equal the journal's to the cent, and the card's account moved by
exactly what stands approved.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import fleet
import pytest
from crashkit import Terminal
from tallies import CRASH_POINTS_COVERED

from acquirer_stub.instance import Instance
from firmware.simulator.rig import SoftwareRig
from terminal.journal.crashpoints import CRASH_POINTS
from terminal.journal.journal import Journal, State

ONLINE, ONLINE_FEN = "2500.00", 250_000  # above the floor limit: the card asks for an ARQC
OFFLINE, OFFLINE_FEN = "8.00", 800  # small: the card approves offline (TC + fDDA), the host hears of it by advice
ISSUER = "icbc-debit"
SLOW_MS = 3_000  # the issuer's added latency in the timeout cases; the terminal waits 1 s

# crash point → (what the shopper does, the amount that must stand on the host after recovery)
SCENARIOS: dict[str, tuple[str, int]] = {
    "sale.intent": ("online", 0),  # never sent: the late reversal leaves a tombstone
    "sale.sent": ("online", 0),  # approved on the host, unknown to the journal: reversal 98 at restart
    "sale.answered": ("online", ONLINE_FEN),  # recorded approved: it stands, and settles
    "reversal.queued": ("timeout", 0),  # no answer in time, 98 queued, the terminal dies before sending it
    "reversal.sent": ("timeout", 0),  # the host reversed it; the terminal died before recording that
    "advice.queued": ("offline", OFFLINE_FEN),
    "advice.sent": ("offline", OFFLINE_FEN),  # the advice is on the host once, even though it is resent
    "settlement.begun": ("online-then-settle", ONLINE_FEN),
    "settlement.sent": ("online-then-settle", ONLINE_FEN),  # the host closed the batch: same STAN, stored answer
    "settlement.recorded": ("online-then-settle", ONLINE_FEN),  # closed, not signed on again yet
}


def _card_path(terminal: Terminal) -> Path:
    card = next(c for c in terminal.world.cards() if c["issuer"] == ISSUER)
    return terminal.world.path(Path(card["file"]))


def _wait_for_host_decision(instance: Instance) -> None:
    """The slow issuer finishes deciding the sale the terminal gave up on (the host approves it)."""
    deadline = time.monotonic() + 30
    while not fleet.host_rows(instance, "SELECT 1 FROM transactions WHERE kind = 'authorization'"):
        assert time.monotonic() < deadline, "the host never decided the sale"
        time.sleep(0.05)


def _killed(run: object) -> None:
    assert run.returncode == -signal.SIGKILL, f"not killed at the crash point: {run.returncode} {run.stderr}"


@pytest.mark.parametrize("point", list(SCENARIOS))
def test_sigkill_at_each_journal_state_then_restart_agrees_and_settles(
    point: str, terminal: Terminal, rig: SoftwareRig, instance: Instance
) -> None:
    action, standing = SCENARIOS[point]
    rig.present(_card_path(terminal))
    paid_before = fleet.money(instance)

    if action in ("online", "offline"):
        _killed(terminal.run("pay", ONLINE if action == "online" else OFFLINE, "--json", "--wait", "10",
                             crash_at=point))
    elif action == "timeout":  # no answer within the terminal's wait: reversal 98, and the crash point on its way
        fleet.set_latency(instance, ISSUER, SLOW_MS)
        _killed(terminal.run("pay", ONLINE, "--json", "--wait", "10", crash_at=point))
        _wait_for_host_decision(instance)
        fleet.set_latency(instance, ISSUER, 0)
    else:  # a completed sale, then the settlement is where the terminal dies
        approved = terminal.run("pay", ONLINE, "--json", "--wait", "10")
        assert approved.returncode == 0 and approved.json()["rc"] == "00"
        _killed(terminal.run("settle", "--json", crash_at=point))

    # the restart: recovery, the queue, then the batch
    restarted = terminal.run("settle", "--json")
    assert restarted.returncode == 0, restarted.stderr
    result = restarted.json()
    assert (result["rc"], result["balanced"]) == ("00", True)
    assert result["terminal_totals"] == result["host_totals"]

    tid = terminal.world.terminals()[0]["tid"]
    counts = fleet.agreement(instance, terminal.journal, tid)
    assert counts.get(State.INTENT, 0) == counts.get(State.NEEDS_REVERSAL, 0) == 0
    with Journal.open(terminal.journal) as journal:
        sales = [e for e in journal.entries() if e.kind == "sale"]
        advices = [e for e in journal.entries() if e.kind == "advice"]
        assert journal.settled(1)  # batch 1, the one the sale went into, is closed balanced on both sides
        first_batch = journal.totals(1)
    settlements = fleet.host_rows(instance, "SELECT batch, balanced FROM settlements WHERE tid = ? AND batch = 1", tid)
    assert [tuple(r) for r in settlements] == [(1, 1)]
    assert fleet.host_totals(instance, tid, 1) == first_batch
    assert first_batch.debit_amount == standing and first_batch.debit_count == (1 if standing else 0)

    paid = {k: v - paid_before[k] for k, v in fleet.money(instance).items() if v != paid_before[k]}
    assert sum(paid.values()) == standing and len(paid) <= 1  # the card's account, to the cent, once
    if action == "offline":
        assert [e.state for e in advices] == [State.ADVISED] and sales == []
        assert len(fleet.host_rows(instance, "SELECT 1 FROM transactions WHERE kind = 'advice'")) == 1
    else:
        (sale,) = sales
        expected = State.ANSWERED if standing else State.REVERSED
        assert sale.state is expected and (sale.rc == "00" if standing else sale.reversal_reason == "98")
        host = fleet.host_rows(instance, "SELECT state FROM transactions WHERE kind = 'authorization'")
        assert [r["state"] for r in host] == ([] if point == "sale.intent" else
                                              ["approved" if standing else "reversed"])
        reversals = fleet.host_rows(instance, "SELECT state FROM transactions WHERE kind = 'reversal'")
        assert len(reversals) == (0 if standing else 1)  # a resent reversal is the same message, stored once
    CRASH_POINTS_COVERED[point] += 1


def test_every_crash_point_of_the_sale_and_settlement_is_covered() -> None:
    payment_points = {name for name in CRASH_POINTS if not name.startswith(("fare.", "load."))}
    assert set(SCENARIOS) == payment_points
    print(f"\ncrash points in the payment path: {len(SCENARIOS)} of {len(payment_points)}")
