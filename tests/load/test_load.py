"""Issue #7 "Load": many terminals selling at once against one acquirer; the host's totals equal the sum of the
terminals' journals exactly, nothing lost, nothing doubled.

Each simulated terminal is a real `HostLink` + `Journal` (its own SQLite file) over real signed HTTP to
`acquirer-stub serve` (waitress, a child process). The sales mix approvals, declines (51 on ¥1 debit accounts,
41 on cards reported lost) and timeouts (one issuer answers slower than the terminals wait: the terminal
reverses with reason 98, before its next sale at the latest).

Size: CI mode (the default) runs 10 terminals × 20 sales. ``POS_LONG=1`` runs the issue's 50 terminals × 200 sales
(10,000 sales; several minutes on two cores):

    POS_LONG=1 .venv/bin/python -m pytest tests/load -s

The counts (attempted, approved, declined, no answer, reversed, reconciled) are printed (``-s`` to see them).
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import fleet

from firmware.issuing.layout import World
from terminal.journal.journal import Journal

LONG = os.environ.get("POS_LONG") == "1"
TERMINALS, SALES = (50, 200) if LONG else (10, 20)
SALES_PER_CARD = 20  # under the issuer's 30 approvals per card and day
SLOW_ISSUER = "cmb-debit"
SLOW_SALES = 8 if LONG else 3  # each holds the host for SLOW_MS: the stub sleeps inside its decision
TIMEOUT = 2.0  # the terminals' host timeout (s)
SLOW_MS = 2_600


def test_terminals_selling_at_once_agree_with_the_host_to_the_cent(world: World, tmp_path: Path) -> None:
    cards_per_terminal = math.ceil(SALES / SALES_PER_CARD)
    entries, cards = fleet.grow_world(world, terminals=TERMINALS, cards=TERMINALS * cards_per_terminal * 33 // 31 + 4,
                                      poor_every=9, blocked_every=11, also={SLOW_ISSUER: SLOW_SALES})
    instance = fleet.load_instance(world, tmp_path / "acquirer")
    fleet.block_cards(instance, cards)
    slow = cards[-SLOW_SALES:]
    normal = [c for c in cards if c.issuer != SLOW_ISSUER]
    assert len(slow) >= SLOW_SALES and len(normal) >= TERMINALS * cards_per_terminal
    paid_before = fleet.money(instance)

    host = fleet.AcquirerProcess(instance, tmp_path / "acquirer.log")
    host.start()
    try:
        rng = random.Random(7)
        terminals = [fleet.SimTerminal(entry, tmp_path, host.url, timeout=TIMEOUT) for entry in entries]
        for number, terminal in enumerate(terminals):
            own = normal[number * cards_per_terminal:(number + 1) * cards_per_terminal]
            terminal.sales = [own[n % len(own)].request(rng.randrange(1_00, 999_99)) for n in range(SALES)]
        for number, card in enumerate(slow[:SLOW_SALES]):  # replaces one sale of an evenly spread terminal
            terminal = terminals[(number * TERMINALS) // SLOW_SALES]
            terminal.sales[SALES // 2] = card.request(rng.randrange(1_00, 999_99))
        fleet.set_latency(instance, SLOW_ISSUER, SLOW_MS)

        tally = fleet.run_fleet(terminals)

        fleet.set_latency(instance, SLOW_ISSUER, 0)
        settled = [terminal.recover_and_settle() for terminal in terminals]
    finally:
        host.stop()

    # every terminal: host and journal agree sale by sale, and the batch balances to the cent
    states: dict[str, int] = {}
    journal_count = journal_amount = journal_charged = 0
    for terminal, outcome in zip(terminals, settled, strict=True):
        for state, count in fleet.agreement(instance, terminal.journal_path, terminal.tid).items():
            states[state] = states.get(state, 0) + count
        result = outcome["result"]
        assert (result.rc, result.balanced) == ("00", True), (terminal.tid, result.raw)
        assert result.terminal_totals == result.host_totals == outcome["totals"]
        assert fleet.host_totals(instance, terminal.tid, outcome["batch"]) == outcome["totals"]
        journal_count += outcome["totals"].debit_count
        journal_amount += outcome["totals"].debit_amount
        with Journal.open(terminal.journal_path) as journal:
            journal_charged += sum(e.charged or 0 for e in journal.entries() if e.approved)
            sent = [e for e in journal.entries() if e.kind == "sale"]
        # one journal entry per sale sent, plus the first try of a sale the host refused with 77 (signed on again)
        retried = [e.id for e in sent if e.rc == "77"]
        assert sorted(e.id for e in sent) == sorted(terminal.journaled + retried), (terminal.tid, sent)

    # the host as a whole: its approvals are exactly the journals' approvals; money moved by exactly those
    tids = tuple(t.tid for t in terminals)
    marks = ",".join("?" * len(tids))
    approved = fleet.host_rows(instance, f"SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS amount,"
                               f" COALESCE(SUM(charged), 0) AS charged FROM transactions WHERE kind = 'authorization'"
                               f" AND state = 'approved' AND tid IN ({marks})", *tids)[0]
    assert (approved["n"], approved["amount"]) == (journal_count, journal_amount) == (tally.approved, journal_amount)
    assert approved["charged"] == journal_charged
    paid_after = fleet.money(instance)
    moved = sum(paid_after[account] - paid_before[account] for account in paid_before)
    assert moved == journal_charged  # zero lost, zero doubled: the accounts paid exactly the approved sales
    rows = fleet.host_rows(instance, f"SELECT rc, COUNT(*) AS n FROM transactions WHERE kind = 'authorization'"
                           f" AND tid IN ({marks}) GROUP BY rc", *tids)
    host_codes = {r["rc"]: r["n"] for r in rows}

    reversed_ = states.get("REVERSED", 0)
    print(f"\nload: {TERMINALS} terminals x {SALES} sales: attempted {tally.attempted}, approved {tally.approved},"
          f" declined {tally.declined}, no answer {tally.no_answer}, not sent {tally.not_sent},"
          f" reversed {reversed_}, reconciled {len(settled)} batches ({journal_count} sales, {journal_amount} fen);"
          f" host codes {host_codes}")
    assert tally.attempted == TERMINALS * SALES
    assert tally.approved > 0 and host_codes.get("51", 0) > 0 and host_codes.get("41", 0) > 0
    assert tally.no_answer >= SLOW_SALES and reversed_ >= SLOW_SALES  # the slow issuer's sales were reversed
