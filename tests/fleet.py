"""Many simulated terminals against one real acquirer, for the load and host-crash tests (tests/load, tests/crash).

A simulated terminal is the real thing minus the reader: the real `HostLink` and `Journal` (its own SQLite file)
over real signed HTTP to the acquirer stub served by waitress (`acquirer-stub serve`, a subprocess here). What
the reader and kernel would hand the link is made ahead: real ARQCs from real qPBOC card applications
(`firmware.apps.cards.qpboc`), personalised from the test world's issuer keys, one card per (terminal, slot) so
that each card's ATCs reach the host in order (the host refuses an ATC at or below the last one: 05 ATC_REPLAY) and stay
under the issuer's 30 approvals per card and day (65).

Checks the fleet tests share are here too: `agreement()` compares the host's rows with every journal, sale by sale.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hostdb import rows as host_rows
from reader import TTQ_ONLINE, tap, terminal_data

from acquirer_stub.api import service
from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from acquirer_stub.store import db
from emvcore.bcd import encode_cn
from emvcore.crypto.cryptogram import Algorithm
from firmware.apps.cards.card import Chip
from firmware.apps.cards.qpboc import QPbocApplication, QPbocState
from firmware.issuing.layout import World
from firmware.issuing.personalize import IssuerKeys, new_pan, qpboc_card
from hostproto.messages import Totals
from terminal.host.client import HostClient, HostError
from terminal.host.link import HostLink
from terminal.journal.journal import Journal, State

DEBIT_BALANCE_POOR = 1_00  # ¥1: every sale above it is declined 51
ICC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
CARD_TAGS = (0x9F26, 0x9F10, 0x9F36, 0x82, 0x57, 0x5F34)


# --- the world, grown: more terminals and cards --------------------------------------------------------------------


@dataclasses.dataclass
class SimCard:
    """A plain qPBOC card in memory: the card application computes every ARQC (its ATC rising by one each)."""

    issuer: str
    kind: str
    pan: str
    psn: int
    expiry: datetime.date
    chip: Chip
    poor: bool = False  # a debit account with ¥1 on it
    blocked: bool = False  # reported lost: 41

    def request(self, amount: int) -> dict[str, Any]:
        """What the kernel hands the host link for an online sale on this card: the card's part of a 0200."""
        values = terminal_data(amount, ttq=TTQ_ONLINE, un=secrets.token_bytes(4))
        aid = bytes.fromhex("A000000333010101" if self.kind == "debit" else "A000000333010102")
        answer, data = tap(self.chip, aid, values)
        assert answer.ok, f"GPO {answer.sw:04X}"
        icc = {tag: values[tag] for tag in ICC_TAGS}
        icc.update({tag: data[tag] for tag in CARD_TAGS})
        icc[0x5A] = encode_cn(self.pan, 8)
        return {"pan": self.pan, "psn": f"{self.psn:02d}", "expiry": f"{self.expiry:%y%m}", "amount": amount,
                "currency": "156", "entry_mode": "072",
                "icc": {f"{tag:X}": value.hex().upper() for tag, value in icc.items()}}


def _issuer_keys(world: World) -> dict[str, IssuerKeys]:
    keys = {}
    for issuer in world.issuers():
        secret = json.loads(world.path(Path("issuers/keys") / f"{issuer['code']}.json").read_text())
        # no fDDA on these cards (online only), so the RSA key and certificate are never used
        keys[issuer["code"]] = IssuerKeys(imk_ac=bytes.fromhex(secret["imk_ac"]), rsa_private=None,  # type: ignore[arg-type]
                                          certificate=b"", remainder=b"",
                                          algorithm=Algorithm.named(issuer["algorithm"]))
    return keys


def grow_world(world: World, *, terminals: int, cards: int, poor_every: int = 0, blocked_every: int = 0,
               also: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], list[SimCard]]:
    """Add `terminals` terminals (TIDs and signing keys) and `cards` cards, spread over every issuer, to the
    world's files before an acquirer is loaded from it. Every `poor_every`-th card is a debit card with ¥1 on
    it, every `blocked_every`-th one is reported lost after loading (see `block_cards`); `also` adds that many
    plain cards of the issuers it names."""
    path = world.path(Path("acquirer/terminals.json"))
    document = json.loads(path.read_text())
    added = [{"tid": f"LD{n:06d}", "mid": "898310054110002", "name": f"Load counter {n}",
              "key": secrets.token_bytes(32).hex()} for n in range(1, terminals + 1)]
    document["terminals"] += added
    path.write_text(json.dumps(document))

    keys = _issuer_keys(world)
    issuers = world.issuers()
    expiry = datetime.date(datetime.date.today().year + 3, 12, 31)
    index_path = world.path(Path("cards/index.json"))
    index = json.loads(index_path.read_text())
    made: list[SimCard] = []
    by_code = {issuer["code"]: issuer for issuer in issuers}
    extra = [by_code[code] for code, count in (also or {}).items() for _ in range(count)]
    for n in range(cards + len(extra)):
        issuer = issuers[n % len(issuers)] if n < cards else extra[n - cards]
        poor = bool(poor_every) and n < cards and n % poor_every == poor_every - 1
        kind = "debit" if poor else issuer["kind"]
        if poor and issuer["kind"] != "debit":
            issuer = next(i for i in issuers if i["kind"] == "debit")
        pan = new_pan(issuer["bin"])
        profile, card_keys = qpboc_card(keys[issuer["code"]], kind=kind, pan=pan, expiry=expiry, with_oda=False)
        chip = Chip([QPbocApplication(profile, card_keys, QPbocState())])
        blocked = bool(blocked_every) and n < cards and not poor and n % blocked_every == blocked_every // 2
        plenty = 10_000_000
        account = {"balance": DEBIT_BALANCE_POOR if poor else plenty} if kind == "debit" else {"credit_limit": plenty}
        index["cards"].append({"file": f"cards/load/{pan[-6:]}.json", "issuer": issuer["code"], "kind": kind,
                               "pan": pan, "psn": profile.psn, "expiry": expiry.isoformat(), "account": account})
        made.append(SimCard(issuer["code"], kind, pan, profile.psn, expiry, chip, poor=poor, blocked=blocked))
    index_path.write_text(json.dumps(index))
    return added, made


