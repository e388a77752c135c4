"""Gate mode (issue #12 §3): with `[transit] gate_fare`, `pos-terminal run` is a metro gate. No register: it
charges the fare at every tap, each card once however long it stays on the reader, a fare torn away during its
DEBIT is finished by the re-tap (GET TRANSACTION PROVE), never charged twice, and the fares go to the acquirer's
transit clearing. Cards of all six cities."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostserver import HostServer, free_port
from waits import until

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.jsonfile import read_json
from firmware.simulator.rig import SoftwareRig
from hostproto.messages import psam_id
from terminal import cli
from terminal.assemble import terminal
from terminal.config import ConfigError, load_config
from terminal.events import Event, Step
from terminal.journal.journal import Journal
from terminal.service import TerminalService

FARE = 200
TAPS, TEN = 100, 10
TORN_TAPS = frozenset({10, 11, 12, 13, 14, 15, 57, 93})  # torn away during DEBIT: 10–15 are the six cities' cards
HOLD_EVERY, HOLD_SECONDS = 10, 0.5  # some riders leave the card on the reader this long after paying


def _gate_config(config: Path, fare: int = FARE, listen: str = "") -> Path:
    text = (config.read_text().replace('keys = "transit/psam.json"', f'keys = "transit/psam.json"\ngate_fare = {fare}')
            .replace('listen = "127.0.0.1:8381"', f'listen = "{listen}"'))
    path = config.with_name("gate-test.toml")  # beside it: the same relative paths
    path.write_text(text)
    return path


@contextlib.contextmanager
def _gate(config: Path) -> Iterator[TerminalService]:
    loaded = load_config(config)
    services: list[TerminalService] = []

    def run() -> None:  # the parts belong to the thread that runs the service (the journal is single-owner)
        with terminal(loaded) as parts:  # fares uploaded every second; a rider reads the outcome for 0.05 s
            services.append(TerminalService(loaded, parts, flush_seconds=1.0, status_seconds=0.5,
                                            gate_result_seconds=0.05))
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


def _riders(world: World) -> list[dict[str, Any]]:
    """Ten cards of the six cities: every city's first card, and the second card of four of them."""
    cards = world.transit_cards()
    first = {c["city"]: c for c in reversed(cards)}  # the index lists a city's first card first
    riders = list(first.values()) + [c for c in cards if c not in first.values()][:TEN - len(first)]
    assert len(riders) == TEN and len({c["city"] for c in riders}) == 6
    return riders


