"""The terminal API's latency idle and under the availability attack of issue #11 §5 (tests/siege.py).

    python -m bench.availability [--probes N] [--rounds N] [--login-clients N] [--quick]

One terminal sends signed echoes (0800, a durable write each) one after another; in each round, first with
nothing else running, then while 50 operator live-feed streams, 200 stalled connections (half-sent headers,
uploads claiming 100 MB; half of them on the terminal API's listener) and a login flood (4 clients in a process of
their own, wrong passwords back to back) run against the same acquirer. The acquirer is `acquirer-stub serve` in
a child process (the terminal API in that process, the web listener in its own), its database on disk. The
latencies of all rounds are pooled per phase; target: p99 under attack ≤ 2 × idle p99.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Report, Row, machine, percentile
from bench.world import make_instance
from firmware.issuing.build import create_world
from firmware.issuing.layout import World
from terminal.host.client import HostClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hostserver import ServedAcquirer, free_port, process_memory_mb, serve_acquirer
from siege import Probe, Siege, log_in

P99_RATIO = 2.0
WARM_UP = 20


def measure(world: World, served: ServedAcquirer, *, probes: int, rounds: int, login_clients: int = 4
            ) -> tuple[list[float], list[float], collections.Counter[str], float, float]:
    """Idle and attacked echo latencies (seconds), what the attack saw, the acquirer's RSS idle and its peak (MB,
    both processes)."""
    assert served.web_port is not None
    operator = next(u for u in world.users() if u["role"] == "operator")
    terminal = world.terminals()[0]
    probe = Probe(HostClient(f"http://127.0.0.1:{served.port}", terminal["tid"], bytes.fromhex(terminal["key"]),
                             timeout=30))
    probe.run(WARM_UP)
    cookie = log_in(served.web_port, operator["username"], operator["password"])
    pids = (served.process.pid, served.web_pid())
    idle: list[float] = []
    attacked: list[float] = []
    seen: collections.Counter[str] = collections.Counter()
    rss_idle = sum(process_memory_mb(pid) for pid in pids)
    for _ in range(rounds):
        probe.latencies = []
        probe.run(probes)
        idle += probe.latencies
        with Siege(served.web_port, cookie, operator["username"], api_port=served.port,
                   login_clients=login_clients) as siege:
            probe.latencies = []
            probe.run(probes)
            attacked += probe.latencies
        seen.update(siege.tally.snapshot())
    return idle, attacked, seen, rss_idle, sum(process_memory_mb(pid, "VmHWM") for pid in pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.availability", description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, help="echoes per phase and round (default 1000)")
    parser.add_argument("--rounds", type=int, help="rounds of idle + attack (default 3)")
    parser.add_argument("--login-clients", type=int, default=4, help="login flood clients (default 4; 0: none)")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the machinery, not the machine")
    args = parser.parse_args(argv)
    probes = args.probes or (20 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 3)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-availability-") as folder:
        print("setting up: test world, acquirer …", file=sys.stderr, flush=True)
        create_world(Path(folder) / "world")
        world = World.open(Path(folder) / "world")
        instance = make_instance(world, Path(folder) / "acquirer")
        served = serve_acquirer(instance.root, free_port(), web_port=free_port())
        try:
            print("idle and attacked rounds …", file=sys.stderr, flush=True)
            idle, attacked, seen, rss_idle, rss_peak = measure(world, served, probes=probes, rounds=rounds,
                                                               login_clients=args.login_clients)
        finally:
            served.stop()
    report = Report()
    for name, fraction in (("p50", 0.50), ("p99", 0.99)):
        value, reference = percentile(attacked, fraction) * 1000, percentile(idle, fraction) * 1000
        target = f"≤ {P99_RATIO:g} × idle" if name == "p99" else ""
        report.add(Row("availability", f"signed echo {name} under attack", value, "ms", reference, "idle", target,
                       value <= P99_RATIO * reference if name == "p99" else None))
    report.add(Row("availability", "acquirer resident memory (both processes), peaks", rss_peak, "MB", rss_idle,
                   "idle"))
    print(f"machine: {machine()}")
    print(f"{rounds} rounds × {probes} echoes per phase, one terminal, closed loop; pooled per phase; "
          f"{args.login_clients} login flood clients")
    print()
    print(report.markdown())
    print()
    print("the attack saw: " + ", ".join(f"{what} × {n}" for what, n in sorted(seen.items())))
    print(f"runtime: {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
