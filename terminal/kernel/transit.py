"""Transit fares on T-Union e-purses (doc emv-qpboc.md §13) with a software PSAM.

The card checks MAC1 (made by the PSAM) before it debits; the PSAM checks MAC2 (made by the card); the TAC is
kept for the clearing centre, which alone holds the TAC keys. A card torn away after DEBIT was sent may or may
not have paid, so the PSAM remembers that purchase and the next tap of the same card asks GET TRANSACTION
PROVE: an answer completes the old fare (no second charge), "not found" means the debit never happened.

That memory, and the terminal transaction serial, must outlive the process: a terminal restarted between the
tear and the next tap would otherwise charge the rider again. Give the PSAM a `PsamMemory` (the journal's
`TransitMemory` on a terminal) and both are committed before the DEBIT leaves. What is stored is no key: the
session key is derived again from the PSAM's master key and the card's random of that purchase.

Pure logic like the qPBOC kernel: the card is reached only through ``transceive``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from emvcore import epurse, tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, describe_sw
from emvcore.crypto import transit as transit_crypto
from terminal.kernel.errors import CardGone
from terminal.kernel.outcome import Message, Outcome

__all__ = ["TRANSIT_AID", "Psam", "PsamMemory", "PsamMemoryError", "PsamPurchase", "TransitResult", "fare"]

TRANSIT_AID = epurse.AID

_TXN_EP_PURCHASE = epurse.TXN_EP_PURCHASE
_PUBLIC_FILE_LENGTH = 30
_MAX_AMOUNT = 0xFFFFFFFF

_SW_INSUFFICIENT_BALANCE = 0x9401
_SW_MAC_INVALID = 0x9302
_SW_NOT_FOUND = 0x6A88


@dataclass(frozen=True)
class PsamPurchase:
    """A DEBIT that was sent: what the PSAM needs to check its MAC2 later, on this tap or the next."""

    card_number: str
    offline_serial: int
    amount: int
    terminal_serial: bytes
    date_time: bytes
    session_key: bytes = field(repr=False)
    city_code: str = ""
    card_random: bytes = b""

    def to_record(self) -> dict[str, Any]:
        """What the PSAM's memory keeps: everything but the session key (derived again when it is needed)."""
        return {"card_number": self.card_number, "city_code": self.city_code, "offline_serial": self.offline_serial,
                "amount": self.amount, "terminal_serial": self.terminal_serial.hex().upper(),
                "date_time": self.date_time.hex().upper(), "card_random": self.card_random.hex().upper()}


class PsamMemoryError(Exception):
    """The PSAM's memory holds a torn purchase for this card that it cannot use."""


class PsamMemory(Protocol):
    """Durable storage for a PSAM: each call commits before it returns."""

    def serial(self) -> int: ...

    def store_serial(self, serial: int) -> None: ...

    def remember_torn(self, card_number: str, purchase: Mapping[str, Any]) -> None: ...

    def torn(self, card_number: str) -> Mapping[str, Any] | None: ...

    def forget_torn(self, card_number: str) -> None: ...

    def complete(self, card_number: str, fare: Mapping[str, Any]) -> None:
        """The card proved it debited: its torn purchase (if any) goes and the fare's record, TAC included, is kept
        for transit clearing, in one commit (a crash between the two must neither lose the TAC nor leave the
        purchase to be proven again)."""
        ...

    def fares(self) -> list[dict[str, Any]]: ...


class _ProcessMemory:
    """A PsamMemory that lasts as long as the process: for tests and one-shot tools."""

    def __init__(self) -> None:
        self._serial = 0
        self._torn: dict[str, Mapping[str, Any]] = {}
        self._fares: list[dict[str, Any]] = []

    def serial(self) -> int:
        return self._serial

    def store_serial(self, serial: int) -> None:
        self._serial = serial

    def remember_torn(self, card_number: str, purchase: Mapping[str, Any]) -> None:
        self._torn[card_number] = dict(purchase)

    def torn(self, card_number: str) -> Mapping[str, Any] | None:
        return self._torn.get(card_number)

    def forget_torn(self, card_number: str) -> None:
        self._torn.pop(card_number, None)

    def complete(self, card_number: str, fare: Mapping[str, Any]) -> None:
        self._torn.pop(card_number, None)
        self._fares.append(dict(fare))

    def fares(self) -> list[dict[str, Any]]:
        return list(self._fares)