def test_a_gate_takes_100_taps_of_ten_cards_recovers_torn_fares_and_clearing_equals_its_journal(
    rig: SoftwareRig, world: World, config: Path, instance: Instance
) -> None:
    """The acceptance run: each tap charged once however long the card stays, taps torn away during their DEBIT
    (a card of every city among them) finished by the rider's re-tap (GET TRANSACTION PROVE), the fares uploaded
    by the gate itself, and the acquirer's TAC-verified transit clearing equal to the gate's journal."""
    riders = _riders(world)
    before = {c["card_number"]: _balance(world, c) for c in riders}
    tapping: list[dict[str, Any]] = []
    ready: list[Event] = []

    def rider(event: Event) -> None:  # "Present card again": the rider of the torn fare taps again
        if event.step is Step.TRY_AGAIN:
            rig.present(world.path(Path(tapping[-1]["file"])))
        elif event.step is Step.READY:
            ready.append(event)

    recovered: set[str] = set()  # the cities whose torn fare the re-tap finished
    with _gate(_gate_config(config)) as gate:
        gate.parts.counter.observers.append(rider)
        for n in range(1, TAPS + 1):
            card = riders[n % TEN]
            tapping.append(card)
            mark = len(ready)
            rig.present(world.path(Path(card["file"])))
            if n in TORN_TAPS:
                rig.remove_card_after(4, tear=True)  # the 4th command is the DEBIT: gone once it debited
            until(lambda n=n: _fares(gate) == n, 20, f"fare {n}")
            last = gate.status()["gate"]["last_fare"]
            if n % HOLD_EVERY == 0:  # this rider leaves the card on the reader: not charged again
                threading.Event().wait(HOLD_SECONDS)
            rig.remove()
            until(lambda mark=mark: len(ready) > mark, 20, "the gate ready for the next rider")  # the field empty
            assert (last["outcome"], last["amount"], last["recovered"]) == ("Approved", FARE, n in TORN_TAPS)
            if last["recovered"]:
                recovered.add(last["city"])
        until(lambda: gate.status()["gate"]["clearing"] == {"waiting": 0, "cleared": TAPS, "refused": 0}, 30,
              "the gate's fares cleared")
        assert _fares(gate) == TAPS
    assert recovered == {city["city_code"] for city in world.transit_keys()}
    assert {c["card_number"]: before[c["card_number"]] - _balance(world, c) for c in riders} == {
        c["card_number"]: FARE * TAPS // TEN for c in riders}
    loaded = load_config(config)
    with Journal.open(loaded.journal.path) as journal:  # every fare kept for transit clearing, each with its TAC
        fares = journal.transit_memory(psam_id(loaded.terminal.id)).fares()
    connection = db.connect(instance.database)
    try:
        cleared = [tuple(row) for row in connection.execute(
            "SELECT tid, city_code, offline_serial, amount, tac FROM transit_fares ORDER BY id")]
    finally:
        connection.close()
    assert len(fares) == len(cleared) == TAPS and sum(f["amount"] for f in fares) == sum(c[3] for c in cleared)
    assert sorted((f["city_code"], f["offline_serial"], f["amount"], f["tac"]) for f in fares) == sorted(
        c[1:] for c in cleared)  # the acquirer keeps only fares whose TAC verified with the card issuer's key
    assert {c[0] for c in cleared} == {loaded.terminal.id}


def test_a_gate_takes_fares_while_its_host_is_down_and_clears_them_when_it_is_back(
    rig: SoftwareRig, world: World, config: Path, host_server: HostServer
) -> None:
    host_server.stop()  # the acquirer is gone: the gate does not wait for it, the fares wait in its journal
    cards = world.transit_cards()[:3]
    with _gate(_gate_config(config)) as gate:
        ready: list[Event] = []
        gate.parts.counter.observers.append(lambda event: ready.append(event) if event.step is Step.READY else None)
        for n, card in enumerate(cards, start=1):
            mark = len(ready)
            rig.present(world.path(Path(card["file"])))
            until(lambda n=n: _fares(gate) == n, 20, f"fare {n} with the host down")
            rig.remove()
            until(lambda mark=mark: len(ready) > mark, 20, "the gate ready for the next rider")
        until(lambda: gate.status()["gate"]["clearing"].get("waiting") == len(cards), 10, "the fares waiting")
        assert "not reachable" in (gate.status()["gate"]["clearing_error"] or "")
        host_server.start()
        until(lambda: gate.status()["gate"]["clearing"] == {"waiting": 0, "cleared": len(cards), "refused": 0}, 20,
              "the fares cleared once the host is back")
        assert gate.status()["gate"]["clearing_error"] is None


def _shown(url: str, wanted: dict[str, str]) -> dict[str, Any]:
    """The first view on the display's live stream that has every `wanted` field (the stream starts with the
    current view, then each change)."""
    with urllib.request.urlopen(f"{url}/display/events", timeout=20) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("data: "):
                view = json.loads(line.removeprefix("data: "))
                if all(view.get(k) == v for k, v in wanted.items()):
                    return dict(view)
    raise AssertionError(f"the display never showed {wanted}")


def test_a_gate_shows_each_fare_on_its_display_and_takes_no_sales(rig: SoftwareRig, world: World,
                                                                  config: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}"
    with _gate(_gate_config(config, listen=listen)) as gate:
        with urllib.request.urlopen(f"{url}/display", timeout=10) as page:
            assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        rig.present(world.path(Path(world.transit_cards()[0]["file"])))
        until(lambda: _fares(gate) == 1, 20, "the fare")
        shown = _shown(url, {"state": "approved"})  # the fare's outcome stays on screen while the card is there
        assert (shown["headline"], shown["amount"], shown["mood"]) == ("Approved", "¥2.00", "ok")
        rig.remove()
        secret = load_config(config).ecr.secret
        sale = urllib.request.Request(f"{url}/sale", data=json.dumps({"amount": 100}).encode(), method="POST",
                                      headers={"Authorization": f"Bearer {secret}",
                                               "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sale, timeout=10)
        assert refused.value.code == 409 and "metro gate" in json.loads(refused.value.read())["error"]
        assert gate.status()["sale"] is None and _fares(gate) == 1


def test_a_gate_needs_the_psam_keys(config: Path) -> None:
    text = _gate_config(config).read_text()
    broken = config.with_name("gate-no-keys.toml")
    broken.write_text("\n".join(line for line in text.splitlines() if not line.startswith('keys = "transit/')))
    with pytest.raises(ConfigError, match=r"transit\.gate_fare: a gate needs the PSAM's keys"):
        load_config(broken)
    assert cli.main(["--config", str(broken), "run"]) == 2
