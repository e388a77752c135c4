"""E-purse loads at the acquirer (the card issuer's agent): MAC1 checked with the world's load key, MAC2
answered, the TAC checked, and the card's online serial settling every earlier MAC2: never counted twice."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_api import Terminal, rows
from webform import post_login, world_login

from acquirer_stub.instance import Instance
from emvcore import epurse
from emvcore.apdu import ResponseApdu
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World

MMDD = f"{datetime.date.today():%m%d}"
TABLES = ("transit_loads", "transit_load_confirmations")


class Card:
    """A world transit card on a chip: the terminal's side of the APDUs, and the card's state after."""

    def __init__(self, world: World, index: int = 0) -> None:
        self.entry = world.transit_cards()[index]
        self.path = world.path(Path(self.entry["file"]))
        self.card = PlainCard.load(self.path)
        self.chip = self.card.chip()
        self.city_code = next(c["city_code"] for c in world.transit_keys() if c["city"] == self.entry["city"])
        assert ResponseApdu.decode(self.chip.transceive(epurse.select().encode())).ok

    def send(self, command: Any) -> ResponseApdu:
        return ResponseApdu.decode(self.chip.transceive(command.encode()))

    def initialize(self, amount: int, terminal_id: bytes) -> bytes:
        answer = self.send(epurse.initialize_for_load(amount, terminal_id))
        assert answer.ok, hex(answer.sw)
        return answer.data

    def credit(self, answer: dict[str, Any]) -> ResponseApdu:
        return self.send(epurse.credit_for_load(bytes.fromhex(answer["date_time"]), bytes.fromhex(answer["mac2"])))


class Host:
    def __init__(self, client: FlaskClient, world: World) -> None:
        self.terminal = Terminal(client, world)
        self.terminal_id = self.terminal.tid.encode()[-6:]

    def load_body(self, card: Card, quoted: int, initialize: bytes, **changes: Any) -> dict[str, Any]:
        body = {"mti": "0200", "tid": self.terminal.tid, "stan": self.terminal.next_stan(), "local_date": MMDD,
                "card_number": card.entry["card_number"], "city_code": card.city_code, "amount": quoted,
                "terminal_id": self.terminal_id.hex().upper(), "initialize": initialize.hex().upper()}
        return {**body, **changes}

    def load(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.terminal.post("/transit/loads", body)
        assert answer.status_code == 200, answer.json
        return dict(answer.json)

    def confirm(self, load_body: dict[str, Any], tac: bytes, *, stan: str | None = None,
                serial: int | None = None) -> dict[str, Any]:
        quote = epurse.LoadQuote.decode(bytes.fromhex(load_body["initialize"]))
        body = {"mti": "0220", "tid": self.terminal.tid, "stan": stan or self.terminal.next_stan(),
                "local_date": MMDD, "original_stan": load_body["stan"], "original_local_date": MMDD,
                "card_number": load_body["card_number"],
                "online_serial": quote.online_serial if serial is None else serial, "tac": tac.hex().upper()}
        answer = self.terminal.post("/transit/load-confirmations", body)
        assert answer.status_code == 200, answer.json
        return dict(answer.json)


def _loads(instance: Instance) -> list[tuple[int, int, str]]:
    return [(r["online_serial"], r["amount"], r["state"])
            for r in rows(instance, "SELECT * FROM transit_loads ORDER BY id")]


def _count(instance: Instance) -> dict[str, int]:
    return {t: rows(instance, f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in TABLES}


@pytest.fixture
def host(client: FlaskClient, world: World) -> Host:
    return Host(client, world)


@pytest.mark.parametrize("index", range(0, 12, 2))  # the first card of each of the six cities
def test_every_city_loads_and_the_tac_completes_it(host: Host, world: World, instance: Instance, index: int) -> None:
    card = Card(world, index)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    answer = host.load(body)
    assert answer["rc"] == "00" and len(answer["mac2"]) == 8 and len(answer["date_time"]) == 14
    credit = card.credit(answer)
    assert credit.ok
    assert _loads(instance) == [(0, 1_000, "authorized")]
    confirmed = host.confirm(body, credit.data)
    assert (confirmed["rc"], confirmed["outcome"]) == ("00", "completed")
    assert _loads(instance) == [(0, 1_000, "completed")]
    assert host.confirm(body, credit.data)["outcome"] == "already_completed"  # a new STAN: counted once still
    stored = rows(instance, "SELECT card_masked, tac FROM transit_loads")[0]
    assert card.entry["card_number"] not in stored["card_masked"] and stored["tac"] == credit.data.hex().upper()


def test_a_retransmission_gets_the_same_mac2_and_other_content_gets_94(host: Host, world: World,
                                                                        instance: Instance) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    first = host.load(body)
    assert host.load(body) == first
    assert host.load({**body, "amount": 999})["rc"] == "94"
    assert _loads(instance) == [(0, 1_000, "authorized")]
    assert card.credit(first).ok  # the retransmitted MAC2 is the one the card takes


@pytest.mark.parametrize(("change", "rc"), [
    ({"amount": 1_001}, "88"),  # not the amount the card quoted: MAC1 fails
    ({"terminal_id": "000000000000"}, "88"),
    ({"city_code": "9999"}, "92"),
])
def test_a_request_the_card_did_not_make_is_refused_and_nothing_is_stored(
        host: Host, world: World, instance: Instance, change: dict[str, Any], rc: str) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id), **change)
    answer = host.load(body)
    assert answer["rc"] == rc and "mac2" not in answer and answer["reason"]
    assert _count(instance) == {"transit_loads": 0, "transit_load_confirmations": 0}
    assert host.load(body)["rc"] == rc  # nothing was stored: the same request gets the same refusal


def test_a_bad_card_number_fails_mac1(host: Host, world: World, instance: Instance) -> None:
    card, other = Card(world, 0), Card(world, 1)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id),
                          card_number=other.entry["card_number"])
    assert host.load(body)["rc"] == "88"


def test_an_amount_past_the_purse_limit_is_refused(host: Host, world: World, instance: Instance) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id), amount=epurse.PURSE_LIMIT + 1)
    answer = host.terminal.post("/transit/loads", body)
    assert answer.status_code == 400 and answer.json["field"] == "amount"
    assert _count(instance)["transit_loads"] == 0


def test_a_bad_tac_is_refused_and_changes_nothing(host: Host, world: World, instance: Instance) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    tac = card.credit(host.load(body)).data
    assert host.confirm(body, bytes([tac[0] ^ 1]) + tac[1:])["rc"] == "88"
    assert host.confirm(body, tac, serial=1)["rc"] == "12"  # not the load's serial
    assert _loads(instance) == [(0, 1_000, "authorized")]
    assert _count(instance)["transit_load_confirmations"] == 0


def test_a_mac2_never_used_is_voided_by_the_next_request_at_the_same_serial(host: Host, world: World,
                                                                            instance: Instance) -> None:
    card = Card(world)
    lost = host.load(host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id)))  # the answer is "lost"
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))  # the re-tap: same serial
    answer = host.load(body)
    assert _loads(instance) == [(0, 1_000, "voided"), (0, 1_000, "authorized")]
    assert card.credit(lost).sw == 0x9302  # the voided MAC2 is dead on the card too (its session is gone)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    answer = host.load(body)
    tac = card.credit(answer).data
    host.confirm(body, tac)
    assert [state for *_, state in _loads(instance)] == ["voided", "voided", "completed"]


def test_a_credit_never_confirmed_is_counted_by_the_next_request_at_a_higher_serial(
        host: Host, world: World, instance: Instance) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    first = card.credit(host.load(body))  # the terminal crashed before it confirmed
    assert first.ok
    later = host.load_body(card, 500, card.initialize(500, host.terminal_id))
    host.load(later)
    assert _loads(instance) == [(0, 1_000, "credited"), (1, 500, "authorized")]
    assert host.confirm(body, first.data)["outcome"] == "completed"  # its TAC may still come
    assert _loads(instance) == [(0, 1_000, "completed"), (1, 500, "authorized")]


def test_a_card_that_goes_back_to_a_credited_serial_is_refused(host: Host, world: World, instance: Instance) -> None:
    card = Card(world)
    body = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    host.confirm(body, card.credit(host.load(body)).data)
    replay = host.load_body(card, 1_000, bytes.fromhex(body["initialize"]))  # the old quote, serial 0 again
    assert host.load(replay)["rc"] == "63"
    assert _loads(instance) == [(0, 1_000, "completed")]


def test_malformed_bodies_are_refused_with_the_field(host: Host, world: World, instance: Instance) -> None:
    card = Card(world)
    good = host.load_body(card, 1_000, card.initialize(1_000, host.terminal_id))
    for change, field in [({"initialize": "00"}, "initialize"), ({"card_number": "12"}, "card_number"),
                          ({"terminal_id": "zz" * 6}, "terminal_id"), ({"extra": 1}, "extra"),
                          ({"amount": 0}, "amount")]:
        answer = host.terminal.post("/transit/loads", {**good, **change})
        assert answer.status_code == 400 and answer.json["field"] == field
        assert good["card_number"] not in answer.get_data(as_text=True)
    assert _count(instance)["transit_loads"] == 0


def test_the_dashboard_counts_the_loads_cards_credited_per_city(host: Host, world: World, instance: Instance,
                                                                client: FlaskClient) -> None:
    for index, amount in ((0, 1_000), (2, 2_000)):  # two cities' cards credited and confirmed
        card = Card(world, index)
        body = host.load_body(card, amount, card.initialize(amount, host.terminal_id))
        credit = card.credit(host.load(body))
        assert credit.ok and host.confirm(body, credit.data)["outcome"] == "completed"
    unknown = Card(world, 4)  # a MAC2 went out; the card never said whether it credited
    assert host.load(host.load_body(unknown, 500, unknown.initialize(500, host.terminal_id)))["rc"] == "00"
    post_login(client, *world_login(world, "operator"))
    day = rows(instance, "SELECT MIN(created) AS day FROM transit_loads")[0]["day"][:10]
    page = client.get(f"/dashboard/transit?day={day}").get_data(as_text=True)
    assert '<strong id="transit-loads">Top-ups: ¥30.00</strong>' in page
    assert "1 top-up(s) not yet known" in page
    for index, amount in ((0, "¥10.00"), (2, "¥20.00")):
        card = Card(world, index)
        name = next(c["name"] for c in world.transit_keys() if c["city_code"] == card.city_code)
        assert f'<td>{name} ({card.city_code})</td><td class="num">1</td><td class="num">{amount}</td>' in page
    assert not any(c["card_number"] in page for c in world.transit_cards())
