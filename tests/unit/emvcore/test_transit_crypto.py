"""PBOC e-purse (China T-Union) session keys, MAC1/MAC2/TAC: doc §13 blog vectors and pyemv as oracle."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyemv import mac as pyemv_mac
from pyemv import tools as pyemv_tools

from emvcore.crypto.transit import (
    load_mac1,
    load_mac2,
    load_session_key,
    load_tac,
    purchase_mac1,
    purchase_mac2,
    purchase_session_key,
    purchase_tac,
    tac_des_key,
)

h = bytes.fromhex
KEY = h("11223344556677888877665544332211")  # purchase key and load key of the blog examples
RANDOM = h("11223344")
TERMINAL = h("001122334455")
TERMINAL_SERIAL = h("00000001")
SESPK = h("003238ABC57659DD")
SESLK = h("9B1D924E05595603")
AMOUNT = 0x1000  # the blogs' amount field 00001000 (4096 fen)

key8 = st.binary(min_size=8, max_size=8)
key16 = st.binary(min_size=16, max_size=16)
b4 = st.binary(min_size=4, max_size=4)
b6 = st.binary(min_size=6, max_size=6)
b7 = st.binary(min_size=7, max_size=7)
u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)


def _oracle_mac(key8: bytes, data: bytes) -> bytes:
    """MAC algorithm 1 via pyemv: algorithm 3 with K_R = K_L is algorithm 1."""
    return pyemv_mac.mac_iso9797_3(key8, key8, data, 2, 4)


# --- published vectors ---------------------------------------------------------------------------


def test_purchase_session_key_vector() -> None:
    assert purchase_session_key(KEY, RANDOM, 0x0000, TERMINAL_SERIAL) == SESPK


def test_purchase_session_key_uses_only_last_two_terminal_serial_bytes() -> None:
    assert purchase_session_key(KEY, RANDOM, 0, h("ABCD0001")) == SESPK
    assert purchase_session_key(KEY, RANDOM, 0, h("00000002")) != SESPK
    assert purchase_session_key(KEY, RANDOM, 1, TERMINAL_SERIAL) != SESPK


def test_purchase_mac1_vector() -> None:
    assert purchase_mac1(SESPK, AMOUNT, 0x06, TERMINAL, h("20120229135100")) == h("F15CAB75")


def test_purchase_mac2_vector() -> None:
    mac2 = purchase_mac2(SESPK, AMOUNT)
    assert mac2 == h("56988A13")
    # Doc trap: the purchase blog's DEBIT APDU shows the load example's MAC2.
    assert mac2 != h("3A845BF0")


def test_tac_des_key_vector() -> None:
    assert tac_des_key(h("00112233445566778899AABBCCDDEEFF")) == h("8888888888888888")


def test_load_session_key_vector() -> None:
    assert load_session_key(KEY, RANDOM, 0x0000) == SESLK


def test_load_mac1_vector() -> None:
    assert load_mac1(SESLK, 0, AMOUNT, 0x01, TERMINAL) == h("2988AE5A")


def test_load_mac2_vector() -> None:
    assert load_mac2(SESLK, AMOUNT, 0x01, TERMINAL, h("20111221214822")) == h("3A845BF0")


def test_amount_is_binary_not_decimal() -> None:
    # "amount 1000" in the blogs is the hex field 00001000, not 1000 fen (000003E8).
    assert purchase_mac2(SESPK, 1000) != h("56988A13")


def test_purchase_tac_definition() -> None:
    """No published TAC value exists; check the layout with the doc's TAC key through pyemv."""
    tac_key = h("00112233445566778899AABBCCDDEEFF")
    dt = h("20120229135100")
    tac = purchase_tac(tac_key, AMOUNT, 0x06, TERMINAL, TERMINAL_SERIAL, dt)
    data = h("00001000") + h("06") + TERMINAL + TERMINAL_SERIAL + dt
    assert tac == _oracle_mac(h("8888888888888888"), data)
    assert len(tac) == 4
    assert tac != purchase_tac(tac_key, AMOUNT, 0x06, TERMINAL, h("00000002"), dt)


# --- random cross-checks -------------------------------------------------------------------------


@settings(deadline=None)
@given(key16, b4, u16, b4)
def test_purchase_session_key_matches_pyemv(key: bytes, rnd: bytes, serial: int, tserial: bytes) -> None:
    expected = pyemv_tools.encrypt_tdes_ecb(key, rnd + serial.to_bytes(2, "big") + tserial[2:])
    assert purchase_session_key(key, rnd, serial, tserial) == expected


@settings(deadline=None)
@given(key16, b4, u16)
def test_load_session_key_matches_pyemv(key: bytes, rnd: bytes, serial: int) -> None:
    expected = pyemv_tools.encrypt_tdes_ecb(key, rnd + serial.to_bytes(2, "big") + b"\x80\x00")
    assert load_session_key(key, rnd, serial) == expected


@settings(deadline=None)
@given(key8, u32, u8, b6, b7)
def test_purchase_macs_match_pyemv(sk: bytes, amount: int, ttype: int, tid: bytes, dt: bytes) -> None:
    amt = amount.to_bytes(4, "big")
    assert purchase_mac1(sk, amount, ttype, tid, dt) == _oracle_mac(sk, amt + bytes([ttype]) + tid + dt)
    assert purchase_mac2(sk, amount) == _oracle_mac(sk, amt)


