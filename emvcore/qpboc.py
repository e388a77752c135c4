"""The qPBOC vocabulary, declared once for the card, the kernel, the issuer and the simulator.

AIDs (doc emv-qpboc.md §2.2), the TTQ (§3.1) and CTQ (§3.2) bits as flags over their big-endian bytes, the
cryptogram types that CVR byte 2 carries (§2.4), and the CVN 01 issuer application data codec (§8.1). Pure
data and functions: whoever reads a card's bytes gets a ``ValueError`` for a malformed field, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from emvcore.crypto.cryptogram import Algorithm

__all__ = [
    "AID_KINDS",
    "AID_LABELS",
    "CREDIT_AID",
    "CVN_01",
    "DEBIT_AID",
    "QPBOC_IDD",
    "QUASI_CREDIT_AID",
    "RID",
    "Cryptogram",
    "Ctq",
    "Iad",
    "IadError",
    "Ttq",
    "aid_kind",
]

RID = bytes.fromhex("A000000333")
"""UnionPay's registered application provider id: the first five bytes of every qPBOC AID and the CA key's RID."""

DEBIT_AID = RID + bytes.fromhex("010101")
CREDIT_AID = RID + bytes.fromhex("010102")
QUASI_CREDIT_AID = RID + bytes.fromhex("010103")

AID_KINDS: dict[str, bytes] = {"debit": DEBIT_AID, "credit": CREDIT_AID, "quasi-credit": QUASI_CREDIT_AID}
"""Card kinds as the world's files name them → the AID a card of that kind carries."""

AID_LABELS: dict[bytes, str] = {DEBIT_AID: "UICS DEBIT", CREDIT_AID: "UICS CREDIT", QUASI_CREDIT_AID: "UICS QCREDIT"}
"""Application labels (50), at most 16 characters."""


def aid_kind(aid: bytes) -> str | None:
    """"debit" / "credit" / "quasi-credit" for a UnionPay AID, None for any other (logs name the scheme)."""
    return next((kind for kind, known in AID_KINDS.items() if known == aid), None)


class _Qualifier(IntFlag):
    """A qualifier's bits over its big-endian bytes, so ``Ttq.QPBOC in ttq`` reads like the spec's table."""

    @classmethod
    def width(cls) -> int:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, value: bytes) -> _Qualifier:
        """Any card-supplied length is accepted: missing bytes are 0, extra bytes ignored (unknown bits kept)."""
        size = cls.width()
        padded = bytes(value[:size]).ljust(size, b"\x00")
        return cls(int.from_bytes(padded, "big"))

    def to_bytes(self) -> bytes:  # type: ignore[override]
        return int(self).to_bytes(self.width(), "big")


class Ttq(_Qualifier):
    """Terminal transaction qualifiers (9F66, 4 bytes), sent by the terminal in GPO."""

    STANDARD_SUPPORTED = 0x40 << 24  # 1.7 full debit/credit
    QPBOC = 0x20 << 24  # 1.6
    CONTACT = 0x10 << 24  # 1.5
    OFFLINE_ONLY = 0x08 << 24  # 1.4
    ONLINE_PIN = 0x04 << 24  # 1.3
    SIGNATURE = 0x02 << 24  # 1.2
    ONLINE_CRYPTOGRAM_REQUIRED = 0x80 << 16  # 2.8, per transaction
    CVM_REQUIRED = 0x40 << 16  # 2.7, per transaction
    ISSUER_UPDATE = 0x80 << 8  # 3.8
    CDCVM = 0x40 << 8  # 3.7 consumer device CVM supported
    FDDA_V01 = 0x80  # 4.8

    @classmethod
    def width(cls) -> int:
        return 4


