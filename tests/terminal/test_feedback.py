"""Lights, tones and the message line, asserted as exact timelines on the simulated GPIO."""

from __future__ import annotations

import importlib.abc
import logging
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import pytest

from hostproto.money import format_yuan
from terminal.config import FeedbackPins, GpioConfig, Tones
from terminal.ui.feedback import Feedback
from terminal.ui.gpio import GpioError, RpiGpio, SimulatedGpio, open_gpio

PINS = FeedbackPins(lights=(5, 6, 13, 19), buzzer=18)
SUCCESS = ("buzzer", "tone", (1500.0, 0.5))
BEEP = ("buzzer", "tone", (750.0, 0.2))


def _on(n: int) -> tuple[str, str, bool]:
    return (f"light{n}", "write", True)


def _off(n: int) -> tuple[str, str, bool]:
    return (f"light{n}", "write", False)


def _say(text: str) -> tuple[str, str, str]:
    return ("message", "show", text)


def _feedback(gpio: SimulatedGpio, shown: list[str] | None = None, **options: Any) -> Feedback:
    options.setdefault("reading_step", 0)
    options.setdefault("idle_blink", None)
    display: Callable[[str], None] | None = shown.append if shown is not None else None
    return Feedback(gpio, PINS, Tones(), display=display, **options)


def test_a_successful_tap_lights_up_in_order_with_one_success_tone() -> None:
    gpio, shown = SimulatedGpio(), []
    feedback = _feedback(gpio, shown)
    feedback.ready(1234)
    assert feedback.message == "Present card" and feedback.amount == 1234
    feedback.reading()
    feedback.card_read()
    feedback.approved(1234)
    feedback.settle()
    assert feedback.events() == [
        _on(1), _say("Present card"),
        _on(2), _say("Processing"), _on(3),
        _on(4), SUCCESS, _say("Remove card"),
        _say("Approved ¥12.34"),
    ]
    assert shown == ["Present card", "Processing", "Remove card", "Approved ¥12.34"]
    assert feedback.message == "Approved ¥12.34" and feedback.lights == (True, True, True, True)
    assert gpio.events() == [
        (5, "setup", False), (6, "setup", False), (13, "setup", False), (19, "setup", False), (18, "setup", False),
        (5, "write", True), (6, "write", True), (13, "write", True), (19, "write", True),
        (18, "tone", (1500.0, 0.5)),
    ]


def test_a_decline_switches_the_lights_off_and_beeps_twice_200_ms_apart() -> None:
    gpio, shown = SimulatedGpio(), []
    feedback = _feedback(gpio, shown)
    feedback.ready(1234)
    feedback.reading()
    started = time.monotonic()
    feedback.declined("insufficient funds")
    assert time.monotonic() - started < 0.35  # the second beep (0.4 s later) does not hold up the transaction
    feedback.settle()
    assert feedback.events() == [
        _on(1), _say("Present card"),
        _on(2), _say("Processing"), _on(3),
        _off(1), _off(2), _off(3), BEEP, _say("Declined: insufficient funds"),
        BEEP,
    ]
    beeps = [seconds for seconds, what, event, _ in feedback.timeline() if event == "tone"]
    assert 0.39 <= beeps[1] - beeps[0] < 1.0  # 200 ms beep + 200 ms gap
    assert [e for e in gpio.events(18) if e[1] == "tone"] == [(18, "tone", (750.0, 0.2))] * 2
    assert shown[-1] == "Declined: insufficient funds" and feedback.lights == (False, False, False, False)


def test_approved_without_card_read_still_gives_the_success_tone_and_shows_the_discount() -> None:
    feedback = _feedback(SimulatedGpio())
    feedback.ready(1234)
    feedback.approved(1034, discount=200)
    assert feedback.events() == [_on(1), _say("Present card"), _on(2), _on(3), _on(4), SUCCESS,
                                 _say("Approved ¥10.34 (¥2.00 off)")]


