"""The USB reader's own bi-colour LED and buzzer (ACS ACR122U and readers that copy its FF 00 40) as a second face
of the terminal's feedback, for a counter with a PC/SC reader and no GPIO lights (`[reader] feedback = "acr122u"`).

Two colours cannot show four lights, so each state gets one: green for a card welcome (ready, card read, approved;
idle blinks it with light 1), both (amber) while the card is read and while the phone waits for its holder, red for
a decline or a tap to do again. The buzzer sounds every tone the feedback plays, for as long (in 100 ms steps; the
reader has one pitch). Commands go to `send` (the reader's `indicate`, which never waits), and only when they
change something, so idle blinking costs one command per blink.

A reader reachable only through a card's connection (no escape: `between_taps` False) hears nothing after the card
is let go, so it never learns the outcome: there "card read" stays amber, never a green a decline could not undo.
"""

from __future__ import annotations

from collections.abc import Callable

from emvcore.pcsc import LedBuzzer
from terminal.ui.feedback import Shown

RED_GREEN = {
    "off": (False, False),
    "ready": (False, True),
    "card_read": (False, True),
    "approved": (False, True),
    "reading": (True, True),
    "see_phone": (True, True),
    "declined": (True, False),
    "try_again": (True, False),
}
"""A state's (red, green); "idle" follows light 1, and a "notice" (a merchant's line) keeps what the state before it
showed (blinking included)."""


class ReaderLights:
    """Watches a `Feedback` (attach it with `Feedback.attach`) and drives the reader's LED and buzzer."""

    def __init__(self, send: Callable[[bytes], None], *, between_taps: bool = True) -> None:
        self._send = send
        self._colours = RED_GREEN if between_taps else {**RED_GREEN, "card_read": (True, True)}
        self._leds: tuple[bool, bool] | None = None
        self._state = "off"  # the last state other than a notice, which the LEDs keep showing

    def show(self, shown: Shown) -> None:
        if shown.state != "notice":
            self._state = shown.state
        leds = (False, shown.lights[0]) if self._state == "idle" else self._colours.get(self._state, self._leds)
        if leds is not None and leds != self._leds:
            self._leds = leds
            self._send(LedBuzzer(*leds).command())

    def tone(self, hz: float, seconds: float) -> None:
        self._send(LedBuzzer(None, None, beep_tenths=min(255, max(1, round(seconds * 10)))).command())
