"""GPIO output for the terminal: status lights, the buzzer and the PN532's RSTPDN line.

On a Raspberry Pi this is RPi.GPIO. On a Pi 5, RPi.GPIO 0.7.1 cannot find the SoC (`setup()` raises
"Cannot determine SOC peripheral base address"): install the drop-in rpi-lgpio instead, which provides
the same `RPi.GPIO` module on top of lgpio. The two share the module name, so remove RPi.GPIO first:

    sudo apt remove python3-rpi.gpio && sudo apt install python3-rpi-lgpio      # Raspberry Pi OS
    pip uninstall RPi.GPIO && pip install rpi-lgpio                             # in a virtualenv

Everywhere else (and in tests) `SimulatedGpio` stands behind the same interface and records a
timeline, so a test can assert the exact sequence of lights, tones and reset pulses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from terminal.config import GpioConfig

PI5_HINT = (
    "on a Pi 5 install rpi-lgpio, the RPi.GPIO drop-in (remove RPi.GPIO first: apt remove python3-rpi.gpio; "
    "apt install python3-rpi-lgpio, or pip install rpi-lgpio); off a Pi use [gpio] backend = \"sim\""
)

TimelineEvent = tuple[float, int, str, object]
"""(seconds since the backend was made, BCM pin, "setup" | "write" | "tone" | "cleanup", value)."""


class GpioError(Exception):
    """The GPIO backend cannot be used (wrong machine, missing driver, pin busy)."""


class Gpio(Protocol):
    """What the terminal needs from GPIO: outputs and a tone; nothing reads a pin."""

    def setup_output(self, pin: int, initial: bool = False) -> None:
        """Make `pin` an output at level `initial` (the RSTPDN line must start high, or the PN532 stays reset)."""
        ...

    def write(self, pin: int, high: bool) -> None: ...

    def tone(self, pin: int, hz: float, seconds: float) -> None:
        """Start a square wave that stops by itself after `seconds`; returns at once, so no beep delays a tap."""
        ...

    def cleanup(self) -> None: ...


class SimulatedGpio:
    """GPIO without hardware: every call lands in `timeline`; `on_write` hooks model what a pin is wired to."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self.timeline: list[TimelineEvent] = []
        self.levels: dict[int, bool] = {}
        self._hooks: dict[int, list[Callable[[bool], None]]] = {}

    def on_write(self, pin: int, callback: Callable[[bool], None]) -> None:
        """Call `callback(high)` after every write to `pin` (a test's wire, e.g. RSTPDN to a software chip)."""
        self._hooks.setdefault(pin, []).append(callback)

    def setup_output(self, pin: int, initial: bool = False) -> None:
        self._record(pin, "setup", initial)
        self.levels[pin] = initial

    def write(self, pin: int, high: bool) -> None:
        if pin not in self.levels:
            raise GpioError(f"GPIO {pin} written before setup_output")
        self.levels[pin] = high
        self._record(pin, "write", high)
        for callback in self._hooks.get(pin, []):
            callback(high)

    def tone(self, pin: int, hz: float, seconds: float) -> None:
        if pin not in self.levels:
            raise GpioError(f"GPIO {pin} used for a tone before setup_output")
        self._record(pin, "tone", (float(hz), float(seconds)))

    def cleanup(self) -> None:
        for pin in sorted(self.levels):
            self._record(pin, "cleanup", None)
        self.levels.clear()

    def events(self, pin: int | None = None) -> list[tuple[int, str, object]]:
        """The timeline without times (optionally for one pin): what tests compare exactly."""
        with self._lock:
            return [(p, event, value) for _, p, event, value in self.timeline if pin is None or p == pin]

    def _record(self, pin: int, event: str, value: object) -> None:
        with self._lock:
            self.timeline.append((self._clock() - self._start, pin, event, value))


class RpiGpio:
    """RPi.GPIO (or rpi-lgpio on a Pi 5) in BCM numbering; the buzzer is driven by software PWM."""

    def __init__(self) -> None:
        try:
            import RPi.GPIO as driver  # imported late: it raises RuntimeError off a Pi
        except (ImportError, RuntimeError) as error:
            raise GpioError(f"RPi.GPIO is not available ({error}): {PI5_HINT}") from None
        self._gpio: Any = driver
        self._gpio.setwarnings(False)
        self._gpio.setmode(self._gpio.BCM)
        self._pins: set[int] = set()
        self._pwm: dict[int, Any] = {}
        self._timers: dict[int, threading.Timer] = {}
        self._generation: dict[int, int] = {}  # a late timer must not stop the tone that replaced its own
        self._lock = threading.Lock()

    def setup_output(self, pin: int, initial: bool = False) -> None:
        try:
            self._gpio.setup(pin, self._gpio.OUT, initial=self._gpio.HIGH if initial else self._gpio.LOW)
        except RuntimeError as error:  # a Pi 5 with RPi.GPIO, or a pin another process holds (rpi-lgpio)
            raise GpioError(f"GPIO {pin}: {error}; {PI5_HINT}") from None
        self._pins.add(pin)

    def write(self, pin: int, high: bool) -> None:
        self._gpio.output(pin, self._gpio.HIGH if high else self._gpio.LOW)

    def tone(self, pin: int, hz: float, seconds: float) -> None:
        with self._lock:
            timer = self._timers.pop(pin, None)
            if timer is not None:
                timer.cancel()
            pwm = self._pwm.get(pin)
            if pwm is None:
                pwm = self._pwm[pin] = self._gpio.PWM(pin, hz)  # one PWM object per pin, or RPi.GPIO refuses
            else:
                pwm.ChangeFrequency(hz)
            pwm.start(50)
            generation = self._generation[pin] = self._generation.get(pin, 0) + 1
            timer = threading.Timer(seconds, self._stop_tone, args=(pin, generation))
            timer.daemon = True
            self._timers[pin] = timer
            timer.start()

    def cleanup(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            for pwm in self._pwm.values():
                pwm.stop()
            self._pwm.clear()
        if self._pins:
            self._gpio.cleanup(sorted(self._pins))
        self._pins.clear()

    def _stop_tone(self, pin: int, generation: int) -> None:
        with self._lock:
            if self._generation.get(pin) != generation:
                return
            pwm = self._pwm.get(pin)
            if pwm is not None:
                pwm.stop()
            self._timers.pop(pin, None)


def open_gpio(config: GpioConfig) -> Gpio:
    """The backend the configuration names ([gpio] backend)."""
    return RpiGpio() if config.backend == "rpi" else SimulatedGpio()