class Psam:
    """A software PSAM: per-city purchase master keys, the terminal id, and the terminal transaction serial.

    Per-card keys follow the world's personalisation: EMV Option A over the 16-digit card number (PSN 00).
    Without `memory` the serial and the torn purchases last as long as the process (tests, one-shot tools).
    """

    def __init__(self, purchase_master_keys: Mapping[str, bytes], terminal_id: bytes, *, serial: int = 0,
                 memory: PsamMemory | None = None) -> None:
        for city, key in purchase_master_keys.items():
            if len(city) != 4 or not city.isdigit() or len(key) != 16:
                raise ValueError(f"city {city!r}: a 4-digit city code and a 16-byte master key are needed")
        if len(terminal_id) != 6:
            raise ValueError("the PSAM terminal id is 6 bytes")
        if not 0 <= serial <= 0xFFFFFFFF:
            raise ValueError("the terminal transaction serial is 4 bytes")
        self._masters = dict(purchase_master_keys)
        self.terminal_id = bytes(terminal_id)
        self._memory: PsamMemory = memory if memory is not None else _ProcessMemory()
        self.serial = max(serial, self._memory.serial())

    def knows(self, city_code: str) -> bool:
        """Whether this PSAM can serve cards of that city at all."""
        return city_code in self._masters

    def mac1(
        self, city_code: str, card_number: str, card_random: bytes, offline_serial: int, amount: int,
        date_time: bytes,
    ) -> tuple[PsamPurchase, bytes]:
        """Open a purchase: a new terminal serial, the session key, and MAC1 for the card to check."""
        self.serial = (self.serial + 1) & 0xFFFFFFFF
        self._memory.store_serial(self.serial)
        terminal_serial = self.serial.to_bytes(4, "big")
        session_key = self._session_key(city_code, card_number, card_random, offline_serial, terminal_serial)
        mac1 = transit_crypto.purchase_mac1(session_key, amount, _TXN_EP_PURCHASE, self.terminal_id, date_time)
        purchase = PsamPurchase(card_number, offline_serial, amount, terminal_serial, date_time, session_key,
                                city_code, bytes(card_random))
        return purchase, mac1

    def _session_key(self, city_code: str, card_number: str, card_random: bytes, offline_serial: int,
                     terminal_serial: bytes) -> bytes:
        card_key = transit_crypto.diversify_card_key(self._masters[city_code], card_number)
        return transit_crypto.purchase_session_key(card_key, card_random, offline_serial, terminal_serial)

    @staticmethod
    def mac2_ok(purchase: PsamPurchase, mac2: bytes) -> bool:
        """The card proves it really debited: only the holder of the card key can make MAC2."""
        expected = transit_crypto.purchase_mac2(purchase.session_key, purchase.amount)
        return hmac.compare_digest(expected, bytes(mac2))

    def remember_torn(self, purchase: PsamPurchase) -> None:
        """Kept until the same card taps again; one per card, the latest wins."""
        self._memory.remember_torn(purchase.card_number, purchase.to_record())

    def torn(self, card_number: str) -> PsamPurchase | None:
        record = self._memory.torn(card_number)
        return None if record is None else self._from_record(record)

    def forget_torn(self, card_number: str) -> None:
        self._memory.forget_torn(card_number)

    def complete(self, purchase: PsamPurchase, tac: bytes) -> None:
        """The proven purchase becomes a fare record for transit clearing (`fare_record`), committed at once."""
        self._memory.complete(purchase.card_number, fare_record(purchase, tac, self.terminal_id))

    def fares(self) -> list[dict[str, Any]]:
        """Every fare this PSAM completed, oldest first (what transit clearing will be sent)."""
        return self._memory.fares()

    def _from_record(self, record: Mapping[str, Any]) -> PsamPurchase:
        """A remembered purchase with its session key derived again. An unreadable record (or one for a city
        this PSAM has no key for any more) raises `PsamMemoryError`: the card may have paid, so it must not be
        charged anew, and nothing can be proven either; a person has to look."""
        try:
            city_code, card_number = str(record["city_code"]), str(record["card_number"])
            offline_serial, amount = int(record["offline_serial"]), int(record["amount"])
            terminal_serial = bytes.fromhex(str(record["terminal_serial"]))
            date_time, card_random = bytes.fromhex(str(record["date_time"])), bytes.fromhex(str(record["card_random"]))
        except (KeyError, TypeError, ValueError):
            raise PsamMemoryError("the record of a torn purchase on this card is unreadable") from None
        if city_code not in self._masters:
            raise PsamMemoryError(f"a torn purchase on this card needs the key of city {city_code}")
        session_key = self._session_key(city_code, card_number, card_random, offline_serial, terminal_serial)
        return PsamPurchase(card_number, offline_serial, amount, terminal_serial, date_time, session_key, city_code,
                            card_random)


