"""The e-purse's load (top-up): INITIALIZE FOR LOAD, CREDIT FOR LOAD, the load's GET TRANSACTION PROVE.

The test plays the load host: it checks the card's MAC1 with the load key and makes MAC2 itself (the doc's
blog vector for the session key and both MACs, with the EP load type 02 instead of the blog's 01).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from emvcore import epurse
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.crypto import transit as tc
from firmware.apps.cards.transit import TransitKeys, TransitProfile, TransitPurse, TransitState
from firmware.jsonfile import Fields

LOAD_KEY = bytes.fromhex("11223344556677888877665544332211")  # the doc's load key
PURCHASE_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TAC_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TERMINAL_ID = bytes.fromhex("001122334455")
DATE_TIME = bytes.fromhex("20111221214822")
RANDOM = bytes.fromhex("11223344")

SW_OK, SW_WRONG_LENGTH, SW_CONDITIONS, SW_WRONG_DATA = 0x9000, 0x6700, 0x6985, 0x6A80
SW_P1P2, SW_NOT_FOUND, SW_MAC, SW_KEY_INDEX = 0x6A86, 0x6A88, 0x9302, 0x9403


class _Saves:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def __call__(self) -> None:
        if self.fail:
            raise OSError("EEPROM write failed")
        self.calls += 1


def _purse(balance: int = 5_000, *, load_key: bytes | None = LOAD_KEY, saves: Callable[[], None] | None = None,
           online_serial: int = 0) -> TransitPurse:
    profile = TransitProfile("3104310012345678", "3100", "Hangzhou", bytes.fromhex("3100000000000000"),
                             dt.date(2024, 1, 1), dt.date(2034, 12, 31))
    keys = TransitKeys(purchase_key=PURCHASE_KEY, tac_key=TAC_KEY, load_key=load_key)
    state = TransitState(balance=balance, online_serial=online_serial)
    return TransitPurse(profile, keys, state, saves, rng=lambda n: RANDOM[:n])


def _initialize(purse: TransitPurse, amount: int) -> ResponseApdu:
    return purse.process(epurse.initialize_for_load(amount, TERMINAL_ID))


def _host_mac2(quote: epurse.LoadQuote, amount: int, date_time: bytes = DATE_TIME) -> bytes:
    """The host's side: MAC1 must verify before MAC2 is made."""
    seslk = tc.load_session_key(LOAD_KEY, quote.card_random, quote.online_serial)
    assert tc.load_mac1(seslk, quote.balance, amount, epurse.TXN_EP_LOAD, TERMINAL_ID) == quote.mac1
    return tc.load_mac2(seslk, amount, epurse.TXN_EP_LOAD, TERMINAL_ID, date_time)


def _load(purse: TransitPurse, amount: int) -> tuple[epurse.LoadQuote, bytes, ResponseApdu]:
    answer = _initialize(purse, amount)
    assert answer.sw == SW_OK
    quote = epurse.LoadQuote.decode(answer.data)
    mac2 = _host_mac2(quote, amount)
    return quote, mac2, purse.process(epurse.credit_for_load(DATE_TIME, mac2))


def test_initialize_for_load_quotes_balance_serial_and_the_doc_vector_mac1() -> None:
    answer = _initialize(_purse(balance=0), 0x1000)
    assert answer.sw == SW_OK and len(answer.data) == 16
    quote = epurse.LoadQuote.decode(answer.data)
    assert (quote.balance, quote.online_serial, quote.key_version, quote.algorithm, quote.card_random) == (
        0, 0, 1, 0, RANDOM)
    seslk = tc.load_session_key(LOAD_KEY, RANDOM, 0)
    assert seslk == bytes.fromhex("9B1D924E05595603")  # doc §13
    assert quote.mac1 == tc.load_mac1(seslk, 0, 0x1000, 0x02, TERMINAL_ID)
    assert quote.encode() == answer.data


