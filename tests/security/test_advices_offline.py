"""Issue 11 §1: offline advices (0220) that cannot create money.

As found: a correctly signed advice with a garbage TC for 999,999,999,999 fen was answered 00, debited the card far
past its limit and was counted in settlement and clearing; an advice for a PAN no issuer knows was counted too;
the host had no offline floor limit. Now the host verifies the TC like an ARQC, applies the terminal's floor limit
for the AID, and takes anything it cannot prove as an exception: acknowledged, no money moved, out of clearing,
queued on the dashboard for an operator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from advices_kit import (
    Books,
    SignedTerminal,
    account,
    card,
    figures,
    live_acquirer,
    operator_client,
)
from flask import Flask
from hostdb import database_bytes, execute, rows

from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from emvcore.tags import mask_pan
from firmware.issuing.layout import ACQUIRER_TERMINALS, World
from firmware.jsonfile import FileFormatError
from hostproto.messages import MAX_AMOUNT
from terminal.host.client import HostClient
from terminal.host.link import HostLink
from terminal.journal.journal import Journal

DEBIT_AID, CREDIT_AID = "A000000333010101", "A000000333010102"


@pytest.fixture
def acquirer(instance: Instance) -> Iterator[tuple[Flask, str]]:
    with live_acquirer(instance) as (app, server):
        yield app, server.url


@pytest.fixture
def terminal(acquirer: tuple[Flask, str], world: World) -> SignedTerminal:
    return SignedTerminal(acquirer[1], world)


def forged(body: dict, amount: int = MAX_AMOUNT) -> dict:
    """A real tap's advice rewritten by the attacker: any amount, and a TC of zeros."""
    icc = {**body["icc"], "9F02": f"{amount:012d}", "9F26": "00" * 8}
    return {**body, "amount": amount, "icc": icc}


def without_card_number(body: dict, pan: str) -> dict:
    """The advice for another PAN: DE2 changed, and no 57/5A in DE55 to contradict it."""
    icc = {tag: value for tag, value in body["icc"].items() if tag not in ("57", "5A")}
    return {**body, "pan": pan, "icc": icc}


# --- the attack as found --------------------------------------------------------------------------------------------


def test_a_forged_advice_for_a_fortune_moves_no_money_and_waits_for_an_operator(
        acquirer: tuple[Flask, str], terminal: SignedTerminal, world: World, instance: Instance) -> None:
    app, _ = acquirer
    batch = terminal.sign_on()
    before = Books.read(instance)
    request = forged(terminal.advice("icbc-debit", 12_34, batch))

    answer = terminal.post("/advices", request)
    assert (answer["mti"], answer["rc"], answer["stan"]) == ("0230", "00", request["stan"])  # acknowledged
    assert (answer["outcome"], answer["exception"], answer["charged"]) == ("exception", "TC_UNVERIFIED", 0)
    assert terminal.post("/advices", {**request, "mti": "0221"}) == answer  # a resend: the same answer, no change
    assert Books.read(instance) == before  # every balance, ATC and today's clearing total
    (row,) = rows(instance, "SELECT state, reason, charged, ac_verified FROM transactions WHERE kind = 'advice'")
    assert tuple(row) == ("exception", "TC_UNVERIFIED", 0, 0)

    # the terminal counted the sale, so its batch balances; the host shows it as an exception, not as accepted
    settled = terminal.settle(batch, 1, MAX_AMOUNT)
    assert (settled["rc"], settled["balanced"]) == ("00", True)
    assert (settled["accepted"], settled["exceptions"]) == ({"count": 0, "amount": 0},
                                                           {"count": 1, "amount": MAX_AMOUNT})
    assert figures(instance, terminal.tid, batch)["accepted"] == {"count": 0, "amount": 0}
    assert Books.read(instance) == before

    # the operator sees it in the exception queue: masked card, amount, terminal, reason
    operator, token = operator_client(app, world)
    page = operator.get("/dashboard/exceptions").get_data(as_text=True)
    pan = card(world, "icbc-debit")["pan"]
    (item,) = rows(instance, "SELECT * FROM exception_items")
    assert (item["state"], item["reason"], item["amount"], item["tid"]) == ("open", "TC_UNVERIFIED", MAX_AMOUNT,
                                                                           terminal.tid)
    opened = page.split('id="open-exceptions"', 1)[1].split("</table>", 1)[0]
    assert f'data-exception="{item["id"]}"' in opened
    terminal_page = operator.get(f"/dashboard/terminals/{terminal.tid}").get_data(as_text=True)
    assert f"1 · ¥{MAX_AMOUNT // 100:,}.{MAX_AMOUNT % 100:02d}</a>" in terminal_page.split('id="open-exceptions"')[1]
    for shown in (mask_pan(pan), "¥9,999,999,999.99", terminal.tid, "TC_UNVERIFIED"):
        assert shown in opened, shown
    settlements = operator.get("/dashboard/settlements").get_data(as_text=True)
    assert pan not in page and pan not in settlements
    # the settlement page's two figures for the batch: nothing accepted, the forged sale as an exception
    assert '<span class="accepted">0 · ¥0.00</span>' in settlements
    assert "1 · ¥9,999,999,999.99</span>" in settlements.split('<span class="accepted">', 1)[1]

    # resolving records who, when, how and why, and moves no money either
    resolve = f"/dashboard/exceptions/{item['id']}/resolve"
    assert operator.post(resolve, data={"resolution": "charged_back", "note": "forged TC"}).status_code == 400  # CSRF
    answer = operator.post(resolve, data={"resolution": "charged_back", "note": "forged TC", "csrf_token": token})
    assert answer.status_code == 302
    (item,) = rows(instance, "SELECT * FROM exception_items")
    assert (item["state"], item["resolution"], item["note"], item["resolved_by"]) == (
        "resolved", "charged_back", "forged TC", "operator")
    assert item["resolved_at"]
    again = operator.post(resolve, data={"resolution": "written_off", "note": "twice", "csrf_token": token},
                          follow_redirects=True)
    assert "already resolved" in again.get_data(as_text=True)
    assert rows(instance, "SELECT resolution FROM exception_items")[0]["resolution"] == "charged_back"
    page = operator.get("/dashboard/exceptions").get_data(as_text=True)
    assert "No open exceptions." in page and "forged TC" in page.split('id="resolved-exceptions"', 1)[1]
    assert Books.read(instance) == before
    assert pan.encode() not in database_bytes(instance)


