"""`python -m bench`: every benchmark of issue #7 in one run, one Markdown table on stdout.

    ./scripts/bench [--quick] [--no-postgres] [--no-pcsc] [--card-repeat N] [--host-repeat N] [--footprint-repeat N]
                    [--open-loop-seconds S]

Set-up (a fresh test world, the acquirer instance, the cryptograms) is not timed. The world's files live in
/dev/shm when there is one (the emulated cards' own file writes are not what is measured); the acquirer's
database and the terminal's journal are on the disk of the temporary folder, so their fsyncs are real.

The PostgreSQL rows (issue #13): a throw-away cluster of its own (tests/pgcluster.py) with durability on (fsync,
synchronous_commit and full_page_writes at their defaults: a commit is on disk before the answer, as SQLite's
synchronous=FULL), its data folder under /tmp; one database and instance, its terminal API served at once in 1
and in 2 gunicorn worker processes (`acquirer_stub.workers.ApiWorkers`, what `acquirer-stub serve --workers N` runs
for N ≥ 2; its `--workers 1` is the one-process waitress server), and a bare endpoint in 1 and in 2 workers; the
closed-loop rounds of the four interleaved (the machine is shared: no side always runs in a quieter moment), then
the open loop on each worker count. Without PostgreSQL's binaries the report says so in one line and goes on.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import card, footprint, host, openloop
from bench.report import Report, Row, machine, median, percentile
from bench.serve import Server
from bench.world import build_world, make_instance, reset_velocity
from firmware.issuing.layout import World
from terminal.reader.base import ReaderError

ROOT = Path(__file__).resolve().parents[1]
EXTRA_CARDS = 40  # 32 world cards + 40: more than 50 terminals, so no two share a card
CARD_LIMIT = 1.10
ONLINE_LIMIT_MS = 100.0
HOST_RATIO = 0.6
P99_LIMIT_MS = 20.0
READY_LIMIT_S = 1.0
RSS_LIMIT_MB = 50.0
FOOTPRINT_CARD = "cmb-credit"  # a credit card: ¥20,000.00 of limit for the footprint's online sales
PG_WORKERS = (1, 2)
WORKERS_RATIO = 1.3
PG_SETTINGS = {"shared_buffers": "128MB"}


@dataclass
class PgRun:
    """The PostgreSQL measurements with `workers` API processes."""

    workers: int
    rounds: list[host.Round]
    open_result: openloop.Result
    bare_result: openloop.Result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the machinery, not the machine")
    parser.add_argument("--no-postgres", action="store_true", help="leave out the PostgreSQL rows")
    parser.add_argument("--no-pcsc", action="store_true", help="leave out the PC/SC rows (they need pcscd, as root)")
    parser.add_argument("--card-repeat", type=int, help="rounds of taps per type and baud rate (default 9)")
    parser.add_argument("--host-repeat", type=int, help="rounds per concurrency level and side (default 3)")
    parser.add_argument("--footprint-repeat", type=int, help="service starts (default 3)")
    parser.add_argument("--open-loop-seconds", type=float,
                        help=f"duration of the host's open-loop run (default {openloop.DURATION_S:g}, "
                             f"{openloop.QUICK_DURATION_S:g} with --quick)")
    args = parser.parse_args(argv)
    card_repeat = args.card_repeat or (1 if args.quick else 9)
    host_repeat = args.host_repeat or (1 if args.quick else 3)
    footprint_repeat = args.footprint_repeat or (1 if args.quick else 3)
    per_terminal = {1: 4, 10: 1, 50: 1} if args.quick else dict(host.PER_TERMINAL)
    arqc_count = 50 if args.quick else 2000
    open_seconds = args.open_loop_seconds or (openloop.QUICK_DURATION_S if args.quick else openloop.DURATION_S)

    began = time.perf_counter()
    report = Report()
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="bench-world-", dir=shm) as world_dir, \
            tempfile.TemporaryDirectory(prefix="bench-") as disk_dir:
        disk = Path(disk_dir)
        print("setting up: test world, acquirer, servers …", file=sys.stderr, flush=True)
        world = build_world(Path(world_dir) / "world", extra_cards=EXTRA_CARDS, terminals=max(host.LEVELS))
        instance = make_instance(world, disk / "acquirer")
        with Server("host", str(instance.root), cwd=ROOT) as host_server, Server("bare", cwd=ROOT) as bare_server:
            print("card-in-field …", file=sys.stderr, flush=True)
            bench = card.CardBench(world, disk, host_server.url, instance.database)
            try:
                samples = bench.run(card_repeat)
                print("terminal footprint …", file=sys.stderr, flush=True)
                starts, bare_starts = _footprint(world, bench, footprint_repeat)
            finally:
                bench.close()
            if args.no_pcsc:
                report.notes.append("PC/SC rows left out (--no-pcsc)")
            else:
                print("card-in-field through pcscd …", file=sys.stderr, flush=True)
                samples += _pcsc(report, world, disk, host_server.url, instance.database, card_repeat)
            print("host throughput …", file=sys.stderr, flush=True)
            host_bench = host.HostBench(world, instance.database, host_server.url, bare_server.url,
                                        per_terminal=per_terminal, repeat=host_repeat)
            host_bench.prepare()
            rounds = host_bench.run()
            print("host open loop …", file=sys.stderr, flush=True)
            open_loop = openloop.OpenLoop(host_server.url, host_bench.terminals[:openloop.TERMINALS],
                                          host_bench.cards, host_bench.pool, duration=open_seconds)
            open_loop.prepare()
            open_bare = openloop.OpenLoop(bare_server.url, open_loop.terminals, host_bench.cards, host_bench.pool,
                                          duration=open_seconds)
            open_bare.prepare_bare()
            bare_result = open_bare.run()
            reset_velocity(instance.database)
            open_result = open_loop.run()
        arqc = host.arqc_verification_seconds(world, arqc_count)
        commit = _commit_seconds(disk / "commit.sqlite3", 20 if args.quick else 300)
        pg_runs: list[PgRun] = []
        pg_commit = 0.0
        if args.no_postgres:
            report.notes.append("PostgreSQL rows left out (--no-postgres)")
        else:
            pg_runs, pg_commit = _postgres(report, world, disk, per_terminal=per_terminal, repeat=host_repeat,
                                           open_seconds=open_seconds, commits=20 if args.quick else 300)

    _card_rows(report, samples)
    _host_rows(report, rounds, arqc, commit)
    _open_loop_rows(report, open_result, bare_result)
    if pg_runs:
        _pg_rows(report, pg_runs, pg_commit)
    _footprint_rows(report, starts, bare_starts)
    elapsed = time.perf_counter() - began

    print(f"machine: {machine()}")
    print(f"repeats: card-in-field {card_repeat} per type and baud rate (median); host {host_repeat} rounds per "
          f"level and side, interleaved, {per_terminal} requests per terminal (median of rounds); service starts "
          f"{footprint_repeat}; ARQC verification {arqc_count} messages; host open loop {open_result.terminals} "
          f"terminals × {openloop.RATE_PER_TERMINAL:g}/s Poisson for {open_seconds:g} s (seed {openloop.SEED}, "
          f"{openloop.SENDERS} sender threads, latency from the scheduled arrival)")
    if pg_runs:
        print(f"PostgreSQL: a durable cluster (fsync, synchronous_commit, "
              f"full_page_writes on; {', '.join(f'{k}={v}' for k, v in PG_SETTINGS.items())}), API in "
              f"{' and '.join(str(r.workers) for r in pg_runs)} gunicorn worker processes "
              f"({_api_threads()} threads each) on one database, each against a bare endpoint in as many workers, "
              f"closed-loop rounds of all four interleaved")
    print()
    print(report.markdown())
    print()
    for note in report.notes:
        print(f"note: {note}")
    for kind in ("host", "iso", "bare"):
        counts: collections.Counter[str] = collections.Counter()
        for one in rounds:
            if one.kind == kind:
                counts.update(one.rcs)
        print(f"responses by rc, {kind}: " + ", ".join(f"{rc} × {n}" for rc, n in sorted(counts.items())))
    for label, result in (("open loop", open_result), ("open loop bare", bare_result)):
        print(f"responses by rc, {label}: " + ", ".join(f"{rc} × {n}" for rc, n in sorted(result.rcs.items())))
    for run in pg_runs:
        for kind in ("host", "bare"):
            counts = collections.Counter[str]()
            for one in run.rounds:
                if one.kind == kind:
                    counts.update(one.rcs)
            print(f"responses by rc, PostgreSQL {run.workers}w {kind}: "
                  + ", ".join(f"{rc} × {n}" for rc, n in sorted(counts.items())))
        for label, result in (("open loop", run.open_result), ("open loop bare", run.bare_result)):
            print(f"responses by rc, PostgreSQL {run.workers}w {label}: "
                  + ", ".join(f"{rc} × {n}" for rc, n in sorted(result.rcs.items())))
    print(f"runtime: {elapsed:.1f} s")
    return 0


def _api_threads() -> int:
    from acquirer_stub.serving import Serving

    return Serving().api_threads


def _pcsc(report: Report, world: World, disk: Path, host_url: str, database: Path, repeat: int) -> list[card.Sample]:
    """The card-in-field taps again through a pcscd of our own and vsmartcard's virtual reader; [] and a note when
    pcscd or vpcd is not installed, cannot start, or pyscard is missing."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pcscd

    try:
        with pcscd.running_pcscd(disk / "pcscd") as running:
            bench = card.PcscCardBench(world, disk, host_url, database, running.port, pcscd.READER)
            try:
                return bench.run(repeat)
            finally:
                bench.close()
    except (RuntimeError, OSError, ImportError, ReaderError) as error:
        report.notes.append(f"PC/SC rows skipped: {str(error).splitlines()[0]}")
        return []


