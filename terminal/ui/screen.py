"""The customer display's model: what the shopper's screen shows, kept in step with the lights and the message
line (`Feedback.watch`), and a way for each open display page to wait for the next change.

The headlines are the EMV contactless user-interface messages (Book A; docs/emv-qpboc.md §19), longer than the
terminal's one-line message: "See phone for instructions" where the line says "See phone".
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from hostproto.money import format_yuan
from terminal.ui.feedback import Shown

HEADLINES = {
    "off": ("", ""),
    "idle": ("Welcome", "Present a card or phone when asked"),
    "ready": ("Present card", ""),
    "reading": ("Processing", "Hold the card or phone still"),
    "card_read": ("Card read OK", "Remove card"),
    "approved": ("Approved", ""),
    "declined": ("Declined", ""),
    "see_phone": ("See phone for instructions", "Then present the phone again"),
    "try_again": ("Try again", "Present the card again"),
}
HISTORY = 64  # views kept for a stream that is a little behind
MOODS = {"approved": "ok", "declined": "error", "see_phone": "attention", "try_again": "attention"}


def view(shown: Shown) -> dict[str, Any]:
    """What a display page draws: headline, detail, amount, the four lights and a mood for the colours."""
    headline, detail = HEADLINES.get(shown.state, (shown.message, ""))
    if shown.detail:
        detail = f"Charged {shown.detail}" if shown.state == "approved" else shown.detail
    return {
        "state": shown.state,
        "headline": headline,
        "detail": detail,
        "amount": format_yuan(shown.amount) if shown.amount is not None else "",
        "lights": list(shown.lights),
        "mood": MOODS.get(shown.state, "neutral"),
        "message": shown.message,
    }


class Screen:
    """The latest views, numbered; `Feedback.watch(screen.show)` keeps it current. A stream asks for every view
    after the last one it sent, so a message shown for a few milliseconds ("Processing") still reaches the
    display, as it reached the lights."""

    def __init__(self, history: int = HISTORY) -> None:
        self._changed = threading.Condition()
        self._version = 0
        self._views: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(maxlen=history)
        self._views.append((0, view(Shown("off", "", (False, False, False, False), None))))

    def show(self, shown: Shown) -> None:
        with self._changed:
            self._version += 1
            self._views.append((self._version, view(shown)))
            self._changed.notify_all()

    def current(self) -> tuple[int, dict[str, Any]]:
        with self._changed:
            return self._views[-1]

    def after(self, version: int, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        """The views newer than `version`, oldest first (only the latest when the stream fell too far behind),
        waiting up to `timeout` seconds for one; [] if none came."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != version, timeout)
            newer = [(number, shown) for number, shown in self._views if number > version]
            if newer and newer[0][0] != version + 1:
                return newer[-1:]
            return newer