@dataclass
class TransitResult:
    """One fare tap; the card number is a transit number, still kept out of repr like a PAN."""

    outcome: Outcome
    message: str
    card_number: str | None = field(default=None, repr=False)
    city_code: str | None = None
    amount: int = 0
    balance_before: int | None = None
    balance_after: int | None = None
    offline_serial: int | None = None
    online_serial: int | None = None  # a load's: the card's online serial before the credit
    terminal_serial: bytes | None = None
    date_time: bytes | None = None  # BCD YYYYMMDDhhmmss as sent in DEBIT
    mac2: bytes | None = None
    tac: bytes | None = None  # for the clearing centre
    recovered: bool = False  # this tap completed an earlier torn purchase instead of charging again
    reasons: list[str] = field(default_factory=list)


class _Stop(Exception):
    """Ends an e-purse transaction with this outcome and shopper message; `reason` goes to the log."""

    def __init__(self, outcome: Outcome, message: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.message, self.reason = outcome, message, reason


def _send(transceive: Callable[[bytes], bytes], command: CommandApdu, what: str) -> ResponseApdu:
    raw = transceive(command.encode())
    if not isinstance(raw, bytes | bytearray):
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"{what}: the reader returned no bytes")
    try:
        return ResponseApdu.decode(bytes(raw))
    except ApduError:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"{what}: answer without status word") from None


def _bcd_date(raw: bytes) -> date | None:
    try:
        return datetime.strptime(raw.hex(), "%Y%m%d").date()
    except ValueError:
        return None


def _read_public_file(answer: ResponseApdu) -> tuple[str, str, date, date]:
    """Card number, city code and validity from 9F0C in the FCI (layout in firmware/apps/cards/transit.py)."""
    try:
        fci = tlv.parse_one(answer.data)
        public = tlv.find(answer.data, 0x9F0C) if fci.tag == 0x6F else None
    except tlv.TlvError as error:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"FCI is not valid TLV ({error})") from None
    if public is None or len(public) != _PUBLIC_FILE_LENGTH:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, "FCI has no 30-byte public file (9F0C)")
    serial = public[10:20].hex().upper()
    card_number, city_code = serial[1:17], public[28:30].hex()
    valid_from, valid_to = _bcd_date(public[20:24]), _bcd_date(public[24:28])
    if serial[0] != "0" or not card_number.isdigit() or not city_code.isdigit() or not valid_from or not valid_to:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, "public file (9F0C) is not a T-Union layout")
    return card_number, city_code, valid_from, valid_to


def select_card(transceive: Callable[[bytes], bytes], now: datetime, result: TransitResult) -> tuple[str, str]:
    """SELECT the e-purse: its card number and city code (kept in `result`), refused when out of its dates."""
    answer = _send(transceive, epurse.select(), "SELECT")
    if not answer.ok:
        raise _Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, f"SELECT transit: {describe_sw(answer.sw)}")
    card_number, city_code, valid_from, valid_to = _read_public_file(answer)
    result.card_number, result.city_code = card_number, city_code
    if not valid_from <= now.date() <= valid_to:
        raise _Stop(Outcome.DECLINED, Message.CARD_EXPIRED, "card outside its validity dates")
    return card_number, city_code


def fare(
    transceive: Callable[[bytes], bytes], psam: Psam, amount: int, now: datetime
) -> TransitResult:
    """Charge one fare, or finish the previous one if this card was torn away during its DEBIT."""
    result = TransitResult(Outcome.END_APPLICATION, Message.CARD_ERROR, amount=amount)
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= _MAX_AMOUNT:
        result.message = Message.ENTER_AMOUNT
        result.reasons.append(f"invalid fare {amount!r}")
        return result
    return guarded(lambda: _fare(transceive, psam, amount, now, result), result)


def guarded(run: Callable[[], None], result: TransitResult) -> TransitResult:
    """Run one e-purse transaction; a card gone mid-way asks for it again, a stop or unreadable answer ends it."""
    try:
        run()
    except CardGone as error:
        result.outcome, result.message = Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN
        result.reasons.append(f"card gone: {type(error).__name__}")
    except _Stop as stop:
        result.outcome, result.message = stop.outcome, str(stop.message)
        result.reasons.append(stop.reason)
    except ValueError as error:  # emvcore's parsers and crypto helpers refuse bad sizes with ValueError
        result.outcome, result.message = Outcome.END_APPLICATION, str(Message.CARD_ERROR)
        result.reasons.append(f"card answer unreadable: {error}")
    return result


