"""Host throughput: signed authorizations from 1, 10 and 50 concurrent terminals against the acquirer stub, and
the same requests against a bare endpoint on the same server (waitress set up as `acquirer-stub serve` does),
rounds interleaved.

The acquirer runs in its own process as `acquirer-stub serve` does, its SQLite database on disk (WAL,
synchronous=FULL: every decision is fsync'ed before the answer leaves). Each terminal is a `HostClient` (signed,
one connection per request) in a thread of this process, sending as fast as the answers come (closed loop).
The cryptograms are made beforehand by tapping the world's cards (tests/reader.py `tap_icc`); a card belongs to
one terminal, which sends its cryptograms in ATC order, and the issuer's daily velocity counters are moved to
yesterday between rounds. Responses are counted by rc so that declines cannot pass for throughput.
"""

from __future__ import annotations

import collections
import datetime
import http.client
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acquirer_stub.iso8583 import spec
from acquirer_stub.issuer import cryptogram
from bench.world import reset_velocity
from emvcore import tlv
from emvcore.bcd import encode_cn
from emvcore.crypto.cryptogram import Algorithm
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from hostproto import signing
from terminal.host.client import HostClient, HostError, HostRejected

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reader

LEVELS = (1, 10, 50)
PER_TERMINAL = {1: 60, 10: 15, 50: 6}  # requests per terminal per round
AMOUNT = 100  # ¥1.00: far from every balance, credit and daily amount limit
ISO_HEADER = "6000093019" + "603100311003"  # TPDU 60 / destination 0009 / source 3019; CUP header


@dataclass
class Terminal:
    tid: str
    mid: str
    key: bytes
    batch: int = 0
    stan: int = 500_000  # above the STANs the card benchmark's terminal (the demo TID) used today

    def next_stan(self) -> str:
        self.stan += 1
        return f"{self.stan:06d}"


@dataclass
class Round:
    kind: str  # "host", "bare", "iso"; or a side of `HostBench.sides` ("host-2w", "bare-2w", …)
    terminals: int
    requests: int
    seconds: float
    latencies: list[float]
    rcs: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


class CardPool:
    """Cryptograms per card, in ATC order: each one is taken once."""

    def __init__(self, world: World, cards: list[dict[str, Any]]) -> None:
        self.world = world
        self.cards = cards
        self._queues: dict[str, collections.deque[dict[str, str]]] = {c["pan"]: collections.deque() for c in cards}

    def make(self, plan: dict[str, int]) -> None:
        """Tap each card `plan[pan]` times now (before any timing)."""
        for card in self.cards:
            if plan.get(card["pan"], 0):
                self._queues[card["pan"]].extend(tap_card(self.world, card, plan[card["pan"]]))

    def take(self, card: dict[str, Any]) -> dict[str, str]:
        return self._queues[card["pan"]].popleft()


def tap_card(world: World, entry: dict[str, Any], taps: int) -> list[dict[str, str]]:
    """DE55 of `taps` online taps of one card of the world, as tests/reader.py `tap_icc` collects it (that one
    always takes an issuer's first card; the benchmark has several per issuer)."""
    card = PlainCard.load(world.path(Path(entry["file"])))
    aid = bytes.fromhex(entry["aid"]) if "aid" in entry else reader.DEBIT_AID if entry["kind"] == "debit" \
        else reader.CREDIT_AID
    result = []
    for _ in range(taps):
        values = reader.terminal_data(AMOUNT, ttq=reader.TTQ_ONLINE, un=os.urandom(4))
        answer, data = reader.tap(card.chip(), aid, values)
        if not answer.ok:
            raise RuntimeError(f"GPO of a benchmark card answered {answer.sw:04X}")
        icc = {tag: values[tag] for tag in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)}
        icc.update({tag: data[tag] for tag in (0x9F26, 0x9F10, 0x9F36, 0x82, 0x57, 0x5F34)})
        icc[0x5A] = encode_cn(entry["pan"], 8)
        result.append({f"{tag:X}": value.hex().upper() for tag, value in icc.items()})
    return result


def financial(terminal: Terminal, card: dict[str, Any], icc: dict[str, str]) -> dict[str, Any]:
    expiry = datetime.date.fromisoformat(card["expiry"])
    return {"mti": "0200", "tid": terminal.tid, "stan": terminal.next_stan(),
            "local_date": f"{datetime.date.today():%m%d}", "batch": terminal.batch, "pan": card["pan"],
            "psn": f"{card['psn']:02d}", "expiry": f"{expiry:%y%m}",
            "amount": AMOUNT, "currency": "156", "entry_mode": "072", "icc": icc}


