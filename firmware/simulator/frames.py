"""PN532 HSU frame codec (NXP UM0701-02 §6.2.1), shared by the software chip and the host-side code.

Information frame: ``00 | 00 FF | LEN | LCS | TFI | PD0 … PDn | DCS | 00``; extended frame:
``00 | 00 FF | FF FF | LENM | LENL | LCS | TFI | PD … | DCS | 00``. ``payload`` here always means the
bytes after TFI (``PD0 … PDn``: the command or response code, then its data).

The parser works on a byte stream, never on "one frame per read": a serial line (or a pseudo-terminal)
hands over whatever has arrived, from a single byte to several frames at once.
"""

from __future__ import annotations

from dataclasses import dataclass

ACK = bytes.fromhex("0000FF00FF00")
NACK = bytes.fromhex("0000FFFF0000")
ERROR_FRAME = bytes.fromhex("0000FF01FF7F8100")
TFI_HOST = 0xD4
TFI_CHIP = 0xD5
TFI_ERROR = 0x7F  # the error frame is an information frame with TFI 7F and no data
MAX_PAYLOAD = 264  # UM §6.2.1.2: 265 bytes including TFI

START_CODE = b"\x00\xff"
_MAX_LENGTH = MAX_PAYLOAD + 1  # LEN / LENGTH count TFI too
_NORMAL_MAX_LENGTH = 0xFF


class FrameError(ValueError):
    """Bytes that were supposed to be exactly one information frame are not."""


@dataclass(frozen=True)
class Frame:
    """An information frame whose checksums hold; ``extended`` records the format the sender chose."""

    tfi: int
    payload: bytes
    extended: bool = False

    @property
    def command(self) -> int | None:
        """PD0: the command code (host frame) or response code (chip frame); None for a bare TFI."""
        return self.payload[0] if self.payload else None

    @property
    def is_error(self) -> bool:
        """The chip's application-level error frame (``00 00 FF 01 FF 7F 81 00``)."""
        return self.tfi == TFI_ERROR and not self.payload

    def encode(self) -> bytes:
        """Back to wire bytes in the same format (normal or extended) it arrived in."""
        return encode_frame(self.tfi, self.payload, extended=self.extended)


@dataclass(frozen=True)
class Ack:
    """``00 FF 00 FF``: from the chip, "command received"; from the host, "abort the command in flight"."""


@dataclass(frozen=True)
class Nack:
    """``00 FF FF 00``: the host asks for the last response again."""


@dataclass(frozen=True)
class Rejected:
    """A frame the chip must ignore silently (no ACK, no error frame); kept so logs and tests can see it."""

    reason: str
    raw: bytes


Event = Frame | Ack | Nack | Rejected


def _checksum(data: bytes | bytearray) -> int:
    """The byte that makes ``sum(data) + checksum`` a multiple of 256 (both LCS and DCS work this way)."""
    return -sum(data) & 0xFF


def encode_frame(tfi: int, payload: bytes, *, extended: bool | None = None) -> bytes:
    """Wire bytes with exactly one preamble byte, because pn532pi and nfcpy expect a frame to start ``00 00 FF``.

    ``extended=None`` picks the smallest format that fits, as the chip does: normal up to LEN 255.
    """
    if not 0 <= tfi <= 0xFF:
        raise ValueError(f"TFI must be one byte, not {tfi}")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the PN532 limit of {MAX_PAYLOAD}")
    length = 1 + len(payload)
    if extended is None:
        extended = length > _NORMAL_MAX_LENGTH
    elif not extended and length > _NORMAL_MAX_LENGTH:
        raise ValueError(f"LEN {length} does not fit a normal frame; use an extended frame")
    body = bytes([tfi]) + payload
    if extended:
        size = length.to_bytes(2, "big")
        header = b"\xff\xff" + size + bytes([_checksum(size)])
    else:
        header = bytes([length, _checksum(bytes([length]))])
    return b"\x00" + START_CODE + header + body + bytes([_checksum(body)]) + b"\x00"