def test_see_phone_and_try_again_alert_and_wait_for_the_card_again() -> None:
    feedback = _feedback(SimulatedGpio())
    feedback.ready(1234)
    feedback.reading()
    feedback.see_phone()
    feedback.settle()
    feedback.try_again()
    feedback.settle()
    assert feedback.events() == [
        _on(1), _say("Present card"), _on(2), _say("Processing"), _on(3),
        _off(2), _off(3), BEEP, _say("See phone"), BEEP,
        BEEP, _say("Present card again"), BEEP,
    ]
    assert feedback.lights == (True, False, False, False)


def test_a_re_tap_read_within_the_alerts_gap_cuts_its_second_beep() -> None:
    """Over SPI a re-tap is read in under the 400 ms between an alert's two beeps: the card-read success tone
    must be the last sound, not the alert's second beep after it."""
    gpio = SimulatedGpio()
    feedback = _feedback(gpio)
    feedback.ready(1234)
    feedback.reading()
    feedback.try_again()
    feedback.reading()
    feedback.card_read()
    feedback.settle()
    time.sleep(0.5)  # past the moment the second beep was due
    tones = [value for _, _, event, value in feedback.timeline() if event == "tone"]
    assert tones == [(750.0, 0.2), (1500.0, 0.5)]
    assert [e[2] for e in gpio.events(18) if e[1] == "tone"] == [(750.0, 0.2), (1500.0, 0.5)]


def test_lights_2_and_3_come_on_in_sequence_and_card_read_cuts_the_sequence_short() -> None:
    stepped = _feedback(SimulatedGpio(), reading_step=0.05)
    stepped.reading()
    stepped.settle()
    times = {what: seconds for seconds, what, _, _ in stepped.timeline() if what.startswith("light")}
    assert times["light3"] - times["light2"] >= 0.05

    quick = _feedback(SimulatedGpio(), reading_step=5.0)
    quick.ready(100)
    quick.reading()
    quick.card_read()
    quick.settle()
    time.sleep(0.05)
    assert quick.events() == [_on(1), _say("Present card"), _on(2), _say("Processing"),
                              _on(3), _on(4), SUCCESS, _say("Remove card")]


def test_idle_blinks_light_1_until_a_sale_makes_it_steady() -> None:
    feedback = _feedback(SimulatedGpio(), idle_blink=(0.02, 0.02))
    feedback.idle()
    assert feedback.message == "Welcome"
    time.sleep(0.15)
    feedback.ready(500)
    after_ready = feedback.events()
    time.sleep(0.08)
    assert feedback.events() == after_ready  # blinking stopped
    light1 = [value for what, _, value in after_ready if what == "light1"]
    assert len(light1) >= 4 and light1 == [i % 2 == 0 for i in range(len(light1))]  # on, off, on, …
    assert after_ready[-1] == _say("Present card") and feedback.lights == (True, False, False, False)
    feedback.close()


def test_no_buzzer_no_tones_and_a_broken_display_does_not_stop_the_payment(caplog: pytest.LogCaptureFixture) -> None:
    def broken(text: str) -> None:
        raise OSError("display unplugged")

    gpio = SimulatedGpio()
    feedback = Feedback(gpio, FeedbackPins(PINS.lights, None), Tones(), display=broken, idle_blink=None)
    with caplog.at_level(logging.INFO, logger="terminal.ui"):
        feedback.ready(1234)
        feedback.declined("do not honour")
    feedback.settle()
    assert feedback.message == "Declined: do not honour"
    assert all(event != "tone" for _, event, _ in gpio.events())
    assert "display failed" in caplog.text and "Present card (¥12.34)" in caplog.text


def test_amounts_read_as_on_a_chinese_receipt() -> None:
    assert [format_yuan(v) for v in (0, 5, 1234, 123456789)] == ["¥0.00", "¥0.05", "¥12.34", "¥1,234,567.89"]


def test_from_config_takes_pins_tones_and_timings() -> None:
    config = GpioConfig(pins=PINS, tones=Tones(success_hz=2000.0), reading_step_seconds=0, idle_blink=None)
    gpio = open_gpio(config)
    assert isinstance(gpio, SimulatedGpio)
    feedback = Feedback.from_config(config, gpio)
    feedback.card_read()
    assert ("buzzer", "tone", (2000.0, 0.5)) in feedback.events()