def _postgres(report: Report, world: World, disk: Path, *, per_terminal: dict[int, int], repeat: int,
              open_seconds: float, commits: int) -> tuple[list[PgRun], float]:
    """The closed and open loops on a durable PostgreSQL cluster of our own, with 1 and 2 API workers; the
    cluster is stopped at the end. ([], 0) and a note when PostgreSQL is not installed or will not start."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pgcluster

    try:
        cluster = pgcluster.Cluster(durable=True, settings=PG_SETTINGS).start()
    except pgcluster.ClusterError as error:
        report.notes.append(f"PostgreSQL rows skipped: {str(error).splitlines()[0]}")
        return [], 0.0
    runs = []
    try:
        print(f"PostgreSQL: {' and '.join(map(str, PG_WORKERS))} worker(s), closed loop …", file=sys.stderr,
              flush=True)
        url = cluster.create_database("bench")
        instance = make_instance(world, disk / "acquirer-pg", database=url)
        with contextlib.ExitStack() as servers:
            hosts, bares = {}, {}
            for workers in PG_WORKERS:  # all of them at once, on the one database: their rounds interleave
                hosts[workers] = servers.enter_context(Server("host", str(instance.root), cwd=ROOT, workers=workers))
                bares[workers] = servers.enter_context(Server("bare", cwd=ROOT, workers=workers))
            first, *others = PG_WORKERS
            sides = {}
            for workers in others:
                sides[f"bare-{workers}w"] = bares[workers].url
                sides[f"host-{workers}w"] = hosts[workers].url
            bench = host.HostBench(world, instance.database, hosts[first].url, bares[first].url,
                                   per_terminal=per_terminal, repeat=repeat, iso=False, sides=sides)
            bench.prepare()
            rounds = bench.run()
            for workers in PG_WORKERS:
                print(f"PostgreSQL, {workers} worker(s): open loop …", file=sys.stderr, flush=True)
                open_loop = openloop.OpenLoop(hosts[workers].url, bench.terminals[:openloop.TERMINALS], bench.cards,
                                              bench.pool, duration=open_seconds)
                open_loop.prepare()
                open_bare = openloop.OpenLoop(bares[workers].url, open_loop.terminals, bench.cards, bench.pool,
                                              duration=open_seconds)
                open_bare.prepare_bare()
                bare_result = open_bare.run()
                reset_velocity(instance.database)
                open_result = open_loop.run()
                suffix = "" if workers == first else f"-{workers}w"
                mine = [dataclasses.replace(r, kind=r.kind.removesuffix(suffix)) for r in rounds
                        if r.kind in (f"host{suffix}", f"bare{suffix}")]
                runs.append(PgRun(workers, mine, open_result, bare_result))
        commit = _pg_commit_seconds(cluster.create_database("bench_commit"), commits)
    finally:
        cluster.stop()
    return runs, commit


def _pg_commit_seconds(url: str, count: int) -> float:
    """One row per transaction on the durable cluster: the commit (WAL flush) a decision pays, alone."""
    from acquirer_stub.store import db

    connection: Any = db.connect(url)
    try:
        connection.execute("CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, body TEXT)")
        started = time.perf_counter()
        for number in range(count):
            with db.transaction(connection, serial=False):
                connection.execute("INSERT INTO t (body) VALUES (?)", (f"decision {number}" * 20,))
        return (time.perf_counter() - started) / count
    finally:
        connection.close()


def _footprint(world: World, bench: card.CardBench,
               repeat: int) -> tuple[list[footprint.Start], list[tuple[float, float]]]:
    entry = next(c for c in world.cards() if c["issuer"] == FOOTPRINT_CARD)
    card_path = world.path(Path(entry["file"]))
    starts, bare = [], []
    for _ in range(repeat):  # interleaved with a bare interpreter's start
        bare.append(footprint.bare_interpreter(ROOT))
        starts.append(footprint.service_start(bench.configs[card.BAUDS[0]], bench.rig, card_path, ROOT))
    return starts, bare


def _commit_seconds(path: Path, count: int) -> float:
    """One row per transaction, WAL + synchronous=FULL: the durable commit every decision pays, alone."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        started = time.perf_counter()
        for number in range(count):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t (body) VALUES (?)", (f"decision {number}" * 20,))
            connection.execute("COMMIT")
        return (time.perf_counter() - started) / count
    finally:
        connection.close()