def _next_event(buf: bytes | bytearray) -> tuple[Event | None, int]:
    """One parsing step: (event or None, bytes of ``buf`` to drop); (None, 0) means "wait for more bytes".

    Bytes before a start code are skipped (preambles, postambles, wake-up ``55``s, junk). A bad header
    (LCS, impossible length) drops only the start code, so a corrupted LEN never swallows the good frame
    that follows; a bad DCS drops the whole frame, because the LCS vouched for its length and rescanning
    its data could turn payload bytes (a literal ``00 FF 00 FF``) into a phantom ACK.
    """
    start = buf.find(START_CODE)
    if start < 0:
        # Keep a trailing 00: it may be the first half of a start code still in flight.
        keep = 1 if buf and buf[-1] == 0x00 else 0
        return None, len(buf) - keep
    if start > 0:
        return None, start
    if len(buf) < 4:
        return None, 0
    first, second = buf[2], buf[3]
    # ACK and NACK first: 00 FF FF 00 must not be read as the start of an extended header.
    if first == 0x00 and second == 0xFF:
        return Ack(), 4
    if first == 0xFF and second == 0x00:
        return Nack(), 4
    if first == 0xFF and second == 0xFF:
        if len(buf) < 7:
            return None, 0
        header = bytes(buf[:7])
        if (buf[4] + buf[5] + buf[6]) & 0xFF:
            return Rejected("bad LCS", header), 2
        length = buf[4] << 8 | buf[5]
        body_at, extended = 7, True
    else:
        header = bytes(buf[:4])
        if (first + second) & 0xFF:
            return Rejected("bad LCS", header), 2
        length = first
        body_at, extended = 4, False
    if length == 0:
        return Rejected("length 0", header), 2
    if length > _MAX_LENGTH:
        return Rejected(f"length {length} exceeds {_MAX_LENGTH}", header), 2
    end = body_at + length + 1  # TFI + data + DCS
    if len(buf) < end:
        return None, 0
    if sum(buf[body_at:end]) & 0xFF:
        return Rejected("bad DCS", bytes(buf[:end])), end
    return Frame(buf[body_at], bytes(buf[body_at + 1 : end - 1]), extended), end


class FrameParser:
    """Turns a byte stream, fed in pieces of any size, into frame events.

    The postamble is not required: the byte after DCS is treated as the start of whatever comes next,
    and a ``00`` there is skipped like any byte before a start code. The buffer stays bounded: junk is
    dropped as it arrives, and at most one incomplete frame (≤ 273 bytes) is held.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        """Events completed by ``data``, in stream order; an unfinished frame waits for the next call."""
        self._buffer += data
        events: list[Event] = []
        while self._buffer:
            event, drop = _next_event(self._buffer)
            if drop:
                del self._buffer[:drop]
            if event is not None:
                events.append(event)
            elif not drop:
                break
        return events

    def pending(self) -> int:
        """Bytes held back: part of a frame (or a lone trailing ``00``) waiting for the rest."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget a half-received frame, e.g. after a chip reset or a host timeout."""
        self._buffer.clear()


def _single_event(raw: bytes) -> Event:
    """The one event in ``raw``, allowing only 00 bytes (preambles, postambles) around it."""
    raw = bytes(raw)
    start = raw.find(START_CODE)
    if start < 0:
        raise FrameError("no start code 00 FF")
    if raw[:start].strip(b"\x00"):
        raise FrameError(f"unexpected bytes before the start code: {raw[:start].hex(' ')}")
    event, used = _next_event(raw[start:])
    if event is None:
        raise FrameError(f"truncated frame: {raw[start:].hex(' ')}")
    if isinstance(event, Rejected):
        raise FrameError(f"{event.reason}: {event.raw.hex(' ')}")
    rest = raw[start + used :]
    if rest.strip(b"\x00"):
        raise FrameError(f"{len(rest)} unexpected bytes after the frame: {rest.hex(' ')}")
    return event


def decode_frame(raw: bytes) -> Frame:
    """Exactly one information frame, for code that already holds a complete response."""
    event = _single_event(raw)
    if not isinstance(event, Frame):
        raise FrameError(f"expected an information frame, got {type(event).__name__.upper()}")
    return event


def is_ack(raw: bytes) -> bool:
    """True for an ACK frame, with or without its preamble and postamble."""
    try:
        return isinstance(_single_event(raw), Ack)
    except FrameError:
        return False


def is_nack(raw: bytes) -> bool:
    """True for a NACK frame, with or without its preamble and postamble."""
    try:
        return isinstance(_single_event(raw), Nack)
    except FrameError:
        return False
