"""Terminal-side kernel parameters: limits, capabilities, supported AIDs and CA keys (doc emv-qpboc.md §3-§4).

Chinese SDKs keep the limits per AID (DF20 / DF19 / DF21): here a terminal-wide set plus an optional set per AID
(a longer AID prefix wins), so one UnionPay product can have its own figures. Amounts are fen. The defaults are
the doc's sample values, which are business parameters, not protocol ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emvcore.bcd import MAX_AMOUNT_N12
from emvcore.crypto.oda import CaPublicKey
from emvcore.qpboc import CREDIT_AID, DEBIT_AID, QUASI_CREDIT_AID, Ttq
from hostproto.limits import DEFAULT_FLOOR_LIMIT, for_aid, over_floor_limit

__all__ = ["DEFAULT_AIDS", "AidLimits", "KernelParams"]

DEFAULT_AIDS: tuple[bytes, ...] = (DEBIT_AID, CREDIT_AID, QUASI_CREDIT_AID)
"""What a terminal accepts unless its configuration says otherwise: every UnionPay qPBOC product a card lists."""

_TTQ_BASE = Ttq.QPBOC  # the static capabilities are added from the parameters


def _amount(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT_N12:
        raise ValueError(f"{name} must be an amount in fen (0..{MAX_AMOUNT_N12}), not {value!r}")


def _aid(value: object) -> None:
    if not isinstance(value, bytes) or not 5 <= len(value) <= 16:
        raise ValueError(f"an AID is 5-16 bytes, not {value!r}")


@dataclass(frozen=True)
class AidLimits:
    """One AID's contactless limits; None takes the terminal-wide figure."""

    transaction_limit: int | None = None  # DF20: at or above it, contactless is refused for this AID
    floor_limit: int | None = None  # DF19: above it the card must go online (TTQ 2.8)
    cvm_limit: int | None = None  # DF21: at or above it a CVM is required (TTQ 2.7)

    def __post_init__(self) -> None:
        for name in ("transaction_limit", "floor_limit", "cvm_limit"):
            if getattr(self, name) is not None:
                _amount(name, getattr(self, name))


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
    cvm_limit: int = 100_000  # DF21: at or above it a CVM is required (TTQ 2.7)
    aid_limits: tuple[tuple[bytes, AidLimits], ...] = ()  # per AID (a longer prefix wins), else the three above
    cdcvm_supported: bool = True  # TTQ 3.7: phones may verify the holder themselves
    signature_supported: bool = True
    online_pin_supported: bool = False  # no PIN pad on this terminal
    online_capable: bool = True
    fdda_v01_supported: bool = True  # TTQ 4.8
    supported_aids: tuple[bytes, ...] = DEFAULT_AIDS  # a shorter entry matches as a prefix
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
            _amount(name, getattr(self, name))
        if not self.supported_aids:
            raise ValueError("supported_aids must name at least one AID")
        for aid in self.supported_aids:
            _aid(aid)
        for aid, limits in self.aid_limits:
            _aid(aid)
            if not isinstance(limits, AidLimits):
                raise ValueError(f"the limits of {aid.hex().upper()} must be AidLimits, not {limits!r}")
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

    def limits_for(self, aid: bytes | None) -> AidLimits:
        """The AID's three limits, each resolved (its own figure, else the terminal-wide one); no AID: the latter."""
        own = for_aid(aid, dict(self.aid_limits)) or AidLimits()
        return AidLimits(
            transaction_limit=self.contactless_limit if own.transaction_limit is None else own.transaction_limit,
            floor_limit=self.floor_limit if own.floor_limit is None else own.floor_limit,
            cvm_limit=self.cvm_limit if own.cvm_limit is None else own.cvm_limit,
        )

    def floor_limit_for(self, aid: bytes | None) -> int:
        """The selected AID's floor limit (the acquirer applies the same one to the advice)."""
        limit = self.limits_for(aid).floor_limit
        assert limit is not None
        return limit

    def contactless_allowed(self, amount: int, aid: bytes | None) -> bool:
        """Pre-processing rule 1 (doc §4): below the AID's contactless transaction limit."""
        limit = self.limits_for(aid).transaction_limit
        assert limit is not None
        return amount < limit

    def highest_transaction_limit(self) -> int:
        """Above every supported AID's limit no tap can pay, so the card need not even be asked."""
        return max(self.limits_for(aid).transaction_limit or 0 for aid in self.supported_aids)

    def ttq(self, amount: int, *, force_online: bool = False, aid: bytes | None = None) -> bytes:
        """9F66 for this amount (and AID, once selected): the static capabilities plus the per-transaction 2.8 /
        2.7 (doc §3.1, §4)."""
        limits = self.limits_for(aid)
        assert limits.floor_limit is not None and limits.cvm_limit is not None
        value = _TTQ_BASE
        flags = (
            (Ttq.OFFLINE_ONLY, not self.online_capable),
            (Ttq.ONLINE_PIN, self.online_pin_supported),
            (Ttq.SIGNATURE, self.signature_supported),
            (Ttq.CDCVM, self.cdcvm_supported),
            (Ttq.FDDA_V01, self.fdda_v01_supported),
            # An offline-only reader never asks for an online cryptogram (doc §4 rule 5).
            (Ttq.ONLINE_CRYPTOGRAM_REQUIRED,
             self.online_capable and (over_floor_limit(amount, limits.floor_limit) or force_online)),
            (Ttq.CVM_REQUIRED, amount >= limits.cvm_limit),
        )
        for flag, on in flags:
            if on:
                value |= flag
        return value.to_bytes()
