"""Terminal-side kernel parameters: limits, capabilities, supported AIDs and CA keys (doc emv-qpboc.md §3-§4).

Chinese SDKs keep these per AID (DF19/DF20/DF21, 9F33, …); this terminal has one set for both UnionPay AIDs.
Amounts are fen. The defaults are the doc's sample values, which are business parameters, not protocol ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emvcore.bcd import MAX_AMOUNT_N12
from emvcore.crypto.oda import CaPublicKey
from hostproto.limits import DEFAULT_FLOOR_LIMIT, floor_limit_for, over_floor_limit

__all__ = ["CREDIT_AID", "DEBIT_AID", "KernelParams"]

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")

# TTQ (9F66) bits, as (byte index, mask); doc §3.1.
_TTQ_OFFLINE_ONLY = (0, 0x08)
_TTQ_ONLINE_PIN = (0, 0x04)
_TTQ_SIGNATURE = (0, 0x02)
_TTQ_ONLINE_REQUIRED = (1, 0x80)
_TTQ_CVM_REQUIRED = (1, 0x40)
_TTQ_CDCVM = (2, 0x40)
_TTQ_FDDA_V01 = (3, 0x80)
_TTQ_BASE = bytes.fromhex("26000080")  # qPBOC, online PIN, signature, fDDA v01


def _set(value: bytearray, bit: tuple[int, int], on: bool) -> None:
    index, mask = bit
    if on:
        value[index] |= mask
    else:
        value[index] &= ~mask & 0xFF


def _hex_field(name: str, value: str, length: int) -> None:
    if not re.fullmatch(rf"[0-9A-Fa-f]{{{2 * length}}}", value):
        raise ValueError(f"{name} must be {length} bytes of hex, not {value!r}")


def _digits_field(name: str, value: str, length: int) -> None:
    if not re.fullmatch(rf"[0-9]{{{length}}}", value):
        raise ValueError(f"{name} must be {length} decimal digits, not {value!r}")


@dataclass(frozen=True)
class KernelParams:
    """One terminal's contactless configuration; frozen so a running tap can't see it change."""

    country: str = "0156"  # 9F1A
    currency: str = "0156"  # 5F2A
    contactless_limit: int = 2_000_000  # DF20: at or above it, contactless is refused
    floor_limit: int = DEFAULT_FLOOR_LIMIT  # DF19: above it the card must go online (TTQ 2.8)
    aid_floor_limits: tuple[tuple[bytes, int], ...] = ()  # DF19 per AID (a longer prefix wins), else floor_limit
    cvm_limit: int = 100_000  # DF21: at or above it a CVM is required (TTQ 2.7)
    cdcvm_supported: bool = True  # TTQ 3.7: phones may verify the holder themselves
    signature_supported: bool = True
    online_pin_supported: bool = False  # no PIN pad on this terminal
    online_capable: bool = True
    fdda_v01_supported: bool = True  # TTQ 4.8
    supported_aids: tuple[bytes, ...] = (DEBIT_AID, CREDIT_AID)  # a shorter entry matches as a prefix
    capks: tuple[CaPublicKey, ...] = ()
    terminal_type: str = "22"  # 9F35: attended, online with offline capability
    terminal_capabilities: str = "E028C8"  # 9F33: E0E1C8 without any PIN bit (signature, no CVM; SDA/DDA/CDA)
    application_version: str = "0030"  # 9F09 (PBOC 3.0)
    merchant_category: str = "5999"  # 9F15
    merchant_name: str = ""  # 9F4E, only if a card asks for it

    def __post_init__(self) -> None:
        _digits_field("country", self.country, 4)
        _digits_field("currency", self.currency, 4)
        _digits_field("terminal_type", self.terminal_type, 2)
        _digits_field("merchant_category", self.merchant_category, 4)
        _hex_field("terminal_capabilities", self.terminal_capabilities, 3)
        _hex_field("application_version", self.application_version, 2)
        for name in ("contactless_limit", "floor_limit", "cvm_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT_N12:
                raise ValueError(f"{name} must be an amount in fen (0..{MAX_AMOUNT_N12}), not {value!r}")
        if not self.supported_aids:
            raise ValueError("supported_aids must name at least one AID")
        for aid in self.supported_aids:
            if not isinstance(aid, bytes) or not 5 <= len(aid) <= 16:
                raise ValueError(f"an AID is 5-16 bytes, not {aid!r}")
        for aid, limit in self.aid_floor_limits:
            if not isinstance(aid, bytes) or not 5 <= len(aid) <= 16:
                raise ValueError(f"an AID is 5-16 bytes, not {aid!r}")
            if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_AMOUNT_N12:
                raise ValueError(f"the floor limit of {aid.hex().upper()} must be an amount in fen, not {limit!r}")
        if not self.merchant_name.isascii():
            raise ValueError("merchant_name must be ASCII (9F4E is ans)")

    def supports(self, aid: bytes) -> bool:
        """Partial match: a configured A0000003330101 accepts every A0000003330101xx the card offers."""
        return any(aid.startswith(entry) for entry in self.supported_aids)

    def capk(self, rid: bytes, index: int) -> CaPublicKey | None:
        """The CA key a card names by RID and 8F; None means fDDA cannot succeed."""
        for key in self.capks:
            if key.rid == rid and key.index == index:
                return key
        return None

    def floor_limit_for(self, aid: bytes | None) -> int:
        """The selected AID's floor limit (the acquirer applies the same one to the advice)."""
        return floor_limit_for(aid, self.floor_limit, dict(self.aid_floor_limits))

    def ttq(self, amount: int, *, force_online: bool = False, aid: bytes | None = None) -> bytes:
        """9F66 for this amount (and AID, once selected): the static capabilities plus the per-transaction 2.8 /
        2.7 (doc §3.1, §4)."""
        value = bytearray(_TTQ_BASE)
        _set(value, _TTQ_OFFLINE_ONLY, not self.online_capable)
        _set(value, _TTQ_ONLINE_PIN, self.online_pin_supported)
        _set(value, _TTQ_SIGNATURE, self.signature_supported)
        _set(value, _TTQ_CDCVM, self.cdcvm_supported)
        _set(value, _TTQ_FDDA_V01, self.fdda_v01_supported)
        # An offline-only reader never asks for an online cryptogram (doc §4 rule 5).
        online = self.online_capable and (over_floor_limit(amount, self.floor_limit_for(aid)) or force_online)
        _set(value, _TTQ_ONLINE_REQUIRED, online)
        _set(value, _TTQ_CVM_REQUIRED, amount >= self.cvm_limit)
        return bytes(value)