def test_credit_for_load_credits_counts_persists_and_answers_the_tac() -> None:
    saves = _Saves()
    purse = _purse(saves=saves)
    _, mac2, answer = _load(purse, 1_000)
    assert answer.sw == SW_OK
    assert answer.data == tc.load_tac(TAC_KEY, 6_000, 0, 1_000, 0x02, TERMINAL_ID, DATE_TIME)
    assert (purse.state.balance, purse.state.online_serial, saves.calls) == (6_000, 1, 1)
    assert purse.state.log[0].txn_type == 0x02 and purse.state.log[0].amount == 1_000
    # the load's proof: the MAC2 the card accepted ‖ the TAC
    prove = purse.process(epurse.get_transaction_prove(epurse.TXN_EP_LOAD, 0))
    assert prove.sw == SW_OK and prove.data == mac2 + answer.data
    assert purse.process(epurse.get_transaction_prove(epurse.TXN_EP_LOAD, 1)).sw == SW_NOT_FOUND
    assert purse.process(epurse.get_transaction_prove(epurse.TXN_EP_PURCHASE, 0)).sw == SW_NOT_FOUND
    # a second load uses the next serial
    quote2, _, answer2 = _load(purse, 500)
    assert quote2.online_serial == 1 and answer2.sw == SW_OK and purse.state.balance == 6_500


def test_the_load_survives_the_card_file() -> None:
    purse = _purse()
    _load(purse, 1_000)
    again = TransitState.from_dict(Fields(purse.state.to_dict(), "state"))
    assert again == purse.state and again.last_load is not None


def test_a_bad_mac2_is_refused_and_nothing_changes() -> None:
    saves = _Saves()
    purse = _purse(saves=saves)
    quote = epurse.LoadQuote.decode(_initialize(purse, 1_000).data)
    mac2 = _host_mac2(quote, 1_000)
    answer = purse.process(epurse.credit_for_load(DATE_TIME, bytes([mac2[0] ^ 1]) + mac2[1:]))
    assert answer.sw == SW_MAC
    assert (purse.state.balance, purse.state.online_serial, saves.calls) == (5_000, 0, 0)
    # the session is spent: the right MAC2 afterwards is refused too
    assert purse.process(epurse.credit_for_load(DATE_TIME, mac2)).sw == SW_CONDITIONS
    assert purse.state.balance == 5_000


def test_a_mac2_for_another_date_time_is_refused() -> None:
    purse = _purse()
    quote = epurse.LoadQuote.decode(_initialize(purse, 1_000).data)
    mac2 = _host_mac2(quote, 1_000, bytes.fromhex("20111221214823"))
    assert purse.process(epurse.credit_for_load(DATE_TIME, mac2)).sw == SW_MAC


def test_credit_without_a_pending_initialize_is_refused() -> None:
    purse = _purse()
    assert purse.process(epurse.credit_for_load(DATE_TIME, bytes(4))).sw == SW_CONDITIONS
    # a purchase's INITIALIZE does not open a load
    assert purse.process(epurse.initialize_for_purchase(100, TERMINAL_ID)).sw == SW_OK
    assert purse.process(epurse.credit_for_load(DATE_TIME, bytes(4))).sw == SW_CONDITIONS
    # nor may a load's INITIALIZE be debited
    assert _initialize(purse, 100).sw == SW_OK
    assert purse.process(epurse.debit_for_purchase(bytes(4), DATE_TIME, bytes(4))).sw == SW_CONDITIONS
    # any command in between forgets the load
    quote = epurse.LoadQuote.decode(_initialize(purse, 100).data)
    purse.process(CommandApdu(0x80, 0x5C, 0x00, 0x02, b"", 4))
    assert purse.process(epurse.credit_for_load(DATE_TIME, _host_mac2(quote, 100))).sw == SW_CONDITIONS
    quote = epurse.LoadQuote.decode(_initialize(purse, 100).data)
    purse.deselect()
    assert purse.process(epurse.credit_for_load(DATE_TIME, _host_mac2(quote, 100))).sw == SW_CONDITIONS
    assert (purse.state.balance, purse.state.online_serial) == (5_000, 0)