class Ctq(_Qualifier):
    """Card transaction qualifiers (9F6C, 2 bytes), returned by the card in GPO."""

    ONLINE_PIN = 0x80 << 8  # 1.8
    SIGNATURE = 0x40 << 8  # 1.7
    ONLINE_IF_ODA_FAILS = 0x20 << 8  # 1.6
    SWITCH_IF_ODA_FAILS = 0x10 << 8  # 1.5
    ONLINE_IF_EXPIRED = 0x08 << 8  # 1.4
    SWITCH_FOR_CASH = 0x04 << 8  # 1.3
    SWITCH_FOR_CASHBACK = 0x02 << 8  # 1.2
    CDCVM_PERFORMED = 0x80  # 2.8
    ISSUER_UPDATE = 0x40  # 2.7

    @classmethod
    def width(cls) -> int:
        return 2


class Cryptogram(IntEnum):
    """CVR byte 2 as a qPBOC card writes it: b8-b7 = 10 (no second GENERATE AC), b6-b5 = the cryptogram type."""

    AAC = 0x80
    TC = 0x90
    ARQC = 0xA0

    @classmethod
    def of_cvr(cls, cvr: bytes) -> Cryptogram | None:
        """The type from b6-b5 of CVR byte 2, whatever the other bits say; None for the reserved 11."""
        if len(cvr) < 2:
            return None
        return {0b00: cls.AAC, 0b01: cls.TC, 0b10: cls.ARQC}.get((cvr[1] >> 4) & 0b11)

    @property
    def cid(self) -> int:
        """9F27, which qPBOC cards leave out and the terminal writes into field 55 itself."""
        return {Cryptogram.AAC: 0x00, Cryptogram.TC: 0x40, Cryptogram.ARQC: 0x80}[self]

    def cvr(self) -> bytes:
        """The 4-byte CVR a card sends with this cryptogram (byte 1 = 03, the length of the rest)."""
        return bytes([0x03, self.value, 0x00, 0x00])


CVN_01 = 0x01
"""Cryptogram version number 01: the recipe of `emvcore.crypto.cryptogram` (AC input, session key, ARPC 1)."""

QPBOC_IDD = bytes([0x0A, 0x01]) + bytes(9)
"""The standard issuer discretionary data: length 0A, 01, a 5-byte amount and a 4-byte MAC, zero on issue."""

_IAD_HEAD = 0x07  # length of DKI ‖ CVN ‖ CVR ‖ algorithm id
_CVR_LENGTH = 4


class IadError(ValueError):
    """A 9F10 that is not a CVN-style issuer application data (too short, wrong length bytes)."""


@dataclass(frozen=True)
class Iad:
    """Issuer application data (9F10): ``07 | DKI | CVN | CVR (4, 03 …) | algorithm id | [IDD]``."""

    dki: int
    cvn: int
    cvr: bytes
    algorithm: int  # an `Algorithm` value for cards we issue; any byte when decoded from a foreign card
    idd: bytes = QPBOC_IDD

    def encode(self) -> bytes:
        if len(self.cvr) != _CVR_LENGTH:
            raise IadError(f"CVR must be {_CVR_LENGTH} bytes, not {len(self.cvr)}")
        return bytes([_IAD_HEAD, self.dki, self.cvn, *self.cvr, self.algorithm]) + self.idd

    @classmethod
    def decode(cls, raw: bytes) -> Iad:
        """Checks the two length bytes (07, then CVR byte 1 = 03), so a foreign layout is refused, not misread."""
        if len(raw) < 1 + _IAD_HEAD:
            raise IadError(f"IAD (9F10) of {len(raw)} bytes is shorter than {1 + _IAD_HEAD}")
        if raw[0] != _IAD_HEAD:
            raise IadError(f"IAD (9F10) starts with {raw[0]:02X}, not the length 07")
        if raw[3] != _CVR_LENGTH - 1:
            raise IadError(f"IAD (9F10) does not hold a CVR where expected (byte 4 = {raw[3]:02X})")
        return cls(raw[1], raw[2], bytes(raw[3:7]), raw[7], bytes(raw[8:]))

    @property
    def cryptogram(self) -> Cryptogram | None:
        return Cryptogram.of_cvr(self.cvr)

    @property
    def cipher(self) -> Algorithm | None:
        """The algorithm id as a known cipher, None for one this project has no scheme for."""
        try:
            return Algorithm(self.algorithm)
        except ValueError:
            return None
