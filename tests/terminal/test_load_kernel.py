"""The load kernel against a world card's chip, a host played by the test and the journal's memory: every hostile
or broken answer ends the load with nothing credited, or keeps it for GET TRANSACTION PROVE; never twice."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from emvcore import epurse
from emvcore.crypto import transit as tc
from emvcore.crypto.transit import diversify_card_key
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World
from terminal.journal.journal import Journal, TransitLoads
from terminal.kernel.errors import CardGone
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.transit_load import LoadAuthorization, load

TERMINAL_ID = b"000001"
NOW = datetime.datetime.now()
AMOUNT = 1_000


class Host:
    """The load host as the acquirer would answer, with ways to misbehave."""

    def __init__(self, world: World) -> None:
        self.masters = {c["city_code"]: bytes.fromhex(c["load_master_key"]) for c in world.transit_keys()}
        self.answer: Callable[[LoadAuthorization], LoadAuthorization] = lambda good: good
        self.requests: list[Mapping[str, Any]] = []

    def authorize_load(self, request: Mapping[str, Any]) -> LoadAuthorization:
        self.requests.append(request)
        quote = epurse.LoadQuote.decode(bytes.fromhex(request["initialize"]))
        key = diversify_card_key(self.masters[request["city_code"]], request["card_number"])
        seslk = tc.load_session_key(key, quote.card_random, quote.online_serial)
        date_time = bytes.fromhex(f"{NOW:%Y%m%d%H%M%S}")
        mac2 = tc.load_mac2(seslk, request["amount"], epurse.TXN_EP_LOAD, TERMINAL_ID, date_time)
        return self.answer(LoadAuthorization(True, "Approved", mac2, date_time, {"stan": "000001",
                                                                                  "local_date": "0101"}))


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[TransitLoads]:
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        yield journal.transit_loads()


@pytest.fixture
def card(world: World) -> PlainCard:
    return PlainCard.load(world.path(Path(world.transit_cards()[0]["file"])))


def _application(card: PlainCard) -> dict[str, Any]:
    """The card file as it is now on disk (each tap loads it afresh)."""
    return dict(PlainCard.load(card.path).to_dict()["applications"][0])


def _balance(card: PlainCard) -> int:
    return int(_application(card)["state"]["balance"])


def _number(card: PlainCard) -> str:
    return str(_application(card)["profile"]["card_number"])


def _tap(card: PlainCard, *, tear_at: int | None = None,
         rewrite: Callable[[bytes, bytes], bytes] | None = None) -> Callable[[bytes], bytes]:
    """The card's chip on a fresh tap; `tear_at`: the Nth command is processed, then the card is gone;
    `rewrite(command, answer)`: what the terminal receives instead."""
    chip = PlainCard.load(card.path).chip()
    count = [0]

    def transceive(raw: bytes) -> bytes:
        count[0] += 1
        answer = chip.transceive(raw)
        if tear_at is not None and count[0] >= tear_at:
            raise CardGone("torn")
        return rewrite(raw, answer) if rewrite else answer

    return transceive


def test_a_load_credits_and_keeps_the_tac(card: PlainCard, world: World, memory: TransitLoads) -> None:
    before = _balance(card)
    result = load(_tap(card), Host(world), memory, TERMINAL_ID, AMOUNT, NOW)
    assert (result.outcome, result.message, result.balance_after) == (Outcome.APPROVED, "Card topped up",
                                                                      before + AMOUNT)
    assert _balance(card) == before + AMOUNT
    assert [(x["state"], x["tac"]) for x in memory.loads()] == [("credited", result.tac.hex().upper())]


@pytest.mark.parametrize("amount", [0, -1, epurse.PURSE_LIMIT + 1, True])
def test_an_impossible_amount_is_refused_before_the_card(card: PlainCard, world: World, memory: TransitLoads,
                                                         amount: int) -> None:
    result = load(_tap(card, tear_at=1), Host(world), memory, TERMINAL_ID, amount, NOW)
    assert result.message == Message.ENTER_AMOUNT


def test_a_host_refusal_leaves_the_card_and_the_journal_untouched(card: PlainCard, world: World,
                                                                  memory: TransitLoads) -> None:
    host = Host(world)
    host.answer = lambda good: LoadAuthorization(False, "Cryptographic failure (88)")
    before = _balance(card)
    result = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert (result.outcome, result.message) == (Outcome.DECLINED, "Declined: Cryptographic failure (88)")
    assert _balance(card) == before and memory.credit_pending(_number(card)) is None


@pytest.mark.parametrize("bad", [
    LoadAuthorization(True, "Approved", b"\x00" * 3, b"\x20" * 7),
    LoadAuthorization(True, "Approved", b"\x00" * 4, b"\x20" * 6),
])
def test_a_host_answer_of_the_wrong_size_sends_no_credit(card: PlainCard, world: World, memory: TransitLoads,
                                                         bad: LoadAuthorization) -> None:
    host = Host(world)
    host.answer = lambda good: bad
    before = _balance(card)
    result = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert result.outcome == Outcome.END_APPLICATION and _balance(card) == before and memory.loads() == []


def test_a_wrong_mac2_is_refused_by_the_card_then_proven_never_credited(card: PlainCard, world: World,
                                                                       memory: TransitLoads) -> None:
    host = Host(world)
    host.answer = lambda good: LoadAuthorization(True, "Approved", b"\x00" * 4, good.date_time, good.reference)
    before = _balance(card)
    refused = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert (refused.outcome, refused.message) == (Outcome.END_APPLICATION, Message.CARD_ERROR)
    assert _balance(card) == before
    host.answer = lambda good: good
    again = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)  # PROVE: not found; still at that serial
    assert (again.outcome, again.recovered) == (Outcome.APPROVED, False)
    assert _balance(card) == before + AMOUNT and len(host.requests) == 2


@pytest.mark.parametrize("answer", [b"\x90\x00", b"\x00" * 15 + b"\x90\x00", b"\x6a"])
def test_an_unreadable_initialize_answer_ends_the_load(card: PlainCard, world: World, memory: TransitLoads,
                                                       answer: bytes) -> None:
    def rewrite(command: bytes, real: bytes) -> bytes:
        return answer if command[1] == epurse.INS_INITIALIZE else real

    host = Host(world)
    result = load(_tap(card, rewrite=rewrite), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert result.outcome == Outcome.END_APPLICATION and host.requests == [] and memory.loads() == []


def test_a_garbled_credit_answer_is_proven_on_the_next_tap(card: PlainCard, world: World,
                                                           memory: TransitLoads) -> None:
    def rewrite(command: bytes, real: bytes) -> bytes:
        return b"\x01\x02\x90\x00" if command[1] == epurse.INS_CREDIT_FOR_LOAD else real

    before = _balance(card)
    host = Host(world)
    garbled = load(_tap(card, rewrite=rewrite), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert garbled.outcome == Outcome.TRY_AGAIN and _balance(card) == before + AMOUNT
    proven = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert (proven.outcome, proven.recovered, proven.tac is not None) == (Outcome.APPROVED, True, True)
    assert _balance(card) == before + AMOUNT and len(host.requests) == 1


def test_a_torn_load_the_card_moved_past_is_not_credited_again(card: PlainCard, world: World,
                                                               memory: TransitLoads, tmp_path: Path) -> None:
    host = Host(world)
    before = _balance(card)
    torn = load(_tap(card, tear_at=3), host, memory, TERMINAL_ID, AMOUNT, NOW)  # credited, the TAC lost
    assert torn.outcome == Outcome.TRY_AGAIN
    with Journal.open(tmp_path / "other-counter.sqlite3") as other:
        load(_tap(card), host, other.transit_loads(), TERMINAL_ID, 500, NOW)  # another counter loads it twice
        load(_tap(card), host, other.transit_loads(), TERMINAL_ID, 500, NOW)
    assert _balance(card) == before + AMOUNT + 1_000
    result = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)  # PROVE: not found, the serial moved on
    assert (result.outcome, result.recovered, result.tac) == (Outcome.APPROVED, True, None)
    assert _balance(card) == before + AMOUNT + 1_000
    assert [x["state"] for x in memory.loads()] == ["unproven"]


def test_a_proof_of_another_load_at_that_serial_means_ours_was_never_credited(card: PlainCard, world: World,
                                                                              memory: TransitLoads) -> None:
    host = Host(world)
    before = _balance(card)
    torn = load(_tap(card, tear_at=3), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert torn.outcome == Outcome.TRY_AGAIN
    number = _number(card)
    pending = dict(memory.credit_pending(number) or {})
    assert pending, "the torn load is remembered"
    memory.forget_credit(number)
    # as if the credit at that serial had come from another load (another MAC2) than the one remembered here
    memory.remember_credit(number, {**pending, "mac2": "00000000"})
    result = load(_tap(card), host, memory, TERMINAL_ID, AMOUNT, NOW)
    assert (result.outcome, result.recovered) == (Outcome.APPROVED, False)  # the proof is not ours: loaded anew
    assert _balance(card) == before + 2 * AMOUNT


def test_an_unreadable_torn_record_stops_the_tap(card: PlainCard, world: World, memory: TransitLoads) -> None:
    memory.remember_credit(_number(card), {"online_serial": 0, "mac2": "zz"})
    result = load(_tap(card), Host(world), memory, TERMINAL_ID, AMOUNT, NOW)
    assert (result.outcome, result.message) == (Outcome.END_APPLICATION, Message.CARD_ERROR)
    assert "unreadable" in result.reasons[-1]
