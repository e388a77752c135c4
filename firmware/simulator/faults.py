"""Fault injection for the software PN532: armed by a test or the control socket, each fires once.

Kinds: late_ack (seconds), drop_ack, no_answer (ACK, then nothing until the host aborts), error_frame,
status (an error status code for the next exchange), drop_byte / corrupt_byte (index into the next
response frame), drop_response, silent (no answer at all until the chip is reset). A card taken away
at the Nth exchange is the card's own fault (`SoftwareCard.fault_remove_after`).
"""

from __future__ import annotations

import threading
from typing import Any

from firmware.simulator import frames

KINDS = {
    "late_ack": float,
    "drop_ack": bool,
    "no_answer": bool,
    "error_frame": bool,
    "status": int,
    "drop_byte": int,
    "corrupt_byte": int,
    "drop_response": bool,
    "silent": bool,
}


class Faults:
    def __init__(self) -> None:
        self._armed: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.fired: list[str] = []

    def arm(self, kind: str, value: Any = True) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(sorted(KINDS))}")
        try:
            value = KINDS[kind](value)
        except (TypeError, ValueError):
            raise ValueError(f"fault {kind}: {value!r} is not a {KINDS[kind].__name__}") from None
        if kind == "status" and not 0 <= value <= 0x3F:
            raise ValueError("fault status: a status code is 00-3F")
        if kind in ("drop_byte", "corrupt_byte") and value < 0:
            raise ValueError(f"fault {kind}: must be ≥ 0")
        with self._lock:
            self._armed[kind] = value

    @property
    def silent(self) -> bool:
        return bool(self._armed.get("silent"))

    def armed(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._armed)

    def take(self, kind: str) -> Any:
        """The armed value (once), or None."""
        with self._lock:
            value = self._armed.pop(kind, None)
        if value is not None:
            self.fired.append(kind)
        return value

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def mangle_output(self, data: bytes) -> bytes:
        """Apply byte faults to the next response frame (ACK frames pass untouched)."""
        if data == frames.ACK:
            return data
        if self.take("drop_response"):
            return b""
        index = self.take("drop_byte")
        if index is not None:
            index = min(index, len(data) - 1)
            data = data[:index] + data[index + 1 :]
        index = self.take("corrupt_byte")
        if index is not None:
            index = min(index, len(data) - 1)
            data = data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
        return data

