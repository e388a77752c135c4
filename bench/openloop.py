"""Host latency under an open loop: terminals offer sales at a fixed rate, each one's arrivals a Poisson process,
sent on schedule whatever the answers to earlier sales are doing (issue #13 §3).

The closed loop of `bench.host` sends the next sale when the previous answer is in, so a slow host slows the
offered load down with it and its queueing never shows (coordinated omission). Here a dispatcher thread hands each
sale to a pool of sender threads at its scheduled time; a late answer holds one sender, not the later arrivals.
Latency runs from the scheduled arrival to the answer, so a sale that waited for a free sender (or for the
dispatcher) is charged for the wait.

Sales reuse `bench.host`: its terminals, its cryptograms (`CardPool`, made before the run) and its signed JSON
sender (`HostClient`, one connection per request). The issuer declines a card's 31st approval of the day (65)
and an ATC that is not above the last one it saw (05), so sale k takes card k mod N: one card's sales are N
arrivals apart and stay in ATC order unless answers are later than N arrivals' time, and the plan refuses a
schedule that would need more than `DAILY_APPROVALS` sales of one card. The caller resets the issuer's daily
counters before the run (`bench.world.reset_velocity` for SQLite). The runner takes the host's URL only, so the
same run can be pointed at any acquirer.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.host import CardPool, Terminal, _json_sender, financial, sign_on
from terminal.host.client import HostClient

TERMINALS = 50
RATE_PER_TERMINAL = 4.0  # sales/s each: 200/s in all
DURATION_S = 10.0
QUICK_DURATION_S = 1.0
SEED = 13
SENDERS = 64  # threads: 200/s × 64 = answers up to 320 ms late before an arrival waits for a sender
DAILY_APPROVALS = 30  # the issuer's velocity limit per card and day


def arrival_schedule(rate: float, duration: float, seed: int | str) -> list[float]:
    """Arrival times in seconds from the start, in [0, duration), of a Poisson process of `rate` per second:
    exponential gaps drawn from `random.Random(seed)`. Sorted; the same arguments give the same list."""
    if rate <= 0 or duration <= 0:
        return []
    rng = random.Random(seed)
    times = []
    now = rng.expovariate(rate)
    while now < duration:
        times.append(now)
        now += rng.expovariate(rate)
    return times


def merged_schedule(terminals: int, rate: float, duration: float, seed: int) -> list[tuple[float, int]]:
    """(time, terminal index) of every arrival of `terminals` independent Poisson processes of `rate` each,
    in time order; terminal i draws from the seed ``f"{seed}/{i}"``."""
    arrivals = [(at, index) for index in range(terminals)
                for at in arrival_schedule(rate, duration, f"{seed}/{index}")]
    return sorted(arrivals)


@dataclass
class Result:
    terminals: int
    rate: float  # sales/s each terminal offers: `terminals` × `rate` nominally
    offered: float  # sales/s the seeded schedule offered: its arrivals / `duration`
    duration: float  # seconds of arrivals
    seconds: float  # from the start to the last answer
    latencies: list[float]  # seconds, scheduled arrival to answer
    rcs: collections.Counter[str] = field(default_factory=collections.Counter)
    lags: list[float] = field(default_factory=list)  # seconds, scheduled arrival to a sender starting on it

    @property
    def achieved(self) -> float:
        """Answers per second, from the start to the last answer."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def not_approved(self) -> int:
        """Answers other than 00 (declines, HTTP errors, failed connections)."""
        return sum(n for rc, n in self.rcs.items() if rc != "00")


class OpenLoop:
    """`terminals` (signed on at `url` by `prepare`) offering `rate` sales/s each for `duration` seconds."""

    def __init__(self, url: str, terminals: Sequence[Terminal], cards: Sequence[dict[str, Any]], pool: CardPool, *,
                 rate: float = RATE_PER_TERMINAL, duration: float = DURATION_S, seed: int = SEED,
                 senders: int = SENDERS) -> None:
        self.url = url
        self.terminals = list(terminals)
        self.cards = list(cards)
        self.pool = pool
        self.rate = rate
        self.duration = duration
        self.senders = senders
        self.schedule = merged_schedule(len(self.terminals), rate, duration, seed)
        self._plan: list[tuple[float, Callable[[], str]]] = []

    def cards_for(self) -> list[dict[str, Any]]:
        """Sale k's card: card k mod N."""
        return [self.cards[k % len(self.cards)] for k in range(len(self.schedule))]

    def prepare(self) -> None:
        """Sign the terminals on at the host, tap the cards for every sale, sign nothing yet (a request is signed
        when it is sent, as a terminal does)."""
        chosen = self.cards_for()
        uses = collections.Counter(card["pan"] for card in chosen)
        if uses and max(uses.values()) > DAILY_APPROVALS:
            raise RuntimeError(f"{len(chosen)} sales over {len(self.cards)} cards: more than {DAILY_APPROVALS} "
                               f"sales of one card a day (the issuer's limit); shorten the run or add cards")
        for terminal in self.terminals:
            sign_on(self.url, terminal)
        self.pool.make(dict(uses))
        clients = [HostClient(self.url, t.tid, t.key, timeout=30) for t in self.terminals]
        self._plan = []
        for (at, index), card in zip(self.schedule, chosen, strict=True):
            body = financial(self.terminals[index], card, self.pool.take(card))
            self._plan.append((at, _json_sender(clients[index], body)))

    def prepare_bare(self) -> None:
        """The same schedule for a bare endpoint (`bench.serve bare`), which verifies nothing: no sign-on, no
        cryptograms, a placeholder ICC; the floor of this client and the server's framework at the same load."""
        clients = [HostClient(self.url, t.tid, t.key, timeout=30) for t in self.terminals]
        self._plan = [(at, _json_sender(clients[index], financial(self.terminals[index], card, {"9F26": "00" * 8})))
                      for (at, index), card in zip(self.schedule, self.cards_for(), strict=True)]

    def run(self) -> Result:
        if len(self._plan) != len(self.schedule):
            raise RuntimeError("OpenLoop.run before prepare")
        latencies: list[float] = []
        lags: list[float] = []
        rcs: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        last = [0.0]

        def sale(due: float, send: Callable[[], str]) -> None:
            began = time.perf_counter()
            rc = send()
            done = time.perf_counter()
            with lock:
                latencies.append(done - due)
                lags.append(began - due)
                rcs[rc] += 1
                last[0] = max(last[0], done)

        with ThreadPoolExecutor(self.senders, thread_name_prefix="openloop") as pool:
            ready = threading.Barrier(self.senders + 1)
            for _ in range(self.senders):  # every sender thread started before the clock does
                pool.submit(ready.wait)
            ready.wait()
            start = time.perf_counter()
            for at, send in self._plan:
                due = start + at
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(sale, due, send)
        self._plan = []
        return Result(len(self.terminals), self.rate, len(self.schedule) / self.duration, self.duration,
                      max(last[0] - start, self.duration), latencies, rcs, lags)
