"""China T-Union-style transit e-purse (PBOC electronic purse, AID A000000632010105 "MOT_T_EP").

The simulated card side of the "public transportation cards from six cities": a purse that a gate or bus
validator debits offline with the PBOC purchase protocol (INITIALIZE FOR PURCHASE → PSAM MAC1 → DEBIT FOR
PURCHASE → MAC2/TAC), see ``docs/emv-qpboc.md`` §13.

Byte layouts chosen here (all numbers big-endian, dates BCD):

* Public application file, SFI 0x15 (30 bytes, also the value of ``9F0C`` in the FCI), shaped like the
  real T-Union "0015" file::

      offset len  field
       0      8   issuer id (binary, from the profile)
       8      1   application type        02 = electronic purse
       9      1   application version     01
      10     10   application serial      cn: "0" ‖ card number (16 digits) ‖ "F" padding → 0310 4X…FFF
      20      4   valid from              YYYYMMDD
      24      4   valid to                YYYYMMDD
      28      2   city code               4 BCD digits (issuer-defined FCI data)

* Transaction log, SFI 0x18: 23-byte PBOC records, record 1 = newest::

      offline serial(2) ‖ overdraft limit(3)=000000 ‖ amount(4) ‖ type(1) ‖ terminal id(6)
      ‖ date YYYYMMDD(4) ‖ time hhmmss(3)

* INITIALIZE FOR PURCHASE answer (15 bytes): balance(4) ‖ offline serial(2) ‖ overdraft limit(3)=000000
  ‖ key version(1) ‖ algorithm id(1)=00 (3DES) ‖ card random(4).

* INITIALIZE FOR LOAD answer (16 bytes): balance(4) ‖ online serial(2) ‖ key version(1) ‖ algorithm id(1)
  ‖ card random(4) ‖ MAC1(4); CREDIT FOR LOAD answers the load TAC (4). A load is logged like a purchase, its
  online serial in the serial field and type 02. GET TRANSACTION PROVE with P2 02 answers, for the last load,
  the MAC2 the card accepted ‖ its TAC: the MAC tells a terminal whether the credit at that serial was its own
  (the same MAC2 it sent), the TAC proves the credit to the load host.

The card is debited only by DEBIT FOR PURCHASE with a valid MAC1; the pending purchase of INITIALIZE lives in
RAM only, and any other command, a new selection or a field drop forgets it (PBOC requires the DEBIT to follow
the INITIALIZE immediately), so a purchase torn before the DEBIT leaves the purse unchanged.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emvcore import epurse, tlv
from emvcore.apdu import CommandApdu, ResponseApdu, StatusWord
from emvcore.crypto import transit as transit_crypto
from firmware.jsonfile import Fields, FileFormatError

AID = epurse.AID
LABEL = epurse.LABEL

SFI_PUBLIC = 0x15
SFI_LOG = 0x18
LOG_SIZE = 10
LOG_RECORD_LENGTH = 23
PUBLIC_FILE_LENGTH = 30

TXN_TYPE_EP_PURCHASE = epurse.TXN_EP_PURCHASE
TXN_TYPE_EP_LOAD = epurse.TXN_EP_LOAD
PURCHASE_KEY_INDEX = epurse.PURCHASE_KEY_INDEX
ALGORITHM_ID_3DES = 0x00
APPLICATION_TYPE_EP = 0x02
APPLICATION_VERSION = 0x01

MAX_BALANCE = 0xFFFFFFFF
MAX_SERIAL = 0xFFFF

_CLA_ISO = 0x00
_CLA_PROPRIETARY = epurse.CLA_PROPRIETARY

_INS_SELECT = 0xA4
_INS_READ_BINARY = 0xB0
_INS_READ_RECORD = 0xB2
_INS_GET_BALANCE = epurse.INS_GET_BALANCE
_INS_INITIALIZE = epurse.INS_INITIALIZE
_INS_DEBIT = epurse.INS_DEBIT_FOR_PURCHASE
_INS_CREDIT = epurse.INS_CREDIT_FOR_LOAD
_INS_GET_TRANSACTION_PROVE = epurse.INS_GET_TRANSACTION_PROVE

_INITIALIZE_ANSWER_LENGTH = epurse.INITIALIZE_PURCHASE_ANSWER_LENGTH
_DEBIT_ANSWER_LENGTH = epurse.DEBIT_ANSWER_LENGTH
_PROVE_ANSWER_LENGTH = epurse.PROVE_ANSWER_LENGTH


# --------------------------------------------------------------------------------------------------------
# byte encodings


def _is_bcd(raw: bytes) -> bool:
    return all((b >> 4) <= 9 and (b & 0x0F) <= 9 for b in raw)


def _bcd_date(value: dt.date) -> bytes:
    return bytes.fromhex(f"{value.year:04d}{value.month:02d}{value.day:02d}")


def _bcd_datetime_ok(raw: bytes) -> bool:
    """A plausible YYYYMMDDhhmmss; the MAC protects the value, this only keeps the log readable."""
    if len(raw) != 7 or not _is_bcd(raw):
        return False
    try:
        dt.datetime.strptime(raw.hex(), "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------------
# persistent data


@dataclass
class TransitProfile:
    """Personalization that never changes after issue (printed on the card, read by gates and apps)."""

    card_number: str
    city_code: str
    city_name: str
    issuer_id: bytes
    valid_from: dt.date
    valid_to: dt.date

    def public_file(self) -> bytes:
        """The 30-byte SFI 0x15 file (see the module docstring): what a gate reads to identify the card."""
        serial = bytes.fromhex(("0" + self.card_number).ljust(20, "F"))
        return (
            self.issuer_id
            + bytes([APPLICATION_TYPE_EP, APPLICATION_VERSION])
            + serial
            + _bcd_date(self.valid_from)
            + _bcd_date(self.valid_to)
            + bytes.fromhex(self.city_code)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the card file."""
        return {
            "card_number": self.card_number,
            "city_code": self.city_code,
            "city_name": self.city_name,
            "issuer_id": self.issuer_id.hex().upper(),
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat(),
        }

    @classmethod
    def from_dict(cls, fields: Fields) -> TransitProfile:
        """Load and validate; a bad card file must fail at load time with the field named, not mid-tap."""
        fields.only("card_number", "city_code", "city_name", "issuer_id", "valid_from", "valid_to")
        city_name = fields.str("city_name")
        if not city_name.strip():
            raise FileFormatError(f"{fields.where('city_name')}: must be a non-empty string")
        valid_from, valid_to = fields.date("valid_from"), fields.date("valid_to")
        if valid_to < valid_from:
            raise FileFormatError(f"{fields.where('valid_to')}: must not be before valid_from")
        return cls(
            card_number=fields.digits("card_number", length=16),
            city_code=fields.digits("city_code", length=4),
            city_name=city_name,
            issuer_id=fields.hex("issuer_id", length=8),
            valid_from=valid_from,
            valid_to=valid_to,
        )


