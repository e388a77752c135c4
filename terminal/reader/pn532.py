"""The reader on a PN532 through pn532pi: HSU on any serial device (the adapter in hardware/), I2C or SPI.

Start-up: GetFirmwareVersion (retried once: some clones miss the first one), SAMConfiguration (leaves
LowVbat), SetParameters 14h (the chip does RATS itself, so APDUs can go through InDataExchange), a small
MxRtyPassiveActivation (a poll ends after a few attempts instead of never, so wait_for_card keeps its
timeout), then SetSerialBaudRate when a faster UART is configured.

Polling sends InListPassiveTarget itself rather than pn532pi's readPassiveTargetID, which drops SENS_RES,
SEL_RES and the ATS and answers False both for "no card" and for "no chip". The UID is reported, never
used: a phone shows a new one on every tap.

A chip that stops answering (no ACK, no response) is reset (an RSTPDN pulse when reader.reset_pin is
wired, else the port is reopened) and initialised again, once per call; if it stays silent the call
raises ReaderError. A tap that was under way when that happened is lost: transceive raises CardRemoved.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pn532pi.nfc.pn532 import Pn532

from hardware.pn532 import Pn532Error, bus_interface, command, in_data_exchange, open_pn532
from terminal.config import DEFAULT_BAUD, ReaderConfig, TerminalConfig
from terminal.reader.base import CardRemoved, ReaderError, Target
from terminal.ui.gpio import Gpio

log = logging.getLogger("terminal.reader")

SET_SERIAL_BAUD_RATE = 0x10
SET_PARAMETERS = 0x12
IN_LIST_PASSIVE_TARGET = 0x4A
IN_RELEASE = 0x52
PARAMETERS = 0x14  # fAutomaticRATS | fAutomaticATR_RES (what dotnet/iot sends; doc §2.1)
PASSIVE_RETRIES = 0x02  # MxRtyPassiveActivation: three attempts, then "no card" (FF would poll forever)
BAUD_CODES = {9600: 0, 19200: 1, 38400: 2, 57600: 3, 115200: 4, 230400: 5, 460800: 6, 921600: 7}
CARD_GONE = {  # the link to the card broke (it left, or RF errors beyond ISO-DEP's retries): present it again
    0x01: "the card did not answer",
    0x02: "CRC error on the air",
    0x03: "parity error on the air",
    0x04: "bit count error on the air",
    0x05: "framing error on the air",
    0x06: "collision on the air",
    0x0B: "RF protocol error",
    0x13: "invalid frame from the card",
    0x27: "the chip no longer has the card listed",
    0x29: "the card released the link",
    0x2B: "the card disappeared",
}
LIST_ANSWER_MS = 1000  # a poll with PASSIVE_RETRIES answers in milliseconds; silence this long means a hung chip
BAUD_SWITCH_SECONDS = 0.01  # the host ACK must leave the UART at the old rate before ours changes
RESET_LOW_SECONDS = 0.02  # RSTPDN pulse and boot wait: generous guesses, datasheet values unconfirmed (doc §8)
BOOT_SECONDS = 0.1

T = TypeVar("T")


class _Silent(Exception):
    """The chip did not acknowledge or did not answer: it needs a reset."""


class Pn532Reader:
    """`Reader` on a PN532. Takes the whole TerminalConfig or its [reader] section."""

    def __init__(self, config: ReaderConfig | TerminalConfig, gpio: Gpio | None = None) -> None:
        self.config = config.reader if isinstance(config, TerminalConfig) else config
        self._gpio = gpio
        if self.config.reset_pin is not None and gpio is None:
            raise ReaderError("reader.reset_pin is configured but no GPIO backend was given to drive it")
        self._lock = threading.RLock()
        self._chip: Pn532 | None = None
        self._interface: Any = None  # hardware.pn532.SerialHsu, or pn532pi's Pn532I2c / Pn532Spi
        self._baud = DEFAULT_BAUD  # the rate both sides use now
        self._target: int | None = None
        self._firmware = 0
        self.resets = 0  # since this object was made: the service's /metrics

    # -- Reader --------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect and initialise; a wired reset line gives a clean chip even after a killed run."""
        with self._lock:
            if self._chip is not None:
                return
            if self.config.reset_pin is not None:
                assert self._gpio is not None
                self._gpio.setup_output(self.config.reset_pin, True)  # low would hold the chip in reset
                self._pulse_reset()
            self._connect_and_init()
            log.info("reader: %s", self._describe())

    def identify(self) -> str:
        with self._lock:
            self._firmware = self._recovering(self._read_firmware)
            return self._describe()

    def wait_for_card(self, timeout: float) -> Target | None:
        with self._lock:
            self._require_open()
            self._target = None
            deadline = time.monotonic() + max(0.0, timeout)
            recovered = False
            while True:
                try:
                    target = self._list_target()
                except _Silent as error:
                    if recovered:
                        raise ReaderError(f"{self._where()}: the PN532 stopped answering again ({error})") from None
                    log.warning("reader: %s; resetting the PN532", error)
                    self.reset()
                    recovered = True
                    continue
                if target is not None:
                    log.debug("reader: card in the field, SAK %02X, UID %s (not an identity)", target.sel_res,
                              target.uid.hex())
                    return target
                if time.monotonic() >= deadline:
                    return None

    def transceive(self, apdu: bytes) -> bytes:
        with self._lock:
            self._require_open()
            if self._target is None:
                raise CardRemoved("no card is activated (none found yet, or the last one left)")
            try:
                return in_data_exchange(self._interface, apdu, target=self._target,
                                        timeout_ms=round(self.config.apdu_timeout * 1000))
            except Pn532Error as error:
                status, problem = error.status, str(error)
            self._target = None
            if status in CARD_GONE:
                raise CardRemoved(f"card removed: {CARD_GONE[status]} (status {status:02X})")
            if status is not None:
                raise ReaderError(f"{self._where()}: {problem}", status)
            log.warning("reader: no answer to InDataExchange; resetting the PN532")
            self._abort()
            self.reset()
            raise CardRemoved("the reader stopped answering and was reset; the card must be presented again")

    def release(self) -> None:
        with self._lock:
            target, self._target = self._target, None
            if target is None or self._interface is None:
                return
            try:
                command(self._interface, bytes([IN_RELEASE, target]))
            except Pn532Error as error:  # a card already gone is released anyway; a hung chip shows next call
                log.info("reader: InRelease: %s", error)

    def reset(self) -> None:
        with self._lock:
            self.resets += 1
            self._target = None
            if self.config.reset_pin is not None:
                self._abort()
                self._pulse_reset()
                if self._interface is None:
                    self._connect_and_init()
                    return
                self._baud = DEFAULT_BAUD  # a reset chip is back at 115200
                if self.config.interface == "hsu":
                    self._interface.set_baudrate(DEFAULT_BAUD)
                self._init_or_raise()
            else:
                self._disconnect()
                self._connect_and_init()
            log.info("reader: reset done, %s", self._describe())

    def close(self) -> None:
        """Release the card and leave the chip at 115200, where the next start (or nfcpy) expects it."""
        with self._lock:
            if self._interface is None:
                return
            self.release()
            if self._baud != DEFAULT_BAUD:
                with contextlib.suppress(_Silent, ReaderError):
                    self._switch_baud(DEFAULT_BAUD)
            self._disconnect()

    # -- connection and start-up ----------------------------------------------------------------------------

    def _connect_and_init(self) -> None:
        """Try the rate the chip was last left at, then the power-on rate (a killed run may have raised it)."""
        rates = [self._baud, DEFAULT_BAUD, self.config.baud] if self.config.interface == "hsu" else [DEFAULT_BAUD]
        tried: list[int] = []
        for rate in rates:
            if rate in tried:
                continue
            tried.append(rate)
            self._connect(rate)
            try:
                self._init()
                return
            except _Silent:
                self._disconnect()
        raise ReaderError(self._no_answer_hint(tried))

    def _connect(self, baud: int) -> None:
        config = self.config
        try:
            if config.interface == "hsu":
                self._chip, self._interface = open_pn532(config.port, baud)
            else:
                self._interface = bus_interface(config.interface, i2c_bus=config.i2c_bus, spi_cs=config.spi_cs,
                                                spi_speed_hz=config.spi_speed_hz)
                self._chip = Pn532(self._interface)
                self._chip.begin()
        except Pn532Error as error:
            raise ReaderError(f"{error}; check reader.port (a Pi's header UART is /dev/ttyAMA0)") from None
        except (OSError, AssertionError) as error:
            raise ReaderError(f"cannot open the PN532 on {self._where()}: {error}") from None
        self._baud = baud

    def _disconnect(self) -> None:
        interface, self._interface, self._chip = self._interface, None, None
        self._target = None
        if interface is not None:
            closer = getattr(interface, "close", None)
            if closer is not None:
                with contextlib.suppress(OSError):
                    closer()

    def _init(self) -> None:
        """GetFirmwareVersion, SAMConfiguration, parameters, retries, UART speed; _Silent when it stays quiet."""
        assert self._chip is not None
        self._firmware = self._read_firmware()
        if not self._chip.SAMConfig():
            raise _Silent("no answer to SAMConfiguration")
        self._command(bytes([SET_PARAMETERS, PARAMETERS]))
        if not self._chip.setPassiveActivationRetries(PASSIVE_RETRIES):
            raise _Silent("no answer to RFConfiguration (MxRtyPassiveActivation)")
        if self.config.interface == "hsu" and self._baud != self.config.baud:
            self._switch_baud(self.config.baud)

    def _init_or_raise(self) -> None:
        try:
            self._init()
        except _Silent:
            raise ReaderError(self._no_answer_hint([self._baud])) from None

    def _read_firmware(self) -> int:
        assert self._chip is not None
        for _ in range(2):  # cheap clones miss the first GetFirmwareVersion (doc §10)
            version = self._chip.getFirmwareVersion()
            if version:
                return int(version)
        raise _Silent("no answer to GetFirmwareVersion")

    def _switch_baud(self, baud: int) -> None:
        """SetSerialBaudRate, then our ACK; both sides switch after it (doc §1)."""
        self._command(bytes([SET_SERIAL_BAUD_RATE, BAUD_CODES[baud]]))
        self._interface.abort()
        time.sleep(BAUD_SWITCH_SECONDS)
        self._interface.set_baudrate(baud)
        self._baud = baud
        try:
            self._read_firmware()
        except _Silent:
            raise ReaderError(f"{self._where()}: the PN532 did not follow the switch to {baud} baud; "
                              "try a lower reader.baud (long wires and USB adapters limit the rate)") from None

    # -- commands ----------------------------------------------------------------------------------------

    def _command(self, payload: bytes, timeout_ms: int = 1000) -> bytes:
        try:
            return command(self._interface, payload, timeout_ms)
        except Pn532Error as error:
            if error.status is None:
                self._abort()
                raise _Silent(str(error)) from None
            raise ReaderError(f"{self._where()}: {error}", error.status) from None

    def _list_target(self) -> Target | None:
        data = self._command(bytes([IN_LIST_PASSIVE_TARGET, 0x01, 0x00]), LIST_ANSWER_MS)
        if not data or data[0] == 0:
            return None
        if len(data) < 6 or len(data) < 6 + data[5]:
            raise ReaderError(f"{self._where()}: malformed InListPassiveTarget answer {data.hex()}")
        number, sens_res, sel_res, uid = data[1], data[2:4], data[4], data[6 : 6 + data[5]]
        rest = data[6 + data[5] :]
        ats = rest[: rest[0]] if rest else b""
        self._target = number
        assert self._chip is not None
        self._chip.inListedTag = number  # pn532pi's own calls (inDataExchange) then address this target too
        return Target(uid=bytes(uid), sens_res=bytes(sens_res), sel_res=sel_res, ats=bytes(ats))

    def _recovering(self, operation: Callable[[], T]) -> T:
        self._require_open()
        try:
            return operation()
        except _Silent as error:
            log.warning("reader: %s; resetting the PN532", error)
        self.reset()
        try:
            return operation()
        except _Silent as error:
            raise ReaderError(f"{self._where()}: the PN532 stopped answering again ({error})") from None

    def _abort(self) -> None:
        """Host ACK: whatever the chip still works on must never answer later (HSU only)."""
        abort = getattr(self._interface, "abort", None)
        if abort is not None:
            with contextlib.suppress(OSError):
                abort()

    def _pulse_reset(self) -> None:
        assert self._gpio is not None and self.config.reset_pin is not None
        self._gpio.write(self.config.reset_pin, False)
        time.sleep(RESET_LOW_SECONDS)
        self._gpio.write(self.config.reset_pin, True)
        time.sleep(BOOT_SECONDS)

    def _require_open(self) -> None:
        if self._chip is None:
            raise ReaderError("the reader is not open (call open() first)")

    # -- words -------------------------------------------------------------------------------------------

    def _where(self) -> str:
        config = self.config
        if config.interface == "i2c":
            return f"I2C bus {config.i2c_bus}"
        if config.interface == "spi":
            return f"SPI0 CE{config.spi_cs}"
        real = os.path.realpath(config.port)
        return config.port if real == config.port else f"{real} (via {config.port})"

    def _describe(self) -> str:
        ic, version, revision = self._firmware >> 24, self._firmware >> 16 & 0xFF, self._firmware >> 8 & 0xFF
        speed = f" at {self._baud} baud" if self.config.interface == "hsu" else ""
        return f"PN5{ic:02X} v{version}.{revision} on {self._where()}{speed}"

    def _no_answer_hint(self, rates: list[int]) -> str:
        where = self._where()
        if self.config.interface == "hsu":
            tried = " or ".join(str(rate) for rate in rates)
            return (f"no answer from a PN532 on {where} at {tried} baud: check the wiring (PN532 TXD → GPIO15 RXD, "
                    "RXD → GPIO14 TXD, 5 V), the board's interface switches (HSU), the UART (dtparam=uart0=on, "
                    "no serial console; on a Pi 3/4 also dtoverlay=disable-bt) and, on a Pi 5, use /dev/ttyAMA0, "
                    "not /dev/serial0")
        if self.config.interface == "i2c":
            return (f"no answer from a PN532 on {where}: check SDA → GPIO2, SCL → GPIO3, the board's interface "
                    "switches (I2C) and dtparam=i2c_arm=on")
        return (f"no answer from a PN532 on {where}: check MOSI/MISO/SCLK and the chip select, the board's "
                "interface switches (SPI) and dtparam=spi=on")
