"""One scenario's timeline: APDUs, lights and tones, UART frames, host calls and rig actions, all masked.

Everything is masked as it is recorded, so no full PAN, track 2 or key can reach the report: APDU data
goes through emvcore's tag dictionary (`emvcore.tags`), and PN532 frames are described as the software
PN532's frame log describes them (firmware/simulator/framelog.py: a frame that carries an APDU shows its size,
because the APDU lane already shows its masked content).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from serial import Serial

from emvcore import tlv
from emvcore.apdu import describe_sw
from emvcore.tags import dump, mask_pan
from firmware.simulator import frames
from firmware.simulator.framelog import describe_frame

LANES = ("rig", "uart", "apdu", "ui", "gpio", "host", "note")

INSTRUCTIONS = {
    0xA4: "SELECT", 0xA8: "GET PROCESSING OPTIONS", 0xB2: "READ RECORD", 0xCA: "GET DATA", 0x50: "INITIALIZE",
    0x54: "DEBIT", 0x5C: "GET BALANCE", 0x5A: "GET TRANSACTION PROVE", 0x84: "GET CHALLENGE",
}


@dataclass(frozen=True)
class Event:
    seconds: float  # since the scenario started
    lane: str
    text: str


@dataclass
class Trace:
    """Thread-safe, append-only; `t0` is time.monotonic() at the start of the scenario."""

    name: str
    t0: float = field(default_factory=time.monotonic)
    events: list[Event] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)  # e.g. sale totals, card-in-field times
    modelled: dict[str, float] = field(default_factory=dict)  # the link model's hops (sim only)
    facts: dict[str, Any] = field(default_factory=dict)  # outcome, host rows … for the summary table
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, lane: str, text: str, *, at: float | None = None) -> None:
        """`at` is a time.monotonic() value (default now)."""
        seconds = (time.monotonic() if at is None else at) - self.t0
        with self._lock:
            self.events.append(Event(seconds, lane, text))

    def sorted_events(self) -> list[Event]:
        with self._lock:
            return sorted(self.events, key=lambda event: event.seconds)


# -- APDUs ----------------------------------------------------------------------------------------------------


def masked_data(data: bytes) -> str:
    """TLV values masked by tag (one line); anything else as hex with PAN-length digit runs masked."""
    if not data:
        return ""
    try:
        tlv.walk(data)
    except tlv.TlvError:
        return dump(data).split("> ", 1)[-1]  # emvcore's own fallback: hex, long digit runs masked
    lines = [line.strip() for line in dump(data).splitlines()]
    return "; ".join(line for line in lines if ":" in line) or "; ".join(lines)


def describe_command(apdu: bytes) -> str:
    if len(apdu) < 4:
        return f"short command {len(apdu)} B"
    name = INSTRUCTIONS.get(apdu[1], f"INS {apdu[1]:02X}")
    head = apdu[:4].hex().upper()
    body = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
    if apdu[1] == 0xA4 and body:  # a name: printable, never secret
        shown = body.decode("ascii") if all(0x20 <= b < 0x7F for b in body) else body.hex().upper()
        return f"{name} {head} {shown}"
    return f"{name} {head}" + (f" [{len(body)} B] {masked_data(body)}" if body else "")


def describe_response(answer: bytes | None) -> str:
    if answer is None:
        return "no answer"
    if len(answer) < 2:
        return f"{len(answer)} B without status word"
    sw = int.from_bytes(answer[-2:], "big")
    data = answer[:-2]
    text = f"SW {sw:04X} ({describe_sw(sw)})"
    return text + (f" [{len(data)} B] {masked_data(data)}" if data else "")


# -- UART -----------------------------------------------------------------------------------------------------


class _Direction:
    """One direction of one port: a frame parser, so chunks of any size become frame summaries."""

    def __init__(self, role: str, arrow: str) -> None:
        self.role, self.arrow = role, arrow
        self.parser = frames.FrameParser()

    def feed(self, data: bytes, trace: Trace, baud: int) -> None:
        for event in self.parser.feed(data):
            trace.add("uart", f"{self.role} {self.arrow} {describe_frame(event, baud)}")


class UartTap:
    """Which serial paths to watch and the trace they write to; the RecordingSerial class consults it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trace: Trace | None = None
        self._roles: dict[str, str] = {}
        self._directions: dict[tuple[str, str], _Direction] = {}

    def watch(self, trace: Trace, roles: dict[str, str]) -> None:
        """`roles`: serial path → name ("reader", "card")."""
        with self._lock:
            self.trace = trace
            self._roles = dict(roles)
            self._directions = {}

    def stop(self) -> None:
        with self._lock:
            self.trace = None
            self._roles = {}

    def record(self, port: str, direction: str, data: bytes, baud: int) -> None:
        with self._lock:
            trace, role = self.trace, self._roles.get(port)
            if trace is None or role is None or not data:
                return
            key = (port, direction)
            if key not in self._directions:
                self._directions[key] = _Direction(role, "→ chip" if direction == "tx" else "← chip")
            self._directions[key].feed(bytes(data), trace, baud)


TAP = UartTap()


class RecordingSerial(Serial):
    """pyserial's Serial that reports what crosses it to `TAP`: the real port still does the work."""

    def write(self, data: Any) -> int | None:
        TAP.record(str(self.port), "tx", bytes(data), self.baudrate)
        return super().write(data)

    def read(self, size: int = 1) -> bytes:
        data = super().read(size)
        TAP.record(str(self.port), "rx", bytes(data), self.baudrate)
        return data


def mask_pans_in(text: str, pans: list[str]) -> str:
    """Last line of defence for free text (log lines, exception messages) before it enters a report."""
    for pan in pans:
        text = text.replace(pan, mask_pan(pan))
    return text