def _card_rows(report: Report, samples: list[card.Sample]) -> None:
    groups: dict[tuple[str, int], list[card.Sample]] = collections.defaultdict(list)
    for sample in samples:
        groups[(sample.kind, sample.baud)].append(sample)
    for baud in card.BAUDS:
        for kind in card.TYPES:
            group = groups[(kind, baud)]
            measured = median([s.tap.measured for s in group]) * 1000
            bound = median([s.tap.modelled for s in group]) * 1000
            report.add(Row("card-in-field", f"{card.LABELS[kind]}, {baud} baud", measured, "ms", bound, "bound",
                           f"≤ {CARD_LIMIT:.2f} × bound", measured / bound <= CARD_LIMIT))
    fastest = card.BAUDS[-1]
    online = median([s.tap.measured for s in groups[("online", fastest)]]) * 1000
    report.add(Row("card-in-field", f"online tap at {fastest} baud, link model on", online, "ms", ONLINE_LIMIT_MS,
                   "limit", f"≤ {ONLINE_LIMIT_MS:.0f} ms", online <= ONLINE_LIMIT_MS))
    if any(sample.baud == card.PCSC_BAUD for sample in samples):  # the same taps through pcscd, beside the PN532's
        report.notes.append("PC/SC rows: vsmartcard's virtual reader has no air and no USB, so they are the cost of "
                            "pyscard, pcscd and vpcd for the same APDUs; a USB reader adds its air and CCID time")
        slowest = card.BAUDS[0]
        for kind in card.TYPES:
            pcsc = median([s.tap.measured for s in groups[(kind, card.PCSC_BAUD)]]) * 1000
            pn532 = median([s.tap.measured for s in groups[(kind, slowest)]]) * 1000
            report.add(Row("card-in-field", f"{card.LABELS[kind]}, PC/SC (pcscd + vsmartcard's vpcd)", pcsc, "ms",
                           pn532, f"PN532 {slowest} baud"))
    for baud in card.BAUDS:
        group = groups[("online", baud)]
        outcome = median([s.outcome_seconds or 0.0 for s in group]) * 1000
        bound = median([s.tap.modelled for s in group]) * 1000
        report.add(Row("tap-to-outcome", f"online tap + authorization over loopback, {baud} baud", outcome, "ms",
                       bound, "card bound"))


