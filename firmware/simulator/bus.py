"""The PN532's I2C and SPI host interfaces: the same frames as on HSU, carried the way each bus carries them.

The chip itself (`chip.Pn532Chip`) takes frames in and puts ACK and response frames out; a bus target holds
those until the host reads them, and answers the bus's own framing (UM0701-02 §6.2.4 and §6.2.5, doc pn532.md
§11):

* I2C, address 0x24: a write transaction carries a frame; every read transaction starts with the status byte
  (RDY in bit 0), then, when ready, the pending frame from its start. A read that takes any frame byte
  consumes the frame (the host ends the transaction when it likes; the rest is gone), a status-only read does
  not; a NACK frame asks for the last response again (pn532pi relies on that).
* SPI, mode 0, least significant bit first on the wire: the first byte of each chip-select-low transfer is the
  operation, 01 data write, 02 status read, 03 data read. The chip keeps its place in a frame across transfers;
  on the second and later reads of one frame it clocks the next frame byte out under the 03 byte itself.

Modelling choices where the manual is silent: bytes after a not-ready status or past the end of a frame read
as 00, and a new command frame drops an answer the host never read (it gave up on it), as a new command
aborts the old one in the chip. Each transfer takes its bus time in the link model (`LinkModel.bus_transfer`).
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque

from firmware.simulator import frames
from firmware.simulator.chip import Pn532Chip

I2C_ADDRESS = 0x24  # 7-bit (0x48 to write, 0x49 to read as 8-bit addresses)
I2C_DEFAULT_HZ = 100_000  # the Pi's i2c_arm default; dtparam=i2c_arm_baudrate=400000 for fast mode
READY, NOT_READY = 0x01, 0x00
SPI_DATA_WRITE, SPI_STATUS_READ, SPI_DATA_READ = 0x01, 0x02, 0x03


class BusError(OSError):
    """What the bus driver reports to the host: the errno a Linux I2C adapter returns."""


def reverse_bits(data: bytes) -> bytes:
    """Each byte's bit order reversed: SPI sends the PN532 least significant bit first."""
    return bytes(_REVERSED[b] for b in data)


_REVERSED = [int(f"{b:08b}"[::-1], 2) for b in range(256)]


class _Outbox:
    """The frames the chip put out that the host has not read yet, oldest first."""

    def __init__(self, chip: Pn532Chip) -> None:
        self.chip = chip
        self._lock = threading.Lock()
        self._frames: deque[bytes] = deque()
        chip.reset_listeners.append(self.clear)

    def put(self, frame: bytes) -> None:
        with self._lock:
            self._frames.append(frame)

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()

    def head(self) -> bytes | None:
        with self._lock:
            return self._frames[0] if self._frames else None

    def pop(self) -> None:
        with self._lock:
            if self._frames:
                self._frames.popleft()

    def host_writes(self, data: bytes) -> None:
        if data and not frames.is_nack(data) and frames.START_CODE in data:
            self.clear()  # a new command (or a host ACK): an answer still unread is dropped
        self.chip.receive(data)


class I2cTarget:
    """The chip on an I2C bus, as an I2C adapter driver sees it: one call per message of a transaction."""

    def __init__(self, chip: Pn532Chip, clock_hz: int = I2C_DEFAULT_HZ) -> None:
        self.chip = chip
        self.clock_hz = clock_hz
        self._outbox = _Outbox(chip)
        chip.link.host_link = "i2c"

    def output(self, frame: bytes) -> None:
        """The chip's output callback."""
        self._outbox.put(frame)

    def write(self, address: int, data: bytes) -> None:
        self._address(address)
        self.chip.link.bus_transfer(len(data), self.clock_hz)
        self._outbox.host_writes(data)

    def read(self, address: int, length: int) -> bytes:
        self._address(address)
        self.chip.link.bus_transfer(length, self.clock_hz)
        frame = self._outbox.head()
        if frame is None:
            return bytes([NOT_READY]) + bytes(length - 1)
        if length > 1:
            self._outbox.pop()
        return (bytes([READY]) + frame + bytes(length))[:length]

    @staticmethod
    def _address(address: int) -> None:
        if address != I2C_ADDRESS:  # nobody acknowledges the address: the adapter reports a remote I/O error
            raise BusError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


class SpiTarget:
    """The chip on an SPI bus, as the spidev driver sees it: one call per chip-select-low transfer."""

    def __init__(self, chip: Pn532Chip) -> None:
        self.chip = chip
        self._outbox = _Outbox(chip)
        self._position = 0  # how much of the head frame has been clocked out
        chip.link.host_link = "spi"
        chip.reset_listeners.append(self._rewind)

    def output(self, frame: bytes) -> None:
        self._outbox.put(frame)

    def transfer(self, wire: bytes, clock_hz: int) -> bytes:
        """`wire` as the bus carries it (LSB first); the same number of bytes comes back."""
        if not wire:
            return b""
        self.chip.link.bus_transfer(len(wire), clock_hz)
        sent = reverse_bits(wire)
        answer = bytearray(len(wire))
        if sent[0] == SPI_DATA_WRITE:
            self._rewind()
            self._outbox.host_writes(sent[1:])
        elif sent[0] == SPI_STATUS_READ:
            answer[1:] = bytes([READY if self._outbox.head() is not None else NOT_READY]) * (len(wire) - 1)
        elif sent[0] == SPI_DATA_READ:
            self._read(answer)
        return reverse_bits(bytes(answer))

    def _read(self, answer: bytearray) -> None:
        frame = self._outbox.head()
        if frame is None:
            return
        start = 0 if self._position else 1  # a frame's first read: the byte under 03 means nothing
        for index in range(start, len(answer)):
            answer[index] = frame[self._position]
            self._position += 1
            if self._position == len(frame):
                self._outbox.pop()
                self._rewind()
                return

    def _rewind(self) -> None:
        self._position = 0
