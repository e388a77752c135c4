"""UnionPay qPBOC debit/credit application: the card side of the three-APDU QuickPass tap.

The card decides online / offline / decline inside GET PROCESSING OPTIONS (format 2) from the TTQ,
the amount and its own offline risk rules, and returns the cryptogram at once, so the terminal can let
the card go before it does anything slow. See ../shared/docs/emv-qpboc.md §2-§8.
"""

from __future__ import annotations

import datetime
import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from emvcore import tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, StatusWord
from emvcore.bcd import amount_n12, date_n6, encode_bcd, encode_cn, parse_amount_n12
from emvcore.crypto import oda
from emvcore.crypto.cryptogram import CVN01_AC_TAGS, Algorithm, ac_input, compute_ac, derive_session_key
from emvcore.dol import DolError, split_dol_data
from emvcore.qpboc import CVN_01, Cryptogram, Ctq, Iad, Ttq

#: What the card asks for in GPO: the 33 bytes UnionPay cards request (doc §2.3).
PDOL = bytes.fromhex("9F6604 9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704".replace(" ", ""))

ODA_SFI = 1


@dataclass(frozen=True)
class OfflineRules:
    """The card's own offline risk management: when it may approve without the issuer."""

    enabled: bool = True
    per_transaction_limit: int = 50_000  # fen
    max_consecutive: int = 5


@dataclass(frozen=True)
class OdaData:
    """The personalized certificate chain (records of SFI 1) that lets a terminal run fDDA."""

    ca_index: int
    issuer_certificate: bytes  # 90
    issuer_remainder: bytes  # 92
    issuer_exponent: bytes  # 9F32
    icc_certificate: bytes  # 9F46
    icc_remainder: bytes  # 9F48
    icc_exponent: bytes  # 9F47


@dataclass(frozen=True)
class QPbocProfile:
    """Everything personalized into the application that is not secret."""

    aid: bytes
    label: str
    pan: str
    psn: int
    expiry: datetime.date
    effective: datetime.date
    priority: int = 1
    service_code: str = "220"
    cardholder_name: str = ""
    country: str = "0156"
    currency: str = "0156"
    aip: bytes = bytes.fromhex("7C00")
    dki: int = 1
    algorithm: Algorithm = Algorithm.TDES  # the IAD algorithm id
    ctq: bytes = bytes.fromhex("2000")  # go online if ODA fails
    cvm: str = "signature"  # what the card asks for when CVM is required: "signature" or "online-pin"
    offline: OfflineRules = field(default_factory=OfflineRules)
    par: str = ""  # payment account reference (9F24), for tokens
    oda: OdaData | None = None


@dataclass(frozen=True)
class QPbocKeys:
    """Secret personalization: never leaves the card (no command exports it)."""

    icc_master_key: bytes  # UDK for application cryptograms
    icc_private_key_pem: bytes = b""  # RSA key for fDDA; empty on online-only cards


@dataclass
class QPbocState:
    """What changes with use and must survive a restart (the ATC above all)."""

    atc: int = 0
    offline_balance: int = 0  # fen (available offline spending amount, 9F5D)
    consecutive_offline: int = 0
    last_online_atc: int = 0
    blocked: bool = False


