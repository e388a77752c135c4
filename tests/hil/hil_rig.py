"""The rig a scenario runs on: the terminal's PN532, a second PN532 that emulates the card, and the wires.

Two kinds, one interface:

* `SimRig` (``--rig=sim``): two software PN532s sharing one virtual field, link model on (UART bytes paced at
  the chip's baud rate or bus transfers at the bus clock, ISO 14443 air time, card processing time). The card
  emulator is on a pseudo-terminal; the reader on one too (HSU) or on a simulated I2C or SPI device node that
  pn532pi's own classes open (firmware/simulator/devices.py). The reader chip's RSTPDN is wired to the simulated
  GPIO pin the terminal pulses.
* `HwRig` (``--rig=hw``): real ports. The terminal's PN532 on the Pi's UART, its RSTPDN on a GPIO, and a
  second PN532 (USB–serial) that emulates the card, antennas facing each other.

On both, the card side is `firmware.simulator.emulate.emulate` (pos-card emulate) driving the card PN532 through
pn532pi in a thread of this process, so presenting, pulling away and the phone's fingerprint work the
same way. What only the software rig can do is a named capability; a scenario that needs one the
hardware lacks is skipped on `hw` with the reason, and never on `sim`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hil_trace import Trace, describe_command
from pcscd import Pcscd

from firmware.simulator import devices
from firmware.simulator.bus import I2C_DEFAULT_HZ
from firmware.simulator.emulate import emulate
from firmware.simulator.framelog import describe_frame
from firmware.simulator.rig import SoftwareRig
from firmware.simulator.vpcd import Endpoint, VirtualSlot
from terminal.ui.gpio import Gpio, GpioError, RpiGpio, SimulatedGpio

RESET_PIN = 24  # BCM GPIO24 (header pin 18) → the reader PN532's RSTPDN (wiring guide in README.md)

UART_FAULTS = "uart-faults"
"""Corrupt a byte between the Pi and its PN532: a software chip can; a real UART needs extra hardware."""
MODELLED_TIME = "modelled-time"
"""The link model's account of UART, air and card time: only a software chip keeps one."""
RESET_LINE = "reset-line"
"""The reader PN532's RSTPDN on a GPIO the rig drives: the software rig, or a Pi (RPi.GPIO / rpi-lgpio)."""
CAPABILITIES = {
    UART_FAULTS: "corrupt a byte between the terminal and its PN532 (a software PN532 can, a real link needs extra "
                 "hardware)",
    MODELLED_TIME: "account link, air and card time (only the link model keeps one)",
    RESET_LINE: "pulse the reader PN532's RSTPDN (a PN532 with its reset pin on a Pi's GPIO)",
}

Exchange = Callable[[bytes, bytes | None], None]



def _traced_pull(trace: Trace, presented: str, remove_after: int | None, tear: bool,
                 on_exchange: Exchange | None) -> Exchange:
    """Trace a card put to the reader (and where it will be pulled away); the observer that traces the pull."""
    trace.add("rig", presented + (f", pulled away at APDU {remove_after}{' after it ran (tear)' if tear else ''}"
                                  if remove_after else ""))

    def observe(command: bytes, answer: bytes | None) -> None:
        if answer is None:
            trace.add("rig", f"card pulled away at {describe_command(command)}"
                      + (" (the card ran it)" if tear else ""))
        if on_exchange is not None:
            on_exchange(command, answer)

    return observe

