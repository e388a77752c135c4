"""The one pipeline (`terminal.sale.Counter`), built once by `terminal.assemble`: what its observers see, its
cancel hook, and that the service runs the same pipeline as `pay` (issue #12 §1: the service printed no
receipt, because it built a second counter without the printer)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
from waits import until

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal import cli
from terminal.assemble import terminal
from terminal.config import ConfigError, load_config
from terminal.events import Event, Step
from terminal.service import TerminalService

ISSUER = "icbc-debit"


@contextlib.contextmanager
def _printer(config: Path) -> Iterator[list[bytes]]:
    """A thermal printer on a pseudo-terminal, added to the config; yields the receipts it got so far (each
    ESC @ … cut), read when the block ends."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    receipts: list[bytes] = []
    try:
        with config.open("a") as stream:
            stream.write(f'\n[receipt]\nprinter = "{os.ttyname(slave)}"\nbaud = 9600\n')
        yield receipts
        data = b""
        while select.select([master], [], [], 1.0)[0]:
            data += os.read(master, 4096)
        receipts += [b"\x1b@" + part for part in data.split(b"\x1b@")[1:]]
    finally:
        os.close(master)
        os.close(slave)


def _without_local_ecr(config: Path) -> None:
    text = config.read_text()
    start = text.index('listen = "127.0.0.1:8381"')
    config.write_text(text[:start] + 'listen = ""' + text[text.index("\n", start):])


def test_the_service_prints_the_receipt_of_its_sales(rig: SoftwareRig, world: World, config: Path) -> None:
    _without_local_ecr(config)
    card = next(c for c in world.cards() if c["issuer"] == ISSUER)
    with _printer(config) as receipts:
        loaded = load_config(config)
        services: list[TerminalService] = []

        def run() -> None:  # the parts belong to the thread that runs the service (the journal is single-owner)
            with terminal(loaded) as parts:
                services.append(TerminalService(loaded, parts, sale_wait=15))
                services[0].run()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        until(lambda: services and services[0].state == "idle", 20, "the service to start")
        rig.present(world.path(Path(card["file"])))
        job = services[0].submit_local(2100_00)
        assert job is not None and job.done.wait(20)
        services[0].stop()
        worker.join(10)
    assert job.result is not None and job.result.outcome == "Approved"
    assert len(receipts) == 1 and receipts[0].endswith(b"\x1bd\x03\x1dV\x00")
    text = receipts[0].decode("ascii")
    assert "CNY 2,100.00" in text and f"Approval {job.result.approval_code}" in text
    assert card["pan"] not in text and card["pan"][-4:] in text
    assert services[0].status()["last_sale"]["receipt"] == job.receipt  # and kept for /status


def test_observers_see_each_step_of_a_see_phone_sale_in_order(
    rig: SoftwareRig, world: World, config: Path
) -> None:
    steps: list[Step] = []

    def shopper(event: Event) -> None:  # told "See phone", the shopper touches the sensor
        steps.append(event.step)
        if event.step is Step.SEE_PHONE:
            rig.fingerprint("right-thumb", world.demo_phone)

    rig.present(world.demo_phone)
    with terminal(load_config(config)) as parts:
        parts.counter.observers.append(shopper)
        sale = parts.counter.sale(12_34, wait_seconds=10)
    assert sale.outcome == "Approved" and sale.taps == 2 and sale.stan is not None
    assert steps == [Step.READY, Step.READING, Step.SEE_PHONE, Step.READING, Step.CARD_READ, Step.ONLINE,
                     Step.APPROVED, Step.DONE]


