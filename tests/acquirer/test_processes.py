"""Issue #13 §2: several acquirer processes on one database serve the same terminals.

Two `acquirer-stub serve` processes started separately (two ports, one instance, one database), or one started with
`--workers 2` (gunicorn): the same STAN sent to both at once is one row and one answer; an ARQC that one process
approved is refused by the other; one process SIGKILLed under load while the other goes on loses and doubles
nothing, and every batch balances to the cent. On both databases (tests/acquirer/conftest.py): SQLite's write
lock is the file's, PostgreSQL's locks are the rows'.
"""

from __future__ import annotations

import datetime
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fleet
import pytest
from hostdb import rows
from hostserver import free_port, serve_acquirer
from test_transit_clearing import gate_fares

from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from firmware.issuing.layout import World
from terminal.host.client import HostClient

TODAY = f"{datetime.date.today():%m%d}"


@pytest.fixture
def grown(world: World, tmp_path: Path, database_url: str) -> tuple[Instance, list[dict[str, Any]], list[Any]]:
    """Six more terminals and six more cards, then the acquirer loaded from that world."""
    entries, cards = fleet.grow_world(world, terminals=6, cards=6)
    return init_instance(tmp_path / "acquirer", world, database=database_url)[0], entries, cards


@pytest.fixture
def two_hosts(grown: tuple[Instance, list[Any], list[Any]], tmp_path: Path) -> Iterator[list[fleet.AcquirerProcess]]:
    instance = grown[0]
    hosts = [fleet.AcquirerProcess(instance, tmp_path / f"acquirer-{n}.log") for n in (1, 2)]
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()


class Counter_:
    """One terminal speaking to whichever host it is given: signed requests, its own STANs."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.tid, self.key = entry["tid"], bytes.fromhex(entry["key"])
        self.stan = 0
        self.batch = 0

    def client(self, host: fleet.AcquirerProcess) -> HostClient:
        return HostClient(host.url, self.tid, self.key, timeout=30)

    def next_stan(self) -> str:
        self.stan += 1
        return f"{self.stan:06d}"

    def sign_on(self, host: fleet.AcquirerProcess) -> None:
        answer = self.client(host).post("/api/v1/signon", {"mti": "0800", "tid": self.tid,
                                                            "stan": self.next_stan(), "local_date": TODAY})
        self.batch = int(answer["batch"])

    def sale(self, card: Any, amount: int) -> dict[str, Any]:
        return {"mti": "0200", "tid": self.tid, "stan": self.next_stan(), "local_date": TODAY,
                "batch": self.batch, **card.request(amount)}


def _at_once(calls: list[Any]) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # reported by the assertions
            results[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_the_same_stan_at_two_processes_at_once_is_one_row_and_one_answer(
        grown: tuple[Instance, list[Any], list[Any]], two_hosts: list[fleet.AcquirerProcess]) -> None:
    instance, entries, cards = grown
    counter = Counter_(entries[0])
    counter.sign_on(two_hosts[0])
    paid_before = fleet.money(instance)
    sales = [counter.sale(cards[n % len(cards)], 1_00 + n) for n in range(12)]
    charged = 0
    for sale in sales:  # each signed twice (two nonces), sent to both processes in the same instant
        answers = _at_once([lambda host=host, sale=sale: counter.client(host).post("/api/v1/authorizations", sale)
                            for host in two_hosts])
        assert all(isinstance(answer, dict) for answer in answers), answers
        assert answers[0] == answers[1], answers  # the second is the first's stored answer, byte for byte
        assert answers[0]["rc"] == "00"
        charged += answers[0]["charged"]
    stored = rows(instance, "SELECT stan, COUNT(*) AS n FROM transactions WHERE tid = ? GROUP BY stan", counter.tid)
    assert sorted((r["stan"], r["n"]) for r in stored) == [(sale["stan"], 1) for sale in sales]
    paid = fleet.money(instance)
    assert sum(paid[a] - paid_before[a] for a in paid) == charged  # once each, promotions included


def test_an_arqc_approved_by_one_process_is_refused_by_the_other(
        grown: tuple[Instance, list[Any], list[Any]], two_hosts: list[fleet.AcquirerProcess]) -> None:
    instance, entries, cards = grown
    first, second = Counter_(entries[0]), Counter_(entries[1])
    first.sign_on(two_hosts[0])
    second.sign_on(two_hosts[1])
    sale = first.sale(cards[0], 5_00)
    assert first.client(two_hosts[0]).post("/api/v1/authorizations", sale)["rc"] == "00"
    replay = {**sale, "tid": second.tid, "stan": second.next_stan(), "batch": second.batch}
    refused = second.client(two_hosts[1]).post("/api/v1/authorizations", replay)
    assert (refused["rc"], refused["charged"]) == ("05", 0)

    # and the same cryptogram at both processes in one instant, from two terminals: one approval at most
    sale = first.sale(cards[1], 6_00)
    replay = {**sale, "tid": second.tid, "stan": second.next_stan(), "batch": second.batch}
    answers = _at_once([lambda: first.client(two_hosts[0]).post("/api/v1/authorizations", sale),
                        lambda: second.client(two_hosts[1]).post("/api/v1/authorizations", replay)])
    assert sorted(answer["rc"] for answer in answers) == ["00", "05"], answers
    reasons = rows(instance, "SELECT reason FROM transactions WHERE kind = 'authorization' ORDER BY id")
    assert [r["reason"] for r in reasons].count("ATC_REPLAY") == 2


def test_one_fare_batch_at_two_processes_at_once_is_cleared_once(
        grown: tuple[Instance, list[Any], list[Any]], world: World,
        two_hosts: list[fleet.AcquirerProcess]) -> None:
    """Transit clearing decides like a sale (the gate's row first, the fare's unique key): the batch sent to both
    processes in one instant is cleared by one and answered as repeats by the other, each fare stored once."""
    instance, entries, _ = grown
    gate = Counter_(entries[2])
    fares = gate_fares(world, gate.tid, [200, 300, 250, 400, 150, 500])
    answers = _at_once([lambda host=host: gate.client(host).post("/api/v1/transit/fares",
                                                                 {"tid": gate.tid, "fares": fares})
                        for host in two_hosts])
    assert all(isinstance(answer, dict) for answer in answers), answers
    statuses = sorted(tuple(result["status"] for result in answer["results"]) for answer in answers)
    assert statuses == [("cleared",) * len(fares), ("repeat",) * len(fares)], answers
    assert sorted(answer["amount"] for answer in answers) == [0, sum(f["amount"] for f in fares)]
    stored = rows(instance, "SELECT offline_serial, amount FROM transit_fares WHERE tid = ?", gate.tid)
    assert sorted(r["amount"] for r in stored) == sorted(f["amount"] for f in fares)


TERMINALS, SALES = 6, 12


def test_gunicorn_workers_share_the_load_and_decide_each_sale_once(
        grown: tuple[Instance, list[Any], list[Any]], tmp_path: Path) -> None:
    instance, entries, cards = grown
    host = fleet.AcquirerProcess(instance, tmp_path / "acquirer.log", workers=2)
    host.start()
    try:
        assert host.process is not None
        deadline = time.monotonic() + 30  # gunicorn forks its workers one after another
        while len(workers := _workers_of(host.process.pid)) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.05)
        assert len(workers) == 2, workers
        counters = [Counter_(entry) for entry in entries[:3]]
        for counter in counters:
            counter.sign_on(host)
        sales = [(counter, counter.sale(card, 2_00)) for counter, card in zip(counters, cards, strict=False)]
        answers = _at_once([lambda c=c, s=s: c.client(host).post("/api/v1/authorizations", s) for c, s in sales]
                           + [lambda c=c, s=s: c.client(host).post("/api/v1/authorizations", s) for c, s in sales])
        assert [a["rc"] for a in answers] == ["00"] * 6, answers
        assert answers[:3] == answers[3:]  # each sale decided once, the resend answered from the store
        assert len(rows(instance, "SELECT 1 FROM transactions WHERE kind = 'authorization'")) == 3
    finally:
        host.stop()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)  # the workers ended with the arbiter


def test_workers_and_their_web_process_stop_on_sigterm_without_a_traceback(instance: Instance,
                                                                          tmp_path: Path) -> None:
    """systemd's stop: the arbiter ends its workers, then the web process goes, and the command exits 0."""
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        served = serve_acquirer(instance.root, free_port(), web_port=free_port(), log=sink, workers=2)
        deadline = time.monotonic() + 30
        while len(workers := _workers_of(served.process.pid)) < 2:
            assert time.monotonic() < deadline, workers
            time.sleep(0.05)
        everyone = [served.process.pid, served.web_pid(), *_children(served.process.pid), *workers]
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in everyone):
        assert time.monotonic() < deadline, [pid for pid in everyone if Path(f"/proc/{pid}").exists()]
        time.sleep(0.05)
    assert "Traceback" not in log.read_text()


