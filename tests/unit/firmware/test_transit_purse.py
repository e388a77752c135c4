"""The T-Union e-purse card application: purchases, tears, persistence and every malformed command.

The test plays the PSAM: it derives SESPK and MAC1 itself, then checks the card's MAC2 and TAC.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.crypto import transit as tc
from firmware.apps.cards.transit import (
    AID,
    LABEL,
    LOG_SIZE,
    PurchaseRecord,
    TransitKeys,
    TransitProfile,
    TransitPurse,
    TransitState,
)
from firmware.jsonfile import Fields

PURCHASE_KEY = bytes.fromhex("11223344556677888877665544332211")
TAC_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TERMINAL_ID = bytes.fromhex("001122334455")
DATE_TIME = bytes.fromhex("20120229135100")
VECTOR_RANDOM = bytes.fromhex("11223344")

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_P1P2 = 0x6A86
SW_OFFSET = 0x6B00
SW_NO_SUCH_DATA = 0x6A88
SW_INS = 0x6D00
SW_CLA = 0x6E00
SW_MAC = 0x9302
SW_BALANCE = 0x9401
SW_KEY_INDEX = 0x9403


def _profile() -> TransitProfile:
    return TransitProfile(
        card_number="3104310012345678",
        city_code="3100",
        city_name="Shanghai",
        issuer_id=bytes.fromhex("3100FFFF00000001"),
        valid_from=dt.date(2024, 1, 1),
        valid_to=dt.date(2034, 12, 31),
    )


def _keys() -> TransitKeys:
    return TransitKeys(purchase_key=PURCHASE_KEY, tac_key=TAC_KEY)


class _Counter:
    """on_change spy that also snapshots the state it was called with (persist happens before the answer)."""

    def __init__(self) -> None:
        self.calls = 0
        self.snapshots: list[dict[str, Any]] = []
        self.state: TransitState | None = None

    def __call__(self) -> None:
        self.calls += 1
        assert self.state is not None
        self.snapshots.append(self.state.to_dict())


def _purse(
    balance: int = 10_000,
    *,
    rng: Callable[[int], bytes] | None = None,
    state: TransitState | None = None,
    counter: _Counter | None = None,
) -> TransitPurse:
    state = state if state is not None else TransitState(balance=balance)
    if counter is not None:
        counter.state = state
    kwargs = {} if rng is None else {"rng": rng}
    return TransitPurse(_profile(), _keys(), state, counter, **kwargs)


def _fixed_rng(value: bytes) -> Callable[[int], bytes]:
    def rng(n: int) -> bytes:
        assert n == len(value)
        return value

    return rng


def _initialize(amount: int, *, key_index: int = 1, terminal_id: bytes = TERMINAL_ID) -> CommandApdu:
    data = bytes([key_index]) + amount.to_bytes(4, "big") + terminal_id
    return CommandApdu(0x80, 0x50, 0x01, 0x02, data, 0x0F)


def _debit(terminal_serial: bytes, date_time: bytes, mac1: bytes) -> CommandApdu:
    return CommandApdu(0x80, 0x54, 0x01, 0x00, terminal_serial + date_time + mac1, 0x08)


def _prove(serial: int) -> CommandApdu:
    return CommandApdu(0x80, 0x5A, 0x00, 0x06, serial.to_bytes(2, "big"), 0x08)


GET_BALANCE = CommandApdu(0x80, 0x5C, 0x00, 0x02, b"", 0x04)


def _balance(purse: TransitPurse) -> int:
    answer = purse.process(GET_BALANCE)
    assert answer.sw == SW_OK
    return int.from_bytes(answer.data, "big")


@dataclass
class _Sale:
    """What the PSAM saw of one purchase and what it expects back."""

    initialize: ResponseApdu
    debit: ResponseApdu | None
    serial: int
    expected_mac2: bytes
    expected_tac: bytes


@dataclass
class _Psam:
    """Plays the terminal's PSAM: MAC1 for the card, expected MAC2 and TAC to check the card's answer."""

    terminal_serial: int = 1
    date_time: bytes = DATE_TIME

    def initialize(self, purse: TransitPurse, amount: int) -> ResponseApdu:
        return purse.process(_initialize(amount))

    def debit(self, purse: TransitPurse, amount: int, init: ResponseApdu, *, corrupt: bool = False) -> _Sale:
        assert init.sw == SW_OK and len(init.data) == 15
        serial = int.from_bytes(init.data[4:6], "big")
        card_random = init.data[11:15]
        terminal_serial = self.terminal_serial.to_bytes(4, "big")
        self.terminal_serial += 1
        sespk = tc.purchase_session_key(PURCHASE_KEY, card_random, serial, terminal_serial)
        mac1 = tc.purchase_mac1(sespk, amount, 0x06, TERMINAL_ID, self.date_time)
        if corrupt:
            mac1 = bytes([mac1[0] ^ 0x01]) + mac1[1:]
        answer = purse.process(_debit(terminal_serial, self.date_time, mac1))
        return _Sale(
            initialize=init,
            debit=answer,
            serial=serial,
            expected_mac2=tc.purchase_mac2(sespk, amount),
            expected_tac=tc.purchase_tac(TAC_KEY, amount, 0x06, TERMINAL_ID, terminal_serial, self.date_time),
        )

    def buy(self, purse: TransitPurse, amount: int) -> _Sale:
        return self.debit(purse, amount, self.initialize(purse, amount))


# ----------------------------------------------------------------------------------------------------
# selection and reads


def test_select_answers_fci_with_label_and_issuer_data() -> None:
    purse = _purse()
    answer = purse.select()
    assert answer.sw == SW_OK
    fci = tlv.flatten(answer.data)
    assert answer.data[0] == 0x6F
    assert fci[0x84] == AID == bytes.fromhex("A000000632010105")
    assert fci[0x50] == LABEL.encode() == b"MOT_T_EP"
    assert fci[0x9F0C] == _profile().public_file()
    assert purse.aid == AID and purse.label == LABEL


def test_public_file_layout() -> None:
    purse = _purse()
    answer = purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x00, b"", 0x100))
    assert answer.sw == SW_OK
    data = answer.data
    assert len(data) == 30
    assert data[0:8] == bytes.fromhex("3100FFFF00000001")
    assert data[8:10] == bytes.fromhex("0201")
    assert data[10:20] == bytes.fromhex("03104310012345678FFF")
    assert data[20:24] == bytes.fromhex("20240101")
    assert data[24:28] == bytes.fromhex("20341231")
    assert data[28:30] == bytes.fromhex("3100")


def test_read_binary_offset_and_length() -> None:
    purse = _purse()
    whole = _profile().public_file()
    assert purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x0A, b"", 10)).data == whole[10:20]
    assert purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x1C, b"", 10)).data == whole[28:]
    assert purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x00, b"", None)).data == whole


def test_get_balance() -> None:
    answer = _purse(1234).process(GET_BALANCE)
    assert (answer.sw, answer.data) == (SW_OK, (1234).to_bytes(4, "big"))


# ----------------------------------------------------------------------------------------------------
# purchases


def test_full_purchase_with_psam() -> None:
    counter = _Counter()
    purse = _purse(5000, counter=counter)
    psam = _Psam()
    init = psam.initialize(purse, 200)
    assert init.sw == SW_OK
    assert init.data[0:4] == (5000).to_bytes(4, "big")
    assert init.data[4:6] == b"\x00\x00"
    assert init.data[6:9] == b"\x00\x00\x00"
    assert init.data[9:11] == b"\x01\x00"  # key version 01, algorithm 00 (3DES)
    sale = psam.debit(purse, 200, init)
    assert sale.debit is not None and sale.debit.sw == SW_OK
    tac, mac2 = sale.debit.data[:4], sale.debit.data[4:]
    assert mac2 == sale.expected_mac2
    assert tac == sale.expected_tac
    assert _balance(purse) == 4800
    assert purse.state.offline_serial == 1
    assert counter.calls == 1
    record = purse.state.last_purchase
    assert record is not None
    assert (record.offline_serial, record.amount, record.txn_type) == (0, 200, 0x06)
    assert (record.terminal_id, record.terminal_serial, record.date_time) == (
        TERMINAL_ID,
        bytes.fromhex("00000001"),
        DATE_TIME,
    )
    assert (record.mac2, record.tac) == (mac2, tac)

    second = psam.buy(purse, 300)
    assert second.debit is not None and second.debit.sw == SW_OK
    assert second.serial == 1
    assert second.debit.data == second.expected_tac + second.expected_mac2
    assert _balance(purse) == 4500
    assert counter.calls == 2


def test_doc_vector_through_the_card() -> None:
    """Doc §13 vector: random 11223344, serial 0, terminal serial …0001 → MAC1 F15CAB75, MAC2 56988A13."""
    purse = _purse(0x5000, rng=_fixed_rng(VECTOR_RANDOM))
    init = purse.process(_initialize(0x1000))
    assert init.sw == SW_OK
    assert init.data.hex().upper() == "00005000" + "0000" + "000000" + "01" + "00" + "11223344"
    answer = purse.process(_debit(bytes.fromhex("00000001"), DATE_TIME, bytes.fromhex("F15CAB75")))
    assert answer.sw == SW_OK
    # TAC: single-DES key 8888888888888888 (doc), value computed with pyemv's ISO 9797-1 MAC as oracle
    assert answer.data.hex().upper() == "B3A0D49C" + "56988A13"
    assert _balance(purse) == 0x4000


def test_doc_vector_tac_with_pyemv_oracle() -> None:
    from pyemv import mac

    des_key = bytes.fromhex("8888888888888888")
    data = bytes.fromhex("00001000" + "06" + "001122334455" + "00000001" + "20120229135100")
    assert mac.mac_iso9797_3(des_key, des_key, data, padding=2)[:4] == bytes.fromhex("B3A0D49C")


def test_balance_too_low_is_refused_and_unchanged() -> None:
    counter = _Counter()
    purse = _purse(199, counter=counter)
    assert purse.process(_initialize(200)).sw == SW_BALANCE
    assert _balance(purse) == 199
    assert purse.state.offline_serial == 0
    assert counter.calls == 0
    # the refused INITIALIZE left nothing to debit
    assert purse.process(_debit(b"\0\0\0\1", DATE_TIME, b"\0\0\0\0")).sw == SW_CONDITIONS


def test_exact_balance_can_be_spent() -> None:
    purse = _purse(200)
    sale = _Psam().buy(purse, 200)
    assert sale.debit is not None and sale.debit.sw == SW_OK
    assert _balance(purse) == 0


def test_unknown_key_index() -> None:
    purse = _purse()
    assert purse.process(_initialize(1, key_index=2)).sw == SW_KEY_INDEX
    assert purse.process(_initialize(1, key_index=0)).sw == SW_KEY_INDEX


def test_wrong_mac1_is_refused_and_unchanged() -> None:
    counter = _Counter()
    purse = _purse(1000, counter=counter)
    psam = _Psam()
    sale = psam.debit(purse, 100, psam.initialize(purse, 100), corrupt=True)
    assert sale.debit is not None and sale.debit.sw == SW_MAC
    assert _balance(purse) == 1000
    assert purse.state.offline_serial == 0
    assert purse.state.last_purchase is None
    assert counter.calls == 0
    # the pending purchase is gone: a retried DEBIT with a good MAC1 cannot use it
    good = psam.debit(purse, 100, sale.initialize)
    assert good.debit is not None and good.debit.sw == SW_CONDITIONS
    assert _balance(purse) == 1000


def test_mac1_for_another_amount_is_refused() -> None:
    purse = _purse(1000)
    psam = _Psam()
    sale = psam.debit(purse, 1, psam.initialize(purse, 100))
    assert sale.debit is not None and sale.debit.sw == SW_MAC
    assert _balance(purse) == 1000


def test_debit_without_initialize() -> None:
    purse = _purse()
    assert purse.process(_debit(b"\0\0\0\1", DATE_TIME, b"\0\0\0\0")).sw == SW_CONDITIONS
    assert _balance(purse) == 10_000


def test_other_command_between_initialize_and_debit_cancels() -> None:
    purse = _purse(1000)
    psam = _Psam()
    init = psam.initialize(purse, 100)
    assert _balance(purse) == 1000  # GET BALANCE in between
    sale = psam.debit(purse, 100, init)
    assert sale.debit is not None and sale.debit.sw == SW_CONDITIONS
    assert _balance(purse) == 1000


def test_invalid_date_time_with_valid_mac_is_wrong_data() -> None:
    purse = _purse(1000)
    psam = _Psam(date_time=bytes.fromhex("20121399000000"))
    sale = psam.buy(purse, 100)
    assert sale.debit is not None and sale.debit.sw == SW_WRONG_DATA
    assert _balance(purse) == 1000


def test_torn_between_initialize_and_debit() -> None:
    counter = _Counter()
    purse = _purse(1000, counter=counter)
    psam = _Psam()
    init = psam.initialize(purse, 100)
    purse.deselect()  # the rider pulled the card away
    assert _balance(purse) == 1000
    serial = int.from_bytes(init.data[4:6], "big")
    assert purse.process(_prove(serial)).sw == SW_NO_SUCH_DATA
    sale = psam.debit(purse, 100, init)  # a late DEBIT finds nothing to complete
    assert sale.debit is not None and sale.debit.sw == SW_CONDITIONS
    assert _balance(purse) == 1000
    assert counter.calls == 0


def test_reselect_drops_the_pending_purchase() -> None:
    purse = _purse(1000)
    psam = _Psam()
    init = psam.initialize(purse, 100)
    assert purse.select().sw == SW_OK
    sale = psam.debit(purse, 100, init)
    assert sale.debit is not None and sale.debit.sw == SW_CONDITIONS


def test_torn_after_debit_is_recovered_by_transaction_prove(tmp_path: Path) -> None:
    card_file = tmp_path / "card.json"
    state = TransitState(balance=1000)

    def save() -> None:
        card_file.write_text(json.dumps(state.to_dict()))

    purse = TransitPurse(_profile(), _keys(), state, save)
    psam = _Psam()
    sale = psam.buy(purse, 250)
    assert sale.debit is not None and sale.debit.sw == SW_OK
    lost = sale.debit.data  # the answer never reached the terminal
    purse.deselect()

    # the card comes back (even after a power cycle: reload from the saved file)
    saved = Fields(json.loads(card_file.read_text()), "transit")
    reloaded = TransitPurse(_profile(), _keys(), TransitState.from_dict(saved))
    reloaded.select()
    proof = reloaded.process(_prove(sale.serial))
    assert proof.sw == SW_OK
    assert proof.data == lost[4:] + lost[:4]  # MAC2 ‖ TAC
    assert proof.data == sale.expected_mac2 + sale.expected_tac
    assert _balance(reloaded) == 750
    # asking again is harmless; other serials are unknown
    assert reloaded.process(_prove(sale.serial)).data == proof.data
    assert reloaded.process(_prove(sale.serial + 1)).sw == SW_NO_SUCH_DATA


def test_transaction_prove_before_any_purchase() -> None:
    assert _purse().process(_prove(0)).sw == SW_NO_SUCH_DATA


def test_on_change_runs_once_per_debit_after_the_state_changed() -> None:
    counter = _Counter()
    purse = _purse(1000, counter=counter)
    psam = _Psam()
    purse.select()
    purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x00, b"", 0x100))
    _balance(purse)
    psam.initialize(purse, 10)
    assert counter.calls == 0
    for n in range(1, 4):
        sale = psam.buy(purse, 10)
        assert sale.debit is not None and sale.debit.sw == SW_OK
        assert counter.calls == n
        assert counter.snapshots[-1]["balance"] == 1000 - 10 * n
        assert counter.snapshots[-1]["offline_serial"] == n
        assert counter.snapshots[-1]["last_purchase"]["mac2"] == sale.expected_mac2.hex().upper()
    purse.process(_prove(2))
    purse.deselect()
    assert counter.calls == 3


def test_failed_save_rolls_back_and_propagates() -> None:
    state = TransitState(balance=1000)

    def broken() -> None:
        raise OSError("disk full")

    purse = TransitPurse(_profile(), _keys(), state, broken)
    psam = _Psam()
    init = psam.initialize(purse, 100)
    with pytest.raises(OSError, match="disk full"):
        psam.debit(purse, 100, init)
    assert state == TransitState(balance=1000)
    assert purse.process(_prove(0)).sw == SW_NO_SUCH_DATA


def test_purse_refuses_when_the_serial_is_exhausted() -> None:
    purse = _purse(state=TransitState(balance=1000, offline_serial=0xFFFF))
    assert purse.process(_initialize(1)).sw == SW_CONDITIONS


def test_last_serial_can_still_be_used() -> None:
    purse = _purse(state=TransitState(balance=1000, offline_serial=0xFFFE))
    sale = _Psam().buy(purse, 1)
    assert sale.debit is not None and sale.debit.sw == SW_OK
    assert purse.state.offline_serial == 0xFFFF


# ----------------------------------------------------------------------------------------------------
# transaction log


def test_transaction_log_records_newest_first() -> None:
    purse = _purse(100_000)
    psam = _Psam()
    for amount in range(1, 13):
        sale = psam.buy(purse, amount)
        assert sale.debit is not None and sale.debit.sw == SW_OK
    records = []
    for n in range(1, LOG_SIZE + 1):
        answer = purse.process(CommandApdu(0x00, 0xB2, n, 0xC4, b"", 0x100))
        assert answer.sw == SW_OK
        assert len(answer.data) == 23
        records.append(answer.data)
    assert purse.process(CommandApdu(0x00, 0xB2, LOG_SIZE + 1, 0xC4, b"", 0x100)).sw == SW_RECORD_NOT_FOUND
    newest = records[0]
    assert newest[0:2] == (11).to_bytes(2, "big")
    assert newest[2:5] == b"\0\0\0"
    assert newest[5:9] == (12).to_bytes(4, "big")
    assert newest[9] == 0x06
    assert newest[10:16] == TERMINAL_ID
    assert newest[16:20] == DATE_TIME[:4]
    assert newest[20:23] == DATE_TIME[4:]
    assert [int.from_bytes(r[0:2], "big") for r in records] == list(range(11, 1, -1))


def test_empty_log() -> None:
    assert _purse().process(CommandApdu(0x00, 0xB2, 0x01, 0xC4, b"", 0x100)).sw == SW_RECORD_NOT_FOUND


# ----------------------------------------------------------------------------------------------------
# malformed commands: every length variant answers a status word


def _lc_variants(good: int) -> list[int]:
    return [n for n in [*range(good), good + 1, good + 5, 255] if n != good]


@pytest.mark.parametrize("lc", _lc_variants(11))
def test_initialize_bad_lc(lc: int) -> None:
    data = bytes([1]) + bytes(lc - 1) if lc else b""
    assert _purse().process(CommandApdu(0x80, 0x50, 0x01, 0x02, data, 0x0F)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", range(1, 15))
def test_initialize_short_le(le: int) -> None:
    data = _initialize(1).data
    assert _purse().process(CommandApdu(0x80, 0x50, 0x01, 0x02, data, le)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", [None, 0x0F, 0x100])
def test_initialize_accepted_le(le: int | None) -> None:
    data = _initialize(1).data
    assert _purse().process(CommandApdu(0x80, 0x50, 0x01, 0x02, data, le)).sw == SW_OK


@pytest.mark.parametrize("lc", _lc_variants(15))
def test_debit_bad_lc(lc: int) -> None:
    purse = _purse()
    purse.process(_initialize(1))
    assert purse.process(CommandApdu(0x80, 0x54, 0x01, 0x00, bytes(lc), 0x08)).sw == SW_WRONG_LENGTH
    assert _balance(purse) == 10_000


@pytest.mark.parametrize("le", range(1, 8))
def test_debit_short_le(le: int) -> None:
    purse = _purse()
    purse.process(_initialize(1))
    assert purse.process(CommandApdu(0x80, 0x54, 0x01, 0x00, bytes(15), le)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", [None, 0x08, 0x100])
def test_debit_accepted_le(le: int | None) -> None:
    purse = _purse(1000, rng=_fixed_rng(VECTOR_RANDOM))
    purse.process(_initialize(0x100))
    sespk = tc.purchase_session_key(PURCHASE_KEY, VECTOR_RANDOM, 0, b"\0\0\0\1")
    mac1 = tc.purchase_mac1(sespk, 0x100, 0x06, TERMINAL_ID, DATE_TIME)
    answer = purse.process(CommandApdu(0x80, 0x54, 0x01, 0x00, b"\0\0\0\1" + DATE_TIME + mac1, le))
    assert answer.sw == SW_OK and len(answer.data) == 8


@pytest.mark.parametrize("lc", _lc_variants(2))
def test_transaction_prove_bad_lc(lc: int) -> None:
    assert _purse().process(CommandApdu(0x80, 0x5A, 0x00, 0x06, bytes(lc), 0x08)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", range(1, 8))
def test_transaction_prove_short_le(le: int) -> None:
    assert _purse().process(CommandApdu(0x80, 0x5A, 0x00, 0x06, b"\0\0", le)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("lc", range(1, 6))
def test_get_balance_with_data(lc: int) -> None:
    assert _purse().process(CommandApdu(0x80, 0x5C, 0x00, 0x02, bytes(lc), 0x04)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", range(1, 4))
def test_get_balance_short_le(le: int) -> None:
    assert _purse().process(CommandApdu(0x80, 0x5C, 0x00, 0x02, b"", le)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("le", [None, 0x04, 0x100])
def test_get_balance_accepted_le(le: int | None) -> None:
    assert _purse(7).process(CommandApdu(0x80, 0x5C, 0x00, 0x02, b"", le)).data == b"\0\0\0\x07"


@pytest.mark.parametrize("le", range(1, 23))
def test_read_record_short_le(le: int) -> None:
    purse = _purse()
    _Psam().buy(purse, 1)
    assert purse.process(CommandApdu(0x00, 0xB2, 0x01, 0xC4, b"", le)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize("lc", [1, 2, 23])
def test_read_commands_with_data(lc: int) -> None:
    purse = _purse()
    assert purse.process(CommandApdu(0x00, 0xB2, 0x01, 0xC4, bytes(lc), 0x100)).sw == SW_WRONG_LENGTH
    assert purse.process(CommandApdu(0x00, 0xB0, 0x95, 0x00, bytes(lc), 0x100)).sw == SW_WRONG_LENGTH


@pytest.mark.parametrize(
    ("command", "sw"),
    [
        (CommandApdu(0x80, 0x50, 0x03, 0x02, bytes(11), 0x0F), SW_P1P2),  # CAPP purchase not offered
        (CommandApdu(0x80, 0x50, 0x01, 0x01, bytes(11), 0x0F), SW_P1P2),  # e-deposit
        (CommandApdu(0x80, 0x54, 0x00, 0x00, bytes(15), 0x08), SW_P1P2),
        (CommandApdu(0x80, 0x5A, 0x00, 0x09, b"\0\0", 0x08), SW_P1P2),
        (CommandApdu(0x80, 0x5A, 0x01, 0x06, b"\0\0", 0x08), SW_P1P2),
        (CommandApdu(0x80, 0x5C, 0x00, 0x01, b"", 0x04), SW_P1P2),
        (CommandApdu(0x80, 0x5C, 0x01, 0x02, b"", 0x04), SW_P1P2),
        (CommandApdu(0x00, 0xB2, 0x00, 0xC4, b"", 0x100), SW_P1P2),  # "current record"
        (CommandApdu(0x00, 0xB2, 0x01, 0xC0, b"", 0x100), SW_P1P2),
        (CommandApdu(0x00, 0xB2, 0x01, 0xBC, b"", 0x100), SW_FILE_NOT_FOUND),  # SFI 0x17
        (CommandApdu(0x00, 0xB0, 0x00, 0x00, b"", 0x100), SW_P1P2),  # no current EF
        (CommandApdu(0x00, 0xB0, 0x96, 0x00, b"", 0x100), SW_FILE_NOT_FOUND),
        (CommandApdu(0x00, 0xB0, 0x95, 30, b"", 0x100), SW_OFFSET),  # offset past the end
        (CommandApdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A000000333010101"), 0x100), SW_FILE_NOT_FOUND),
        (CommandApdu(0x00, 0xA4, 0x00, 0x00, bytes.fromhex("0015"), 0x100), SW_FILE_NOT_FOUND),
        (CommandApdu(0x80, 0xCA, 0x9F, 0x79, b"", 0x100), SW_INS),
        (CommandApdu(0x80, 0x52, 0x00, 0x00, bytes(11), 0x04), SW_CONDITIONS),  # CREDIT FOR LOAD without INITIALIZE
        (CommandApdu(0x00, 0x00, 0x00, 0x00, b"", None), SW_INS),
        (CommandApdu(0x00, 0x5C, 0x00, 0x02, b"", 0x04), SW_CLA),
        (CommandApdu(0x00, 0x54, 0x01, 0x00, bytes(15), 0x08), SW_CLA),
        (CommandApdu(0x80, 0xB0, 0x95, 0x00, b"", 0x100), SW_CLA),
        (CommandApdu(0x84, 0x5C, 0x00, 0x02, b"", 0x04), SW_CLA),
        (CommandApdu(0xFF, 0xCA, 0x00, 0x00, b"", 0x100), SW_CLA),
    ],
)
def test_bad_parameters(command: CommandApdu, sw: int) -> None:
    purse = _purse()
    assert purse.process(command).sw == sw
    assert _balance(purse) == 10_000


def test_reselect_by_aid_answers_fci() -> None:
    purse = _purse()
    assert purse.process(CommandApdu(0x00, 0xA4, 0x04, 0x00, AID, 0x100)) == purse.select()


@settings(max_examples=300, deadline=None)
@given(
    cla=st.sampled_from([0x00, 0x80, 0x84, 0x0C]) | st.integers(0, 255),
    ins=st.sampled_from([0xA4, 0xB0, 0xB2, 0x50, 0x54, 0x5A, 0x5C]) | st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=40),
    le=st.none() | st.integers(1, 256),
    initialize_first=st.booleans(),
)
def test_fuzzed_commands_answer_a_status_word(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None, initialize_first: bool
) -> None:
    purse = _purse(1000)
    if initialize_first:
        purse.process(_initialize(100))
    try:
        command = CommandApdu(cla, ins, p1, p2, data, le)
    except ValueError:
        return  # the APDU layer refuses it before it reaches a card
    answer = purse.process(command)
    assert isinstance(answer, ResponseApdu)
    assert 0x6000 <= answer.sw <= 0x9FFF
    assert purse.state.balance == 1000 and purse.state.offline_serial == 0


# ----------------------------------------------------------------------------------------------------
# invariants over many purchases


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    balance=st.integers(0, 50_000),
    amounts=st.lists(st.integers(0, 20_000), max_size=15),
    tamper=st.lists(st.booleans(), max_size=15),
)
def test_balance_never_negative_and_conserved(balance: int, amounts: list[int], tamper: list[bool]) -> None:
    counter = _Counter()
    purse = _purse(balance, counter=counter)
    psam = _Psam()
    debited = 0
    completed = 0
    for i, amount in enumerate(amounts):
        corrupt = i < len(tamper) and tamper[i]
        init = psam.initialize(purse, amount)
        if amount > purse.state.balance:
            assert init.sw == SW_BALANCE
            continue
        sale = psam.debit(purse, amount, init, corrupt=corrupt)
        assert sale.debit is not None
        if corrupt:
            assert sale.debit.sw == SW_MAC
            continue
        assert sale.debit.sw == SW_OK
        assert sale.debit.data == sale.expected_tac + sale.expected_mac2
        debited += amount
        completed += 1
        assert purse.state.balance >= 0
    assert _balance(purse) + debited == balance
    assert purse.state.offline_serial == completed
    assert counter.calls == completed
    assert len(purse.state.log) == min(completed, LOG_SIZE)


# ----------------------------------------------------------------------------------------------------
# persistence


def _record(serial: int = 0) -> PurchaseRecord:
    return PurchaseRecord(
        offline_serial=serial,
        amount=150,
        txn_type=0x06,
        terminal_id=TERMINAL_ID,
        terminal_serial=bytes.fromhex("00000009"),
        date_time=DATE_TIME,
        mac2=bytes.fromhex("01020304"),
        tac=bytes.fromhex("A1A2A3A4"),
    )


def test_json_round_trip_after_purchases(tmp_path: Path) -> None:
    purse = _purse(9999)
    psam = _Psam()
    for amount in (1, 20, 300):
        psam.buy(purse, amount)
    path = tmp_path / "transit.json"
    document = {
        "profile": purse.profile.to_dict(),
        "keys": purse.keys.to_dict(),
        "state": purse.state.to_dict(),
    }
    path.write_text(json.dumps(document))
    loaded = json.loads(path.read_text())
    state = TransitState.from_dict(Fields(loaded["state"], "transit"))
    assert state == purse.state
    assert (state.balance, state.offline_serial, state.online_serial) == (9999 - 321, 3, 0)
    assert TransitProfile.from_dict(Fields(loaded["profile"], "transit.profile")) == purse.profile
    assert TransitKeys.from_dict(Fields(loaded["keys"], "transit.keys")) == purse.keys
    # the reloaded purse keeps counting from where it stopped
    again = TransitPurse(purse.profile, purse.keys, state)
    sale = _Psam(terminal_serial=50).buy(again, 1)
    assert sale.serial == 3 and sale.debit is not None and sale.debit.sw == SW_OK


def test_keys_round_trip_with_load_key() -> None:
    keys = TransitKeys(PURCHASE_KEY, TAC_KEY, load_key=bytes(range(16)), key_version=3)
    assert TransitKeys.from_dict(Fields(json.loads(json.dumps(keys.to_dict())), "transit.keys")) == keys
    minimal = {"purchase_key": PURCHASE_KEY.hex(), "tac_key": TAC_KEY.hex()}
    assert TransitKeys.from_dict(Fields(minimal, "transit.keys")) == _keys()


_serials = st.integers(0, 0xFFFF)
_records = st.builds(
    PurchaseRecord,
    offline_serial=_serials,
    amount=st.integers(0, 0xFFFFFFFF),
    txn_type=st.integers(0, 255),
    terminal_id=st.binary(min_size=6, max_size=6),
    terminal_serial=st.binary(min_size=4, max_size=4),
    date_time=st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2099, 12, 31)).map(
        lambda d: bytes.fromhex(d.strftime("%Y%m%d%H%M%S"))
    ),
    mac2=st.binary(min_size=4, max_size=4),
    tac=st.binary(min_size=4, max_size=4),
)


@settings(max_examples=100)
@given(
    state=st.builds(
        TransitState,
        balance=st.integers(0, 0xFFFFFFFF),
        offline_serial=_serials,
        online_serial=_serials,
        last_purchase=st.none() | _records,
        log=st.lists(_records, max_size=LOG_SIZE),
    )
)
def test_state_round_trip(state: TransitState) -> None:
    assert TransitState.from_dict(Fields(json.loads(json.dumps(state.to_dict())), "transit")) == state


def _state_dict() -> dict[str, Any]:
    return TransitState(balance=500, offline_serial=1, last_purchase=_record(), log=[_record()]).to_dict()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[int(key)] if key.isdigit() else d[key]
        d[last] = value

    return apply


def _delete(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(name)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("balance", -1), "transit.balance"),
        (_set("balance", "500"), "transit.balance"),
        (_set("balance", 1.5), "transit.balance"),
        (_set("balance", True), "transit.balance"),
        (_set("balance", 0x1_0000_0000), "transit.balance"),
        (_set("offline_serial", 0x10000), "transit.offline_serial"),
        (_set("online_serial", None), "transit.online_serial"),
        (_delete("offline_serial"), "transit.offline_serial"),
        (_set("colour", "blue"), "transit.colour"),
        (_set("last_purchase", "yes"), "transit.last_purchase"),
        (_set("last_purchase.mac2", "XYZ"), "transit.last_purchase.mac2"),
        (_set("last_purchase.tac", "0102"), "transit.last_purchase.tac"),
        (_set("last_purchase.amount", -5), "transit.last_purchase.amount"),
        (_set("last_purchase.date_time", "20121399000000"), "transit.last_purchase.date_time"),
        (_set("log", {}), "transit.log"),
        (_set("log", [_record().to_dict()] * (LOG_SIZE + 1)), "transit.log"),
        (_set("log.0.terminal_id", "0011"), "transit.log[0].terminal_id"),
    ],
)
def test_state_from_dict_names_the_field(mutate: Callable[[dict[str, Any]], None], field: str) -> None:
    d = _state_dict()
    mutate(d)
    with pytest.raises(ValueError, match=re.escape(field) + ":"):
        TransitState.from_dict(Fields(d, "transit"))


def test_state_from_dict_error_message_wording() -> None:
    with pytest.raises(ValueError, match=r"^transit\.balance: must be an integer ≥ 0"):
        TransitState.from_dict(Fields({"balance": -1, "offline_serial": 0, "online_serial": 0}, "transit"))
    with pytest.raises(ValueError, match=r"^transit: must be an object"):
        TransitState.from_dict(Fields([1, 2], "transit"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("card_number", "310431001234567"),
        ("card_number", "31043100123456789"),
        ("card_number", "310431001234567X"),
        ("card_number", 3104310012345678),
        ("city_code", "31A0"),
        ("city_code", "310"),
        ("city_name", ""),
        ("city_name", None),
        ("issuer_id", "3100FFFF"),
        ("issuer_id", "not hex!"),
        ("valid_from", "2024-13-01"),
        ("valid_from", 20240101),
        ("valid_to", "2023-12-31"),
    ],
)
def test_profile_from_dict_names_the_field(name: str, value: Any) -> None:
    d = _profile().to_dict()
    d[name] = value
    with pytest.raises(ValueError, match=re.escape(f"transit.profile.{name}:")):
        TransitProfile.from_dict(Fields(d, "transit.profile"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("purchase_key", PURCHASE_KEY.hex()[:-2]),
        ("purchase_key", None),
        ("tac_key", "zz" * 16),
        ("load_key", "00"),
        ("key_version", 256),
        ("key_version", "1"),
    ],
)
def test_keys_from_dict_names_the_field(name: str, value: Any) -> None:
    d = _keys().to_dict()
    d[name] = value
    with pytest.raises(ValueError, match=re.escape(f"transit.keys.{name}:")):
        TransitKeys.from_dict(Fields(d, "transit.keys"))


def test_from_dict_prefix_is_configurable() -> None:
    with pytest.raises(ValueError, match=re.escape("cards[2].state.balance:")):
        TransitState.from_dict(Fields({"balance": -1, "offline_serial": 0, "online_serial": 0}, "cards[2].state"))
