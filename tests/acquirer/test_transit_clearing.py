"""Transit clearing on the acquirer (issue #12 §3): fares taken by a gate's PSAM from the world's transit cards,
uploaded signed; each cleared once after its TAC verifies with the card issuer's key; altered, foreign and
duplicate fares refused with nothing stored; the dashboard's figures per city and per gate."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_api import Terminal
from webform import post_login, world_login

from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from firmware.jsonfile import read_json, write_json_atomic
from hostproto.messages import MAX_FARES_PER_UPLOAD, psam_id
from terminal.kernel.transit import Psam, fare

NOW = datetime.datetime.now().replace(microsecond=0)


@pytest.fixture
def terminal(client: FlaskClient, world: World) -> Terminal:
    return Terminal(client, world)


def _psam(world: World, tid: str) -> Psam:
    keys = {city["city_code"]: bytes.fromhex(city["purchase_master_key"]) for city in world.transit_keys()}
    return Psam(keys, psam_id(tid))


def gate_fares(world: World, tid: str, amounts: list[int]) -> list[dict[str, Any]]:
    """Real fares: the world's cards, in turn, debited by a PSAM with the gate's number (each TAC by its card)."""
    psam, cards = _psam(world, tid), world.transit_cards()
    for n, amount in enumerate(amounts):
        card = PlainCard.load(world.path(Path(cards[n % len(cards)]["file"])))
        assert fare(card.chip().transceive, psam, amount, NOW).outcome == "Approved"
    return psam.fares()


def _clear(terminal: Terminal, fares: list[dict[str, Any]]) -> dict[str, Any]:
    answer = terminal.post("/transit/fares", {"tid": terminal.tid, "fares": fares})
    assert answer.status_code == 200, answer.json
    return dict(answer.json)


def _stored(connection: sqlite3.Connection) -> list[tuple[str, int, int]]:
    return [tuple(row) for row in connection.execute(
        "SELECT city_code, offline_serial, amount FROM transit_fares ORDER BY id")]


def _statuses(answer: dict[str, Any]) -> list[str]:
    return [result["status"] for result in answer["results"]]


def test_fares_are_cleared_once_each_and_a_resent_batch_is_a_repeat(
    terminal: Terminal, world: World, connection: sqlite3.Connection
) -> None:
    fares = gate_fares(world, terminal.tid, [200, 300, 250, 400, 150, 500, 350])
    first = _clear(terminal, fares[:4])
    assert (first["cleared"], first["repeat"], first["refused"], first["amount"]) == (4, 0, 0, 1150)
    again = _clear(terminal, fares)  # the first answer was lost: the batch goes again, with the fares after it
    assert _statuses(again) == ["repeat"] * 4 + ["cleared"] * 3 and again["amount"] == 1000
    assert sorted(amount for _, _, amount in _stored(connection)) == sorted(f["amount"] for f in fares)
    masked = {row[0] for row in connection.execute("SELECT card_masked FROM transit_fares")}
    assert all("*" in m for m in masked) and not {f["card_number"] for f in fares} & masked


@pytest.mark.parametrize("change, reason", [
    ({"amount": 1}, "the TAC does not verify"),  # a fare made cheaper after the fact
    ({"date_time": "20200101000000"}, "the TAC does not verify"),
    ({"tac": "00000000"}, "the TAC does not verify"),
    ({"city_code": "9999"}, "no transit card issuer for city 9999"),
])
def test_an_altered_fare_is_refused_and_nothing_of_it_stored(
    terminal: Terminal, world: World, connection: sqlite3.Connection, change: dict[str, Any], reason: str
) -> None:
    genuine, other = gate_fares(world, terminal.tid, [200, 300])
    answer = _clear(terminal, [{**genuine, **change}, other])
    assert answer["results"] == [{"status": "refused", "reason": reason}, {"status": "cleared", "reason": None}]
    assert [amount for _, _, amount in _stored(connection)] == [300]
    assert _clear(terminal, [genuine])["cleared"] == 1  # the genuine fare itself is still cleared later


def test_a_fare_of_another_gates_psam_is_refused(terminal: Terminal, world: World,
                                                 connection: sqlite3.Connection) -> None:
    others = [t["tid"] for t in world.terminals() if t["tid"] != terminal.tid]
    [foreign] = gate_fares(world, others[0], [200])  # genuine, TAC and all, but taken by another terminal's PSAM
    answer = _clear(terminal, [foreign])
    assert answer["results"] == [{"status": "refused", "reason": "taken by another terminal's PSAM"}]
    assert _stored(connection) == []


def test_a_purse_transaction_is_cleared_once_whatever_else_the_record_says(
    terminal: Terminal, world: World, connection: sqlite3.Connection
) -> None:
    [first] = gate_fares(world, terminal.tid, [200])
    assert _clear(terminal, [first])["cleared"] == 1
    path = world.path(Path(world.transit_cards()[0]["file"]))
    card = read_json(path)
    card["applications"][0]["state"]["offline_serial"] = first["offline_serial"]  # rolled back (a cloned purse)
    write_json_atomic(path, card)
    [second] = gate_fares(world, terminal.tid, [250])
    assert second["offline_serial"] == first["offline_serial"] and second["tac"] != first["tac"]
    answer = _clear(terminal, [second])
    assert answer["results"] == [{"status": "refused", "reason": "the card's purse transaction was already cleared"}]
    assert len(_stored(connection)) == 1


@pytest.mark.parametrize("fares, field", [
    ([], "fares"),
    ("not a list", "fares"),
    ([{"tac": "GG"}], "fares[0].card_number"),
    (None, "fares"),
])
def test_a_malformed_batch_gets_400_naming_the_field_and_stores_nothing(
    terminal: Terminal, world: World, connection: sqlite3.Connection, fares: Any, field: str
) -> None:
    answer = terminal.post("/transit/fares", {"tid": terminal.tid, "fares": fares})
    assert (answer.status_code, answer.json["field"]) == (400, field)
    assert _stored(connection) == []


def test_a_batch_has_a_size_limit(terminal: Terminal, world: World, connection: sqlite3.Connection) -> None:
    [one] = gate_fares(world, terminal.tid, [200])
    answer = terminal.post("/transit/fares", {"tid": terminal.tid, "fares": [one] * (MAX_FARES_PER_UPLOAD + 1)})
    assert (answer.status_code, answer.json["field"]) == (400, "fares")
    assert _stored(connection) == []
    full = _clear(terminal, [{**one, "amount": 0xFFFFFFFF}] + [one] * (MAX_FARES_PER_UPLOAD - 1))  # fits the body
    assert (full["refused"], full["cleared"], full["repeat"]) == (1, 1, MAX_FARES_PER_UPLOAD - 2)


def test_a_bad_field_inside_a_fare_is_named(terminal: Terminal, world: World) -> None:
    [one] = gate_fares(world, terminal.tid, [200])
    for name, value in (("tac", "0011aabb"), ("psam", "12"), ("date_time", "20261399000000"), ("amount", 0)):
        answer = terminal.post("/transit/fares", {"tid": terminal.tid, "fares": [one, {**one, name: value}]})
        assert (answer.status_code, answer.json["field"]) == (400, f"fares[1].{name}")


def test_the_dashboard_shows_fares_per_city_and_gate_and_the_transit_settlement(
    terminal: Terminal, world: World, client: FlaskClient, connection: sqlite3.Connection
) -> None:
    fares = gate_fares(world, terminal.tid, [200 + 10 * n for n in range(12)])  # every card once: 6 cities × 2
    [altered] = gate_fares(world, terminal.tid, [300])
    _clear(terminal, [*fares, {**altered, "amount": 30}])
    post_login(client, *world_login(world, "operator"))
    day = datetime.date.fromisoformat(connection.execute("SELECT MIN(received) FROM transit_fares").fetchone()[0][:10])
    page = client.get(f"/dashboard/transit?day={day}").get_data(as_text=True)
    total = sum(f["amount"] for f in fares)
    assert f"Transit settlement: ¥{total / 100:,.2f}" in page and "Sums match" in page
    assert "1 fare(s) refused" in page
    for city in world.transit_keys():
        city_total = sum(f["amount"] for f in fares if f["city_code"] == city["city_code"])
        assert f"<td>{city['name']} ({city['city_code']})</td><td class=\"num\">2</td>" \
               f"<td class=\"num\">¥{city_total / 100:,.2f}</td>" in page
    assert f"<td class=\"num\">12</td><td class=\"num\">¥{total / 100:,.2f}</td>" in page
    assert not any(f["card_number"] in page for f in fares)
    yesterday = client.get(f"/dashboard/transit?day={day - datetime.timedelta(days=1)}").get_data(as_text=True)
    assert "Transit settlement: ¥0.00" in yesterday
    if day == datetime.datetime.now().astimezone().date():  # the gate's own page shows today's (not across midnight)
        gate = client.get(f"/dashboard/terminals/{terminal.tid}").get_data(as_text=True)
        assert f'<td id="gate-fares">12 · ¥{total / 100:,.2f} (' in gate