def _workers_of(pid: int) -> list[int]:
    """The gunicorn workers of `acquirer-stub serve --workers`: the children of its arbiter process."""
    arbiters = [child for child in _children(pid) if b"acquirer_stub.workers" in _cmdline(child)]
    return [worker for arbiter in arbiters for worker in _children(arbiter)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has just ended
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_one_process_killed_under_load_the_other_goes_on_nothing_lost_or_doubled(
        grown: tuple[Instance, list[Any], list[Any]], two_hosts: list[fleet.AcquirerProcess],
        tmp_path: Path) -> None:
    instance, entries, cards = grown
    paid_before = fleet.money(instance)
    victim, survivor = two_hosts
    terminals = [fleet.SimTerminal(entry, tmp_path, (victim if n % 2 else survivor).url, timeout=2.0)
                 for n, entry in enumerate(entries)]
    for terminal, card in zip(terminals, cards, strict=True):
        terminal.sales = [card.request(1_00 + 7 * n) for n in range(SALES)]
    runners = [threading.Thread(target=t.run, kwargs={"pause": lambda: time.sleep(0.02)}) for t in terminals]
    for runner in runners:
        runner.start()
    deadline = time.monotonic() + 60
    while len(rows(instance, "SELECT 1 FROM transactions")) < TERMINALS * SALES // 3:
        assert time.monotonic() < deadline, "the load never reached the hosts"
        time.sleep(0.01)
    victim.kill()  # mid-load: requests in its hands lose their answers; the other process goes on
    for runner in runners:
        runner.join()
    assert [t.error for t in terminals] == [None] * TERMINALS
    for terminal in terminals:  # the killed process's terminals are sent to the other one (a balancer would)
        terminal.url = survivor.url
    settled = [terminal.recover_and_settle() for terminal in terminals]

    charged = fleet.check_settled(instance, terminals, settled)
    paid = fleet.money(instance)
    assert sum(paid[a] - paid_before[a] for a in paid) == charged  # to the cent
    survivors = [t for n, t in enumerate(terminals) if n % 2 == 0]
    assert all(t.tally.approved == SALES for t in survivors)  # the other process never noticed
    assert sum(t.tally.no_answer + t.tally.not_sent for t in terminals) > 0  # the kill was felt
