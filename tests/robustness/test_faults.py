"""Faults around a sale: torn taps at every exchange of the flows tests/terminal does not tear yet (see-phone,
transit, and the whole counter over the software PN532), corrupted and dropped UART bytes, a host that misbehaves
on a real socket, a skewed terminal clock, and a full disk under the journal."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal import sale as sale_module
from terminal.config import GpioConfig, ReaderConfig
from terminal.host.client import HostClient
from terminal.host.link import HostLink
from terminal.journal.journal import Journal, State
from terminal.kernel import CardGone, KernelParams, Outcome, Psam, fare, run
from terminal.reader.pn532 import Pn532Reader
from terminal.sale import Counter
from terminal.ui.feedback import Feedback
from terminal.ui.gpio import SimulatedGpio

ROOT = Path(__file__).resolve().parents[2]
TODAY = datetime.date.today()
NOW = datetime.datetime.combine(TODAY, datetime.time(8, 30))
UN = bytes.fromhex("1A2B3C4D")


class Torn:
    """A card's transceive that is torn at exchange `at`: before the card sees it, or after it ran it."""

    def __init__(self, transceive: Callable[[bytes], bytes], at: int, *, after_handling: bool) -> None:
        self._transceive, self.at, self.after = transceive, at, after_handling
        self.count = 0

    def __call__(self, apdu: bytes) -> bytes:
        index, self.count = self.count, self.count + 1
        if index == self.at:
            if self.after:
                self._transceive(apdu)
            raise CardGone("torn")
        return self._transceive(apdu)


def _params(world: World) -> KernelParams:
    return KernelParams(capks=tuple(world.capks()), floor_limit=50_000, cvm_limit=100_000)


# --- torn at every exchange: see-phone and transit (tests/terminal tears the plain online and offline taps) -----


@pytest.mark.parametrize("after", [False, True], ids=["before", "after-handling"])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_locked_phone_torn_at_every_exchange_is_try_again_then_see_phone_then_pays(
    world: World, at: int, after: bool
) -> None:
    wallet = Wallet.load(world.demo_phone)
    torn = run(Torn(wallet.chip().transceive, at, after_handling=after), _params(world), 100_000, today=TODAY,
               unpredictable_number=UN)
    assert (torn.outcome, torn.message, torn.field55) == (Outcome.TRY_AGAIN, "Present card again", {})
    assert run(Wallet.load(world.demo_phone).chip().transceive, _params(world), 100_000, today=TODAY,
               unpredictable_number=UN).outcome is Outcome.SEE_PHONE
    assert Wallet.load(world.demo_phone).authenticate("right-thumb")
    paid = run(Wallet.load(world.demo_phone).chip().transceive, _params(world), 100_000, today=TODAY,
               unpredictable_number=UN)
    assert paid.outcome is Outcome.ONLINE_REQUEST and paid.cvm == "cdcvm"


@pytest.mark.parametrize("after", [False, True], ids=["before", "after-handling"])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_a_fare_torn_at_every_exchange_is_try_again_and_charged_once_on_the_next_tap(
    world: World, at: int, after: bool
) -> None:
    entry = world.transit_cards()[0]
    path = world.path(Path(entry["file"]))
    keys = {city["city_code"]: bytes.fromhex(city["purchase_master_key"]) for city in world.transit_keys()}
    psam = Psam(keys, bytes.fromhex("001122334455"))
    torn = fare(Torn(PlainCard.load(path).chip().transceive, at, after_handling=after), psam, 200, NOW)
    assert (torn.outcome, torn.message) == (Outcome.TRY_AGAIN, "Present card again")
    again = fare(PlainCard.load(path).chip().transceive, psam, 200, NOW + datetime.timedelta(seconds=3))
    assert again.outcome is Outcome.APPROVED
    assert again.recovered is (at == 2 and after)  # only a DEBIT the card ran is completed, not repeated
    assert PlainCard.load(path).applications[0].state.balance == 5_000 - 200


# --- the whole counter over a real pseudo-terminal: torn, corrupted and dropped UART bytes -----------------------


class Served:
    def __init__(self, instance: Instance) -> None:
        app = create_app(instance.root, overrides={"TESTING": True})
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def served(instance: Instance) -> Iterator[Served]:
    server = Served(instance)
    yield server
    server.stop()