@pytest.mark.parametrize(("balance", "amount"), [(epurse.PURSE_LIMIT, 1), (5_000, epurse.PURSE_LIMIT - 4_999),
                                                 (0, 0)])
def test_a_load_past_the_purse_limit_or_of_nothing_is_refused(balance: int, amount: int) -> None:
    assert _initialize(_purse(balance=balance), amount).sw == SW_CONDITIONS


def test_a_load_up_to_the_limit_is_fine() -> None:
    purse = _purse(balance=5_000)
    assert _load(purse, epurse.PURSE_LIMIT - 5_000)[2].sw == SW_OK
    assert purse.state.balance == epurse.PURSE_LIMIT


def test_a_used_up_online_serial_is_refused() -> None:
    assert _initialize(_purse(online_serial=0xFFFF), 100).sw == SW_CONDITIONS


def test_a_card_without_a_load_key_cannot_be_loaded() -> None:
    assert _initialize(_purse(load_key=None), 100).sw == SW_KEY_INDEX


def test_a_failed_save_undoes_the_credit() -> None:
    saves = _Saves()
    purse = _purse(saves=saves)
    quote = epurse.LoadQuote.decode(_initialize(purse, 1_000).data)
    saves.fail = True
    with pytest.raises(OSError):
        purse.process(epurse.credit_for_load(DATE_TIME, _host_mac2(quote, 1_000)))
    assert (purse.state.balance, purse.state.online_serial, purse.state.last_load, purse.state.log) == (
        5_000, 0, None, [])


@pytest.mark.parametrize(("command", "sw"), [
    (CommandApdu(0x80, 0x50, 0x00, 0x02, bytes([1]) + bytes(4) + TERMINAL_ID[:5], 16), SW_WRONG_LENGTH),
    (CommandApdu(0x80, 0x50, 0x00, 0x02, bytes([1, 0, 0, 0, 1]) + TERMINAL_ID, 15), SW_WRONG_LENGTH),
    (CommandApdu(0x80, 0x50, 0x00, 0x02, bytes([2, 0, 0, 0, 1]) + TERMINAL_ID, 16), SW_KEY_INDEX),
    (CommandApdu(0x80, 0x50, 0x00, 0x01, bytes([1, 0, 0, 0, 1]) + TERMINAL_ID, 16), SW_P1P2),
    (CommandApdu(0x80, 0x52, 0x00, 0x00, bytes(10), 4), SW_WRONG_LENGTH),
    (CommandApdu(0x80, 0x52, 0x00, 0x00, bytes(11), 3), SW_WRONG_LENGTH),
    (CommandApdu(0x80, 0x52, 0x01, 0x00, bytes(11), 4), SW_P1P2),
    (CommandApdu(0x00, 0x52, 0x00, 0x00, bytes(11), 4), 0x6E00),
    (CommandApdu(0x80, 0x5A, 0x00, 0x03, bytes(2), 8), SW_P1P2),
])
def test_malformed_load_commands_are_refused_without_change(command: CommandApdu, sw: int) -> None:
    saves = _Saves()
    purse = _purse(saves=saves)
    assert purse.process(command).sw == sw
    assert (purse.state.balance, purse.state.online_serial, saves.calls) == (5_000, 0, 0)


def test_a_credit_with_an_impossible_date_is_refused() -> None:
    purse = _purse()
    quote = epurse.LoadQuote.decode(_initialize(purse, 100).data)
    bad_date = bytes.fromhex("20111341214822")
    assert purse.process(epurse.credit_for_load(bad_date, _host_mac2(quote, 100, bad_date))).sw == SW_WRONG_DATA
    assert purse.state.balance == 5_000


def test_load_quote_refuses_a_short_answer() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        epurse.LoadQuote.decode(bytes(15))