def _closed_rows(report: Report, rounds: list[host.Round], *, prefix: str = "") -> None:
    """Per level: the closed loop's throughput against the bare endpoint's (p50/p99 alongside); the SQLite run
    (no prefix) also judges the p99 at the top level."""
    def pick(kind: str, level: int) -> list[host.Round]:
        return [r for r in rounds if r.kind == kind and r.terminals == level]

    for level in host.LEVELS:
        mine, bare = pick("host", level), pick("bare", level)
        throughput, bare_throughput = median([r.throughput for r in mine]), median([r.throughput for r in bare])
        p50 = median([percentile(r.latencies, 0.50) for r in mine]) * 1000
        p99 = median([percentile(r.latencies, 0.99) for r in mine]) * 1000
        bare_p50 = median([percentile(r.latencies, 0.50) for r in bare]) * 1000
        bare_p99 = median([percentile(r.latencies, 0.99) for r in bare]) * 1000
        plural = "terminal" if level == 1 else "terminals"
        report.add(Row("host", f"{prefix}signed authorizations, {level} {plural}, durable writes", throughput, "/s",
                       bare_throughput, "bare", f"≥ {HOST_RATIO} × bare",
                       throughput / bare_throughput >= HOST_RATIO,
                       detail=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; bare p50 {bare_p50:.1f}, p99 {bare_p99:.1f}"))
        if level == max(host.LEVELS) and not prefix:
            report.add(Row("host", f"p99 latency, {level} terminals", p99, "ms", bare_p99, "bare",
                           f"≤ {P99_LIMIT_MS:.0f} ms", p99 <= P99_LIMIT_MS))


def _host_rows(report: Report, rounds: list[host.Round], arqc: float, commit: float) -> None:
    def pick(kind: str, level: int) -> list[host.Round]:
        return [r for r in rounds if r.kind == kind and r.terminals == level]

    _closed_rows(report, rounds)
    json_ms = median([percentile(r.latencies, 0.50) for r in pick("host", 1)]) * 1000
    iso_ms = median([percentile(r.latencies, 0.50) for r in pick("iso", 1)]) * 1000
    report.add(Row("host", "raw ISO 8583 authorization, per message (p50, 1 terminal)", iso_ms, "ms", json_ms,
                   "JSON"))
    report.add(Row("host", "ARQC verification + ARPC, per message (in process)", arqc * 1e6, "µs", json_ms * 1000,
                   "JSON request"))
    report.add(Row("host", "durable SQLite commit alone (WAL, synchronous=FULL)", commit * 1e6, "µs", json_ms * 1000,
                   "JSON request"))


def _pg_rows(report: Report, runs: list[PgRun], commit: float) -> None:
    """Per worker count: the closed loop against a bare endpoint in as many workers; then 2 workers against 1; the
    open loop; the durable commit alone."""
    def throughput(run: PgRun, kind: str, level: int) -> float:
        return median([r.throughput for r in run.rounds if r.kind == kind and r.terminals == level])

    for run in runs:
        plural = "worker" if run.workers == 1 else "workers"
        _closed_rows(report, run.rounds, prefix=f"PostgreSQL, {run.workers} {plural}: ")
    by_workers = {run.workers: run for run in runs}
    if 1 in by_workers and 2 in by_workers:
        for level in host.LEVELS:
            two, one = throughput(by_workers[2], "host", level), throughput(by_workers[1], "host", level)
            bare_two, bare_one = throughput(by_workers[2], "bare", level), throughput(by_workers[1], "bare", level)
            plural = "terminal" if level == 1 else "terminals"
            report.add(Row("host", f"PostgreSQL: 2 workers against 1, {level} {plural}", two, "/s", one, "one worker",
                           f"≥ {WORKERS_RATIO} × 1 worker" if level > 1 else "", (two / one >= WORKERS_RATIO)
                           if level > 1 else None, detail=f"bare 2w/1w {bare_two / bare_one:.2f}"))
    for run in runs:
        plural = "worker" if run.workers == 1 else "workers"
        _open_loop_rows(report, run.open_result, run.bare_result, prefix=f"PostgreSQL, {run.workers} {plural}: ")
    report.add(Row("host", "durable PostgreSQL commit alone (fsync on, one INSERT per transaction)", commit * 1e6,
                   "µs"))


def _open_loop_rows(report: Report, result: openloop.Result, bare: openloop.Result, prefix: str = "") -> None:
    """The answers per second against the rate the seeded schedule offered; the p99 against the bare endpoint's
    under the same schedule, judged by the issue's limit (and every answer approved)."""
    what = (f"{prefix}open loop, {result.terminals} terminals × {result.rate:g}/s Poisson "
            f"({result.terminals * result.rate:g}/s)")
    report.add(Row("host", f"{what}: answers", result.achieved, "/s", result.offered, "offered",
                   detail=f"{len(result.latencies)} sales in {result.duration:g} s, {result.not_approved} not "
                          f"approved; a sender started ≤ {max(result.lags) * 1000:.1f} ms after the arrival"))
    p50, p99 = percentile(result.latencies, 0.50) * 1000, percentile(result.latencies, 0.99) * 1000
    bare_p50, bare_p99 = percentile(bare.latencies, 0.50) * 1000, percentile(bare.latencies, 0.99) * 1000
    worst, bare_worst = max(result.latencies) * 1000, max(bare.latencies) * 1000
    report.add(Row("host", f"{what}: p99 latency from the scheduled arrival", p99, "ms", bare_p99, "bare",
                   f"≤ {P99_LIMIT_MS:.0f} ms, all approved", p99 <= P99_LIMIT_MS and result.not_approved == 0,
                   detail=f"p50 {p50:.1f} ms, max {worst:.1f} ms, {result.not_approved} not approved; bare p50 "
                          f"{bare_p50:.1f}, max {bare_worst:.1f}"))


def _footprint_rows(report: Report, starts: list[footprint.Start], bare: list[tuple[float, float]]) -> None:
    ready = median([s.ready_seconds for s in starts])
    bare_start, bare_rss = median([b[0] for b in bare]), median([b[1] for b in bare])
    report.add(Row("terminal", "pos-terminal run: exec to READY=1 (sd_notify)", ready, "s", bare_start,
                   "bare python", f"≤ {READY_LIMIT_S:.0f} s", ready <= READY_LIMIT_S))
    rss_ready = median([s.rss_ready_mb for s in starts])
    rss_service = median([s.rss_service_mb for s in starts])
    report.add(Row("terminal", "resident memory at READY", rss_ready, "MB", bare_rss, "bare python",
                   f"≤ {RSS_LIMIT_MB:.0f} MB", rss_ready <= RSS_LIMIT_MB))
    report.add(Row("terminal", "resident memory in service (after an online sale)", rss_service, "MB", bare_rss,
                   "bare python", f"≤ {RSS_LIMIT_MB:.0f} MB", rss_service <= RSS_LIMIT_MB))


if __name__ == "__main__":
    raise SystemExit(main())
