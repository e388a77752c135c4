"""Issue 11 §1: a reversal's amount is compared with the sale's.

As found: a reversal (0400/0420) gave back everything the sale charged whatever its DE4 said. Now DE4 must be the
sale's amount (reversed), or less (partial: only that share of the charge is given back, and later partials at
most what still stands); more moves no money and is recorded with its outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from advices_kit import ISO_HEADER, MMDD, Books, SignedTerminal, account, live_acquirer
from hostdb import rows

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from hostproto.messages import MAX_AMOUNT


@pytest.fixture
def terminal(instance: Instance, world: World) -> Iterator[SignedTerminal]:
    with live_acquirer(instance) as (_, server):
        yield SignedTerminal(server.url, world)


def approved_sale(terminal: SignedTerminal, issuer: str, amount: int, batch: int) -> dict[str, Any]:
    sale = terminal.financial(issuer, amount, batch)
    assert terminal.post("/authorizations", sale)["rc"] == "00"
    return sale


def original_state(instance: Instance, sale: dict[str, Any]) -> tuple[str, int, int]:
    (row,) = rows(instance, "SELECT state, reversed_amount, reversed_charged FROM transactions"
                            " WHERE kind = 'authorization' AND stan = ?", sale["stan"])
    return row["state"], row["reversed_amount"], row["reversed_charged"]


def test_a_reversal_above_the_original_moves_no_money(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    sale = approved_sale(terminal, "icbc-debit", 100_00, batch)
    charged = Books.read(instance)
    for amount in (100_01, MAX_AMOUNT):
        answer = terminal.reversal(sale, amount)
        assert (answer["rc"], answer["outcome"]) == ("00", "exceeds_original")  # acknowledged, nothing undone
    assert account(instance, "icbc-debit") == (500_000 - 100_00, 0)
    assert Books.read(instance) == charged
    assert original_state(instance, sale) == ("approved", 0, 0)
    states = [(r["state"], r["charged"]) for r in rows(instance, "SELECT state, charged FROM transactions"
                                                                 " WHERE kind = 'reversal' ORDER BY id")]
    assert states == [("exceeds_original", 0), ("exceeds_original", 0)]
    assert terminal.settle(batch, 1, 100_00)["balanced"] is True  # the sale still stands in the batch


def test_a_partial_reversal_gives_back_only_its_share_and_never_more_than_remains(
        terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    before = Books.read(instance)
    sale = approved_sale(terminal, "ccb-debit", 100_00, batch)

    first = terminal.reversal(sale, 30_00)
    assert first["outcome"] == "partial"
    assert terminal.reversal({**sale}, 30_00)["outcome"] == "partial"  # another 30.00 under a new STAN: allowed
    assert account(instance, "ccb-debit") == (500_000 - 40_00, 0)
    assert original_state(instance, sale) == ("approved", 60_00, 60_00)
    assert Books.read(instance).cleared == (before.cleared[0] + 1, before.cleared[1] + 40_00, 0,
                                            before.cleared[3] + 40_00)

    too_much = terminal.reversal(sale, 40_01)  # only 40.00 still stands
    assert too_much["outcome"] == "exceeds_remaining"
    assert account(instance, "ccb-debit") == (500_000 - 40_00, 0)

    last = terminal.reversal(sale, 40_00)
    assert last["outcome"] == "partial"
    assert original_state(instance, sale) == ("reversed", 100_00, 100_00)
    assert account(instance, "ccb-debit") == (500_000, 0)
    assert terminal.reversal(sale, 1_00)["outcome"] == "already_reversed"
    assert Books.read(instance).money() == before.money()
    given_back = [r["charged"] for r in rows(instance, "SELECT charged FROM transactions WHERE kind = 'reversal'"
                                                       " ORDER BY id")]
    assert given_back == [30_00, 30_00, 0, 40_00, 0]
    assert terminal.settle(batch, 0, 0)["balanced"] is True


def test_partial_reversals_of_a_promoted_sale_give_back_exactly_what_was_charged(
        terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    before = Books.read(instance)
    sale = approved_sale(terminal, "boc-credit", 50_00, batch)  # 10 % off: the card paid 45.00
    assert account(instance, "boc-credit") == (None, 45_00)
    assert terminal.reversal(sale, 20_00)["outcome"] == "partial"
    assert account(instance, "boc-credit") == (None, 27_00)  # 30.00 stands, of which the card pays 27.00
    cleared = Books.read(instance).cleared
    assert cleared == (before.cleared[0] + 1, before.cleared[1] + 30_00, 3_00, before.cleared[3] + 27_00)
    assert terminal.settle(batch, 1, 30_00)["balanced"] is True  # the terminal's sale now stands at 30.00
    assert account(instance, "boc-credit") == (None, 27_00)


def test_a_retransmitted_partial_reversal_gives_back_once(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    sale = approved_sale(terminal, "abc-debit", 80_00, batch)
    request = {"mti": "0400", "tid": terminal.tid, "stan": terminal.next_stan(), "local_date": MMDD, "reason": "96",
               "original_stan": sale["stan"], "original_local_date": sale["local_date"], "amount": 20_00}
    first = terminal.post("/reversals", request)
    assert first["outcome"] == "partial"
    assert terminal.post("/reversals", {**request, "mti": "0401"}) == first
    assert account(instance, "abc-debit") == (500_000 - 60_00, 0)


def test_an_iso_8583_reversal_is_compared_with_the_sale_too(terminal: SignedTerminal, instance: Instance) -> None:
    batch = terminal.sign_on()
    sale = approved_sale(terminal, "egb-debit", 50_00, batch)

    def iso_reversal(amount: int) -> dict[str, str]:
        return {"h": ISO_HEADER, "t": "0400", "3": "000000", "4": f"{amount:012d}", "11": terminal.next_stan(),
                "13": MMDD, "39": "96", "41": terminal.tid, "42": terminal.mid, "49": "156",
                "90": f"0200{sale['stan']}{sale['local_date']}101530" + "0" * 22}

    above = terminal.iso(iso_reversal(50_01))
    assert (above["t"], above["39"], above["44"]) == ("0410", "00", "exceeds_original")
    assert account(instance, "egb-debit") == (500_000 - 50_00, 0)
    part = terminal.iso(iso_reversal(10_00))
    assert (part["39"], part["44"]) == ("00", "partial")
    assert account(instance, "egb-debit") == (500_000 - 40_00, 0)