@dataclass
class TransitKeys:
    """The card's secret keys: DPK (purchase, key index 01), TAC key, optional load key."""

    purchase_key: bytes
    tac_key: bytes
    load_key: bytes | None = None
    key_version: int = 0x01

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the card file (hex strings)."""
        return {
            "purchase_key": self.purchase_key.hex().upper(),
            "tac_key": self.tac_key.hex().upper(),
            "load_key": None if self.load_key is None else self.load_key.hex().upper(),
            "key_version": self.key_version,
        }

    @classmethod
    def from_dict(cls, fields: Fields) -> TransitKeys:
        """Load and validate; keys of the wrong length would only fail later as a MAC mismatch."""
        fields.only("purchase_key", "tac_key", "load_key", "key_version")
        return cls(
            purchase_key=fields.hex("purchase_key", length=16),
            tac_key=fields.hex("tac_key", length=16),
            load_key=None if fields.data.get("load_key") is None else fields.hex("load_key", length=16),
            key_version=fields.int("key_version", maximum=0xFF, default=0x01),
        )


@dataclass(frozen=True)
class PurchaseRecord:
    """One completed DEBIT FOR PURCHASE: enough to answer GET TRANSACTION PROVE and to build a log record."""

    offline_serial: int
    amount: int
    txn_type: int
    terminal_id: bytes
    terminal_serial: bytes
    date_time: bytes
    mac2: bytes
    tac: bytes

    def log_record(self) -> bytes:
        """The 23-byte PBOC transaction-log record (SFI 0x18)."""
        return (
            self.offline_serial.to_bytes(2, "big")
            + bytes(3)
            + self.amount.to_bytes(4, "big")
            + bytes([self.txn_type])
            + self.terminal_id
            + self.date_time
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (hex strings; date_time is BCD so its hex reads as YYYYMMDDhhmmss)."""
        return {
            "offline_serial": self.offline_serial,
            "amount": self.amount,
            "txn_type": self.txn_type,
            "terminal_id": self.terminal_id.hex().upper(),
            "terminal_serial": self.terminal_serial.hex().upper(),
            "date_time": self.date_time.hex(),
            "mac2": self.mac2.hex().upper(),
            "tac": self.tac.hex().upper(),
        }

    @classmethod
    def from_dict(cls, fields: Fields) -> PurchaseRecord:
        """Load and validate one record of the card file."""
        fields.only(
            "offline_serial", "amount", "txn_type", "terminal_id", "terminal_serial", "date_time", "mac2", "tac"
        )
        date_time = fields.hex("date_time", length=7)
        if not _bcd_datetime_ok(date_time):
            raise FileFormatError(f"{fields.where('date_time')}: must be YYYYMMDDhhmmss")
        return cls(
            offline_serial=fields.int("offline_serial", maximum=MAX_SERIAL),
            amount=fields.int("amount", maximum=MAX_BALANCE),
            txn_type=fields.int("txn_type", maximum=0xFF),
            terminal_id=fields.hex("terminal_id", length=6),
            terminal_serial=fields.hex("terminal_serial", length=4),
            date_time=date_time,
            mac2=fields.hex("mac2", length=4),
            tac=fields.hex("tac", length=4),
        )


