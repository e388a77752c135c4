"""Gate mode (issue #12 §3): with `[transit] gate_fare`, `pos-terminal run` is a metro gate. No register: it
charges the fare at every tap, each card once however long it stays on the reader, and a fare torn away during
its DEBIT is finished by the re-tap (GET TRANSACTION PROVE), never charged twice. Cards of all six cities."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waits import until

from firmware.jsonfile import read_json
from firmware.pn532.rig import SoftwareRig
from firmware.world.layout import World
from terminal import cli
from terminal.assemble import terminal
from terminal.config import ConfigError, load_config
from terminal.events import Event, Step
from terminal.journal.journal import Journal
from terminal.service import TerminalService

FARE = 200
HOLD_SECONDS = 1.5  # a rider leaves the card on the reader this long after paying


def _gate_config(config: Path, fare: int = FARE) -> Path:
    text = (config.read_text().replace('keys = "transit/keys.json"', f'keys = "transit/keys.json"\ngate_fare = {fare}')
            .replace('listen = "127.0.0.1:8381"', 'listen = ""'))
    path = config.with_name("gate-test.toml")  # beside it: the same relative paths
    path.write_text(text)
    return path


@contextlib.contextmanager
def _gate(config: Path) -> Iterator[TerminalService]:
    loaded = load_config(config)
    services: list[TerminalService] = []

    def run() -> None:  # the parts belong to the thread that runs the service (the journal is single-owner)
        with terminal(loaded) as parts:
            services.append(TerminalService(loaded, parts))
            services[0].run()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    until(lambda: services and services[0].state in ("idle", "waiting for card"), 20, "the gate to start")
    try:
        yield services[0]
    finally:
        services[0].stop()
        worker.join(15)
    assert not worker.is_alive()


def _balance(world: World, card: dict[str, Any]) -> int:
    return int(read_json(world.path(Path(card["file"])))["applications"][0]["state"]["balance"])


def _fares(gate: TerminalService) -> int:
    return int(gate.status()["gate"]["fares"])


def test_a_gate_charges_every_city_once_per_tap_and_finishes_a_torn_fare(
    rig: SoftwareRig, world: World, config: Path
) -> None:
    cards = world.transit_cards()
    assert sorted(c["city"] for c in cards) == ["beijing", "chengdu", "guangzhou", "hangzhou", "shanghai", "shenzhen"]
    before = {c["city"]: _balance(world, c) for c in cards}
    torn = cards[-1]

    ready: list[Event] = []

    def rider(event: Event) -> None:  # "Present card again": the rider of the torn fare taps again
        if event.step is Step.TRY_AGAIN:
            rig.present(world.path(Path(torn["file"])))
        elif event.step is Step.READY:
            ready.append(event)

    with _gate(_gate_config(config)) as gate:
        gate.parts.counter.observers.append(rider)
        for n, card in enumerate(cards[:-1], start=1):
            rig.present(world.path(Path(card["file"])))
            until(lambda n=n: _fares(gate) == n, 20, f"fare {n}")
            mark = len(ready)
            threading.Event().wait(HOLD_SECONDS)  # the card stays on the reader: not charged again
            rig.remove()
            last = gate.status()["gate"]["last_fare"]
            until(lambda mark=mark: len(ready) > mark, 20, "the gate ready for the next rider")  # the field empty
            assert (last["outcome"], last["amount"], last["recovered"]) == ("Approved", FARE, False)
        rig.present(world.path(Path(torn["file"])))
        rig.remove_card_after(4, tear=True)  # the 4th command is the DEBIT: gone once it debited
        until(lambda: _fares(gate) == len(cards), 20, "the torn fare")
        last = gate.status()["gate"]["last_fare"]
        rig.remove()
        status = gate.status()
    assert (last["outcome"], last["recovered"], last["city"] is not None) == ("Approved", True, True)
    assert status["gate"] == {"fare": FARE, "fares": len(cards), "last_fare": last}
    assert {c["city"]: before[c["city"]] - _balance(world, c) for c in cards} == {c["city"]: FARE for c in cards}
    loaded = load_config(config)  # every fare kept for transit clearing, the torn one once, each with its TAC
    with Journal.open(loaded.journal.path) as journal:
        fares = journal.transit_memory(loaded.terminal.id.encode()[-6:]).fares()
    assert sorted(f["card_number"] for f in fares) == sorted(c["card_number"] for c in cards)
    assert sum(f["amount"] for f in fares) == FARE * len(cards)
    assert all(len(bytes.fromhex(f["tac"])) == 4 for f in fares)


def test_a_gate_needs_the_psam_keys(config: Path) -> None:
    text = _gate_config(config).read_text()
    broken = config.with_name("gate-no-keys.toml")
    broken.write_text("\n".join(line for line in text.splitlines() if not line.startswith('keys = "transit/')))
    with pytest.raises(ConfigError, match=r"transit\.gate_fare: a gate needs the PSAM's keys"):
        load_config(broken)
    assert cli.main(["--config", str(broken), "run"]) == 2
