"""Card-in-field time through the whole real path, against the link model's physical bound of the same exchange.

terminal (`sale.Counter`, `kernel.transit.fare`) → `Pn532Reader` → pn532pi → pseudo-terminal → software PN532
with the link model on (UART bytes paced at the chip's baud rate, ISO 14443 air time at 106 kbit/s, modelled card
processing time) → the demo phone or a plain card in its field.

A tap is timed from the InListPassiveTarget that finds the card to the answer of the last APDU (the kernel's
"card read": after it the card may go). Over exactly that span the chip's link model adds up its modelled
seconds: the physical lower bound of the same bytes, frames and card commands. The ratio is measured / bound.
The reader is raised to 921600 baud by the terminal's own [reader] baud setting (SetSerialBaudRate at start).

`PcscCardBench` times the same transactions on the same cards through PC/SC: `PcscReader` → pyscard → a pcscd of its
own → vsmartcard's virtual reader → the same emulated card (`pos-card vpcd`'s slot). There is no link model on that
path (no air, no UART), so its rows compare with the PN532's measured times instead of a bound.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.world import reset_velocity
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.cards.qpboc import QPbocApplication
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from firmware.simulator.timing import LinkModel
from firmware.simulator.vpcd import Endpoint, VirtualSlot
from terminal.assemble import terminal
from terminal.config import load_config
from terminal.kernel.transit import Psam, fare
from terminal.reader.base import Target
from terminal.sale import Counter

BAUDS = (115200, 921600)
PCSC_BAUD = 0  # the samples of PcscCardBench
TYPES = ("online", "offline", "see-phone", "transit")
LABELS = {
    "online": "online tap (phone, CDCVM, ARQC)",
    "offline": "offline tap (plain card, TC + fDDA)",
    "see-phone": "See-Phone re-tap (phone)",
    "transit": "transit fare (phone)",
}
ONLINE_AMOUNT = 1234  # ¥12.34 on the phone's Bank of China token: below the CVM limit
OFFLINE_AMOUNT = 100  # ¥1.00 on a plain debit card: below the floor limit, approved offline with fDDA
FARE = 10  # ¥0.10 from the phone's transit purse (¥50.00)
OFFLINE_CARD = "icbc-debit"


@dataclass
class Tap:
    measured: float  # seconds, InListPassiveTarget sent → last APDU answered
    modelled: float  # the link model's seconds over the same span
    hops: dict[str, float]


@dataclass
class Sample:
    kind: str
    baud: int
    tap: Tap
    outcome_seconds: float | None = None  # tap start → the sale's outcome (online: host answer included)


class TimedReader:
    """The terminal's reader, with the span of each tap and the chip's link-model account over it (none on PC/SC)."""

    def __init__(self, inner: Any, link: LinkModel | None) -> None:
        self.inner = inner
        self.link = link
        self.taps: list[Tap] = []
        self.tap_started: float | None = None
        self.after_release: Callable[[], None] | None = None
        self._start: float | None = None
        self._end: float | None = None
        self._modelled = 0.0
        self._hops: dict[str, float] = {}

    def open(self) -> None:
        self.inner.open()

    def identify(self) -> str:
        return str(self.inner.identify())

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()

    def wait_for_card(self, timeout: float) -> Target | None:
        started = time.perf_counter()
        if self.link is not None:
            self.link.reset_account()
        target = self.inner.wait_for_card(timeout)
        if target is not None:
            self._start, self._end = started, None
            if self.tap_started is None:
                self.tap_started = started
        return target

    def transceive(self, apdu: bytes) -> bytes:
        answer: bytes = self.inner.transceive(apdu)
        self._end = time.perf_counter()
        if self.link is not None:
            self._modelled, self._hops = self.link.modelled_seconds, dict(self.link.hops)
        return answer

    def release(self) -> None:
        if self._start is not None and self._end is not None:
            self.taps.append(Tap(self._end - self._start, self._modelled, self._hops))
        self._start = self._end = None
        self.inner.release()
        hook, self.after_release = self.after_release, None
        if hook is not None:
            hook()


def write_config(world: World, folder: Path, host_url: str, link: Path, baud: int) -> Path:
    """The world's terminal.toml, pointed at this run's software PN532, acquirer and journal, at `baud`."""
    text = (world.path(Path("terminal.toml")).read_text().replace("http://127.0.0.1:8380", host_url)
            .replace('"../pn532-pos"', f'"{link}"')
            .replace('"terminal-journal.sqlite3"', f'"{folder / "journal.sqlite3"}"'))
    text = text.replace("[reader]\n", f"[reader]\nbaud = {baud}\n")
    path = world.root / f"terminal-{baud}.toml"
    path.write_text(text)
    return path


class CardBench:
    def __init__(self, world: World, folder: Path, host_url: str, database: Path) -> None:
        self.world = world
        self.folder = folder
        self.database = database
        self.rig = self._card_side()
        self.configs = {baud: write_config(world, folder, host_url, folder / "pos", baud) for baud in BAUDS}
        cities = json.loads(world.path(Path("transit/keys.json")).read_text())["cities"]
        tid = load_config(self.configs[BAUDS[0]]).terminal.id
        self.psam = Psam({c["city_code"]: bytes.fromhex(c["purchase_master_key"]) for c in cities},
                         tid.encode()[-6:])
        card = next(c for c in world.cards() if c["issuer"] == OFFLINE_CARD)
        self.offline_card = world.path(Path(card["file"]))
        self.finger = world.demo_fingers[0]

    def _card_side(self) -> Any:
        """What holds the cards to the reader (`present`, `fingerprint`): a software PN532's field here."""
        rig = SoftwareRig([self.folder / "pos"], link_model=True)
        self.chip = rig.chips["pos"]
        return rig

    def close(self) -> None:
        self.rig.close()

    def run(self, repeat: int) -> list[Sample]:
        """`repeat` rounds; in each, both baud rates and, under each, every transaction type: interleaved."""
        samples: list[Sample] = []
        for _ in range(repeat):
            for baud in BAUDS:
                reset_velocity(self.database)
                with terminal(load_config(self.configs[baud])) as parts:
                    if self.chip.baud != baud:
                        raise RuntimeError(f"the terminal left the chip at {self.chip.baud} baud, not {baud}")
                    for kind in TYPES:
                        samples.append(self._one(parts, kind, baud))
        return samples

    def _one(self, parts: Any, kind: str, baud: int) -> Sample:
        reader = TimedReader(parts.reader, self._link())
        counter = Counter(reader, parts.counter.params, parts.host, observers=parts.counter.observers)
        phone = self.world.demo_phone
        if kind == "transit":
            self.rig.present(phone)
            if reader.wait_for_card(5) is None:
                raise RuntimeError("transit: no card found")
            result = fare(reader.transceive, self.psam, FARE, datetime.datetime.now())
            reader.release()
            _expect(kind, str(result.outcome) == "Approved", result.message)
            return Sample(kind, baud, reader.taps[-1])
        if kind == "online":
            self.rig.present(phone)
            self.rig.fingerprint(self.finger, phone)
            amount = ONLINE_AMOUNT
        elif kind == "see-phone":
            self.rig.present(phone)
            reader.after_release = lambda: self.rig.fingerprint(self.finger, phone)  # looks at the phone
            amount = ONLINE_AMOUNT
        else:
            _reset_offline_counters(self.offline_card)
            self.rig.present(self.offline_card)
            amount = OFFLINE_AMOUNT
        sale = counter.sale(amount, wait_seconds=5)
        ended = time.perf_counter()
        expected = {"online": (1, "ARQC"), "see-phone": (2, "ARQC"), "offline": (1, "TC")}[kind]
        _expect(kind, sale.outcome == "Approved" and (sale.taps, sale.cryptogram) == expected,
                f"{sale.outcome} {sale.message} taps={sale.taps} cryptogram={sale.cryptogram} rc={sale.rc}")
        if kind == "offline":
            _expect(kind, sale.oda.startswith("fdda") and sale.oda.endswith("-ok"), f"ODA {sale.oda}")
        assert reader.tap_started is not None
        return Sample(kind, baud, reader.taps[-1], ended - reader.tap_started)


    def _link(self) -> LinkModel | None:
        return self.chip.link