def load_instance(world: World, root: Path) -> Instance:
    return init_instance(root, world)[0]


def block_cards(instance: Instance, cards: Iterable[SimCard]) -> None:
    vault = instance.vault()
    connection = db.connect(instance.database)
    try:
        for card in cards:
            if card.blocked:
                connection.execute("UPDATE accounts SET status = 'lost' WHERE pan_hash = ?",
                                   (vault.pan_hash(card.pan),))
    finally:
        connection.close()


def set_latency(instance: Instance, issuer: str, milliseconds: int) -> None:
    connection = db.connect(instance.database)
    try:
        connection.execute("UPDATE issuers SET added_latency_ms = ? WHERE code = ?", (milliseconds, issuer))
    finally:
        connection.close()


# --- the acquirer as its own process -------------------------------------------------------------------------------


class AcquirerProcess:
    """`acquirer-stub serve` as a child process: first on a port the system picks (127.0.0.1:0, read back from
    its banner), then, after a kill, again on that same port so the terminals find it where it was."""

    def __init__(self, instance: Instance, log: Path, *, workers: int = 1) -> None:
        self.instance = instance
        self.log = log
        self.workers = workers
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        assert self.process is None
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "acquirer_stub.cli", "serve", "--instance", str(self.instance.root),
                 "--listen", f"127.0.0.1:{self.port}", "--web-listen", "",  # the terminal API alone
                 "--workers", str(self.workers)],
                stdout=subprocess.PIPE, stderr=sink, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.process.stdout is not None
        banner = self.process.stdout.readline().decode()
        assert banner.startswith("acquirer stub: terminal API on http://127.0.0.1:"), (
            f"no banner: {banner!r} (log {self.log})")
        self.port = int(banner.split("http://127.0.0.1:")[1].split("/")[0])
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                assert time.monotonic() < deadline, "the acquirer stub did not answer /health"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        assert self.process.returncode == -signal.SIGKILL
        self._close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._close()

    def _close(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        self.process.stdout.close()
        self.process = None


# --- simulated terminals -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    attempted: int = 0
    approved: int = 0
    declined: int = 0
    no_answer: int = 0  # the request left, no answer: reversal 98 queued
    not_sent: int = 0  # host unreachable, sign-on failed or a reversal still pending: nothing was authorized
    codes: Counter[str] = dataclasses.field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        for name in ("attempted", "approved", "declined", "no_answer", "not_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.codes.update(other.codes)


class SimTerminal:
    """One terminal: its TID and key, its journal file, and the sales (card requests) it will send in order."""

    def __init__(self, entry: dict[str, Any], root: Path, url: str, *, timeout: float) -> None:
        self.tid = entry["tid"]
        self.key = bytes.fromhex(entry["key"])
        self.journal_path = root / f"{self.tid}.sqlite3"
        self.url = url
        self.timeout = timeout
        self.sales: list[dict[str, Any]] = []
        self.tally = Tally()
        self.journaled: list[int] = []  # the journal entry behind each answer, when a request left
        self.error: BaseException | None = None

    def link(self) -> HostLink:
        """A fresh link over the journal file: what the terminal gets at every start (it recovers by itself)."""
        client = HostClient(self.url, self.tid, self.key, timeout=self.timeout)
        return HostLink(client, Journal.open(self.journal_path), tid=self.tid)

    def run(self, *, stop: threading.Event | None = None, pause: Callable[[], None] | None = None) -> None:
        """Every sale in order; a failure to reach the host is an outcome, not an error."""
        link = self.link()
        try:
            for body in self.sales:
                if stop is not None and stop.is_set():
                    break
                self.tally.attempted += 1
                answer = link.authorize(body)
                if answer.sale_id is not None:
                    self.journaled.append(answer.sale_id)
                if answer.outcome == "approved":
                    self.tally.approved += 1
                elif answer.outcome == "declined":
                    self.tally.declined += 1
                elif answer.outcome == "no answer":
                    self.tally.no_answer += 1
                else:
                    self.tally.not_sent += 1
                self.tally.codes[answer.rc or answer.outcome] += 1
                if pause is not None:
                    pause()
        except BaseException as error:  # reported by the test, which fails on it
            self.error = error
        finally:
            link.journal.close()

    def recover_and_settle(self, *, seconds: float = 120.0) -> dict[str, Any]:
        """Restart: flush the queue (reversals, advices) until the host has all of it, then settle."""
        link = self.link()
        try:
            deadline = time.monotonic() + seconds
            while not (flushed := link.flush()).complete:
                assert time.monotonic() < deadline, f"{self.tid}: queue not delivered: {flushed}"
                time.sleep(0.2)
            batch = link.journal.batch
            totals = link.journal.totals(batch) if batch is not None else None
            while True:
                try:
                    result = link.settle()
                    break
                except HostError:
                    assert time.monotonic() < deadline, f"{self.tid}: settlement not answered"
                    time.sleep(0.2)
            return {"batch": batch, "totals": totals, "result": result}
        finally:
            link.journal.close()


def run_fleet(terminals: list[SimTerminal], **options: Any) -> Tally:
    threads = [threading.Thread(target=t.run, kwargs=options, name=t.tid) for t in terminals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [(t.tid, t.error) for t in terminals if t.error is not None]
    assert not errors, errors
    total = Tally()
    for terminal in terminals:
        total.add(terminal.tally)
    return total


# --- agreement -----------------------------------------------------------------------------------------------------



def money(instance: Instance) -> dict[str, int]:
    """What each account has paid so far (debit: balance gone; credit: credit used), by account id."""
    return {r["id"]: (-(r["balance"]) if r["balance"] is not None else r["credit_used"])
            for r in host_rows(instance, "SELECT id, balance, credit_used FROM accounts")}


def agreement(instance: Instance, journal_path: Path, tid: str) -> dict[str, int]:
    """Host and journal agree sale by sale: approved on the host ⇔ approved in the journal; reversed in the
    journal ⇒ not standing on the host; failed ⇒ never on the host; every advice on the host exactly once;
    nothing left half-done. Returns the journal's counts."""
    host = {r["stan"]: r for r in host_rows(instance, "SELECT * FROM transactions WHERE tid = ?"
                                            " AND kind = 'authorization'", tid)}
    advices = [r["stan"] for r in host_rows(instance, "SELECT stan FROM transactions WHERE tid = ?"
                                            " AND kind = 'advice'", tid)]
    assert len(advices) == len(set(advices)), f"{tid}: an advice twice on the host"
    counts: Counter[str] = Counter()
    with Journal.open(journal_path) as journal:
        assert journal.pending() == [], f"{tid}: unsent reversals or advices"
        entries = journal.entries()
        for entry in entries:
            counts[entry.state] += 1
            row = host.get(entry.stan)
            if entry.kind == "advice":
                assert entry.state is State.ADVISED and entry.stan in advices, entry
            elif entry.state is State.ANSWERED:
                assert row is not None and row["rc"] == entry.rc, (tid, entry, row and dict(row))
                assert row["state"] == ("approved" if entry.rc == "00" else "declined"), (tid, entry.stan)
            elif entry.state is State.REVERSED:
                assert row is None or row["state"] in ("reversed", "declined"), (tid, entry.stan, dict(row))
            else:
                assert entry.state is State.FAILED and row is None, (tid, entry)
        approved_host = {stan for stan, row in host.items() if row["state"] == "approved"}
        assert approved_host == {e.stan for e in entries if e.approved}, f"{tid}: approvals differ"
        known = {e.stan for e in entries if e.kind == "sale"}
        assert set(host) <= known, f"{tid}: the host holds sales the journal never sent: {set(host) - known}"
        assert sorted(advices) == sorted(e.stan for e in entries if e.kind == "advice")
    return dict(counts)


def check_settled(instance: Instance, terminals: list[SimTerminal], settled: list[dict[str, Any]]) -> int:
    """After `recover_and_settle`: every terminal agrees with the host sale by sale, every batch balanced with the
    host's own totals, every sale completed or reversed. Returns what the approved sales charged, in fen."""
    charged = 0
    for terminal, outcome in zip(terminals, settled, strict=True):
        agreement(instance, terminal.journal_path, terminal.tid)
        result = outcome["result"]
        assert (result.rc, result.balanced) == ("00", True), result.raw
        assert result.terminal_totals == result.host_totals == outcome["totals"]
        assert host_totals(instance, terminal.tid, outcome["batch"]) == outcome["totals"]
        with Journal.open(terminal.journal_path) as journal:
            entries = journal.entries()
            assert all(e.state in ("ANSWERED", "REVERSED", "FAILED") for e in entries)
            charged += sum(e.charged or 0 for e in entries if e.approved)
    return charged


def host_totals(instance: Instance, tid: str, batch: int) -> Totals:
    connection = db.connect(instance.database)
    try:
        return service.host_totals(connection, tid, batch)
    finally:
        connection.close()