def host_rows(instance: Instance) -> list[tuple[str, str]]:
    connection = db.connect(instance.database)
    try:
        return [(r["kind"], r["state"]) for r in connection.execute("SELECT kind, state FROM transactions")]
    finally:
        connection.close()


@pytest.fixture
def counter(world: World, served: Served, tmp_path: Path) -> Iterator[tuple[Counter, SoftwareRig, Feedback]]:
    rig = SoftwareRig([tmp_path / "pos"])
    reader = Pn532Reader(ReaderConfig(port=str(tmp_path / "pos"), apdu_timeout=0.3))
    gpio = SimulatedGpio()
    feedback = Feedback.from_config(GpioConfig(), gpio)
    entry = world.terminals()[0]
    journal = Journal.open(tmp_path / "journal.sqlite3")
    link = HostLink(HostClient(served.url, entry["tid"], bytes.fromhex(entry["key"]), timeout=5), journal,
                    tid=entry["tid"])
    reader.open()
    try:
        yield Counter(reader, _params(world), link, observers=[feedback.observe]), rig, feedback
    finally:
        reader.close()
        feedback.close()
        journal.close()
        rig.close()


def _messages(feedback: Feedback) -> list[object]:
    return [value for what, _, value in feedback.events() if what == "message"]


FAULTS = [("status", 0x01), ("status", 0x02), ("status", 0x13), ("status", 0x29)]  # RF errors: CARD_GONE


@pytest.mark.parametrize(("fault", "value"), FAULTS, ids=[f"{f}-{v}" for f, v in FAULTS])
def test_a_torn_or_garbled_tap_at_the_counter_sends_nothing_and_the_next_tap_pays_once(
    counter: tuple[Counter, SoftwareRig, Feedback], world: World, instance: Instance, fault: str, value: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sale_module, "RETRY_PAUSE_SECONDS", 0.05)
    till, rig, feedback = counter
    card_path = world.path(Path(next(c["file"] for c in world.cards() if c["issuer"] == "icbc-credit")))
    rig.present(card_path)
    # the chip reports an RF error on the first InDataExchange (PPSE): the tap is torn, the card stays there
    rig.chips["pos"].faults.arm(fault, value)
    before_second_tap: list[tuple[list[Any], int]] = []
    wait_for_card = till.reader.wait_for_card

    def watched(timeout: float) -> Any:  # what the host and the journal hold when the card is asked for again
        if _messages(feedback).count("Present card again"):
            before_second_tap.append((host_rows(instance), len(till.host.journal.entries())))
        return wait_for_card(timeout)

    monkeypatch.setattr(till.reader, "wait_for_card", watched)
    result = till.sale(60_000, wait_seconds=15)
    assert result.outcome == "Approved" and result.rc == "00", result
    assert result.taps == 2 and "Present card again" in _messages(feedback)
    assert before_second_tap[0] == ([], 0)  # the torn tap sent nothing and journaled nothing
    assert host_rows(instance) == [("authorization", "approved")]  # one sale reached the host, once
    entries = till.host.journal.entries()
    assert [(e.kind, e.state, e.rc) for e in entries] == [("sale", State.ANSWERED, "00")]
    assert till.host.status().pending_reversals == 0


@pytest.mark.parametrize(("fault", "value"), [("corrupt_byte", 0), ("corrupt_byte", 3), ("corrupt_byte", 9),
                                              ("drop_byte", 5), ("drop_byte", 12), ("drop_response", True),
                                              ("drop_ack", True)])
def test_corrupted_or_dropped_uart_bytes_are_a_torn_tap_and_the_reader_recovers(
    world: World, tmp_path: Path, fault: str, value: object
) -> None:
    """A byte of the chip's InDataExchange answer flipped or lost on the UART (firmware/simulator/faults.py): the reader
    gets no valid frame, resets the chip and reports the tap as torn (CardRemoved, the kernel's CardGone), never
    returns damaged data; the card is found and read again right after."""
    from terminal.reader.base import CardRemoved

    rig = SoftwareRig([tmp_path / "pos"])
    reader = Pn532Reader(ReaderConfig(port=str(tmp_path / "pos"), apdu_timeout=0.3))
    try:
        reader.open()
        rig.present(world.path(Path(next(c["file"] for c in world.cards() if c["issuer"] == "icbc-debit"))))
        assert reader.wait_for_card(2.0) is not None
        ppse = bytes.fromhex("00A404000E325041592E5359532E444446303100")
        rig.chips["pos"].faults.arm(fault, value)
        with pytest.raises(CardRemoved) as torn:
            reader.transceive(ppse)
        assert isinstance(torn.value, CardGone)
        assert reader.wait_for_card(2.0) is not None
        assert reader.transceive(ppse)[-2:] == b"\x90\x00"
    finally:
        reader.close()
        rig.close()