def track2_equivalent(profile: QPbocProfile) -> bytes:
    """57: PAN D YYMM service code discretionary data, F-padded to whole bytes."""
    digits = f"{profile.pan}D{profile.expiry:%y%m}{profile.service_code}{profile.psn:03d}00000"
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def static_record(profile: QPbocProfile) -> bytes:
    """Record 1 of SFI 1, the one record the ICC certificate signs (with the AIP)."""
    return tlv.constructed(
        0x70,
        tlv.encode(0x5A, encode_cn(profile.pan, (len(profile.pan) + 1) // 2)),
        tlv.encode(0x5F24, date_n6(profile.expiry)),
        tlv.encode(0x5F25, date_n6(profile.effective)),
        tlv.encode(0x5F28, encode_bcd(profile.country, 2)),
        tlv.encode(0x5F34, bytes([profile.psn])),
        tlv.encode(0x9F07, bytes.fromhex("FF00")),
        tlv.encode(0x9F08, bytes.fromhex("0030")),
        tlv.encode(0x9F4A, bytes([0x82])),
    )


def static_data_to_authenticate(profile: QPbocProfile) -> bytes:
    return oda.static_data_to_authenticate([(ODA_SFI, static_record(profile))], profile.aip, bytes([0x82]))


def _records(profile: QPbocProfile) -> dict[tuple[int, int], bytes]:
    if profile.oda is None:
        return {}
    chain = profile.oda
    issuer = [
        tlv.encode(0x8F, bytes([chain.ca_index])),
        tlv.encode(0x90, chain.issuer_certificate),
        tlv.encode(0x9F32, chain.issuer_exponent),
    ]
    if chain.issuer_remainder:
        issuer.append(tlv.encode(0x92, chain.issuer_remainder))
    icc = [tlv.encode(0x9F46, chain.icc_certificate), tlv.encode(0x9F47, chain.icc_exponent)]
    if chain.icc_remainder:
        icc.append(tlv.encode(0x9F48, chain.icc_remainder))
    return {
        (ODA_SFI, 1): static_record(profile),
        (ODA_SFI, 2): tlv.constructed(0x70, *issuer),
        (ODA_SFI, 3): tlv.constructed(0x70, *icc),
    }


@functools.lru_cache(maxsize=256)
def _icc_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The ICC key, parsed and checked once per process: that takes ~5 ms, and a card file is loaded afresh at
    every tap (the software PN532 re-reads it), while its key never changes. Key objects are immutable."""
    return oda.private_key_from_pem(pem)


class QPbocApplication:
    """One qPBOC debit or credit application, on a plain card or as a token in a phone wallet."""

    def __init__(
        self,
        profile: QPbocProfile,
        keys: QPbocKeys,
        state: QPbocState,
        *,
        on_change: Callable[[], None] | None = None,
        cardholder_verified: Callable[[], bool] | None = None,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.profile = profile
        self.state = state
        self._keys = keys
        self._on_change = on_change or (lambda: None)
        # A phone passes its fingerprint gate here: True once (and consumed) after the holder verified.
        self._cardholder_verified = cardholder_verified
        self._rng = rng
        self._records = _records(profile)
        self._icc_private = _icc_private_key(keys.icc_private_key_pem) if keys.icc_private_key_pem else None
        self._gpo_done = False

    @property
    def aid(self) -> bytes:
        return self.profile.aid

    @property
    def label(self) -> str:
        return self.profile.label

    # -- CardApplication -------------------------------------------------------------------------

    def select(self) -> ResponseApdu:
        self._gpo_done = False
        proprietary = tlv.constructed(
            0xA5,
            tlv.encode(0x50, self.profile.label.encode("ascii")),
            tlv.encode(0x87, bytes([self.profile.priority])),
            tlv.encode(0x9F38, PDOL),
            tlv.encode(0x5F2D, b"zh"),
        )
        return ResponseApdu.success(tlv.constructed(0x6F, tlv.encode(0x84, self.aid), proprietary))

    def deselect(self) -> None:
        self._gpo_done = False

    def process(self, command: CommandApdu) -> ResponseApdu:
        handlers = {
            (0x80, 0xA8): self._get_processing_options,
            (0x00, 0xB2): self._read_record,
            (0x80, 0xCA): self._get_data,
        }
        handler = handlers.get((command.cla, command.ins))
        if handler is None:
            if command.ins in {ins for _, ins in handlers}:
                return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
            if command.ins == 0xAE:  # GENERATE AC: the full PBOC flow, not offered by this qPBOC profile
                return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
            return ResponseApdu.error(StatusWord.INS_NOT_SUPPORTED)
        try:
            return handler(command)
        except ApduError as error:
            return ResponseApdu.error(error.sw)

    # -- commands ----------------------------------------------------------------------------------

    def _get_processing_options(self, command: CommandApdu) -> ResponseApdu:
        if (command.p1, command.p2) != (0, 0):
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if command.le is None:
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        try:
            template = tlv.parse_one(command.data)
        except tlv.TlvError:
            return ResponseApdu.error(StatusWord.WRONG_DATA)
        if template.tag != 0x83:
            return ResponseApdu.error(StatusWord.WRONG_DATA)
        try:
            terminal = split_dol_data(PDOL, template.value)
        except DolError:
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        ttq = Ttq.from_bytes(terminal[0x9F66])
        if Ttq.QPBOC not in ttq:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)  # try another interface
        try:
            amount = parse_amount_n12(terminal[0x9F02])
        except ValueError:
            return ResponseApdu.error(StatusWord.WRONG_DATA)
        if self._gpo_done:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
        if self.state.atc >= 0xFFFF:
            return ResponseApdu.error(StatusWord.REFERENCED_DATA_INVALIDATED)  # ATC exhausted: card is dead
        cdcvm = False
        if self._cardholder_verified is not None:
            if not self._cardholder_verified():
                return ResponseApdu.error(StatusWord.COMMAND_NOT_ALLOWED)  # "see phone"
            cdcvm = True
        self._gpo_done = True

        decision = self._decide(ttq, amount, terminal)
        ctq = self._ctq(ttq, cdcvm)
        self.state.atc += 1
        atc = self.state.atc.to_bytes(2, "big")
        if decision is Cryptogram.TC:
            self.state.offline_balance -= amount
            self.state.consecutive_offline += 1
        elif decision is Cryptogram.ARQC:
            self.state.consecutive_offline = 0
            self.state.last_online_atc = self.state.atc
        self._on_change()  # the ATC is stored before any cryptogram leaves the card

        cvr = decision.cvr()
        values = {tag: terminal[tag] for tag in CVN01_AC_TAGS if tag in terminal}
        values[0x82] = self.profile.aip
        values[0x9F36] = atc
        session_key = derive_session_key(self.profile.algorithm, self._keys.icc_master_key, self.state.atc)
        cryptogram = compute_ac(self.profile.algorithm, session_key, ac_input(values, cvr))
        iad = Iad(self.profile.dki, CVN_01, cvr, self.profile.algorithm).encode()

        objects = [tlv.encode(0x82, self.profile.aip)]
        if decision is Cryptogram.TC:
            objects.append(tlv.encode(0x94, bytes([ODA_SFI << 3, 1, 3, 1])))
        objects += [
            tlv.encode(0x9F36, atc),
            tlv.encode(0x57, track2_equivalent(self.profile)),
            tlv.encode(0x9F10, iad),
            tlv.encode(0x9F26, cryptogram),
            tlv.encode(0x5F34, bytes([self.profile.psn])),
            tlv.encode(0x9F6C, ctq.to_bytes()),
            tlv.encode(0x9F5D, amount_n12(max(self.state.offline_balance, 0))),
        ]
        if self.profile.par:
            objects.append(tlv.encode(0x9F24, self.profile.par.encode("ascii")))
        if decision is Cryptogram.TC:
            objects += self._fdda(ttq, terminal, ctq, atc)
        return ResponseApdu.success(tlv.constructed(0x77, *objects))

    def _decide(self, ttq: Ttq, amount: int, terminal: dict[int, bytes]) -> Cryptogram:
        online_capable = Ttq.OFFLINE_ONLY not in ttq
        offline_possible = (
            self.profile.offline.enabled
            and self._icc_private is not None
            and self.profile.oda is not None
            and Ttq.ONLINE_CRYPTOGRAM_REQUIRED not in ttq
            and terminal[0x9C] == b"\x00"
            and terminal[0x5F2A] == encode_bcd(self.profile.currency, 2)
            and amount <= self.state.offline_balance
            and amount <= self.profile.offline.per_transaction_limit
            and self.state.consecutive_offline < self.profile.offline.max_consecutive
            and not (Ttq.CVM_REQUIRED in ttq and self.profile.cvm == "online-pin")
        )
        if self.state.blocked:
            return Cryptogram.AAC
        if offline_possible:
            return Cryptogram.TC
        return Cryptogram.ARQC if online_capable else Cryptogram.AAC

    def _ctq(self, ttq: Ttq, cdcvm: bool) -> Ctq:
        ctq = Ctq.from_bytes(self.profile.ctq)
        if cdcvm:
            return ctq | Ctq.CDCVM_PERFORMED
        if Ttq.CVM_REQUIRED not in ttq:
            return ctq
        if self.profile.cvm == "online-pin" or Ttq.SIGNATURE not in ttq:
            return ctq | Ctq.ONLINE_PIN
        return ctq | Ctq.SIGNATURE

    def _fdda(self, ttq: Ttq, terminal: dict[int, bytes], ctq: Ctq, atc: bytes) -> list[bytes]:
        assert self._icc_private is not None
        if Ttq.FDDA_V01 in ttq:
            card_auth_data = bytes([0x01]) + self._rng(4) + ctq.to_bytes() + b"\x00"
            dynamic = oda.fdda_terminal_data(
                1, terminal[0x9F37], terminal[0x9F02], terminal[0x5F2A], card_auth_data
            )
            sdad = oda.sign_dynamic_data(self._icc_private, atc, dynamic)
            return [tlv.encode(0x9F4B, sdad), tlv.encode(0x9F69, card_auth_data)]
        sdad = oda.sign_dynamic_data(self._icc_private, atc, oda.fdda_terminal_data(0, terminal[0x9F37]))
        return [tlv.encode(0x9F4B, sdad)]

    def _read_record(self, command: CommandApdu) -> ResponseApdu:
        if command.p2 & 0x07 != 0x04 or command.p2 >> 3 == 0 or command.p1 == 0:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        record = self._records.get((command.p2 >> 3, command.p1))
        if record is None:
            return ResponseApdu.error(StatusWord.RECORD_NOT_FOUND)
        return ResponseApdu.success(record)

    def _get_data(self, command: CommandApdu) -> ResponseApdu:
        tag = command.p1 << 8 | command.p2
        values = {
            0x9F36: self.state.atc.to_bytes(2, "big"),
            0x9F13: self.state.last_online_atc.to_bytes(2, "big"),
            0x9F5D: amount_n12(max(self.state.offline_balance, 0)),
            0x9F79: amount_n12(max(self.state.offline_balance, 0)),
        }
        if tag not in values:
            return ResponseApdu.error(StatusWord.REFERENCED_DATA_NOT_FOUND)
        return ResponseApdu.success(tlv.encode(tag, values[tag]))
