"""pn532pi as it is, on any serial device or on I2C and SPI, with its gaps filled (doc pn532.md §4).

pn532pi's HSU class opens only /dev/serial0|1, cannot read or write extended frames (so APDUs over about
252 bytes fail), leaves a late answer in the input buffer to poison every later command, and sends
InDataExchange to target 0 unless told to list the target. This adapter subclasses its HSU interface
(we never patch its files) and adds the few calls the terminal and the card-emulation rig need.
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Any

from pn532pi.interfaces.pn532hsu import PN532_WAKEUP, Pn532Hsu
from pn532pi.interfaces.pn532Interface import (
    PN532_ACK_WAIT_TIME,
    PN532_INVALID_ACK,
    PN532_INVALID_FRAME,
    PN532_TIMEOUT,
)
from pn532pi.nfc.pn532 import Pn532
from serial import Serial, SerialException

log = logging.getLogger("hardware.pn532")

TFI_HOST, TFI_CHIP = 0xD4, 0xD5
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
NORMAL_HEADER, EXTENDED_HEADER = 5, 8  # 00 00 FF LEN LCS | 00 00 FF FF FF LENM LENL LCS
I2C_ADDRESS = 0x24
SPI_DATA_READ = 0x03
ACK_WAIT_MS = max(PN532_ACK_WAIT_TIME, 200)
FRAME_OVERHEAD = 11  # preamble, start code, LEN/LCS (extended: 5), TFI, DCS, postamble
IN_DATA_EXCHANGE = 0x40
MORE_INFORMATION = 0x40
MAX_CHAINED_FRAMES = 300  # an extended R-APDU (65 538 bytes) needs 261 frames of 252 bytes; a chip that sets MI
# for ever must not keep the caller asking
STATUS_NAMES = {
    0x01: "timeout (no answer from the card)",
    0x02: "CRC error",
    0x03: "parity error",
    0x13: "invalid frame / format error",
    0x27: "command not acceptable in this context",
    0x29: "released by the initiator",
}


class Pn532Error(Exception):
    """The PN532 did not answer, answered garbage, or reported an error status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SerialHsu(Pn532Hsu):
    """pn532pi's HSU interface on a given device path (pseudo-terminal, /dev/ttyAMA0, a USB adapter)."""

    def __init__(self, device: str, baudrate: int = 115200, *, ack_wait_ms: int = ACK_WAIT_MS) -> None:
        # no super(): it would open /dev/serial0
        try:
            self._serial = Serial(device, baudrate=baudrate, timeout=1)
        except SerialException as error:
            raise Pn532Error(f"cannot open PN532 port {device}: {error}") from None
        self._serial.close()
        self.command = 0
        self.device = device
        self._ack_wait_ms = ack_wait_ms
        self._wire_ms = 0  # how long the last command frame takes on the wire

    def writeCommand(self, header: bytearray, body: bytearray | None = None) -> int:
        """Drop anything stale first (pn532pi discards one byte only), and use an extended frame when needed."""
        self._serial.reset_input_buffer()
        body = bytearray() if body is None else body
        payload = bytes(header) + bytes(body)
        wire_bytes = len(PN532_WAKEUP) + len(payload) + FRAME_OVERHEAD
        self._wire_ms = -(-wire_bytes * 10_000 // self._serial.baudrate)  # 8N1, rounded up
        if len(payload) + 1 <= 255:
            return super().writeCommand(header, body)
        self.command = header[0]
        length = len(payload) + 1
        frame = bytes([0x00, 0x00, 0xFF, 0xFF, 0xFF, length >> 8, length & 0xFF, (-(length >> 8) - length) & 0xFF])
        frame += bytes([TFI_HOST]) + payload + bytes([(-(TFI_HOST + sum(payload))) & 0xFF, 0x00])
        self._serial.write(PN532_WAKEUP + frame)
        return self.readAckFrame()

    def readAckFrame(self) -> int:
        """pn532pi allows 10 ms for the ACK from the moment write() returns. But write() returns while a long
        frame is still leaving the UART (a 200-byte TgSetData takes 18 ms at 115200 baud), a USB-serial
        adapter may hold the ACK for its latency timer (16 ms on FTDI), and a busy Pi may not run us at once (nor,
        on the simulated rig, a busy machine the chip's thread): wait ACK_WAIT_MS plus the frame's wire time.
        Only a chip that never ACKs waits the whole time, and that is rare and followed by a reset anyway."""
        count, ack = self.receive(len(ACK), self._ack_wait_ms + self._wire_ms)
        if count <= 0:
            return PN532_TIMEOUT
        return 0 if bytes(ack) == ACK else PN532_INVALID_ACK

    def readResponse(self, timeout: int = 1000) -> tuple[int, bytearray]:
        """Normal and extended response frames; returns (length, data) like pn532pi, or a negative error."""
        count, head = self.receive(5, timeout)
        if count <= 0:
            return PN532_TIMEOUT, bytearray()
        if bytes(head[:3]) != b"\x00\x00\xff":
            return PN532_INVALID_FRAME, bytearray()
        if head[3] == 0xFF and head[4] == 0xFF:
            count, extra = self.receive(3, timeout)
            if count <= 0:
                return PN532_TIMEOUT, bytearray()
            length = extra[0] << 8 | extra[1]
            if (extra[0] + extra[1] + extra[2]) & 0xFF:
                return PN532_INVALID_FRAME, bytearray()
        else:
            length = head[3]
            if (head[3] + head[4]) & 0xFF:
                return PN532_INVALID_FRAME, bytearray()
        count, body = self.receive(length + 2, timeout)
        if count <= 0:
            return PN532_TIMEOUT, bytearray()
        if body[0] != TFI_CHIP or body[1] != self.command + 1 or (sum(body[: length + 1])) & 0xFF or body[-1]:
            return PN532_INVALID_FRAME, bytearray()
        data = bytearray(body[2:length])
        return len(data), data

    def abort(self) -> None:
        """A host ACK: the chip drops the command in flight and never answers it."""
        self._serial.write(b"\x00\x00\xff\x00\xff\x00")

    def set_baudrate(self, baudrate: int) -> None:
        self._serial.baudrate = baudrate

    def close(self) -> None:
        self._serial.close()


def bus_interface(interface: str, *, i2c_bus: int = 1, spi_cs: int = 0, spi_speed_hz: int = 1_000_000) -> Any:
    """pn532pi's own `Pn532I2c` or `Pn532Spi` (imported only here: they need quick2wire or spidev) with two gaps
    filled, as `SerialHsu` fills HSU's: a response in an extended frame (over 254 bytes: a phone's PPSE with a
    full wallet comes chained in 262-byte parts) is read, not refused; and a bus error in the middle of a
    command (an I2C "Remote I/O error", EREMOTEIO on a Pi 5, a node gone) reads as a chip that did not answer,
    so the reader resets it, instead of an exception out of pn532pi."""
    if interface == "i2c":
        from pn532pi.interfaces.pn532i2c import Pn532I2c

        chip: Any = type("BusI2c", (_I2cFrames, Pn532I2c), {})(i2c_bus)
        chip.device = f"I2C bus {i2c_bus}"
    else:
        from pn532pi.interfaces.pn532spi import Pn532Spi

        chip = type("BusSpi", (_SpiFrames, Pn532Spi), {})(spi_cs, spi_speed_hz)
        chip.device = f"SPI0 CE{spi_cs}"
    return chip


class _BusFrames:
    """What both buses share: normal and extended response frames, and bus errors as silence."""

    device: str
    _command: int

    def writeCommand(self, header: bytearray, body: bytearray | None = None) -> int:
        try:
            return super().writeCommand(header, bytearray() if body is None else body)  # type: ignore[misc]
        except OSError as error:
            log.warning("PN532 on %s: %s", self.device, error)
            return PN532_TIMEOUT

    def readResponse(self, timeout: int = 1000) -> tuple[int, bytearray]:
        try:
            waited = 0
            while not self._bus_ready():
                time.sleep(0.001)  # pn532pi's own polling step
                waited += 1
                if timeout and waited > timeout:
                    return PN532_TIMEOUT, bytearray()
            head = self._read_head(EXTENDED_HEADER)
            if head[:3] != b"\x00\x00\xff":
                return PN532_INVALID_FRAME, bytearray()
            if head[3:5] == b"\xff\xff":
                length, header = head[5] << 8 | head[6], EXTENDED_HEADER
                if (head[5] + head[6] + head[7]) & 0xFF:
                    return PN532_INVALID_FRAME, bytearray()
            else:
                length, header = head[3], NORMAL_HEADER
                if (head[3] + head[4]) & 0xFF:
                    return PN532_INVALID_FRAME, bytearray()
            frame = self._read_rest(head, header + length + 2)
        except OSError as error:
            log.warning("PN532 on %s: %s", self.device, error)
            return PN532_TIMEOUT, bytearray()
        body = frame[header : header + length + 1]  # TFI … DCS
        if len(body) < 3 or body[0] != TFI_CHIP or body[1] != self._command + 1 or sum(body) & 0xFF:
            return PN532_INVALID_FRAME, bytearray()
        data = bytearray(body[2:length])
        return len(data), data

    def _bus_ready(self) -> bool:
        raise NotImplementedError

    def _read_head(self, count: int) -> bytes:
        raise NotImplementedError

    def _read_rest(self, head: bytes, total: int) -> bytes:
        raise NotImplementedError


class _I2cFrames(_BusFrames):
    """Each read starts with the status byte; a read takes the frame, a NACK asks for it again (doc §11)."""

    _wire: Any

    def _read(self, count: int) -> bytes:
        from quick2wire.i2c import reading

        return bytes(self._wire.transaction(reading(I2C_ADDRESS, count))[0])

    def _bus_ready(self) -> bool:
        return bool(self._read(1)[0] & 1)

    def _read_head(self, count: int) -> bytes:
        return self._read(1 + count)[1:]

    def _read_rest(self, head: bytes, total: int) -> bytes:
        from quick2wire.i2c import writing

        self._wire.transaction(writing(I2C_ADDRESS, NACK))
        for _ in range(ACK_WAIT_MS):
            answer = self._read(1 + total)
            if answer[0] & 1:
                return answer[1:]
            time.sleep(0.001)
        raise OSError(errno.ETIMEDOUT, "no answer to NACK")


class _SpiFrames(_BusFrames):
    """The chip keeps its place in a frame across data reads; later reads get the next byte under 03."""

    def _bus_ready(self) -> bool:
        return self._isReady()  # type: ignore[attr-defined]

    def _read_head(self, count: int) -> bytes:
        return bytes(self._xfer_bytes([SPI_DATA_READ] + [0] * count)[1:])  # type: ignore[attr-defined]

    def _read_rest(self, head: bytes, total: int) -> bytes:
        rest = self._xfer_bytes([SPI_DATA_READ] + [0] * (total - len(head) - 1))  # type: ignore[attr-defined]
        return head + bytes(rest)


def open_pn532(device: str, baudrate: int = 115200, *, ack_wait_ms: int = ACK_WAIT_MS) -> tuple[Pn532, SerialHsu]:
    """A pn532pi `Pn532` on `device`, begun (port open, woken up)."""
    interface = SerialHsu(device, baudrate, ack_wait_ms=ack_wait_ms)
    chip = Pn532(interface)
    chip.begin()
    return chip, interface


def command(interface: SerialHsu, payload: bytes, timeout_ms: int = 1000) -> bytes:
    """Any PN532 command through pn532pi's interface; the response data after the response code."""
    if interface.writeCommand(bytearray(payload[:1]), bytearray(payload[1:])):
        raise Pn532Error(f"PN532 on {interface.device} did not acknowledge command {payload[0]:02X}")
    length, data = interface.readResponse(timeout_ms)
    if length < 0:  # a late answer may follow: the next writeCommand drops it
        raise Pn532Error(f"PN532 on {interface.device}: no valid answer to command {payload[0]:02X}")
    return bytes(data)


def in_data_exchange(interface: SerialHsu, apdu: bytes, target: int = 1, timeout_ms: int = 1000) -> bytes:
    """One APDU to a listed ISO-DEP target, with the MI chaining pn532pi lacks both ways."""
    response = b""
    for start in range(0, max(len(apdu), 1), 262):
        part = apdu[start : start + 262]
        more = start + 262 < len(apdu)
        answer = command(interface, bytes([IN_DATA_EXCHANGE, target | (MORE_INFORMATION if more else 0)]) + part,
                         timeout_ms)
        _check_status(answer)
        if not more:
            response = answer[1:]
    chained = 0
    while answer[0] & MORE_INFORMATION:
        chained += 1
        if chained > MAX_CHAINED_FRAMES:
            raise Pn532Error(f"InDataExchange: the chip still sets MI after {MAX_CHAINED_FRAMES} frames")
        answer = command(interface, bytes([IN_DATA_EXCHANGE, target]), timeout_ms)
        _check_status(answer)
        response += answer[1:]
    return response


def _check_status(answer: bytes) -> None:
    if not answer:
        raise Pn532Error("empty InDataExchange answer")
    status = answer[0] & 0x3F
    if status:
        raise Pn532Error(f"PN532 status {status:02X}: {STATUS_NAMES.get(status, 'error')}", status)