def iso_message(terminal: Terminal, body: dict[str, Any]) -> bytes:
    """The same sale as a CUP terminal frames it in ISO 8583 (what POST /api/v1/iso8583 takes)."""
    icc = b"".join(tlv.encode(int(tag, 16), bytes.fromhex(value)) for tag, value in body["icc"].items())
    return spec.encode({
        "h": ISO_HEADER, "t": "0200", "2": body["pan"], "3": "000000", "4": f"{body['amount']:012d}",
        "11": body["stan"], "12": time.strftime("%H%M%S"), "13": body["local_date"], "14": body["expiry"],
        "22": body["entry_mode"], "23": "0" + body["psn"], "25": "00", "35": body["icc"]["57"].rstrip("F"),
        "41": body["tid"], "42": terminal.mid, "49": body["currency"], "55": icc.hex().upper(),
        "60": f"22{body['batch']:06d}000",
    })


def post_raw(url: str, terminal: Terminal, path: str, raw: bytes) -> tuple[int, bytes]:
    """A signed POST of raw bytes, one connection, as `HostClient` does for JSON."""
    parsed = urllib.parse.urlsplit(url)
    headers = signing.sign(terminal.key, terminal.tid, "POST", path, raw, now=time.time())
    headers.update({"Content-Type": "application/octet-stream", "Connection": "close"})
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        connection.request("POST", path, body=raw, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def sign_on(url: str, terminal: Terminal) -> None:
    """0800 sign-on at the host at `url`: the terminal's batch is the one the host opens."""
    client = HostClient(url, terminal.tid, terminal.key, timeout=30)
    answer = client.post("/api/v1/signon", {"mti": "0800", "tid": terminal.tid, "stan": terminal.next_stan(),
                                            "local_date": f"{datetime.date.today():%m%d}"})
    terminal.batch = int(answer["batch"])


def run_round(kind: str, senders: list[list[Callable[[], str]]]) -> Round:
    """Every terminal's thread sends its requests back to back; the round lasts from the start signal to the
    last answer."""
    latencies: list[list[float]] = [[] for _ in senders]
    rcs: list[collections.Counter[str]] = [collections.Counter() for _ in senders]
    start = threading.Barrier(len(senders) + 1)

    def work(index: int) -> None:
        start.wait()
        for send in senders[index]:
            began = time.perf_counter()
            rc = send()
            latencies[index].append(time.perf_counter() - began)
            rcs[index][rc] += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(senders))]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    merged: collections.Counter[str] = collections.Counter()
    for counter in rcs:
        merged.update(counter)
    flat = [value for values in latencies for value in values]
    return Round(kind, len(senders), len(flat), seconds, flat, merged)


def _json_sender(client: HostClient, body: dict[str, Any]) -> Callable[[], str]:
    def send() -> str:
        try:
            return str(client.post("/api/v1/authorizations", body).get("rc", "?"))
        except HostRejected as error:
            return f"HTTP {error.status}"
        except HostError as error:
            return f"error {type(error).__name__}"
    return send


def _iso_sender(url: str, terminal: Terminal, raw: bytes) -> Callable[[], str]:
    def send() -> str:
        status, data = post_raw(url, terminal, "/api/v1/iso8583", raw)
        if status != 200:
            return f"HTTP {status}"
        return spec.decode(data).get("39", "?")
    return send


