"""The PBOC / T-Union e-purse command vocabulary, declared once for the card, the terminal and the load host.

Instruction bytes, P1/P2 values, data and answer lengths, transaction types and key indexes of the commands
in doc emv-qpboc.md §13, plus builders for the commands and a parser for the INITIALIZE FOR LOAD answer. Pure:
a malformed answer is a ``ValueError``, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass

from emvcore.apdu import CommandApdu

__all__ = [
    "AID",
    "LABEL",
    "PURSE_LIMIT",
    "LoadQuote",
    "credit_for_load",
    "debit_for_purchase",
    "get_transaction_prove",
    "initialize_for_load",
    "initialize_for_purchase",
    "select",
]

AID = bytes.fromhex("A000000632010105")
"""MOT_T_EP: the T-Union transport e-purse."""
LABEL = "MOT_T_EP"

CLA_PROPRIETARY = 0x80
INS_INITIALIZE = 0x50  # P1 says which: load or purchase
INS_CREDIT_FOR_LOAD = 0x52
INS_DEBIT_FOR_PURCHASE = 0x54
INS_GET_TRANSACTION_PROVE = 0x5A
INS_GET_BALANCE = 0x5C

P1_INITIALIZE_LOAD = 0x00
P1_INITIALIZE_PURCHASE = 0x01
P2_EP = 0x02  # the electronic purse (01 would be the e-deposit, which these cards lack)

TXN_EP_LOAD = 0x02
TXN_EP_PURCHASE = 0x06

PURCHASE_KEY_INDEX = 0x01
LOAD_KEY_INDEX = 0x01

INITIALIZE_DATA_LENGTH = 11  # key index(1) ‖ amount(4) ‖ terminal id(6)
INITIALIZE_PURCHASE_ANSWER_LENGTH = 15
INITIALIZE_LOAD_ANSWER_LENGTH = 16  # balance(4) ‖ online serial(2) ‖ key version ‖ algorithm ‖ random(4) ‖ MAC1(4)
DEBIT_DATA_LENGTH = 15  # terminal serial(4) ‖ date-time(7) ‖ MAC1(4)
DEBIT_ANSWER_LENGTH = 8  # TAC ‖ MAC2
CREDIT_DATA_LENGTH = 11  # date-time(7) ‖ MAC2(4)
CREDIT_ANSWER_LENGTH = 4  # TAC
PROVE_ANSWER_LENGTH = 8  # MAC ‖ TAC (purchase: MAC2 the card made; load: the MAC2 the card accepted)

PURSE_LIMIT = 100_000
"""Fen: the most a purse may hold after a load (¥1,000, the usual ceiling of an anonymous transit card)."""


def select() -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, AID, le=256)


def _initialize(p1: int, key_index: int, amount: int, terminal_id: bytes, le: int) -> CommandApdu:
    if len(terminal_id) != 6:
        raise ValueError("the terminal id is 6 bytes")
    data = bytes([key_index]) + amount.to_bytes(4, "big") + bytes(terminal_id)
    return CommandApdu(CLA_PROPRIETARY, INS_INITIALIZE, p1, P2_EP, data, le=le)


def initialize_for_purchase(amount: int, terminal_id: bytes) -> CommandApdu:
    """``80 50 01 02 0B``: the card quotes balance, offline serial and a random for the PSAM's MAC1."""
    return _initialize(P1_INITIALIZE_PURCHASE, PURCHASE_KEY_INDEX, amount, terminal_id,
                       INITIALIZE_PURCHASE_ANSWER_LENGTH)


def initialize_for_load(amount: int, terminal_id: bytes) -> CommandApdu:
    """``80 50 00 02 0B``: the card quotes balance, online serial, a random and its MAC1 for the load host."""
    return _initialize(P1_INITIALIZE_LOAD, LOAD_KEY_INDEX, amount, terminal_id, INITIALIZE_LOAD_ANSWER_LENGTH)


def debit_for_purchase(terminal_serial: bytes, date_time: bytes, mac1: bytes) -> CommandApdu:
    """``80 54 01 00 0F``: debit if MAC1 verifies; the answer is TAC ‖ MAC2."""
    data = bytes(terminal_serial) + bytes(date_time) + bytes(mac1)
    if len(data) != DEBIT_DATA_LENGTH:
        raise ValueError("DEBIT data is terminal serial(4) ‖ date-time(7) ‖ MAC1(4)")
    return CommandApdu(CLA_PROPRIETARY, INS_DEBIT_FOR_PURCHASE, 0x01, 0x00, data, le=DEBIT_ANSWER_LENGTH)


def credit_for_load(date_time: bytes, mac2: bytes) -> CommandApdu:
    """``80 52 00 00 0B``: credit if the host's MAC2 verifies; the answer is the load TAC."""
    data = bytes(date_time) + bytes(mac2)
    if len(data) != CREDIT_DATA_LENGTH:
        raise ValueError("CREDIT data is date-time(7) ‖ MAC2(4)")
    return CommandApdu(CLA_PROPRIETARY, INS_CREDIT_FOR_LOAD, 0x00, 0x00, data, le=CREDIT_ANSWER_LENGTH)


def get_transaction_prove(txn_type: int, serial: int) -> CommandApdu:
    """``80 5A 00 tt 02 serial``: MAC ‖ TAC of the card's last transaction of that type and serial (torn recovery);
    the serial is the offline one for a purchase (06), the online one for a load (02)."""
    return CommandApdu(CLA_PROPRIETARY, INS_GET_TRANSACTION_PROVE, 0x00, txn_type, serial.to_bytes(2, "big"),
                       le=PROVE_ANSWER_LENGTH)


@dataclass(frozen=True)
class LoadQuote:
    """The INITIALIZE FOR LOAD answer: what the load host needs to check MAC1 and make MAC2."""

    balance: int
    online_serial: int
    key_version: int
    algorithm: int
    card_random: bytes
    mac1: bytes

    def encode(self) -> bytes:
        return (self.balance.to_bytes(4, "big") + self.online_serial.to_bytes(2, "big")
                + bytes([self.key_version, self.algorithm]) + self.card_random + self.mac1)

    @classmethod
    def decode(cls, data: bytes) -> LoadQuote:
        """Refuses any length but 16 with ValueError (the card's answer is hostile input)."""
        if len(data) != INITIALIZE_LOAD_ANSWER_LENGTH:
            raise ValueError(f"INITIALIZE FOR LOAD answer is {INITIALIZE_LOAD_ANSWER_LENGTH} bytes, not {len(data)}")
        return cls(int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:6], "big"), data[6], data[7],
                   bytes(data[8:12]), bytes(data[12:16]))