def test_a_locked_phone_left_in_the_field_is_announced_once(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read again and again while it waits for its holder: the merchant's line and the alert come once, the
    message stays on the display."""
    asked: list[Event] = []

    def shopper(event: Event) -> None:  # the holder unlocks only after the phone was read three times
        if event.step is Step.SEE_PHONE:
            asked.append(event)
            if len(asked) == 3:
                rig.fingerprint("right-thumb", world.demo_phone)

    rig.present(world.demo_phone)
    with terminal(load_config(config)) as parts:
        parts.counter.observers += [shopper, cli._merchant_lines]
        sale = parts.counter.sale(12_34, wait_seconds=20)
        parts.feedback.settle()
        alerts = [event for what, event, value in parts.feedback.events() if what == "buzzer" and value == (750.0, 0.2)]
        shown = [value for what, event, value in parts.feedback.events() if what == "message"]
    assert sale.outcome == "Approved" and sale.taps == 4
    assert [event.again for event in asked] == [False, True, True]
    assert len(alerts) == 2  # one alert: its two beeps
    assert shown.count("See phone") == 3
    assert capsys.readouterr().out.count("See phone") == 1


def test_a_failing_observer_is_logged_by_type_and_the_sale_goes_on(
    rig: SoftwareRig, world: World, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == ISSUER)

    def broken_screen(event: Event) -> None:
        raise RuntimeError(f"screen gone while showing {card['pan']}")

    steps: list[Step] = []
    rig.present(world.path(Path(card["file"])))
    with caplog.at_level(logging.WARNING), terminal(load_config(config)) as parts:
        parts.counter.observers.insert(0, broken_screen)
        parts.counter.observers.append(lambda event: steps.append(event.step))
        sale = parts.counter.sale(12_34, wait_seconds=10)
        shown = parts.feedback.message
    assert sale.outcome == "Approved" and shown.startswith("Approved")  # the observers after it still saw it
    warnings = [r.getMessage() for r in caplog.records if r.name == "terminal.events"]
    assert [w.rsplit(" failed on ", 1)[1] for w in warnings] == [f"{step}: RuntimeError" for step in steps]
    assert steps[0] is Step.READY and steps[-1] is Step.DONE
    assert card["pan"] not in caplog.text


def test_a_cancel_ends_the_card_wait_and_nothing_is_read(rig: SoftwareRig, config: Path) -> None:
    asked: list[int] = []
    steps: list[Step] = []

    def cancelled() -> str | None:
        asked.append(1)
        return "the terminal is stopping" if len(asked) >= 3 else None

    with terminal(load_config(config)) as parts:
        parts.counter.observers.append(lambda event: steps.append(event.step))
        sale = parts.counter.sale(100, wait_seconds=30, cancelled=cancelled)
        fare = parts.counter.fare(200, wait_seconds=30, cancelled=lambda: "closing")
    assert (sale.outcome, sale.message, sale.taps) == ("End Application", "Cancelled: the terminal is stopping", 0)
    assert len(asked) == 3 and (fare.outcome, fare.message) == ("End Application", "Cancelled: closing")
    assert steps == [Step.READY, Step.IDLE, Step.DONE] * 2


def test_fares_and_reads_go_through_the_pipeline_without_a_receipt(
    rig: SoftwareRig, world: World, config: Path
) -> None:
    steps: list[Step] = []
    rig.present(world.demo_phone)
    with _printer(config) as receipts, terminal(load_config(config)) as parts:
        parts.counter.observers.append(lambda event: steps.append(event.step))
        fare = parts.counter.fare(200, wait_seconds=10)
        view = parts.counter.read(wait_seconds=10)
    assert fare.outcome == "Approved" and fare.balance_after == 5000 - 200
    assert steps == [Step.READY, Step.READING, Step.APPROVED, Step.DONE]
    assert view is not None and view.uid_random and len(view.applications) >= 2
    assert receipts == []  # a fare's record goes to transit clearing, not to paper


def test_a_fare_without_transit_keys_is_a_configuration_error(
    rig: SoftwareRig, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text()
    config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("keys = \"transit/")))
    with terminal(load_config(config)) as parts, pytest.raises(ConfigError, match=r"transit\.keys"):
        parts.counter.fare(200, wait_seconds=1)
    assert cli.main(["--config", str(config), "fare", "2.00"]) == 2
    assert "transit.keys" in capsys.readouterr().err
