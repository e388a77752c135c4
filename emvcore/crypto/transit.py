"""China T-Union / PBOC e-purse session keys, MAC1/MAC2 and TAC (doc emv-qpboc.md §13).

All MACs are ISO 9797-1 algorithm 1 with single DES, IV 0, padding method 2, leftmost 4 bytes. Amounts
and balances are 4-byte big-endian fen; date-time is the 7-byte BCD YYYYMMDDhhmmss sent in the APDU.
The doc defines no load TAC; `load_tac` follows the PBOC e-purse specification's (JR/T 0025): the TAC key's
halves XORed, the same MAC as the purchase TAC, over new balance ‖ online serial before the load ‖ amount ‖ type
‖ terminal id ‖ date-time.
"""

from __future__ import annotations

from emvcore.crypto.des import tdes_encrypt, xor
from emvcore.crypto.keys import derive_icc_mk_a
from emvcore.crypto.mac import mac_des_cbc

__all__ = [
    "diversify_card_key",
    "load_mac1",
    "load_mac2",
    "load_session_key",
    "load_tac",
    "purchase_mac1",
    "purchase_mac2",
    "purchase_session_key",
    "purchase_tac",
    "tac_des_key",
]

_MAC_LEN = 4


def diversify_card_key(master16: bytes, card_number: str) -> bytes:
    """A card's purchase, TAC or load key from its city's master key: EMV option A over the card number (PSN 00),
    as the world personalizes the cards; the PSAM and the acquirer derive the same key again."""
    return derive_icc_mk_a(master16, card_number, 0)


def _fixed(name: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise ValueError(f"{name} must be {length} bytes, not {len(value)}")
    return bytes(value)


def _uint(name: str, value: int, length: int) -> bytes:
    if isinstance(value, bool) or not 0 <= value < 1 << (8 * length):
        raise ValueError(f"{name} must fit in {length} unsigned bytes, not {value!r}")
    return value.to_bytes(length, "big")


def _mac(session_key8: bytes, data: bytes) -> bytes:
    return mac_des_cbc(_fixed("session key", session_key8, 8), data, padding=2, length=_MAC_LEN)


def _purchase_fields(amount: int, txn_type: int, terminal_id6: bytes) -> bytes:
    return (
        _uint("amount", amount, 4)
        + _uint("transaction type", txn_type, 1)
        + _fixed("terminal id", terminal_id6, 6)
    )


def purchase_session_key(
    purchase_key16: bytes, card_random4: bytes, offline_serial: int, terminal_serial4: bytes
) -> bytes:
    """SESPK = 3DES_DPK(random‖offline serial‖terminal serial[-2:]): fresh per purchase on both sides."""
    data = (
        _fixed("card random", card_random4, 4)
        + _uint("offline serial", offline_serial, 2)
        + _fixed("terminal serial", terminal_serial4, 4)[-2:]
    )
    return tdes_encrypt(_fixed("purchase key", purchase_key16, 16), data)


def purchase_mac1(sespk8: bytes, amount: int, txn_type: int, terminal_id6: bytes, datetime7: bytes) -> bytes:
    """MAC1 over amount‖type‖terminal id‖date‖time: lets the card authenticate the PSAM before debiting."""
    return _mac(sespk8, _purchase_fields(amount, txn_type, terminal_id6) + _fixed("date-time", datetime7, 7))


def purchase_mac2(sespk8: bytes, amount: int) -> bytes:
    """MAC2 over the amount: lets the PSAM confirm that the genuine card performed the debit."""
    return _mac(sespk8, _uint("amount", amount, 4))


def tac_des_key(tac_key16: bytes) -> bytes:
    """Single-DES TAC key = left half ⊕ right half of the card's TAC key."""
    key = _fixed("TAC key", tac_key16, 16)
    return xor(key[:8], key[8:])


def purchase_tac(
    tac_key16: bytes,
    amount: int,
    txn_type: int,
    terminal_id6: bytes,
    terminal_serial4: bytes,
    datetime7: bytes,
) -> bytes:
    """Purchase TAC over amount‖type‖terminal id‖terminal serial‖date‖time, checked later by clearing."""
    data = (
        _purchase_fields(amount, txn_type, terminal_id6)
        + _fixed("terminal serial", terminal_serial4, 4)
        + _fixed("date-time", datetime7, 7)
    )
    return _mac(tac_des_key(tac_key16), data)


def load_session_key(load_key16: bytes, card_random4: bytes, online_serial: int) -> bytes:
    """SESLK = 3DES_LK(random‖online serial‖8000): fresh per load, known to card and load host."""
    data = _fixed("card random", card_random4, 4) + _uint("online serial", online_serial, 2) + b"\x80\x00"
    return tdes_encrypt(_fixed("load key", load_key16, 16), data)


def load_mac1(seslk8: bytes, balance: int, amount: int, txn_type: int, terminal_id6: bytes) -> bytes:
    """Card's load MAC1 over balance‖amount‖type‖terminal id: proves the card to the load host."""
    return _mac(seslk8, _uint("balance", balance, 4) + _purchase_fields(amount, txn_type, terminal_id6))


def load_mac2(seslk8: bytes, amount: int, txn_type: int, terminal_id6: bytes, datetime7: bytes) -> bytes:
    """Host's load MAC2 over amount‖type‖terminal id‖date‖time: the card credits only if it verifies."""
    return _mac(seslk8, _purchase_fields(amount, txn_type, terminal_id6) + _fixed("date-time", datetime7, 7))


def load_tac(
    tac_key16: bytes,
    new_balance: int,
    online_serial: int,
    amount: int,
    txn_type: int,
    terminal_id6: bytes,
    datetime7: bytes,
) -> bytes:
    """Load TAC over new balance‖online serial (before the load)‖amount‖type‖terminal id‖date‖time: the card's
    proof of the credit, checked by the load host (which alone, besides the card, holds the TAC key)."""
    data = (
        _uint("balance", new_balance, 4)
        + _uint("online serial", online_serial, 2)
        + _purchase_fields(amount, txn_type, terminal_id6)
        + _fixed("date-time", datetime7, 7)
    )
    return _mac(tac_des_key(tac_key16), data)
