"""The PC/SC reader's own LED and buzzer as a face of the feedback ([reader] feedback = "acr122u"): which colour each
state gets, a beep for every tone, and no command when nothing changes. Through a real pcscd and vsmartcard's
reader: tests/terminal/test_pcsc_reader.py."""

from __future__ import annotations

import threading

import pytest
from waits import until

from emvcore.pcsc import LedBuzzer
from terminal.config import FeedbackPins, Tones
from terminal.ui.feedback import Feedback, Shown
from terminal.ui.gpio import SimulatedGpio
from terminal.ui.reader_lights import ReaderLights

GREEN, AMBER, RED, OFF = LedBuzzer(False, True), LedBuzzer(True, True), LedBuzzer(True, False), LedBuzzer(False, False)
SUCCESS_BEEP = LedBuzzer(None, None, 5)  # the default 500 ms success tone
ALERT_BEEP = LedBuzzer(None, None, 2)  # each of the alert's two 200 ms beeps


class ReaderSide:
    """What the reader is sent, read back as the commands they are."""

    def __init__(self) -> None:
        self.sent: list[LedBuzzer] = []
        self._lock = threading.Lock()

    def send(self, command: bytes) -> None:
        with self._lock:
            self.sent.append(LedBuzzer.parse(command))


def _attached(buzzer: int | None = 18, idle_blink: tuple[float, float] | None = None,
              between_taps: bool = True) -> tuple[Feedback, ReaderSide]:
    reader = ReaderSide()
    feedback = Feedback(SimulatedGpio(), FeedbackPins((5, 6, 13, 19), buzzer), Tones(), reading_step=0,
                        idle_blink=idle_blink)
    feedback.attach(ReaderLights(reader.send, between_taps=between_taps))
    return feedback, reader


def test_a_sale_is_green_amber_then_green_with_one_success_beep() -> None:
    feedback, reader = _attached()
    feedback.ready(1234)
    feedback.reading()
    feedback.card_read()
    feedback.approved(1234)  # the success tone was card_read's: no second beep, the LEDs stay green
    assert reader.sent == [OFF, GREEN, AMBER, SUCCESS_BEEP, GREEN]


def test_a_reader_without_escape_keeps_card_read_amber() -> None:
    """It hears nothing once the card is let go (the outcome comes after): a green at card read would stay on over
    a decline."""
    feedback, reader = _attached(between_taps=False)
    feedback.ready(1234)
    feedback.reading()
    feedback.card_read()
    feedback.declined("insufficient funds")
    feedback.settle()
    assert reader.sent == [OFF, GREEN, AMBER, SUCCESS_BEEP,  # what a tap delivers: card read keeps amber …
                           ALERT_BEEP, RED, ALERT_BEEP]  # … the decline, after the card is let go, never arrives


def test_a_decline_is_red_with_the_alerts_two_beeps() -> None:
    feedback, reader = _attached()
    feedback.ready(1234)
    feedback.reading()
    feedback.declined("insufficient funds")
    feedback.settle()
    assert reader.sent == [OFF, GREEN, AMBER, ALERT_BEEP, RED, ALERT_BEEP]


@pytest.mark.parametrize(("state", "after_reading"), [
    ("see_phone", [ALERT_BEEP, ALERT_BEEP]),  # amber already, while the card was read: the waiting phone keeps it
    ("try_again", [ALERT_BEEP, RED, ALERT_BEEP]),
])
def test_a_tap_to_do_again_alerts_and_shows_its_colour(state: str, after_reading: list[LedBuzzer]) -> None:
    feedback, reader = _attached()
    feedback.ready(1234)
    feedback.reading()
    getattr(feedback, state)()
    feedback.settle()
    assert reader.sent == [OFF, GREEN, AMBER, *after_reading]


def test_idle_blinks_green_with_light_1_and_a_notice_changes_no_led() -> None:
    feedback, reader = _attached(idle_blink=(0.02, 0.02))
    feedback.idle()
    feedback.show("Closing at 22:00")  # a notice: the LEDs go on showing idle
    until(lambda: len(reader.sent) >= 7, 10, "three blinks")
    feedback.close()
    blinks = reader.sent[1:7]  # after the first OFF (attached before any state)
    assert blinks == [GREEN, OFF] * 3  # a command only when something changes


def test_without_a_buzzer_pin_the_readers_buzzer_still_sounds_every_tone() -> None:
    feedback, reader = _attached(buzzer=None)
    feedback.ready(1234)
    feedback.declined("card expired")
    feedback.settle()
    assert reader.sent == [OFF, GREEN, ALERT_BEEP, RED, ALERT_BEEP]
    assert [what for _, what, event, _ in feedback.timeline() if event == "tone"] == ["buzzer", "buzzer"]


def test_a_failing_reader_never_stops_the_feedback(caplog: pytest.LogCaptureFixture) -> None:
    def broken(command: bytes) -> None:
        raise OSError("reader unplugged")

    feedback = Feedback(SimulatedGpio(), FeedbackPins((5, 6, 13, 19), 18), Tones(), reading_step=0, idle_blink=None)
    feedback.attach(ReaderLights(broken))
    feedback.ready(1234)
    feedback.card_read()
    assert feedback.shown() == Shown("card_read", "Remove card", (True, True, True, True), 1234)
    assert "ReaderLights failed to sound a tone: OSError" in caplog.text
