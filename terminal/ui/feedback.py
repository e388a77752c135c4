"""What the shopper and the merchant see and hear: four status lights, two tones and one message line.

The lights follow the EMV contactless convention (doc pn532.md §9): light 1 blinking = idle, light 1
steady = ready for a card, lights 2 and 3 come on while the card is read, all four plus the success tone
= card read, remove it. Failures get the alert tone (two short low beeps). Tones never hold up the
transaction: the GPIO backend stops a tone by itself and the second beep runs on a timer thread.

The message line ("Present card", "See phone", "Remove card", "Approved ¥12.34", "Declined: …") goes to
the log, to `message` (for the status API) and to an optional display callback; a failing display is
logged and ignored, because a payment must not fail for a broken screen.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from hostproto.money import format_yuan
from terminal import events
from terminal.config import FeedbackPins, GpioConfig, Tones
from terminal.ui.gpio import Gpio

LIGHTS = (1, 2, 3, 4)
_Action = Callable[[], None]
_Steps = Callable[[], Iterator[tuple[float, _Action]]]
Event = tuple[float, str, str, object]
"""(seconds since the Feedback was made, "light1".."light4" | "buzzer" | "message", event, value)."""

WELCOME = "Welcome"
PRESENT_CARD = "Present card"
PROCESSING = "Processing"
REMOVE_CARD = "Remove card"
SEE_PHONE = "See phone"
PRESENT_AGAIN = "Present card again"


@dataclass(frozen=True)
class Shown:
    """What the shopper sees at one moment: the state that produced it (a `Feedback` method: "idle", "ready",
    "reading", "card_read", "approved", "declined", "see_phone", "try_again", "notice"), the message line, the
    four lights and the amount of the sale waiting for a card (None when idle)."""

    state: str
    message: str
    lights: tuple[bool, bool, bool, bool]
    amount: int | None
    detail: str = ""  # what the state adds: the amount charged and the discount, a decline's reason




class Face(Protocol):
    """Another output that follows the feedback (the reader's own LED and buzzer): every state shown and every tone."""

    def show(self, shown: Shown) -> None: ...

    def tone(self, hz: float, seconds: float) -> None: ...


class Feedback:
    """The terminal's lights, buzzer and message line; every public method is one user-visible state."""

    def __init__(
        self,
        gpio: Gpio,
        pins: FeedbackPins,
        tones: Tones,
        *,
        display: Callable[[str], None] | None = None,
        log: logging.Logger | None = None,
        reading_step: float = 0.15,
        idle_blink: tuple[float, float] | None = (0.25, 1.75),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gpio = gpio
        self._pins = pins
        self._tones = tones
        self._display = display
        self._log = log or logging.getLogger("terminal.ui")
        self._reading_step = reading_step
        self._idle_blink = idle_blink
        self._clock = clock
        self._start = clock()
        self._lock = threading.RLock()
        self._events: list[Event] = []
        self._lit: set[int] = set()
        self._message = ""
        self._amount: int | None = None
        self._success_played = False
        self._sequence: _Sequence | None = None
        self._timers: list[threading.Timer] = []
        self._state = "off"
        self._detail = ""
        self._watchers: list[Callable[[Shown], None]] = []
        self._faces: list[Face] = []
        self._changing = 0  # inside a state change: watchers are told once, at its end
        self._dirty = False
        for pin in pins.lights:
            gpio.setup_output(pin, False)
        if pins.buzzer is not None:
            gpio.setup_output(pins.buzzer, False)

    @classmethod
    def from_config(cls, config: GpioConfig, gpio: Gpio, *, display: Callable[[str], None] | None = None,
                    log: logging.Logger | None = None) -> Feedback:
        """The [gpio] section's pins, tones and timings."""
        return cls(gpio, config.pins, config.tones, display=display, log=log,
                   reading_step=config.reading_step_seconds, idle_blink=config.idle_blink)

    # -- what the status API and a display read ---------------------------------------------------------

    def watch(self, watcher: Callable[[Shown], None]) -> None:
        """Call `watcher` with what is shown after every change (a state, or a light of a sequence changing on
        its own); on the changing thread, under this object's lock: it must be quick. One that fails is logged."""
        with self._lock:
            self._watchers.append(watcher)
            self._tell(watcher, self.shown())

    def attach(self, face: Face) -> None:
        """Another output for every state and tone, called like a watcher: quickly, under this object's lock."""
        with self._lock:
            self._faces.append(face)
            self.watch(face.show)

    def shown(self) -> Shown:
        with self._lock:
            return Shown(self._state, self._message, self.lights, self._amount, self._detail)

    @property
    def message(self) -> str:
        return self._message

    @property
    def amount(self) -> int | None:
        """The amount asked for by the last ready(), in fen (the display may show it beside the message)."""
        return self._amount

    @property
    def lights(self) -> tuple[bool, bool, bool, bool]:
        with self._lock:
            return (1 in self._lit, 2 in self._lit, 3 in self._lit, 4 in self._lit)

    def timeline(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def events(self) -> list[tuple[str, str, object]]:
        """The timeline without times: what a test compares exactly."""
        return [(what, event, value) for _, what, event, value in self.timeline()]

    # -- as an observer of the pipeline (terminal.events) ---------------------------------------------

    def observe(self, event: events.Event) -> None:
        """One step of a sale or fare, shown (ONLINE and DONE change nothing here)."""
        match event.step:
            case events.Step.READY:
                self.ready(event.amount or 0)
            case events.Step.READING:
                self.reading()
            case events.Step.CARD_READ:
                self.card_read()
            case events.Step.SEE_PHONE:
                self.see_phone(again=event.again)
            case events.Step.TRY_AGAIN:
                self.try_again(again=event.again)
            case events.Step.APPROVED:
                self.approved(event.amount or 0, event.discount)
            case events.Step.DECLINED:
                self.declined(event.message)
            case events.Step.IDLE:
                self.idle()

    # -- states ----------------------------------------------------------------------------------------

    def idle(self) -> None:
        """Nothing to pay: light 1 blinks (steady when blinking is configured off)."""
        with self._change("idle"):
            self._cancel_sequence()
            self._amount = None
            self._set_lights({1})
            self._show(WELCOME)
            if self._idle_blink is not None:
                on, off = self._idle_blink
                self._sequence = _Sequence(self._lock, self._blink_steps(on, off), name="idle-blink")

    def ready(self, amount: int) -> None:
        """A sale of `amount` fen is waiting for a card: light 1 steady."""
        with self._change("ready"):
            self._cancel_sequence()
            self._amount = amount
            self._success_played = False
            self._set_lights({1})
            self._show(PRESENT_CARD, f"{PRESENT_CARD} ({format_yuan(amount)})")

    def reading(self) -> None:
        """A card answered: light 2 now, light 3 one step later; light 4 waits for card_read()."""
        with self._change("reading"):
            self._cancel_sequence()
            self._set_lights({1, 2})
            self._show(PROCESSING)
            if self._reading_step <= 0:
                self._set_lights({1, 2, 3})
            else:
                self._sequence = _Sequence(self._lock, [(self._reading_step, lambda: self._set_lights({1, 2, 3}))],
                                           name="reading")

    def card_read(self) -> None:
        """Everything needed is read: all four lights and the success tone; the card may go."""
        with self._change("card_read"):
            self._cancel_sequence()
            self._set_lights(set(LIGHTS))
            self._success_tone()
            self._show(REMOVE_CARD)

    def approved(self, amount: int, discount: int = 0) -> None:
        """`amount` fen paid (after a `discount` in fen, 0 = none); the success tone if card_read() gave none."""
        with self._change("approved"):
            self._cancel_sequence()
            self._set_lights(set(LIGHTS))
            if not self._success_played:
                self._success_tone()
            self._detail = format_yuan(amount) + (f" ({format_yuan(discount)} off)" if discount else "")
            self._show(f"Approved {self._detail}")

    def declined(self, reason: str = "") -> None:
        """The payment failed: lights off, the alert tone, and the reason in plain words."""
        with self._change("declined"):
            self._cancel_sequence()
            self._set_lights(set())
            self._alert_tone()
            self._detail = reason
            self._show(f"Declined: {reason}" if reason else "Declined")

    def see_phone(self, *, again: bool = False) -> None:
        """The phone wants its holder (fingerprint): alert (not `again`, for a phone read again while it waits),
        and ready for the same phone again."""
        with self._change("see_phone"):
            self._cancel_sequence()
            self._set_lights({1})
            if not again:
                self._alert_tone()
            self._show(SEE_PHONE)

    def try_again(self, *, again: bool = False) -> None:
        """The tap failed (card taken away too early, read error): alert (not `again`), ready for the card again."""
        with self._change("try_again"):
            self._cancel_sequence()
            self._set_lights({1})
            if not again:
                self._alert_tone()
            self._show(PRESENT_AGAIN)

    def show(self, text: str) -> None:
        """Any other line (a merchant notice); lights and tones stay as they are."""
        with self._change("notice"):
            self._show(text)

    def settle(self, timeout: float = 5.0) -> None:
        """Wait for the finite background work (reading sequence, second beep); idle blinking goes on."""
        deadline = time.monotonic() + timeout
        with self._lock:
            sequence = self._sequence if self._sequence is not None and self._sequence.finite else None
            timers = list(self._timers)
        if sequence is not None:
            sequence.join(max(0.0, deadline - time.monotonic()))
        for timer in timers:
            timer.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stop blinking and pending beeps and switch the lights off (the GPIO's owner cleans it up)."""
        with self._lock:
            self._cancel_sequence()
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._set_lights(set())

    # -- internals -------------------------------------------------------------------------------------

    def _blink_steps(self, on: float, off: float) -> _Steps:
        def steps() -> Iterator[tuple[float, _Action]]:
            while True:
                yield off if 1 in self._lit else on, lambda: self._set_lights(set() if 1 in self._lit else {1})

        return steps

    def _cancel_sequence(self) -> None:
        if self._sequence is not None:
            self._sequence.cancel()
            self._sequence = None

    @contextlib.contextmanager
    def _change(self, state: str) -> Iterator[None]:
        with self._lock:
            self._changing += 1
            self._state = state
            self._detail = ""
            self._dirty = True
            try:
                yield
            finally:
                self._changing -= 1
                self._changed()

    def _changed(self) -> None:
        """Tell the watchers, unless a state change is under way (it tells them once, at its end)."""
        if self._changing or not self._dirty:
            return
        self._dirty = False
        shown = self.shown()
        for watcher in self._watchers:
            self._tell(watcher, shown)

    def _tell(self, watcher: Callable[[Shown], None], shown: Shown) -> None:
        try:
            watcher(shown)
        except Exception as error:
            self._log.warning("display watcher failed: %s", type(error).__name__)

    def _set_lights(self, wanted: set[int]) -> None:
        changed = False
        for number, pin in zip(LIGHTS, self._pins.lights, strict=True):
            if (number in wanted) != (number in self._lit):
                self._gpio.write(pin, number in wanted)
                self._record(f"light{number}", "write", number in wanted)
                changed = True
        self._lit = set(wanted)
        if changed:
            self._dirty = True
            self._changed()

    def _success_tone(self) -> None:
        self._success_played = True
        for timer in self._timers:  # an earlier alert's second beep must not sound after the success tone (a
            timer.cancel()  # re-tap read faster than the alert's gap, as over SPI)
        self._timers.clear()
        self._tone(self._tones.success_hz, self._tones.success_seconds)

    def _alert_tone(self) -> None:
        tones = self._tones
        if self._pins.buzzer is None and not self._faces:
            return
        self._tone(tones.alert_hz, tones.alert_seconds)
        timer = threading.Timer(tones.alert_seconds + tones.alert_gap_seconds, self._second_beep)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _second_beep(self) -> None:
        with self._lock:
            if threading.current_thread() in self._timers:  # not cancelled meanwhile (a success, close())
                self._tone(self._tones.alert_hz, self._tones.alert_seconds)

    def _tone(self, hz: float, seconds: float) -> None:
        if self._pins.buzzer is None and not self._faces:
            return
        if self._pins.buzzer is not None:
            self._gpio.tone(self._pins.buzzer, hz, seconds)
        self._record("buzzer", "tone", (hz, seconds))
        for face in self._faces:
            try:
                face.tone(hz, seconds)
            except Exception as error:
                self._log.warning("%s failed to sound a tone: %s", type(face).__name__, type(error).__name__)

    def _show(self, text: str, log_text: str | None = None) -> None:
        self._message = text
        self._record("message", "show", text)
        self._log.info("message: %s", log_text or text)
        if self._display is not None:
            try:
                self._display(text)
            except Exception:
                self._log.warning("display failed to show %r", text, exc_info=True)

    def _record(self, what: str, event: str, value: object) -> None:
        self._events.append((self._clock() - self._start, what, event, value))


class _Sequence:
    """Timed light changes on a daemon thread; cancel() under the owner's lock stops them atomically."""

    def __init__(self, lock: threading.RLock, steps: list[tuple[float, _Action]] | _Steps, *, name: str) -> None:
        self._lock = lock
        self._stop = threading.Event()
        self.finite = isinstance(steps, list)
        self._steps = steps
        self._thread = threading.Thread(target=self._run, name=f"feedback-{name}", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        steps = iter(self._steps) if isinstance(self._steps, list) else self._steps()
        for delay, action in steps:
            if self._stop.wait(delay):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                action()