# --- the host misbehaving on a real socket ----------------------------------------------------------------------


class BadHost:
    """A TCP server on 127.0.0.1:0 that reads a request and then misbehaves in one chosen way."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(4096)
            if not chunk:
                return
            data += chunk
        self.requests += 1
        body = json.dumps({"rc": "00", "stan": "999999", "error": "x"}).encode()
        head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        if self.mode == "500":
            connection.sendall(head % (500, len(body)) + body)
        elif self.mode == "502 html":
            connection.sendall(head % (502, 5) + b"<html")
        elif self.mode == "closed mid-answer":
            connection.sendall((head % (200, len(body)) + body)[:40])
        elif self.mode == "reset":
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        elif self.mode == "garbage":
            connection.sendall(b"\x00\xffnot http at all\r\n\r\n")
        elif self.mode == "200 not json":
            connection.sendall(head % (200, 3) + b"{x]")
        elif self.mode == "200 wrong answer":
            connection.sendall(head % (200, len(body)) + body)
        elif self.mode == "slow":
            time.sleep(1.0)
            connection.sendall(head % (200, len(body)) + body)

    def close(self) -> None:
        self._socket.close()


MODES = {  # what the terminal must conclude: the request may have been processed, so reverse it (98 / 06)
    "500": ("no answer", "98"), "502 html": ("no answer", "98"), "closed mid-answer": ("no answer", "98"),
    "reset": ("no answer", "98"), "garbage": ("no answer", "98"), "200 not json": ("no answer", "98"),
    "200 wrong answer": ("no answer", "06"), "slow": ("no answer", "98"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_misbehaving_host_is_a_clear_outcome_and_a_queued_reversal_never_an_exception(
    mode: str, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from reader import tap_icc

    bad = BadHost(mode)
    entry = world.terminals()[0]
    journal = Journal.open(tmp_path / "journal.sqlite3")
    try:
        journal.set_batch(1)
        link = HostLink(HostClient(bad.url, entry["tid"], bytes.fromhex(entry["key"]), timeout=0.5), journal,
                        tid=entry["tid"])
        card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
        body = {"pan": card["pan"], "psn": "01", "expiry": "3112", "amount": 1_00, "currency": "156",
                "entry_mode": "072", "icc": tap_icc(world, "icbc-debit", 1_00)}
        answer = link.authorize(body)
        outcome, reason = MODES[mode]
        assert (answer.outcome, answer.approved) == (outcome, False)
        (sale,) = journal.entries()
        assert sale.state is State.NEEDS_REVERSAL and sale.reversal_reason == reason
        assert link.status().pending_reversals == 1
        blocked = link.authorize(body)  # the reversal must be acknowledged first: nothing else is sent
        assert blocked.outcome == "unavailable" and len(journal.entries()) == 1
        assert bad.requests >= 2
    finally:
        journal.close()
        bad.close()
    assert card["pan"] not in caplog.text


# --- a skewed terminal clock ------------------------------------------------------------------------------------


def test_a_skewed_terminal_clock_is_resynchronised_and_a_drifting_one_is_a_clear_refusal(
    world: World, served: Served, instance: Instance, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from reader import tap_icc

    caplog.set_level(logging.WARNING, logger="terminal.host")
    entry = world.terminals()[0]
    skewed = HostClient(served.url, entry["tid"], bytes.fromhex(entry["key"]), clock=lambda: time.time() + 3_600)
    journal = Journal.open(tmp_path / "journal.sqlite3")
    try:
        link = HostLink(skewed, journal, tid=entry["tid"])
        body = {"pan": "6210000000000000", "psn": "01", "expiry": "3112", "amount": 1_00, "currency": "156",
                "entry_mode": "072", "icc": tap_icc(world, "icbc-debit", 1_00)}
        card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
        body["pan"] = card["pan"]
        assert link.authorize(body).approved  # the host refused once (clock_skew) and told its time
        assert any(re.search(r"clock off by -360[01] s, resynchronised", r.getMessage()) for r in caplog.records)
        assert abs(skewed.clock_offset + 3_600) < 5

        jumps = iter(range(1, 100))  # a clock that keeps jumping: the retry with the host's time fails too
        drifting = HostClient(served.url, entry["tid"], bytes.fromhex(entry["key"]),
                              clock=lambda: time.time() + 1_000 * next(jumps))
        link = HostLink(drifting, journal, tid=entry["tid"])
        before = host_rows(instance)
        refused = link.authorize({**body, "icc": tap_icc(world, "icbc-debit", 2_00), "amount": 2_00})
        assert refused.outcome == "rejected" and "300 s" in refused.text and "clock" in refused.text
        assert journal.entries()[-1].state is State.FAILED  # the host stored nothing: nothing to reverse
        assert host_rows(instance) == before
    finally:
        journal.close()


def test_doctor_flags_a_skewed_clock(world: World, served: Served, tmp_path: Path) -> None:
    from terminal import inspect
    from terminal.config import load_config

    text = (world.root / "terminal.toml").read_text().replace("http://127.0.0.1:8380", served.url).replace(
        '"terminal-journal.sqlite3"', f'"{tmp_path / "journal.sqlite3"}"')
    (world.root / "terminal.toml").write_text(text)
    config = load_config(world.root / "terminal.toml")

    class NoReader:
        def identify(self) -> str:
            return "none"

    checks = {c.name: c for c in inspect.doctor(config, NoReader(), clock=lambda: time.time() - 900)}
    assert checks["host"].ok  # the client resynchronised, so the host still answers
    assert not checks["clock"].ok and "NTP" in checks["clock"].hint
    assert 895 <= float(checks["clock"].detail.split(" s ")[0]) <= 905  # the skew, in seconds
    fine = {c.name: c for c in inspect.doctor(config, NoReader())}
    assert fine["clock"].ok


# --- a full disk under the journal ------------------------------------------------------------------------------


def test_a_full_disk_is_a_clear_journal_error_and_no_sale_leaves(
    world: World, served: Served, instance: Instance, tmp_path: Path
) -> None:
    """The disk is "full" for a child process: RLIMIT_FSIZE caps every file it writes at 1 KiB (SIGXFSZ ignored,
    so writes fail with EFBIG, which SQLite reports like ENOSPC: the write is refused, nothing is half-written).
    No root, no loop device; the parent's own files are untouched. The journal is created and signed on first,
    then the limit is set and a sale is attempted: the write-ahead (INTENT) cannot be committed, so the sale must
    not go to the host, and the error must say what is wrong."""
    from reader import tap_icc

    entry = world.terminals()[0]
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    body = {"pan": card["pan"], "psn": "01", "expiry": "3112", "amount": 3_00, "currency": "156",
            "entry_mode": "072", "icc": tap_icc(world, "icbc-debit", 3_00)}
    (tmp_path / "sale.json").write_text(json.dumps(body))
    script = textwrap.dedent(f"""
        import json, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from terminal.host.client import HostClient
        from terminal.host.link import HostLink
        from terminal.journal.journal import Journal, JournalError
        journal = Journal.open({str(tmp_path / "journal.sqlite3")!r})
        link = HostLink(HostClient({served.url!r}, {entry["tid"]!r}, bytes.fromhex({entry["key"]!r})), journal,
                        tid={entry["tid"]!r})
        link.sign_on()
        body = json.loads(open({str(tmp_path / "sale.json")!r}).read())
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
        try:
            answer = link.authorize(body)
            print("ANSWER", answer.outcome)
        except JournalError as error:
            print("JOURNAL", error)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (tmp_path / "sale.json").unlink()  # it held a full PAN for the child; the session scan would rightly flag it
    assert result.returncode == 3, result.stdout + result.stderr
    assert "JOURNAL the journal cannot be written" in result.stdout and "is the disk full" in result.stdout
    assert "Traceback" not in result.stderr
    assert [kind for kind, _ in host_rows(instance)] == []  # no sale reached the host (the sign-on is not a sale)
    with Journal.open(tmp_path / "journal.sqlite3") as journal:  # the disk has room again
        assert journal.entries() == [] and journal.pending() == []  # no half-started sale to reverse
        assert journal.batch == 1