class HostBench:
    def __init__(self, world: World, database: Path | str, host_url: str, bare_url: str, *,
                 per_terminal: dict[int, int], repeat: int, levels: tuple[int, ...] = LEVELS,
                 iso: bool = True, sides: dict[str, str] | None = None) -> None:
        self.world = world
        self.database = database  # the instance's: a SQLite file or a PostgreSQL URL (for `reset_velocity`)
        self.levels = levels
        self.iso = iso  # the raw ISO 8583 side at 1 terminal
        self.urls = {"host": host_url, "bare": bare_url, "iso": host_url}
        self.sides = dict(sides or {})  # more sides, interleaved with the others: kind → URL ("bare…": a bare one)
        self.urls.update(self.sides)
        self.per_terminal = per_terminal
        self.repeat = repeat
        entries = world.terminals()
        if len(entries) < max(LEVELS):
            raise RuntimeError(f"the world has {len(entries)} terminals, the benchmark needs {max(LEVELS)}")
        self.terminals = [Terminal(t["tid"], t["mid"], bytes.fromhex(t["key"])) for t in entries[: max(LEVELS)]]
        today = datetime.date.today().isoformat()
        self.cards = [c for c in world.cards() if c["expiry"] >= today]  # the world's expired card is declined (54)
        if len(self.cards) < max(LEVELS):
            raise RuntimeError(f"the world has {len(self.cards)} cards, the benchmark needs {max(LEVELS)}")
        self.pool = CardPool(world, self.cards)

    def _owned(self, level: int) -> list[list[dict[str, Any]]]:
        """Card i belongs to terminal i mod level: no card is shared by two concurrent terminals."""
        return [[card for i, card in enumerate(self.cards) if i % level == t] for t in range(level)]

    def prepare(self) -> None:
        """Sign every terminal on (all at once: a multi-process server's workers open their database pools now,
        not in a timed round), then make all the cryptograms the rounds will send."""
        with ThreadPoolExecutor(len(self.terminals)) as pool:
            list(pool.map(lambda terminal: sign_on(self.urls["host"], terminal), self.terminals))
        plan: collections.Counter[str] = collections.Counter()
        for level in self.levels:
            for owned in self._owned(level):
                for i in range(self.per_terminal[level]):
                    plan[owned[i % len(owned)]["pan"]] += self.repeat * len(self._kinds(level, bare=False))
        self.pool.make(plan)

    def _senders(self, kind: str, level: int) -> list[list[Callable[[], str]]]:
        senders = []
        for terminal, owned in zip(self.terminals, self._owned(level), strict=False):
            client = HostClient(self.urls[kind], terminal.tid, terminal.key, timeout=30)
            mine = []
            for i in range(self.per_terminal[level]):
                card = owned[i % len(owned)]
                if kind.startswith("bare"):  # the bare endpoint verifies nothing: any well-formed body does
                    body = financial(terminal, card, {"9F26": "00" * 8})
                    mine.append(_json_sender(client, body))
                    continue
                body = financial(terminal, card, self.pool.take(card))
                if kind == "iso":
                    mine.append(_iso_sender(self.urls["host"], terminal, iso_message(terminal, body)))
                else:
                    mine.append(_json_sender(client, body))
            senders.append(mine)
        return senders

    def _kinds(self, level: int, *, bare: bool = True) -> list[str]:
        kinds = ["bare", "host", "iso"] if level == 1 and self.iso else ["bare", "host"]
        kinds += list(self.sides)
        return [kind for kind in kinds if bare or not kind.startswith("bare")]

    def run(self) -> list[Round]:
        rounds: list[Round] = []
        for level in self.levels:
            kinds = self._kinds(level)
            for number in range(self.repeat):
                order = kinds if number % 2 == 0 else kinds[::-1]  # interleaved: neither side always goes first
                for kind in order:
                    senders = self._senders(kind, level)
                    if not kind.startswith("bare"):
                        reset_velocity(self.database)
                    rounds.append(run_round(kind, senders))
        return rounds


def arqc_verification_seconds(world: World, count: int) -> float:
    """The issuer's per-message cryptography (session key, AC recomputed, ARPC for tag 91), in this process."""
    from acquirer_stub.keys import KeyStore

    keys = KeyStore.from_world(world)
    cards = world.cards()[: max(1, min(count, 8))]
    samples = []
    for card in cards:
        [icc_text] = tap_card(world, card, 1)
        icc = {int(tag, 16): bytes.fromhex(value) for tag, value in icc_text.items()}
        samples.append((card, icc))
    started = time.perf_counter()
    done = 0
    while done < count:
        for card, icc in samples:
            key = cryptogram.session_key(Algorithm.named(keys.algorithms[card["issuer"]]),
                                         keys.imk_ac[card["issuer"]], card["pan"], card["psn"],
                                         cryptogram.icc_atc(icc))
            if not cryptogram.verify_ac(key, icc):
                raise RuntimeError("ARQC did not verify")
            cryptogram.issuer_authentication_data(key, icc[0x9F26], "00")
            done += 1
    return (time.perf_counter() - started) / done