@settings(deadline=None)
@given(key8, u32, u32, u8, b6, b7)
def test_load_macs_match_pyemv(
    sk: bytes, balance: int, amount: int, ttype: int, tid: bytes, dt: bytes
) -> None:
    amt = amount.to_bytes(4, "big")
    expected1 = _oracle_mac(sk, balance.to_bytes(4, "big") + amt + bytes([ttype]) + tid)
    assert load_mac1(sk, balance, amount, ttype, tid) == expected1
    assert load_mac2(sk, amount, ttype, tid, dt) == _oracle_mac(sk, amt + bytes([ttype]) + tid + dt)


@settings(deadline=None)
@given(key16, u32, u8, b6, b4, b7)
def test_purchase_tac_matches_pyemv(
    tac_key: bytes, amount: int, ttype: int, tid: bytes, tserial: bytes, dt: bytes
) -> None:
    des_key = pyemv_tools.xor(tac_key[:8], tac_key[8:])
    assert tac_des_key(tac_key) == des_key
    data = amount.to_bytes(4, "big") + bytes([ttype]) + tid + tserial + dt
    assert purchase_tac(tac_key, amount, ttype, tid, tserial, dt) == _oracle_mac(des_key, data)


# --- argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [-1, 1 << 32, True])
def test_amount_range(amount: int) -> None:
    with pytest.raises(ValueError, match="amount"):
        purchase_mac2(SESPK, amount)
    with pytest.raises(ValueError, match="amount"):
        load_mac1(SESLK, 0, amount, 1, TERMINAL)


@pytest.mark.parametrize("balance", [-1, 1 << 32])
def test_balance_range(balance: int) -> None:
    with pytest.raises(ValueError, match="balance"):
        load_mac1(SESLK, balance, 1, 1, TERMINAL)


@pytest.mark.parametrize("ttype", [-1, 256])
def test_transaction_type_range(ttype: int) -> None:
    with pytest.raises(ValueError, match="transaction type"):
        purchase_mac1(SESPK, 1, ttype, TERMINAL, bytes(7))


@pytest.mark.parametrize("serial", [-1, 0x10000])
def test_serial_range(serial: int) -> None:
    with pytest.raises(ValueError, match="offline serial"):
        purchase_session_key(KEY, RANDOM, serial, TERMINAL_SERIAL)
    with pytest.raises(ValueError, match="online serial"):
        load_session_key(KEY, RANDOM, serial)


def test_field_lengths() -> None:
    with pytest.raises(ValueError, match="terminal id"):
        purchase_mac1(SESPK, 1, 6, bytes(5), bytes(7))
    with pytest.raises(ValueError, match="date-time"):
        purchase_mac1(SESPK, 1, 6, TERMINAL, bytes(6))
    with pytest.raises(ValueError, match="date-time"):
        load_mac2(SESLK, 1, 1, TERMINAL, bytes(8))
    with pytest.raises(ValueError, match="card random"):
        purchase_session_key(KEY, bytes(3), 0, TERMINAL_SERIAL)
    with pytest.raises(ValueError, match="terminal serial"):
        purchase_session_key(KEY, RANDOM, 0, bytes(2))
    with pytest.raises(ValueError, match="terminal serial"):
        purchase_tac(KEY, 1, 6, TERMINAL, bytes(3), bytes(7))
    with pytest.raises(ValueError, match="purchase key"):
        purchase_session_key(bytes(8), RANDOM, 0, TERMINAL_SERIAL)
    with pytest.raises(ValueError, match="load key"):
        load_session_key(bytes(24), RANDOM, 0)
    with pytest.raises(ValueError, match="TAC key"):
        tac_des_key(bytes(8))
    with pytest.raises(ValueError, match="session key"):
        purchase_mac2(KEY, 1)
    with pytest.raises(ValueError, match="session key"):
        load_mac1(bytes(7), 0, 1, 1, TERMINAL)


# --- load TAC (PBOC e-purse: no published value; the layout through pyemv) ----------------------------------------


def test_load_tac_definition() -> None:
    tac_key = h("00112233445566778899AABBCCDDEEFF")
    dt = h("20111221214822")
    tac = load_tac(tac_key, 0x1000, 0x0000, AMOUNT, 0x02, TERMINAL, dt)
    data = h("00001000") + h("0000") + h("00001000") + h("02") + TERMINAL + dt
    assert tac == _oracle_mac(h("8888888888888888"), data)
    assert tac != load_tac(tac_key, 0x1000, 0x0001, AMOUNT, 0x02, TERMINAL, dt)  # the serial is bound
    assert tac != load_tac(tac_key, 0x1001, 0x0000, AMOUNT, 0x02, TERMINAL, dt)  # and the new balance


@settings(deadline=None)
@given(key16, u32, u16, u32, u8, b6, b7)
def test_load_tac_matches_pyemv(
    tac_key: bytes, balance: int, serial: int, amount: int, ttype: int, tid: bytes, dt: bytes
) -> None:
    data = balance.to_bytes(4, "big") + serial.to_bytes(2, "big") + amount.to_bytes(4, "big") + bytes([ttype]) + tid
    expected = _oracle_mac(pyemv_tools.xor(tac_key[:8], tac_key[8:]), data + dt)
    assert load_tac(tac_key, balance, serial, amount, ttype, tid, dt) == expected


def test_load_tac_argument_checks() -> None:
    with pytest.raises(ValueError, match="balance"):
        load_tac(KEY, 1 << 32, 0, 1, 2, TERMINAL, bytes(7))
    with pytest.raises(ValueError, match="online serial"):
        load_tac(KEY, 0, 0x10000, 1, 2, TERMINAL, bytes(7))
    with pytest.raises(ValueError, match="date-time"):
        load_tac(KEY, 0, 0, 1, 2, TERMINAL, bytes(6))
    with pytest.raises(ValueError, match="TAC key"):
        load_tac(bytes(8), 0, 0, 1, 2, TERMINAL, bytes(7))