@dataclass
class TransitState:
    """What the purse's EEPROM holds between taps (balance in fen, counters, last purchase, log)."""

    balance: int = 0
    offline_serial: int = 0
    online_serial: int = 0
    last_purchase: PurchaseRecord | None = None
    log: list[PurchaseRecord] = field(default_factory=list)
    last_load: PurchaseRecord | None = None  # serial = the online serial before it; mac2 = the host's, accepted

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the card file; the log is newest first."""
        return {
            "balance": self.balance,
            "offline_serial": self.offline_serial,
            "online_serial": self.online_serial,
            "last_purchase": None if self.last_purchase is None else self.last_purchase.to_dict(),
            "log": [record.to_dict() for record in self.log],
            "last_load": None if self.last_load is None else self.last_load.to_dict(),
        }

    @classmethod
    def from_dict(cls, fields: Fields) -> TransitState:
        """Load and validate; a negative balance or an oversize counter must never reach the card."""
        fields.only("balance", "offline_serial", "online_serial", "last_purchase", "log", "last_load")
        balance = fields.int("balance", maximum=MAX_BALANCE)
        offline_serial = fields.int("offline_serial", maximum=MAX_SERIAL)
        online_serial = fields.int("online_serial", maximum=MAX_SERIAL)
        last = None
        if fields.data.get("last_purchase") is not None:
            last = PurchaseRecord.from_dict(fields.obj("last_purchase"))
        last_load = None
        if fields.data.get("last_load") is not None:
            last_load = PurchaseRecord.from_dict(fields.obj("last_load"))
        records = list(fields.objects("log")) if "log" in fields.data else []
        if len(records) > LOG_SIZE:
            raise FileFormatError(f"{fields.where('log')}: must be a list of at most {LOG_SIZE} records")
        return cls(
            balance=balance,
            offline_serial=offline_serial,
            online_serial=online_serial,
            last_purchase=last,
            log=[PurchaseRecord.from_dict(record) for record in records],
            last_load=last_load,
        )


# --------------------------------------------------------------------------------------------------------
# the application


@dataclass(frozen=True)
class _PendingPurchase:
    """What INITIALIZE FOR PURCHASE promised; RAM only, so a tear before DEBIT costs the rider nothing."""

    amount: int
    terminal_id: bytes
    card_random: bytes
    offline_serial: int


@dataclass(frozen=True)
class _PendingLoad:
    """What INITIALIZE FOR LOAD quoted; RAM only like a purchase, so a MAC2 is good for this session alone."""

    amount: int
    terminal_id: bytes
    card_random: bytes
    online_serial: int
    balance: int
    session_key: bytes = field(repr=False)


def _le_ok(le: int | None, answer_length: int) -> bool:
    """Le absent or at least the fixed answer length (Le 00 is 256); a shorter Le cannot take the answer."""
    return le is None or le >= answer_length


class TransitPurse:
    """The MOT_T_EP e-purse application: SELECT, READ BINARY/RECORD, GET BALANCE, purchase and its proof."""

    aid: bytes = AID
    label: str = LABEL

    def __init__(
        self,
        profile: TransitProfile,
        keys: TransitKeys,
        state: TransitState,
        on_change: Callable[[], None] | None = None,
        *,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        """``state`` is updated in place and ``on_change`` runs after each update so the owner saves it."""
        self.profile = profile
        self.keys = keys
        self.state = state
        self._on_change = on_change
        self._rng = rng
        self._pending: _PendingPurchase | _PendingLoad | None = None

    # -- CardApplication ------------------------------------------------------------------------------

    def select(self) -> ResponseApdu:
        """FCI: 6F{84 AID, A5{50 label, 9F0C public file}}; a new selection starts a new transaction."""
        self._pending = None
        proprietary = tlv.constructed(
            0xA5,
            tlv.encode(0x50, self.label.encode("ascii")),
            tlv.encode(0x9F0C, self.profile.public_file()),
        )
        return ResponseApdu.success(tlv.constructed(0x6F, tlv.encode(0x84, self.aid), proprietary))

    def deselect(self) -> None:
        """Field drop or another selection: an initialized but undebited purchase is forgotten."""
        self._pending = None

    def process(self, command: CommandApdu) -> ResponseApdu:
        """Answer one command with a status word for every kind of bad input."""
        pending, self._pending = self._pending, None  # DEBIT / CREDIT must immediately follow INITIALIZE
        cla, ins = command.cla, command.ins
        if cla not in (_CLA_ISO, _CLA_PROPRIETARY):
            return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
        iso = {
            _INS_SELECT: self._select_file,
            _INS_READ_BINARY: self._read_binary,
            _INS_READ_RECORD: self._read_record,
        }
        proprietary = {
            _INS_GET_BALANCE: self._get_balance,
            _INS_INITIALIZE: self._initialize,
            _INS_GET_TRANSACTION_PROVE: self._get_transaction_prove,
        }
        if ins in (_INS_DEBIT, _INS_CREDIT):
            if cla != _CLA_PROPRIETARY:
                return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
            if ins == _INS_CREDIT:
                return self._credit(command, pending if isinstance(pending, _PendingLoad) else None)
            return self._debit(command, pending if isinstance(pending, _PendingPurchase) else None)
        if ins in iso:
            handler = iso[ins]
            expected_cla = _CLA_ISO
        elif ins in proprietary:
            handler = proprietary[ins]
            expected_cla = _CLA_PROPRIETARY
        else:
            return ResponseApdu.error(StatusWord.INS_NOT_SUPPORTED)
        if cla != expected_cla:
            return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
        return handler(command)

    # -- commands -------------------------------------------------------------------------------------

    def _select_file(self, command: CommandApdu) -> ResponseApdu:
        """Re-selecting this AID answers the FCI again; files are reached by SFI, so nothing else selects."""
        if command.p1 == 0x04 and command.data == self.aid:
            return self.select()
        return ResponseApdu.error(StatusWord.FILE_NOT_FOUND)

    def _read_binary(self, command: CommandApdu) -> ResponseApdu:
        """``00 B0 95 off Le``: only SFI addressing, only the public file."""
        if command.data:
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if not command.p1 & 0x80 or command.p1 & 0x60:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if command.p1 & 0x1F != SFI_PUBLIC:
            return ResponseApdu.error(StatusWord.FILE_NOT_FOUND)
        content = self.profile.public_file()
        offset = command.p2
        if offset >= len(content):
            return ResponseApdu.error(StatusWord.WRONG_P1P2)  # ISO 7816-4: offset outside the EF
        end = len(content) if command.le is None else min(len(content), offset + command.le)
        return ResponseApdu.success(content[offset:end])

    def _read_record(self, command: CommandApdu) -> ResponseApdu:
        """``00 B2 n C4 00``: record n of the transaction log, 1 = newest."""
        if command.data:
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if command.p2 & 0x07 != 0x04 or command.p1 == 0:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if command.p2 >> 3 != SFI_LOG:
            return ResponseApdu.error(StatusWord.FILE_NOT_FOUND)
        if not _le_ok(command.le, LOG_RECORD_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if command.p1 > len(self.state.log):
            return ResponseApdu.error(StatusWord.RECORD_NOT_FOUND)
        return ResponseApdu.success(self.state.log[command.p1 - 1].log_record())

    def _get_balance(self, command: CommandApdu) -> ResponseApdu:
        """``80 5C 00 02 04``: P2 02 is the e-purse; there is no e-deposit (P2 01) on this card."""
        if command.p1 != 0x00 or command.p2 != epurse.P2_EP:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if command.data or not _le_ok(command.le, 4):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        return ResponseApdu.success(self.state.balance.to_bytes(4, "big"))

    def _random(self) -> bytes:
        card_random = bytes(self._rng(4))
        if len(card_random) != 4:
            raise RuntimeError("rng must return exactly the requested number of bytes")
        return card_random

    def _initialize(self, command: CommandApdu) -> ResponseApdu:
        """``80 50 01 02 0B``: quote balance, serial and a fresh random; nothing is charged yet."""
        if command.p1 == epurse.P1_INITIALIZE_LOAD and command.p2 == epurse.P2_EP:
            return self._initialize_load(command)
        if command.p1 != epurse.P1_INITIALIZE_PURCHASE or command.p2 != epurse.P2_EP:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        data = command.data
        if len(data) != 11 or not _le_ok(command.le, _INITIALIZE_ANSWER_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if data[0] != PURCHASE_KEY_INDEX:
            return ResponseApdu.error(StatusWord.KEY_INDEX_NOT_SUPPORTED)
        amount = int.from_bytes(data[1:5], "big")
        terminal_id = bytes(data[5:11])
        state = self.state
        if amount > state.balance:
            return ResponseApdu.error(StatusWord.INSUFFICIENT_BALANCE)
        if state.offline_serial >= MAX_SERIAL:
            # the 2-byte counter cannot name another purchase: the purse is used up
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
        card_random = self._random()
        self._pending = _PendingPurchase(amount, terminal_id, card_random, state.offline_serial)
        return ResponseApdu.success(
            state.balance.to_bytes(4, "big")
            + state.offline_serial.to_bytes(2, "big")
            + bytes(3)
            + bytes([self.keys.key_version, ALGORITHM_ID_3DES])
            + card_random
        )

    def _debit(self, command: CommandApdu, pending: _PendingPurchase | None) -> ResponseApdu:
        """``80 54 01 00 0F``: check MAC1, debit, persist, then answer TAC ‖ MAC2."""
        if command.p1 != 0x01 or command.p2 != 0x00:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        data = command.data
        if len(data) != 15 or not _le_ok(command.le, _DEBIT_ANSWER_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if pending is None:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
        terminal_serial, date_time, mac1 = bytes(data[0:4]), bytes(data[4:11]), bytes(data[11:15])
        sespk = transit_crypto.purchase_session_key(
            self.keys.purchase_key, pending.card_random, pending.offline_serial, terminal_serial
        )
        expected = transit_crypto.purchase_mac1(
            sespk, pending.amount, TXN_TYPE_EP_PURCHASE, pending.terminal_id, date_time
        )
        if not hmac.compare_digest(expected, mac1):
            return ResponseApdu.error(StatusWord.MAC_INVALID)
        if not _bcd_datetime_ok(date_time):
            return ResponseApdu.error(StatusWord.WRONG_DATA)
        state = self.state
        if pending.amount > state.balance or pending.offline_serial != state.offline_serial:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)  # state moved under us
        mac2 = transit_crypto.purchase_mac2(sespk, pending.amount)
        tac = transit_crypto.purchase_tac(
            self.keys.tac_key,
            pending.amount,
            TXN_TYPE_EP_PURCHASE,
            pending.terminal_id,
            terminal_serial,
            date_time,
        )
        record = PurchaseRecord(
            offline_serial=pending.offline_serial,
            amount=pending.amount,
            txn_type=TXN_TYPE_EP_PURCHASE,
            terminal_id=pending.terminal_id,
            terminal_serial=terminal_serial,
            date_time=date_time,
            mac2=mac2,
            tac=tac,
        )
        self._commit(record, balance=state.balance - pending.amount, offline_serial=state.offline_serial + 1,
                     last_purchase=record)
        return ResponseApdu.success(tac + mac2)

    def _initialize_load(self, command: CommandApdu) -> ResponseApdu:
        """``80 50 00 02 0B``: quote balance, online serial, a fresh random and MAC1 for the load host; nothing is
        credited until CREDIT FOR LOAD brings the host's MAC2 in the same session."""
        data = command.data
        if len(data) != epurse.INITIALIZE_DATA_LENGTH or not _le_ok(command.le, epurse.INITIALIZE_LOAD_ANSWER_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if data[0] != epurse.LOAD_KEY_INDEX or self.keys.load_key is None:
            return ResponseApdu.error(StatusWord.KEY_INDEX_NOT_SUPPORTED)
        amount = int.from_bytes(data[1:5], "big")
        terminal_id = bytes(data[5:11])
        state = self.state
        if amount == 0 or state.balance + amount > epurse.PURSE_LIMIT or state.online_serial >= MAX_SERIAL:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)  # over the purse's ceiling, or used up
        card_random = self._random()
        seslk = transit_crypto.load_session_key(self.keys.load_key, card_random, state.online_serial)
        mac1 = transit_crypto.load_mac1(seslk, state.balance, amount, TXN_TYPE_EP_LOAD, terminal_id)
        self._pending = _PendingLoad(amount, terminal_id, card_random, state.online_serial, state.balance, seslk)
        quote = epurse.LoadQuote(state.balance, state.online_serial, self.keys.key_version, ALGORITHM_ID_3DES,
                                 card_random, mac1)
        return ResponseApdu.success(quote.encode())

    def _credit(self, command: CommandApdu, pending: _PendingLoad | None) -> ResponseApdu:
        """``80 52 00 00 0B``: check the host's MAC2, credit, count the online serial, persist, answer the TAC."""
        if command.p1 != 0x00 or command.p2 != 0x00:
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        data = command.data
        if len(data) != epurse.CREDIT_DATA_LENGTH or not _le_ok(command.le, epurse.CREDIT_ANSWER_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        if pending is None:
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
        date_time, mac2 = bytes(data[0:7]), bytes(data[7:11])
        expected = transit_crypto.load_mac2(pending.session_key, pending.amount, TXN_TYPE_EP_LOAD,
                                            pending.terminal_id, date_time)
        if not hmac.compare_digest(expected, mac2):
            return ResponseApdu.error(StatusWord.MAC_INVALID)
        if not _bcd_datetime_ok(date_time):
            return ResponseApdu.error(StatusWord.WRONG_DATA)
        state = self.state
        new_balance = state.balance + pending.amount
        if (pending.online_serial != state.online_serial or pending.balance != state.balance
                or new_balance > epurse.PURSE_LIMIT):
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)  # state moved, or past the ceiling
        tac = transit_crypto.load_tac(self.keys.tac_key, new_balance, pending.online_serial, pending.amount,
                                      TXN_TYPE_EP_LOAD, pending.terminal_id, date_time)
        record = PurchaseRecord(
            offline_serial=pending.online_serial, amount=pending.amount, txn_type=TXN_TYPE_EP_LOAD,
            terminal_id=pending.terminal_id, terminal_serial=bytes(4), date_time=date_time, mac2=mac2, tac=tac,
        )
        self._commit(record, balance=new_balance, online_serial=state.online_serial + 1, last_load=record)
        return ResponseApdu.success(tac)

    def _get_transaction_prove(self, command: CommandApdu) -> ResponseApdu:
        """``80 5A 00 tt 02 serial``: MAC ‖ TAC of the last purchase (06, MAC2 the card made) or load (02, the
        MAC2 the card accepted), so a torn answer can be recovered."""
        if command.p1 != 0x00 or command.p2 not in (TXN_TYPE_EP_PURCHASE, TXN_TYPE_EP_LOAD):
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if len(command.data) != 2 or not _le_ok(command.le, _PROVE_ANSWER_LENGTH):
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        serial = int.from_bytes(command.data, "big")
        last = self.state.last_purchase if command.p2 == TXN_TYPE_EP_PURCHASE else self.state.last_load
        if last is None or last.offline_serial != serial:
            return ResponseApdu.error(StatusWord.REFERENCED_DATA_NOT_FOUND)
        return ResponseApdu.success(last.mac2 + last.tac)

    def _commit(self, record: PurchaseRecord, **changes: Any) -> None:
        """Apply a transaction's changes and log record, then save; a failed save undoes them all (as on a card
        whose EEPROM write failed: the transaction did not happen)."""
        state = self.state
        before = {name: getattr(state, name) for name in (*changes, "log")}
        for name, value in changes.items():
            setattr(state, name, value)
        state.log = [record, *state.log][:LOG_SIZE]
        try:
            self._changed()
        except BaseException:
            for name, value in before.items():
                setattr(state, name, value)
            raise

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