def _fare(
    transceive: Callable[[bytes], bytes], psam: Psam, amount: int, now: datetime, result: TransitResult
) -> None:
    card_number, city_code = select_card(transceive, now, result)
    if not psam.knows(city_code):
        raise _Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, f"no PSAM key for city {city_code}")

    try:
        torn = psam.torn(card_number)
    except PsamMemoryError as error:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, str(error)) from None
    if torn is not None and _recover(transceive, psam, torn, result):
        return

    answer = _send(transceive, epurse.initialize_for_purchase(amount, psam.terminal_id), "INITIALIZE FOR PURCHASE")
    if answer.sw == _SW_INSUFFICIENT_BALANCE:
        raise _Stop(Outcome.DECLINED, Message.INSUFFICIENT_BALANCE, "INITIALIZE: balance too low")
    if not answer.ok or len(answer.data) != epurse.INITIALIZE_PURCHASE_ANSWER_LENGTH:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"INITIALIZE: {describe_sw(answer.sw)}")
    data = answer.data
    balance, offline_serial, card_random = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:6], "big"), data[11:]
    result.balance_before, result.offline_serial = balance, offline_serial

    date_time = bytes.fromhex(now.strftime("%Y%m%d%H%M%S"))
    purchase, mac1 = psam.mac1(city_code, card_number, card_random, offline_serial, amount, date_time)
    result.terminal_serial, result.date_time = purchase.terminal_serial, date_time
    psam.remember_torn(purchase)  # from here on a tear may have cost the rider money
    try:
        answer = _send(transceive, epurse.debit_for_purchase(purchase.terminal_serial, date_time, mac1),
                       "DEBIT FOR PURCHASE")
    except _Stop as stop:  # an unreadable answer may hide a debit: keep it for GET TRANSACTION PROVE
        raise _Stop(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, stop.reason) from None
    if answer.ok and len(answer.data) != 8:
        raise _Stop(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, f"DEBIT: {len(answer.data)}-byte answer")
    if not answer.ok:
        # a refusal and an answer garbled on the air look alike: the purchase stays remembered, and the next tap's
        # GET TRANSACTION PROVE asks the card itself (6A88: it never debited, and the fare is charged anew)
        if answer.sw == _SW_MAC_INVALID:
            raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, "the card refused MAC1 (wrong PSAM key?)")
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"DEBIT: {describe_sw(answer.sw)}")
    if not psam.mac2_ok(purchase, answer.data[4:8]):  # garbled, or no genuine card: PROVE on the next tap decides
        raise _Stop(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, "DEBIT: MAC2 does not verify; tap again to prove")
    psam.complete(purchase, answer.data[0:4])
    _complete(answer.data[4:8], answer.data[0:4], result)
    result.balance_after = balance - amount


def _recover(transceive: Callable[[bytes], bytes], psam: Psam, torn: PsamPurchase, result: TransitResult) -> bool:
    """GET TRANSACTION PROVE for the torn purchase; True when it had been paid (and is now complete)."""
    answer = _send(transceive, epurse.get_transaction_prove(_TXN_EP_PURCHASE, torn.offline_serial), "PROVE")
    if answer.sw == _SW_NOT_FOUND:
        psam.forget_torn(torn.card_number)
        result.reasons.append("the torn purchase was never debited; charging anew")
        return False
    if not answer.ok or len(answer.data) != 8:
        raise _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, f"GET TRANSACTION PROVE: {describe_sw(answer.sw)}")
    if not psam.mac2_ok(torn, answer.data[0:4]):  # kept: a garbled proof is asked for again on the next tap
        raise _Stop(Outcome.DECLINED, Message.DECLINED, "PROVE: MAC2 does not verify: not proven by a genuine card")
    psam.complete(torn, answer.data[4:8])
    result.amount, result.offline_serial = torn.amount, torn.offline_serial
    result.terminal_serial, result.date_time, result.recovered = torn.terminal_serial, torn.date_time, True
    _complete(answer.data[0:4], answer.data[4:8], result)
    return True


def fare_record(purchase: PsamPurchase, tac: bytes, psam_id: bytes) -> dict[str, Any]:
    """What transit clearing needs of one fare: whose card, which city, the card's purse transaction number, the
    amount, the PSAM (terminal) number and serial, the time sent in DEBIT, and the TAC that proves it."""
    return {"card_number": purchase.card_number, "city_code": purchase.city_code,
            "offline_serial": purchase.offline_serial, "amount": purchase.amount, "psam": psam_id.hex().upper(),
            "terminal_serial": purchase.terminal_serial.hex().upper(), "date_time": purchase.date_time.hex().upper(),
            "tac": bytes(tac).hex().upper()}


def _complete(mac2: bytes, tac: bytes, result: TransitResult) -> None:
    """Only after MAC2 verified: the card really debited."""
    result.mac2, result.tac = mac2, tac
    result.outcome, result.message = Outcome.APPROVED, str(Message.FARE_PAID)
    result.reasons.append("recovered the torn purchase" if result.recovered else "fare paid")