@pytest.mark.parametrize(("pan", "reason"), [("9999990000000001", "NO_ROUTE"), (None, "UNKNOWN_CARD")])
def test_an_advice_for_a_pan_no_issuer_knows_is_an_exception(terminal: SignedTerminal, instance: Instance,
                                                              pan: str | None, reason: str) -> None:
    batch = terminal.sign_on()
    before = Books.read(instance)
    real = terminal.advice("ccb-debit", 50_00, batch)
    other = pan or real["pan"][:-4] + ("0000" if real["pan"][-4:] != "0000" else "1111")  # same BIN, no account
    answer = terminal.post("/advices", without_card_number(real, other))
    assert (answer["rc"], answer["outcome"], answer["exception"]) == ("00", "exception", reason)
    assert Books.read(instance) == before
    assert figures(instance, terminal.tid, batch) == {"accepted": {"count": 0, "amount": 0},
                                                      "exceptions": {"count": 1, "amount": 50_00}}


def test_an_advice_for_a_lost_card_is_an_exception(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    execute(instance, "UPDATE accounts SET status = 'lost' WHERE issuer = 'abc-debit'")
    before = Books.read(instance)
    answer = terminal.post("/advices", terminal.advice("abc-debit", 30_00, batch))
    assert (answer["rc"], answer["outcome"], answer["exception"]) == ("00", "exception", "CARD_LOST")
    assert Books.read(instance) == before


def test_a_genuine_tc_replayed_under_a_new_stan_is_an_exception(terminal: SignedTerminal,
                                                                  instance: Instance) -> None:
    batch = terminal.sign_on()
    advice = terminal.advice("bocom-debit", 12_34, batch)
    first = terminal.post("/advices", advice)
    assert (first["outcome"], first["charged"]) == ("accepted", 12_34)
    paid = Books.read(instance)
    replay = terminal.post("/advices", {**advice, "stan": terminal.next_stan()})  # the same TC, a new STAN
    assert (replay["rc"], replay["outcome"], replay["exception"], replay["charged"]) == ("00", "exception",
                                                                                         "ATC_REPLAY", 0)
    assert Books.read(instance) == paid
    assert account(instance, "bocom-debit") == (500_000 - 12_34, 0)


def test_a_good_advice_posts_its_money_exactly_once(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    before = Books.read(instance)
    advice = terminal.advice("cmb-debit", 88_88, batch)
    answer = terminal.post("/advices", advice)
    assert (answer["rc"], answer["outcome"], answer["charged"]) == ("00", "accepted", 88_88)
    assert "exception" not in answer
    for repeat in ({**advice, "mti": "0221"}, advice):  # resends of the same advice: the stored answer
        assert terminal.post("/advices", repeat) == answer
    assert account(instance, "cmb-debit") == (500_000 - 88_88, 0)
    after = Books.read(instance)
    assert after.cleared[:2] == (before.cleared[0] + 1, before.cleared[1] + 88_88)
    settled = terminal.settle(batch, 1, 88_88)
    assert settled["balanced"] is True and settled["accepted"] == {"count": 1, "amount": 88_88}
    assert rows(instance, "SELECT COUNT(*) AS n FROM exception_items")[0]["n"] == 0


def test_the_terminal_takes_an_exception_as_delivered_and_its_batch_still_balances(
        terminal: SignedTerminal, instance: Instance, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real terminal link and journal: the acknowledged exception is not resent, and settlement balances."""
    link = HostLink(HostClient(terminal.url, terminal.tid, terminal.key, timeout=10),
                    Journal.open(tmp_path / "journal.sqlite3", key_file=tmp_path / "journal.key"), tid=terminal.tid)
    try:
        before = Books.read(instance)
        body = forged(terminal.advice("hzb-debit", 9_99, 1), amount=9_99)  # a bad TC for a small sale
        card_part = {key: body[key] for key in ("pan", "psn", "expiry", "amount", "currency", "entry_mode", "icc")}
        with caplog.at_level("WARNING", logger="terminal.host"):
            receipt = link.advise(card_part)
        assert receipt.delivered and link.journal.pending() == []
        assert "taken as an exception (TC_UNVERIFIED)" in caplog.text
        result = link.settle()
        assert (result.rc, result.balanced) == ("00", True)
        assert (result.raw["accepted"], result.raw["exceptions"]) == ({"count": 0, "amount": 0},
                                                                     {"count": 1, "amount": 9_99})
        assert Books.read(instance) == before
    finally:
        link.journal.close()


# --- the offline floor limit, per terminal and AID, declared once in the world ---------------------------------------


def _world_terminal(world: World, **changes: object) -> None:
    path = world.path(ACQUIRER_TERMINALS)
    data = json.loads(path.read_text())
    entry = data["terminals"][0]
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    path.write_text(json.dumps(data))


@pytest.fixture
def low_debit_floor(world: World, tmp_path: Path) -> Iterator[tuple[Instance, SignedTerminal]]:
    """The world's demo terminal with a ¥300.00 floor limit for the debit AID (the credit AID keeps ¥2,000.00)."""
    _world_terminal(world, aid_floor_limits={DEBIT_AID: 300_00, CREDIT_AID: 200_000})
    instance, _ = init_instance(tmp_path / "acquirer-low-floor", world)
    with live_acquirer(instance) as (_, server):
        yield instance, SignedTerminal(server.url, world)


def test_an_advice_over_the_floor_limit_of_its_aid_is_an_exception(
        low_debit_floor: tuple[Instance, SignedTerminal]) -> None:
    instance, terminal = low_debit_floor
    batch = terminal.sign_on()
    before = Books.read(instance)
    over = terminal.advice("icbc-debit", 400_00, batch)  # a genuine TC: the card's own offline limit is ¥500.00
    over["icc"]["84"] = DEBIT_AID  # the DF name, as the terminal's DE55 carries it
    answer = terminal.post("/advices", over)
    assert (answer["rc"], answer["outcome"], answer["exception"]) == ("00", "exception", "OVER_FLOOR_LIMIT")
    assert account(instance, "icbc-debit") == (500_000, 0) and Books.read(instance).cleared == before.cleared

    at_limit = terminal.advice("ccb-debit", 300_00, batch)
    at_limit["icc"]["84"] = DEBIT_AID
    assert terminal.post("/advices", at_limit)["outcome"] == "accepted"  # at the limit the card may stay offline
    credit = terminal.advice("citic-credit", 400_00, batch)
    credit["icc"]["84"] = CREDIT_AID
    assert terminal.post("/advices", credit)["outcome"] == "accepted"  # the credit AID's limit is ¥2,000.00
    no_aid = terminal.advice("psbc-debit", 400_00, batch)  # no AID in DE55: the terminal's default limit
    assert terminal.post("/advices", no_aid)["outcome"] == "accepted"
    assert account(instance, "ccb-debit") == (500_000 - 300_00, 0)
    assert rows(instance, "SELECT floor_limit FROM terminal_floor_limits WHERE aid = ?", DEBIT_AID)[0][0] == 300_00


def test_the_world_declares_the_floor_limit_once_for_both_ends(world: World, instance: Instance) -> None:
    """The acquirer's figures (loaded at init) are the ones the world wrote into the terminal's TOML."""
    from firmware.issuing.layout import GATE_CONFIG
    from terminal.config import load_config

    configs = {load_config(world.path(name)).terminal.id: load_config(world.path(name))
               for name in (Path("terminal.toml"), GATE_CONFIG)}
    assert {entry["tid"] for entry in world.terminals()} == set(configs)  # the counter and the gate
    for entry in world.terminals():
        loaded = {row["aid"]: row["floor_limit"] for row in rows(instance, "SELECT aid, floor_limit FROM "
                                                                           "terminal_floor_limits WHERE tid = ?",
                                                                 entry["tid"])}
        config = configs[entry["tid"]]
        assert loaded == {"": config.limits.floor_limit,
                          **{aid.hex().upper(): limits.floor_limit for aid, limits in config.limits.aid_limits}}
        assert loaded == {"": 200_000, DEBIT_AID: 200_000, CREDIT_AID: 200_000, "A000000333010103": 200_000}


def test_a_terminal_the_world_gives_no_floor_limit_has_its_advices_all_taken_as_exceptions(
        world: World, tmp_path: Path) -> None:
    _world_terminal(world, floor_limit=None, aid_floor_limits=None)
    instance, _ = init_instance(tmp_path / "acquirer", world)
    with live_acquirer(instance) as (_, server):
        terminal = SignedTerminal(server.url, world)
        batch = terminal.sign_on()
        answer = terminal.post("/advices", terminal.advice("njcb-debit", 1_00, batch))
    assert (answer["outcome"], answer["exception"]) == ("exception", "OVER_FLOOR_LIMIT")
    assert account(instance, "njcb-debit") == (500_000, 0)


@pytest.mark.parametrize(("changes", "named"), [
    ({"floor_limit": -1}, "terminals[0].floor_limit"),
    ({"floor_limit": "200000"}, "terminals[0].floor_limit"),
    ({"aid_floor_limits": {"a000000333010101": 1}}, "terminals[0].aid_floor_limits"),
    ({"aid_floor_limits": {DEBIT_AID: 10**12}}, f"terminals[0].aid_floor_limits.{DEBIT_AID}"),
    ({"aid_floor_limits": [DEBIT_AID]}, "terminals[0].aid_floor_limits"),
])
def test_a_malformed_floor_limit_in_the_world_stops_init_naming_the_field(
        world: World, tmp_path: Path, changes: dict, named: str) -> None:
    _world_terminal(world, **changes)
    with pytest.raises(FileFormatError, match=re.escape(f"acquirer/terminals.json {named}")):
        init_instance(tmp_path / "acquirer", world)


# --- the ISO 8583 endpoint shares the rules ------------------------------------------------------------------------


def test_a_forged_iso_8583_advice_is_an_exception_too(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    before = Books.read(instance)
    answers = [terminal.iso(terminal.iso_financial(forged(terminal.advice(issuer, 20_00, batch))))
               for issuer in ("icbc-debit", "boc-debit")]
    for answer in answers:
        assert (answer["t"], answer["39"], answer["44"]) == ("0230", "00", "TC_UNVERIFIED")
    assert Books.read(instance) == before
    assert figures(instance, terminal.tid, batch)["exceptions"] == {"count": 2, "amount": 2 * MAX_AMOUNT}
    # the host's totals no longer fit DE48 (n12): still an answer, capped, and not balanced
    settled = terminal.iso(terminal.iso_settlement(batch, 2, MAX_AMOUNT))
    assert (settled["t"], settled["39"]) == ("0510", "00")
    assert settled["48"] == f"{MAX_AMOUNT:012d}002" + "0" * 15 + "2"
    assert Books.read(instance) == before
