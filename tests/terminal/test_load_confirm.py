"""A load's TAC confirmation that finds the acquirer down waits in the journal (the card is credited, the host
holds the load authorized) and goes before the next load: the host then counts it completed, once."""

from __future__ import annotations

from pathlib import Path

from hostdb import rows
from hostserver import HostServer

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.assemble import terminal
from terminal.config import load_config
from terminal.events import Event, Step
from terminal.journal.journal import Journal
from terminal.kernel.outcome import Outcome


def _host_states(instance: Instance) -> list[str]:
    return [row["state"] for row in rows(instance, "SELECT state FROM transit_loads ORDER BY id")]


def test_a_confirmation_the_host_missed_goes_with_the_next_load(
        rig: SoftwareRig, world: World, config: Path, instance: Instance, host_server: HostServer) -> None:
    first, second = (world.path(Path(c["file"])) for c in world.transit_cards()[:2])
    loaded = load_config(config)

    def host_goes_down(event: Event) -> None:  # after the card credited, before the TAC is confirmed
        if event.step is Step.APPROVED and host_server.running:
            host_server.stop()

    with terminal(loaded) as parts:
        parts.counter.observers.append(host_goes_down)
        rig.present(first)
        result = parts.counter.load(1_000, wait_seconds=10)
        rig.remove()
        assert result.outcome == Outcome.APPROVED
        assert _host_states(instance) == ["authorized"]  # the TAC did not arrive
        assert [x["state"] for x in parts.host.journal.transit_loads().loads()] == ["credited"]
        parts.counter.observers.remove(host_goes_down)
        host_server.start()
        rig.present(second)
        assert parts.counter.load(500, wait_seconds=10).outcome == Outcome.APPROVED
        rig.remove()
    assert _host_states(instance) == ["completed", "completed"]
    with Journal.open(loaded.journal.path) as journal:
        assert [x["state"] for x in journal.transit_loads().loads()] == ["confirmed", "confirmed"]