class PcscCardBench(CardBench):
    """The same taps through pcscd and vpcd; `baud` in its samples is PCSC_BAUD, a label, not a rate."""

    def __init__(self, world: World, folder: Path, host_url: str, database: Path, vpcd_port: int,
                 reader_name: str) -> None:
        self.vpcd_port = vpcd_port
        super().__init__(world, folder, host_url, database)
        config = self.configs[BAUDS[0]]
        text = config.read_text()
        start, end = text.index("[reader]\n"), text.index("\n[", text.index("[reader]\n") + 1)
        pcsc = config.with_name("terminal-pcsc.toml")
        pcsc.write_text(text[:start] + f'[reader]\ntype = "pcsc"\nname = "{reader_name}"\n' + text[end:])
        self.configs = {PCSC_BAUD: pcsc}

    def run(self, repeat: int) -> list[Sample]:
        samples: list[Sample] = []
        for _ in range(repeat):
            reset_velocity(self.database)
            with terminal(load_config(self.configs[PCSC_BAUD])) as parts:
                for kind in TYPES:
                    samples.append(self._one(parts, kind, PCSC_BAUD))
        return samples

    def _card_side(self) -> Any:
        return _SlotInPlace(VirtualSlot(Endpoint("127.0.0.1", self.vpcd_port)))

    def _link(self) -> LinkModel | None:
        return None


class _SlotInPlace:
    """vpcd's slot, where `present` returns once pcscd has the card (it powers it on): the PN532's field has the
    card at once, and a tap is timed from the moment the reader can find it on both."""

    def __init__(self, slot: VirtualSlot) -> None:
        self.slot = slot

    def present(self, path: Path) -> None:
        taps = self.slot.taps
        self.slot.present(path)
        deadline = time.monotonic() + 10
        while self.slot.taps == taps:
            if time.monotonic() > deadline:
                raise RuntimeError("pcscd did not take the card in vpcd's slot within 10 s")
            time.sleep(0.01)

    def fingerprint(self, finger: str, path: Path) -> bool:
        return self.slot.fingerprint(finger, path)

    def close(self) -> None:
        self.slot.close()


def _reset_offline_counters(path: Path) -> None:
    """A card approves at most 5 sales offline in a row, then goes online once: start each offline tap afresh."""
    card = PlainCard.load(path)
    for app in card.applications:
        if isinstance(app, QPbocApplication):
            app.state.consecutive_offline = 0
            app.state.offline_balance = max(app.state.offline_balance, 50_000)
    card.save()


def _expect(kind: str, ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"{kind}: unexpected outcome ({what}); the benchmark measures approved transactions only")