class CardSide:
    """The card PN532 in target mode through `emulate()`: one card or phone at a time, in a thread."""

    def __init__(self, port: str, trace: Trace, *, poll_ms: int) -> None:
        self.port = port
        self.trace = trace
        self._poll_ms = poll_ms
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.lines: list[str] = []

    def present(self, card_file: Path, *, remove_after: int | None = None, tear: bool = False,
                on_exchange: Exchange | None = None) -> None:
        """Hold the card (or phone) to the reader; it stays until `remove()` or the next `present()`."""
        self.remove()
        observe = _traced_pull(self.trace, f"card {card_file.stem} presented", remove_after, tear, on_exchange)
        stop = threading.Event()

        def run() -> None:
            try:
                emulate(self.port, card_file, stop=stop, report=self.lines.append, observe=observe,
                        remove_after=remove_after, tear=tear, poll_ms=self._poll_ms)
            except Exception as error:  # the scenario checks `errors`; a thread must not die silently
                if not stop.is_set():
                    self.errors.append(f"{type(error).__name__}: {error}")

        self._stop, self._thread = stop, threading.Thread(target=run, name="hil-card", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        if self._thread is None or self._stop is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the card emulator did not stop"
        self._thread = self._stop = None
        self.trace.add("rig", "card taken away")


INTERFACES = ("hsu", "i2c", "spi")
BUS_NODES = {"i2c": devices.i2c_node(1), "spi": devices.spi_node(0, 0)}  # the reader config's defaults


def interfaces(config: Any) -> list[str]:
    """--interface as a list (a pytest Config): every interface on the software rig unless narrowed, HSU on
    hardware unless told."""
    given = config.getoption("--interface")
    if config.getoption("--rig") == "pcsc":
        return ["pcsc"]
    if given is None:
        return list(INTERFACES) if config.getoption("--rig") == "sim" else ["hsu"]
    return [name.strip() for name in given.split(",") if name.strip()]


class Rig(Protocol):
    kind: str
    gpio_epoch: float  # time.monotonic() when the GPIO's timeline started
    interface: str  # the reader PN532's host interface: hsu, i2c or spi
    reader_port: str | None  # its serial port (hsu)
    gpio_backend: str  # the terminal config's [gpio] backend: "sim" or "rpi"
    capabilities: frozenset[str]
    card: CardSide

    def gpio(self) -> Gpio:
        """The GPIO the terminal drives (lights, buzzer, RSTPDN)."""
        ...

    def hang_reader(self) -> None:
        """The terminal's PN532 stops answering until its RSTPDN is pulsed."""
        ...

    def corrupt_reader_frame(self, index: int) -> None:
        """Flip one byte of the reader PN532's next response frame (UART_FAULTS)."""
        ...

    def modelled(self) -> dict[str, float]:
        """Seconds the link model accounted since the last call, by hop; empty without MODELLED_TIME."""
        ...

    def close(self) -> None: ...


class SimRig:
    """Two software PN532s, reader and card emulator, in one virtual field with the link model on."""

    kind = "sim"
    capabilities = frozenset({UART_FAULTS, MODELLED_TIME, RESET_LINE})
    gpio_backend = "sim"

    def __init__(self, folder: Path, trace: Trace, interface: str = "hsu", i2c_hz: int = I2C_DEFAULT_HZ) -> None:
        self.interface = interface
        if interface == "hsu":
            self.software = SoftwareRig([folder / "pos", folder / "card"], link_model=True)
            self.reader_port: str | None = str(folder / "pos")
        else:  # the reader's frames are seen on the chip: no serial port to watch
            self.software = SoftwareRig([folder / "card"], link_model=True, buses={"pos": BUS_NODES[interface]},
                                        i2c_hz=i2c_hz)
            self.reader_port = None
            self.reader_chip.frame_observers.append(
                lambda direction, event, _baud: trace.add(
                    "uart", f"reader {'→ chip' if direction == 'in' else '← chip'} {describe_frame(event)} "
                            f"({interface.upper()})"))
        self.card = CardSide(str(folder / "card"), trace, poll_ms=50)
        self._trace = trace
        self._gpio: SimulatedGpio | None = None
        self.gpio_epoch = time.monotonic()

    @property
    def reader_chip(self):
        return self.software.chips["pos"]

    def gpio(self) -> Gpio:
        """Simulated GPIO with the reader's RSTPDN wired: low holds the chip silent, the rising edge boots it."""
        if self._gpio is None:
            self.gpio_epoch = time.monotonic()
            gpio = SimulatedGpio()
            chip = self.reader_chip

            def rstpdn(high: bool) -> None:
                if high:
                    chip.reset()
                else:
                    chip.faults.arm("silent")

            gpio.on_write(RESET_PIN, rstpdn)
            self._gpio = gpio
        return self._gpio

    def hang_reader(self) -> None:
        self._trace.add("rig", "reader PN532 firmware hangs (silent until RSTPDN)")
        self.reader_chip.faults.arm("silent")

    def corrupt_reader_frame(self, index: int) -> None:
        self._trace.add("rig", f"next reader response frame: byte {index} flipped on the UART")
        self.reader_chip.faults.arm("corrupt_byte", index)

    def modelled(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, chip in self.software.chips.items():
            for hop, seconds in chip.link.hops.items():
                totals[f"{name} {hop}"] = seconds
            chip.link.reset_account()
        return totals

    def close(self) -> None:
        self.card.remove()
        self.software.close()


class SlotCardSide:
    """The card side of the PC/SC rig: vpcd's slot (`firmware.simulator.vpcd.VirtualSlot`) behind CardSide's
    interface, so the scenarios present, pull away and watch exchanges the same way."""

    port = None  # no serial line to watch

    def __init__(self, slot: VirtualSlot, trace: Trace) -> None:
        self.slot = slot
        self.trace = trace
        self.errors: list[str] = []
        self.lines: list[str] = []
        self._present = False

    def present(self, card_file: Path, *, remove_after: int | None = None, tear: bool = False,
                on_exchange: Exchange | None = None) -> None:
        observe = _traced_pull(self.trace, f"card {card_file.stem} put in the reader", remove_after, tear,
                               on_exchange)
        self.slot.present(card_file, remove_after=remove_after, tear=tear, observe=observe)
        self._present = True

    def remove(self) -> None:
        if self._present:
            self.slot.remove()
            self._present = False
            self.trace.add("rig", "card taken away")


class _NoSoftwareReader:
    """What a rig whose reader is not a software PN532 cannot do: corrupt its link on demand, or model its time."""

    def corrupt_reader_frame(self, index: int) -> None:
        raise NotImplementedError("only a software PN532 corrupts a frame on demand (uart-faults)")

    def modelled(self) -> dict[str, float]:
        return {}


class PcscRig(_NoSoftwareReader):
    """The terminal's PC/SC backend through a real pcscd (the session's, tests/pcscd.py) and vsmartcard's virtual
    reader, the cards in its slot. No PN532: neither its reset line nor its UART, no link model."""

    kind = "pcsc"
    interface = "pcsc"
    reader_port = None
    gpio_backend = "sim"
    capabilities = frozenset()

    def __init__(self, pcscd: Pcscd, trace: Trace) -> None:
        self.slot = VirtualSlot(Endpoint("127.0.0.1", pcscd.port))
        self.card = SlotCardSide(self.slot, trace)
        self._gpio = SimulatedGpio()
        self.gpio_epoch = time.monotonic()

    def gpio(self) -> Gpio:
        return self._gpio

    def hang_reader(self) -> None:
        raise NotImplementedError("a PC/SC reader has no reset line the rig drives")

    def close(self) -> None:
        self.card.remove()
        self.slot.close()


class HwRig(_NoSoftwareReader):
    """PN532s on real ports: the reader on the Pi's UART (or I2C, SPI) with RSTPDN on RESET_PIN, the card
    emulator on `card_port`. Off a Pi (two USB–serial adapters on a laptop, or two software PN532s given as
    serial paths) there is no GPIO: the lights and tones go to a simulated one and RESET_LINE is missing."""

    kind = "hw"

    def __init__(self, reader_port: str | None, card_port: str, trace: Trace, interface: str = "hsu") -> None:
        self.interface = interface
        self.reader_port = reader_port
        self.card = CardSide(card_port, trace, poll_ms=100)
        self._trace = trace
        self._gpio: Gpio
        try:
            self._gpio, self.gpio_backend, self.capabilities = RpiGpio(), "rpi", frozenset({RESET_LINE})
        except GpioError:
            self._gpio, self.gpio_backend, self.capabilities = SimulatedGpio(), "sim", frozenset()
        self.gpio_epoch = time.monotonic()

    def gpio(self) -> Gpio:
        return self._gpio

    def hang_reader(self) -> None:
        """A real chip cannot be made to hang on demand; held in reset it is just as silent."""
        self._trace.add("rig", f"reader PN532 held in reset (GPIO{RESET_PIN} low): silent until pulsed")
        self.gpio().write(RESET_PIN, False)

    def close(self) -> None:
        self.card.remove()
        self._gpio.cleanup()