def test_simulated_gpio_hooks_model_a_wire_and_refuse_unset_pins() -> None:
    gpio, seen = SimulatedGpio(), []
    gpio.setup_output(4, True)
    gpio.on_write(4, seen.append)
    gpio.write(4, False)
    gpio.write(4, True)
    assert seen == [False, True] and gpio.levels[4] is True
    with pytest.raises(GpioError, match="before setup_output"):
        gpio.write(7, True)
    gpio.cleanup()
    assert gpio.events()[-1] == (4, "cleanup", None)


# -- RPi.GPIO, with a stand-in module (no Pi here) ------------------------------------------------------------


class _FakePwm:
    def __init__(self, calls: list[tuple[Any, ...]], pin: int, hz: float) -> None:
        self.calls, self.pin = calls, pin
        calls.append(("PWM", pin, hz))

    def start(self, duty: float) -> None:
        self.calls.append(("start", self.pin, duty))

    def ChangeFrequency(self, hz: float) -> None:  # RPi.GPIO's name
        self.calls.append(("frequency", self.pin, hz))

    def stop(self) -> None:
        self.calls.append(("stop", self.pin))


def _fake_rpi(monkeypatch: pytest.MonkeyPatch, *, setup_error: str | None = None) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    module = types.ModuleType("RPi.GPIO")

    def setup(pin: int, mode: str, initial: int = 0) -> None:
        if setup_error:
            raise RuntimeError(setup_error)
        calls.append(("setup", pin, mode, initial))

    module.__dict__.update(
        BCM="BCM", OUT="OUT", HIGH=1, LOW=0, setup=setup,
        setwarnings=lambda flag: calls.append(("setwarnings", flag)),
        setmode=lambda mode: calls.append(("setmode", mode)),
        output=lambda pin, level: calls.append(("output", pin, level)),
        PWM=lambda pin, hz: _FakePwm(calls, pin, hz),
        cleanup=lambda pins: calls.append(("cleanup", tuple(pins))),
    )
    package = types.ModuleType("RPi")
    package.GPIO = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", module)
    return calls


def test_rpi_gpio_uses_bcm_numbers_a_high_reset_line_and_pwm_that_stops_by_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_rpi(monkeypatch)
    gpio = RpiGpio()
    gpio.setup_output(4, True)
    gpio.setup_output(18)
    gpio.write(4, False)
    gpio.tone(18, 1500, 0.02)
    time.sleep(0.1)
    gpio.tone(18, 750, 5)
    gpio.cleanup()
    assert calls == [
        ("setwarnings", False), ("setmode", "BCM"),
        ("setup", 4, "OUT", 1), ("setup", 18, "OUT", 0), ("output", 4, 0),
        ("PWM", 18, 1500), ("start", 18, 50), ("stop", 18),
        ("frequency", 18, 750), ("start", 18, 50),
        ("stop", 18), ("cleanup", (4, 18)),
    ]


def test_rpi_gpio_missing_or_off_a_pi_explains_rpi_lgpio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)  # not installed
    with pytest.raises(GpioError, match=r"RPi.GPIO is not available .*on a Pi 5 install rpi-lgpio"):
        RpiGpio()

    class OffPi(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            if name.startswith("RPi"):
                raise RuntimeError("This module can only be run on a Raspberry Pi!")

    monkeypatch.delitem(sys.modules, "RPi")
    monkeypatch.setattr(sys, "meta_path", [OffPi(), *sys.meta_path])
    with pytest.raises(GpioError, match=r"only be run on a Raspberry Pi.*backend = \"sim\""):
        RpiGpio()


def test_rpi_gpio_on_a_pi_5_points_at_rpi_lgpio(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_rpi(monkeypatch, setup_error="Cannot determine SOC peripheral base address")
    gpio = RpiGpio()
    with pytest.raises(GpioError, match=r"GPIO 5: Cannot determine SOC .*rpi-lgpio"):
        gpio.setup_output(5)
