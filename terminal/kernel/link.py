"""The card side shared by the Entry Point and the kernels: one APDU exchange at a time, and early endings.

A kernel reaches the card only through ``transceive``; this wraps it with the 61xx/6Cxx rules (doc emv-qpboc.md
§2.6), the card-in-field timing and a lock once the card has been read. :class:`Stop` carries an outcome out
of any step, so no step needs to return one through every caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from emvcore import tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu
from terminal.kernel.outcome import Message, Outcome

__all__ = ["Link", "Stop", "Transceive", "first_values", "malformed"]

Transceive = Callable[[bytes], bytes]

_MAX_RESPONSE_ROUNDS = 4  # 61xx GET RESPONSE rounds


class Stop(Exception):
    """Ends a tap early with an outcome; never leaves the kernel's ``run``."""

    def __init__(self, outcome: Outcome, message: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.message = message
        self.reason = reason


def malformed(reason: str) -> Stop:
    """The card answered something no honest card sends: end the application, say "Card error"."""
    return Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, reason)


def first_values(objects: Iterable[tlv.Tlv]) -> dict[int, bytes]:
    """Tag → value, the first occurrence winning (a card repeating a tag cannot overwrite what came first)."""
    values: dict[int, bytes] = {}
    for obj in objects:
        values.setdefault(obj.tag, obj.value)
    return values


class Link:
    """APDU exchange, 61xx/6Cxx handling, timing, and a lock after the read."""

    def __init__(self, transceive: Transceive, clock: Callable[[], float]) -> None:
        self._transceive = transceive
        self._clock = clock
        self.first: float | None = None
        self.last: float | None = None
        self.closed = False

    def send(self, command: CommandApdu, what: str) -> ResponseApdu:
        response = self._once(command, what)
        data = b""
        resent = False
        for _ in range(_MAX_RESPONSE_ROUNDS):
            if response.sw1 == 0x61:
                data += response.data
                response = self._once(CommandApdu(0x00, 0xC0, 0x00, 0x00, le=response.sw2 or 256), what)
            elif response.sw1 == 0x6C and not resent:
                resent = True
                command = CommandApdu(
                    command.cla, command.ins, command.p1, command.p2, command.data, le=response.sw2 or 256
                )
                response = self._once(command, what)
            else:
                return ResponseApdu(data + response.data, response.sw)
        raise malformed(f"{what}: the card keeps asking for GET RESPONSE / a new Le")

    def _once(self, command: CommandApdu, what: str) -> ResponseApdu:
        if self.closed:
            raise RuntimeError("kernel bug: a card command after on_card_read")
        if self.first is None:
            self.first = self._clock()
        raw = self._transceive(command.encode())
        self.last = self._clock()
        if not isinstance(raw, bytes | bytearray):
            raise malformed(f"{what}: the reader returned {type(raw).__name__}, not bytes")
        try:
            return ResponseApdu.decode(bytes(raw))
        except ApduError:
            raise malformed(f"{what}: answer of {len(raw)} bytes has no status word") from None
