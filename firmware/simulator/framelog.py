"""Frames on the PN532's host link described one per line, for a person comparing with a real chip's trace.

`pos-card pn532 --trace FILE` writes every frame both ways with the time since the start; the HIL report's
link lane shows the same descriptions. APDU bytes are never written: a frame that carries one (InDataExchange,
TgGetData …) shows its command, its first two payload bytes (Tg and status) and its size; a control frame
(GetFirmwareVersion, InListPassiveTarget …) shows its bytes. A UID is not an identity (a phone draws a new one
each time it enters the field).
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from firmware.simulator import frames
from firmware.simulator.chip import FrameObserver
from firmware.simulator.link import uart_seconds

PN532_COMMANDS = {
    0x00: "Diagnose", 0x02: "GetFirmwareVersion", 0x04: "GetGeneralStatus", 0x06: "ReadRegister",
    0x08: "WriteRegister", 0x0C: "ReadGPIO", 0x0E: "WriteGPIO", 0x10: "SetSerialBaudRate", 0x12: "SetParameters",
    0x14: "SAMConfiguration", 0x16: "PowerDown", 0x32: "RFConfiguration", 0x40: "InDataExchange",
    0x42: "InCommunicateThru", 0x44: "InDeselect", 0x4A: "InListPassiveTarget", 0x52: "InRelease",
    0x54: "InSelect", 0x86: "TgGetData", 0x88: "TgGetInitiatorCommand", 0x8A: "TgGetTargetStatus",
    0x8C: "TgInitAsTarget", 0x8E: "TgSetData", 0x90: "TgResponseToInitiator", 0x94: "TgSetMetaData",
}
DATA_COMMANDS = frozenset({0x40, 0x42, 0x86, 0x88, 0x8C, 0x8E, 0x90, 0x94})
"""Commands whose frames (either way) carry APDU bytes or the first ISO-DEP frame: shown by size only."""


def describe_frame(event: frames.Event, baud: int | None = None) -> str:
    """One frame; with `baud`, its bytes and wire time on a UART at that rate."""
    if isinstance(event, frames.Ack):
        return "ACK"
    if isinstance(event, frames.Nack):
        return "NACK"
    if isinstance(event, frames.Rejected):
        return f"REJECTED frame ({event.reason}, {len(event.raw)} B)"
    if event.is_error:
        return "error frame"
    code = event.command
    base = code - 1 if code is not None and event.tfi == frames.TFI_CHIP else code
    name = PN532_COMMANDS.get(base or 0, f"cmd {base:02X}" if base is not None else "empty")
    if base in DATA_COMMANDS:
        shown = f"{event.payload[:2].hex(' ').upper()} +{max(0, len(event.payload) - 2)} B data"
    else:
        shown = event.payload.hex(" ").upper()
    reply = " reply" if event.tfi == frames.TFI_CHIP else ""
    text = f"{event.tfi:02X} {name}{reply} [{shown}]"
    if baud is None:
        return text
    wire = len(frames.encode_frame(event.tfi, event.payload, extended=event.extended))
    return f"{text} {wire} B, {uart_seconds(wire, baud) * 1000:.2f} ms modelled at {baud}"


class FrameLog:
    """`pos-card pn532 --trace`: one line per frame, `seconds  chip  arrow  description`, flushed at once (a
    killed emulator leaves a complete log)."""

    HEADER = "# seconds   chip  direction  frame (APDU bytes never shown)\n"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        stream.write(self.HEADER)
        stream.flush()

    def observer(self, chip: str, link: str) -> FrameObserver:
        """The callback for one chip's `frame_observers`."""

        def record(direction: str, event: frames.Event, baud: int) -> None:
            arrow = "host→chip" if direction == "in" else "chip→host"
            text = describe_frame(event, baud if link == "uart" else None)
            with self._lock:
                self._stream.write(f"{time.monotonic() - self._t0:11.6f}  {chip}  {arrow}  {text}\n")
                self._stream.flush()

        return record
