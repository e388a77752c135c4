"""Issue #7 "Crashes": the host SIGKILLed under load, restarted on the same instance and port.

`acquirer-stub serve` runs as a child process; six simulated terminals (real `HostLink` + `Journal` over signed
HTTP, real ARQCs) sell at once. Midway the host is killed with SIGKILL: requests in flight lose their answers
(the terminals reverse them, 98), sales while it is down are not sent, and after the restart the terminals carry
on, send their reversals first, then settle. Afterwards every sale is either completed or reversed, host and
journals agree sale by sale, every batch balances, and the accounts moved by exactly the approved sales.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import fleet

from firmware.issuing.layout import World

TERMINALS, SALES = 6, 15


def test_host_killed_mid_load_then_restarted_every_sale_completed_or_reversed(world: World, tmp_path: Path) -> None:
    entries, cards = fleet.grow_world(world, terminals=TERMINALS, cards=TERMINALS)
    instance = fleet.load_instance(world, tmp_path / "acquirer")
    paid_before = fleet.money(instance)
    host = fleet.AcquirerProcess(instance, tmp_path / "acquirer.log")
    host.start()
    try:
        terminals = [fleet.SimTerminal(entry, tmp_path, host.url, timeout=2.0) for entry in entries]
        for terminal, card in zip(terminals, cards, strict=True):
            terminal.sales = [card.request(1_00 + 7 * n) for n in range(SALES)]

        down = threading.Event()

        def pause() -> None:  # a shop's pace; slower while the host is away, so the load goes on after it is back
            time.sleep(0.5 if down.is_set() else 0.02)

        runners = [threading.Thread(target=t.run, kwargs={"pause": pause}) for t in terminals]
        for runner in runners:
            runner.start()
        deadline = time.monotonic() + 60
        while len(fleet.host_rows(instance, "SELECT 1 FROM transactions")) < TERMINALS * SALES // 3:
            assert time.monotonic() < deadline, "the load never reached the host"
            time.sleep(0.01)
        host.kill()  # mid-load: some requests are in the host's hands right now
        down.set()
        down_rows = len(fleet.host_rows(instance, "SELECT 1 FROM transactions"))
        time.sleep(0.5)  # the terminals notice: refused connections, lost answers
        host.start()  # the same instance and port
        down.clear()
        for runner in runners:
            runner.join()
        assert [t.error for t in terminals] == [None] * TERMINALS
        settled = [terminal.recover_and_settle() for terminal in terminals]
    finally:
        host.stop()

    tally = fleet.Tally()
    for terminal in terminals:
        tally.add(terminal.tally)
    charged = fleet.check_settled(instance, terminals, settled)
    paid_after = fleet.money(instance)
    assert sum(paid_after[a] - paid_before[a] for a in paid_before) == charged  # to the cent
    approved = fleet.host_rows(instance, "SELECT COUNT(*) AS n FROM transactions WHERE kind = 'authorization'"
                               " AND state = 'approved'")[0]["n"]
    reversed_ = fleet.host_rows(instance, "SELECT COUNT(*) AS n FROM transactions WHERE kind = 'reversal'")[0]["n"]
    print(f"\nhost killed after {down_rows} rows: attempted {tally.attempted}, approved {tally.approved},"
          f" no answer {tally.no_answer}, not sent {tally.not_sent}, host reversals {reversed_}")
    assert approved == tally.approved and tally.attempted == TERMINALS * SALES
    assert tally.no_answer + tally.not_sent > 0  # the crash was felt by the terminals
    rows_after = len(fleet.host_rows(instance, "SELECT 1 FROM transactions WHERE kind = 'authorization'"))
    assert rows_after > down_rows  # and the load went on after the restart
