"""Top-up at the counter (issue #12 §3): `Counter.load` and `pos-terminal load` through the software PN532 and the
real acquirer over HTTP. Every city's card is loaded by exactly the amount, the acquirer counts one completed load
per tap, and a load torn away is finished by the re-tap without crediting twice, whether its CREDIT reached the
card or not. The terminal holds no load key: it loads without any `[transit] keys`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostdb import rows

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from firmware.jsonfile import read_json
from firmware.simulator.rig import SoftwareRig
from terminal import cli
from terminal.assemble import Parts, terminal
from terminal.config import load_config
from terminal.events import Event, Step
from terminal.journal.journal import Journal
from terminal.kernel.outcome import Outcome
from terminal.sale import Counter

AMOUNT = 1_000
CREDIT = 4  # the card's 4th exchange of a tap, as in test_gate: the reader's first one, SELECT, INITIALIZE, CREDIT


def _no_psam(config: Path) -> Path:
    """The same terminal without any transit key file: a load needs none. A long APDU timeout: on a loaded machine
    a 2 s wait for the software PN532 could run out before the armed exchange; "Present card again" then has the
    shopper present a fresh card object, without the tear armed on the old one, and a torn load would run as a
    plain one. A tear itself is answered at once (status 01), so nothing waits longer."""
    lines = [line for line in config.read_text().splitlines() if not line.startswith('keys = "transit/')]
    reader = lines.index("[reader]")
    text = "\n".join([*lines[:reader + 1], "apdu_timeout = 10.0", *lines[reader + 1:]])
    path = config.with_name("counter-no-keys.toml")
    path.write_text(text)
    return path


@contextlib.contextmanager
def _counter(config: Path) -> Iterator[Parts]:
    with terminal(load_config(_no_psam(config))) as parts:
        assert parts.counter.psam is None
        yield parts


def _balance(path: Path) -> int:
    return int(read_json(path)["applications"][0]["state"]["balance"])


def _host_loads(instance: Instance) -> list[tuple[str, int, int, str]]:
    return [(row["city_code"], row["online_serial"], row["amount"], row["state"])
            for row in rows(instance, "SELECT * FROM transit_loads ORDER BY id")]


def _journal_loads(config: Path) -> list[dict[str, Any]]:
    with Journal.open(load_config(config).journal.path) as journal:
        return journal.transit_loads().loads()


def _retap(rig: SoftwareRig, card: Path, counter: Counter) -> list[Event]:
    """The shopper taps again at "Present card again"; returns the events seen."""
    seen: list[Event] = []

    def shopper(event: Event) -> None:
        seen.append(event)
        if event.step is Step.TRY_AGAIN:
            rig.present(card)

    counter.observers.append(shopper)
    return seen


def test_every_city_tops_up_by_exactly_the_amount_and_the_host_counts_each_once(
        rig: SoftwareRig, world: World, config: Path, instance: Instance) -> None:
    cards = list({c["city"]: c for c in reversed(world.transit_cards())}.values())  # each city's first card
    assert len(cards) == 6
    paths = {c["city"]: world.path(Path(c["file"])) for c in cards}
    before = {city: _balance(path) for city, path in paths.items()}
    with _counter(config) as parts:
        seen = _retap(rig, Path("/nonexistent"), parts.counter)
        for city, path in paths.items():
            rig.present(path)
            result = parts.counter.load(AMOUNT, wait_seconds=10)
            rig.remove()
            assert (result.outcome, result.recovered, result.amount) == (Outcome.APPROVED, False, AMOUNT), city
            assert (result.balance_before, result.balance_after) == (before[city], before[city] + AMOUNT)
            assert result.tac is not None and len(result.tac) == 4
    assert {city: _balance(path) - before[city] for city, path in paths.items()} == {c: AMOUNT for c in paths}
    assert sorted(_host_loads(instance)) == sorted((c["card_number"][:4], 0, AMOUNT, "completed") for c in cards)
    assert [load["state"] for load in _journal_loads(config)] == ["confirmed"] * 6
    steps = [e.step for e in seen]
    assert steps.count(Step.ONLINE) == 6 and steps.count(Step.APPROVED) == 6 and Step.TRY_AGAIN not in steps


def test_a_load_torn_after_the_credit_is_finished_by_the_retap_never_credited_twice(
        rig: SoftwareRig, world: World, config: Path, instance: Instance) -> None:
    card = world.path(Path(world.transit_cards()[2]["file"]))
    before = _balance(card)
    with _counter(config) as parts:
        seen = _retap(rig, card, parts.counter)
        rig.present(card)
        rig.remove_card_after(CREDIT, tear=True)  # the card credits, and is gone before its TAC leaves
        result = parts.counter.load(AMOUNT, wait_seconds=10)
        rig.remove()
    assert (result.outcome, result.recovered, result.amount, result.tac is not None) == (
        Outcome.APPROVED, True, AMOUNT, True)
    assert [e.step for e in seen].count(Step.TRY_AGAIN) == 1
    assert _balance(card) == before + AMOUNT
    assert [row[1:] for row in _host_loads(instance)] == [(0, AMOUNT, "completed")]  # one MAC2, used once
    (journal_load,) = _journal_loads(config)
    assert (journal_load["state"], journal_load["tac"]) == ("confirmed", result.tac.hex().upper())


def test_a_load_whose_credit_never_reached_the_card_is_credited_once_on_the_retap(
        rig: SoftwareRig, world: World, config: Path, instance: Instance) -> None:
    card = world.path(Path(world.transit_cards()[4]["file"]))
    before = _balance(card)
    with _counter(config) as parts:
        seen = _retap(rig, card, parts.counter)
        rig.present(card)
        rig.remove_card_after(CREDIT)  # the CREDIT never reaches the card
        result = parts.counter.load(AMOUNT, wait_seconds=10)
        rig.remove()
    assert (result.outcome, result.recovered, result.amount) == (Outcome.APPROVED, False, AMOUNT)
    assert [e.step for e in seen].count(Step.TRY_AGAIN) == 1
    assert _balance(card) == before + AMOUNT
    # the unused MAC2 is voided by the re-tap's request at the same serial; the second one is credited
    assert [row[1:] for row in _host_loads(instance)] == [(0, AMOUNT, "voided"), (0, AMOUNT, "completed")]
    assert [load["state"] for load in _journal_loads(config)] == ["confirmed"]


def test_a_load_torn_and_not_tapped_again_is_finished_by_the_next_load_of_that_card(
        rig: SoftwareRig, world: World, config: Path, instance: Instance) -> None:
    card = world.path(Path(world.transit_cards()[0]["file"]))
    before = _balance(card)
    with _counter(config) as parts:
        rig.present(card)
        rig.remove_card_after(CREDIT, tear=True)
        torn = parts.counter.load(AMOUNT, wait_seconds=2)  # the shopper walked away
    assert torn.outcome == Outcome.TRY_AGAIN and _balance(card) == before + AMOUNT
    with _counter(config) as parts:  # later, a restarted terminal: the journal still knows the torn load
        rig.present(card)
        again = parts.counter.load(AMOUNT, wait_seconds=10)
        rig.remove()
    assert (again.outcome, again.recovered) == (Outcome.APPROVED, True)
    assert _balance(card) == before + AMOUNT  # the same load, finished: not a second credit
    assert [row[1:] for row in _host_loads(instance)] == [(0, AMOUNT, "completed")]


def test_the_phone_transit_card_tops_up(rig: SoftwareRig, world: World, config: Path, instance: Instance) -> None:
    phone = world.path(Path("phones/demo-phone.json"))
    with _counter(config) as parts:
        rig.present(phone)
        result = parts.counter.load(AMOUNT, wait_seconds=10)
        rig.remove()
    assert (result.outcome, result.city_code) == (Outcome.APPROVED, "2900")
    assert [row[0] + ":" + row[3] for row in _host_loads(instance)] == ["2900:completed"]


def test_pos_terminal_load_prints_the_new_balance(rig: SoftwareRig, world: World, config: Path, instance: Instance,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    card = world.path(Path(world.transit_cards()[1]["file"]))
    before = _balance(card)
    no_keys = _no_psam(config)
    rig.present(card)
    assert cli.main(["--config", str(no_keys), "load", "10.00", "--wait", "10"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"Approved: Card topped up (balance ¥{(before + AMOUNT) / 100:,.2f})"
    assert cli.main(["--config", str(no_keys), "load", "5.00", "--json", "--wait", "10"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["outcome"], summary["amount"], summary["balance_after"]) == ("Approved", 500, before + 1_500)
    rig.remove()
    assert _balance(card) == before + 1_500
    assert [row[3] for row in _host_loads(instance)] == ["completed", "completed"]


def test_pos_terminal_load_refuses_a_bad_amount_and_stops_on_ctrl_c(
        rig: SoftwareRig, config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for amount in ("0", "1.234", "abc", "1000.01"):
        with pytest.raises(SystemExit) as stopped:
            cli.main(["--config", str(config), "load", amount])
        assert stopped.value.code == 2
    capsys.readouterr()

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Counter, "load", interrupted)
    assert cli.main(["--config", str(config), "load", "10.00"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines() == ["pos-terminal: load: stopped (Ctrl-C)"]
