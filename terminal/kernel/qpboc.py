"""The qPBOC contactless kernel (UnionPay QuickPass, EMV Kernel 7 style); doc emv-qpboc.md §2-§7.

The card decides during GET PROCESSING OPTIONS, so every card command comes first (PPSE, SELECT, GPO and the
AFL records) and everything slow (fDDA, CVM, field 55) happens after ``on_card_read`` has let the shopper
take the card away. The kernel is pure: it reaches the card only through ``transceive`` and has no I/O.

Decisions on points the doc leaves open (see the module's tests for each):

* **fDDA fails on a TC and the CTQ says "go online" (1.6)**, or the application has expired and the CTQ says
  "go online if expired" (1.4): the card produced only a TC and has left, and the host refuses a TC as an
  authorization (it wants an ARQC). The kernel answers ``TRY_AGAIN`` with ``retry_online=True`` and nothing
  to send; the terminal asks for the card again and calls :func:`run` with ``force_online=True`` (TTQ 2.8),
  so the card returns an ARQC on the second tap. An offline-only terminal declines instead.
* **Online PIN required (CTQ 1.8) and no PIN pad**: ``TRY_ANOTHER_INTERFACE`` with "Insert card / PIN
  required" (the contact chip can verify a PIN); the ARQC is not sent.
* **A TC although the terminal asked for an online cryptogram (TTQ 2.8)**, or an ARQC at an offline-only
  terminal: declined.
* **fDDA version**: v01 when TTQ 4.8 is set and 9F69 is present with version 01, else v00 (a card that
  signed v01 data then fails the v00 hash). The ICC dynamic number is not compared with the ATC (§7.1).
* **CDCVM on a TC**: the CTQ copy inside 9F69 (signed by fDDA v01) must equal 9F6C, else declined.
* **Field 55** is filled only when there is something to send: ``ONLINE_REQUEST`` (authorization) and
  ``APPROVED`` (offline advice). 95 is the all-zero TVR sent in GPO, because the cryptogram covers it.
* **9F34** (CVM results, Kernel 2 conventions where UnionPay publishes none): none 3F0000, signature
  1E0300, CDCVM 010002, online PIN 020300.
* **PPSE**: a failed or unreadable PPSE, or one with no entries, makes the kernel SELECT the supported
  AIDs directly; a PPSE that lists only other applications (a transit-only card) ends the kernel.
* ``on_card_read`` runs only when the card was read completely (after GPO, or after the last record); an
  early outcome (see phone, errors, a torn tap) does not call it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from emvcore import tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, describe_sw
from emvcore.bcd import MAX_AMOUNT_N12, amount_n12, date_n6, decode_bcd, decode_cn, encode_bcd, parse_date_n6
from emvcore.crypto import oda
from emvcore.dol import DolError, build_dol_data
from emvcore.tags import mask_pan
from terminal.kernel.errors import CardGone
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.params import KernelParams

__all__ = ["KernelResult", "Transceive", "run"]

Transceive = Callable[[bytes], bytes]

PPSE_NAME = b"2PAY.SYS.DDF01"

_SW_SEE_PHONE = 0x6986
_SW_CONDITIONS_NOT_SATISFIED = 0x6985

_MAX_CANDIDATES = 8  # a hostile PPSE cannot make us SELECT forever
_MAX_RECORDS = 16  # nor READ RECORD forever (card-in-field budget ≤ 500 ms, doc §5)
_MAX_RESPONSE_ROUNDS = 4  # 61xx GET RESPONSE rounds
_MAX_PDOL_DATA = 250  # keeps GPO a short APDU
_LONG_DIGIT_RUN = re.compile(r"[0-9]{12,}")  # a PAN inside an error text (certificate PAN, bad 5A …)

# CTQ (9F6C) bits, as (byte index, mask); doc §3.2.
_CTQ_ONLINE_PIN = (0, 0x80)
_CTQ_SIGNATURE = (0, 0x40)
_CTQ_ONLINE_IF_ODA_FAILS = (0, 0x20)
_CTQ_SWITCH_IF_ODA_FAILS = (0, 0x10)
_CTQ_ONLINE_IF_EXPIRED = (0, 0x08)
_CTQ_CDCVM_PERFORMED = (1, 0x80)

_TTQ_ONLINE_REQUIRED = (1, 0x80)
_TTQ_CVM_REQUIRED = (1, 0x40)
_TTQ_FDDA_V01 = (3, 0x80)

_CRYPTOGRAMS = {0b10: "ARQC", 0b01: "TC", 0b00: "AAC"}  # CVR byte 2, b6-b5 (doc §2.4)
_CID = {"ARQC": 0x80, "TC": 0x40, "AAC": 0x00}  # 9F27, written by the terminal
_CVM_RESULTS = {
    "none": bytes.fromhex("3F0000"),
    "signature": bytes.fromhex("1E0300"),
    "cdcvm": bytes.fromhex("010002"),
    "online-pin": bytes.fromhex("020300"),
}


def _scrub(text: str) -> str:
    """Reasons end up in logs: any PAN-length digit run is masked, whoever wrote the message."""
    return _LONG_DIGIT_RUN.sub(lambda match: mask_pan(match.group()), text)


def _bit(value: bytes, position: tuple[int, int]) -> bool:
    index, mask = position
    return len(value) > index and bool(value[index] & mask)


@dataclass
class KernelResult:
    """What one tap produced; the full PAN is kept in memory for the online request but never shown."""

    outcome: Outcome
    message: str
    aid: str | None = None  # hex, upper case
    label: str | None = None
    pan: str | None = field(default=None, repr=False)
    pan_masked: str | None = None
    psn: int | None = None
    expiry: str | None = None  # YYMM
    cryptogram: str | None = None  # "ARQC" / "TC" / "AAC"
    cvm: str = "none"  # "cdcvm" / "signature" / "online-pin" / "none"
    oda: str = "not-performed"  # "fdda-v01-ok" / "fdda-v00-ok" / "fdda-failed" / "not-performed"
    field55: dict[int, bytes] = field(default_factory=dict)
    atc: int | None = None
    retry_online: bool = False  # TRY_AGAIN that must be re-run with force_online=True
    reasons: list[str] = field(default_factory=list)  # log lines, no PAN or track 2
    timings: dict[str, float] = field(default_factory=dict)  # seconds: card_in_field, total


class _Stop(Exception):
    """Ends the kernel early with an outcome; internal, never leaves :func:`run`."""

    def __init__(self, outcome: Outcome, message: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.message = message
        self.reason = reason


def _malformed(reason: str) -> _Stop:
    return _Stop(Outcome.END_APPLICATION, Message.CARD_ERROR, reason)


class _Link:
    """The card side of the kernel: APDU exchange, 61xx/6Cxx handling, timing, and a lock after the read."""

    def __init__(self, transceive: Transceive, clock: Callable[[], float]) -> None:
        self._transceive = transceive
        self._clock = clock
        self.first: float | None = None
        self.last: float | None = None
        self.closed = False

    def send(self, command: CommandApdu, what: str) -> ResponseApdu:
        response = self._once(command, what)
        data = b""
        resent = False
        for _ in range(_MAX_RESPONSE_ROUNDS):
            if response.sw1 == 0x61:
                data += response.data
                response = self._once(CommandApdu(0x00, 0xC0, 0x00, 0x00, le=response.sw2 or 256), what)
            elif response.sw1 == 0x6C and not resent:
                resent = True
                command = CommandApdu(
                    command.cla, command.ins, command.p1, command.p2, command.data, le=response.sw2 or 256
                )
                response = self._once(command, what)
            else:
                return ResponseApdu(data + response.data, response.sw)
        raise _malformed(f"{what}: the card keeps asking for GET RESPONSE / a new Le")

    def _once(self, command: CommandApdu, what: str) -> ResponseApdu:
        if self.closed:
            raise RuntimeError("kernel bug: a card command after on_card_read")
        if self.first is None:
            self.first = self._clock()
        raw = self._transceive(command.encode())
        self.last = self._clock()
        if not isinstance(raw, bytes | bytearray):
            raise _malformed(f"{what}: the reader returned {type(raw).__name__}, not bytes")
        try:
            return ResponseApdu.decode(bytes(raw))
        except ApduError:
            raise _malformed(f"{what}: answer of {len(raw)} bytes has no status word") from None


@dataclass
class _Candidate:
    aid: bytes
    label: str | None
    priority: int
    order: int


@dataclass
class _CardData:
    aid: bytes
    label: str | None
    tags: dict[int, bytes]  # GPO first, then records (first occurrence wins)
    oda_records: list[tuple[int, bytes]]
    has_afl: bool


def _label(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = value[:16].decode("ascii", "replace")
    return "".join(char if char.isprintable() else "?" for char in text)


def _primitives(objects: Iterable[tlv.Tlv]) -> dict[int, bytes]:
    values: dict[int, bytes] = {}
    for obj in objects:
        values.setdefault(obj.tag, obj.value)
    return values


def _select(name: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, name, le=256)


def _ppse_entries(data: bytes) -> list[_Candidate]:
    """The 61 entries of a PPSE FCI; raises ValueError (TlvError) on anything that is not one."""
    fci = tlv.parse_one(data)
    if fci.tag != 0x6F:
        raise tlv.TlvError(f"PPSE answer is {fci.tag:X}, not an FCI (6F)")
    entries = []
    for _, obj in tlv.walk(data):
        if obj.tag != 0x61:
            continue
        values = _primitives(obj.children())
        aid = values.get(0x4F)
        if aid is None or not 5 <= len(aid) <= 16:
            continue
        priority_byte = values.get(0x87, b"")
        priority = priority_byte[0] & 0x0F if len(priority_byte) == 1 else 0
        entries.append(_Candidate(aid, _label(values.get(0x50)), priority or 16, len(entries)))
    return entries


def _parse_fci(data: bytes) -> dict[int, bytes]:
    fci = tlv.parse_one(data)
    if fci.tag != 0x6F:
        raise _malformed(f"SELECT answer is {fci.tag:X}, not an FCI (6F)")
    values = _primitives(obj for _, obj in tlv.walk(fci.value))
    return values


def _parse_afl(afl: bytes) -> list[tuple[int, int, int, int]]:
    if not afl or len(afl) % 4:
        raise _malformed(f"AFL (94) of {len(afl)} bytes is not a list of 4-byte entries")
    entries = []
    total = 0
    for i in range(0, len(afl), 4):
        sfi, first, last, oda_count = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first or oda_count > last - first + 1:
            raise _malformed(f"AFL entry {afl[i : i + 4].hex().upper()} is invalid")
        total += last - first + 1
        entries.append((sfi, first, last, oda_count))
    if total > _MAX_RECORDS:
        raise _malformed(f"AFL names {total} records (more than {_MAX_RECORDS})")
    return entries


@dataclass
class _Track2:
    pan: str
    yymm: str


def _parse_track2(value: bytes) -> _Track2:
    if not 1 <= len(value) <= 19:
        raise _malformed(f"track 2 equivalent (57) has {len(value)} bytes")
    text = value.hex().upper()
    pan, separator, rest = text.partition("D")
    if not separator or not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise _malformed("track 2 equivalent (57) has no valid PAN field")
    if len(rest) < 7 or not rest[:7].isdigit() or not 1 <= int(rest[2:4]) <= 12:
        raise _malformed("track 2 equivalent (57) has no valid expiry / service code")
    return _Track2(pan, rest[:4])


def _month_end(yymm: str) -> date:
    year = 2000 + int(yymm[:2]) if int(yymm[:2]) < 50 else 1900 + int(yymm[:2])
    month = int(yymm[2:])
    following = date(year + month // 12, month % 12 + 1, 1)
    return following - timedelta(days=1)


def _fixed(tags: dict[int, bytes], tag: int, lengths: Iterable[int], *, required: bool = True) -> bytes | None:
    value = tags.get(tag)
    if value is None:
        if required:
            raise _malformed(f"mandatory tag {tag:X} is missing")
        return None
    allowed = tuple(lengths)
    if len(value) not in allowed:
        expected = f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 2 else "/".join(map(str, allowed))
        raise _malformed(f"tag {tag:X} has {len(value)} bytes (expected {expected})")
    return value


class _Kernel:
    """One run: the tap's state, so each step can add to the result and stop with a reason."""

    def __init__(
        self,
        transceive: Transceive,
        params: KernelParams,
        amount: int,
        today: date,
        unpredictable_number: bytes,
        force_online: bool,
        clock: Callable[[], float],
    ) -> None:
        self.params = params
        self.amount = amount
        self.force_online = force_online
        self.today = today
        self.clock = clock
        self.started = clock()
        self.link = _Link(transceive, clock)
        self.ttq = params.ttq(amount, force_online=force_online)
        self.values: dict[int, bytes] = {
            0x9F66: self.ttq,
            0x9F02: amount_n12(amount),
            0x9F03: amount_n12(0),
            0x9F1A: encode_bcd(params.country, 2),
            0x95: bytes(5),
            0x5F2A: encode_bcd(params.currency, 2),
            0x9A: date_n6(today),
            0x9C: b"\x00",
            0x9F37: bytes(unpredictable_number),
            0x9F35: encode_bcd(params.terminal_type, 1),
            0x9F33: bytes.fromhex(params.terminal_capabilities),
            0x9F09: bytes.fromhex(params.application_version),
            0x9F15: encode_bcd(params.merchant_category, 2),
            0x9F7A: b"\x00",  # no e-cash
            0xDF60: b"\x00",  # no CAPP
            0xDF69: b"\x00",  # no SM algorithms: ODA here is RSA/SHA-1
        }
        if params.merchant_name:
            self.values[0x9F4E] = params.merchant_name.encode("ascii")
        self.result = KernelResult(Outcome.END_APPLICATION, str(Message.CARD_ERROR))

    # -- results -------------------------------------------------------------------------------------

    def finish(self, outcome: Outcome, message: str, reason: str | None = None) -> KernelResult:
        result = self.result
        result.outcome, result.message = outcome, str(message)
        if reason:
            result.reasons.append(reason)
        if self.link.first is not None and "card_in_field" not in result.timings:
            result.timings["card_in_field"] = (self.link.last or self.link.first) - self.link.first
        result.timings["total"] = self.clock() - self.started
        result.reasons = [_scrub(line) for line in result.reasons]
        return result

    # -- card phase ----------------------------------------------------------------------------------

    def read_card(self) -> _CardData:
        candidates = self._candidates()
        for candidate in candidates:
            selected = self._select_candidate(candidate)
            if selected is not None:
                return self._process_application(*selected)
        raise _Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, "no supported application could be selected")

    def _candidates(self) -> list[_Candidate]:
        response = self.link.send(_select(PPSE_NAME), "SELECT PPSE")
        entries: list[_Candidate] | None = None
        if response.ok:
            try:
                entries = _ppse_entries(response.data)
            except ValueError as error:
                self.result.reasons.append(f"PPSE unreadable ({error}); selecting AIDs directly")
        else:
            self.result.reasons.append(f"PPSE: {describe_sw(response.sw)}; selecting AIDs directly")
        if not entries:
            if entries is not None:
                self.result.reasons.append("PPSE lists no application; selecting AIDs directly")
            return [_Candidate(aid, None, 0, i) for i, aid in enumerate(self.params.supported_aids)]
        supported: dict[bytes, _Candidate] = {}
        for entry in sorted(entries, key=lambda e: (e.priority, e.order)):
            if self.params.supports(entry.aid):
                supported.setdefault(entry.aid, entry)
        if not supported:
            listed = ", ".join(e.aid.hex().upper() for e in entries[:_MAX_CANDIDATES])
            raise _Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, f"PPSE lists no supported AID ({listed})")
        return list(supported.values())[:_MAX_CANDIDATES]

    def _select_candidate(self, candidate: _Candidate) -> tuple[bytes, str | None, bytes] | None:
        name = candidate.aid.hex().upper()
        response = self.link.send(_select(candidate.aid), f"SELECT {name}")
        if not response.ok:
            self.result.reasons.append(f"SELECT {name}: {describe_sw(response.sw)}; next candidate")
            return None
        try:
            fci = _parse_fci(response.data)
        except tlv.TlvError as error:
            raise _malformed(f"SELECT {name}: FCI is not valid TLV ({error})") from None
        aid = fci.get(0x84, candidate.aid)
        if not aid.startswith(candidate.aid) or not self.params.supports(aid) or len(aid) > 16:
            self.result.reasons.append(f"SELECT {name}: DF name {aid.hex().upper()} does not match; next candidate")
            return None
        label = _label(fci.get(0x50)) or candidate.label
        self.result.aid, self.result.label = aid.hex().upper(), label
        return aid, label, fci.get(0x9F38, b"")

    def _process_application(self, aid: bytes, label: str | None, pdol: bytes) -> _CardData:
        self.ttq = self.params.ttq(self.amount, force_online=self.force_online, aid=aid)  # the AID's floor limit
        self.values[0x9F66] = self.ttq
        try:
            pdol_data = build_dol_data(pdol, self.values)
        except (DolError, tlv.TlvError) as error:
            raise _malformed(f"PDOL unreadable: {error}") from None
        if len(pdol_data) > _MAX_PDOL_DATA:
            raise _malformed(f"PDOL asks for {len(pdol_data)} bytes")
        gpo = CommandApdu(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, pdol_data), le=256)
        response = self.link.send(gpo, "GPO")
        if response.sw == _SW_SEE_PHONE:
            raise _Stop(Outcome.SEE_PHONE, Message.SEE_PHONE, "GPO 6986: the holder must authenticate on the phone")
        if response.sw == _SW_CONDITIONS_NOT_SATISFIED:
            raise _Stop(Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE, "GPO 6985: conditions not satisfied")
        if not response.ok:
            raise _malformed(f"GPO: {describe_sw(response.sw)}")
        try:
            template = tlv.parse_one(response.data)
            if template.tag == 0x80:
                raise _Stop(
                    Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE,
                    "GPO format 1: the card wants the full PBOC flow, not qPBOC",
                )
            if template.tag != 0x77:
                raise _malformed(f"GPO answer is {template.tag:X}, not format 2 (77)")
            tags = _primitives(template.children())
        except tlv.TlvError as error:
            raise _malformed(f"GPO answer is not valid TLV ({error})") from None
        afl = tags.get(0x94)
        oda_records: list[tuple[int, bytes]] = []
        if afl is not None:
            for sfi, first, last, oda_count in _parse_afl(afl):
                for number in range(first, last + 1):
                    record = self._read_record(sfi, number)
                    if number - first < oda_count:
                        oda_records.append((sfi, record))
                    for tag, value in self._record_tags(sfi, number, record).items():
                        tags.setdefault(tag, value)
        return _CardData(aid, label, tags, oda_records, afl is not None)

    def _read_record(self, sfi: int, number: int) -> bytes:
        what = f"READ RECORD {sfi}/{number}"
        response = self.link.send(CommandApdu(0x00, 0xB2, number, (sfi << 3) | 0x04, le=256), what)
        if not response.ok:
            raise _malformed(f"{what}: {describe_sw(response.sw)}")
        return response.data

    @staticmethod
    def _record_tags(sfi: int, number: int, record: bytes) -> dict[int, bytes]:
        try:
            objects = tlv.parse(record)
        except tlv.TlvError as error:
            if sfi > 10:  # proprietary records only matter as ODA input
                return {}
            raise _malformed(f"record {sfi}/{number} is not valid TLV ({error})") from None
        if len(objects) == 1 and objects[0].tag == 0x70:
            try:
                return _primitives(obj for _, obj in tlv.walk(objects[0].value))
            except tlv.TlvError as error:
                raise _malformed(f"record {sfi}/{number}: 70 template is not valid TLV ({error})") from None
        if sfi <= 10:
            raise _malformed(f"record {sfi}/{number} is not a 70 template")
        return {}

    # -- decision phase (the card has gone) ----------------------------------------------------------

    def decide(self, card: _CardData) -> KernelResult:
        result = self.result
        tags = card.tags
        aip = _fixed(tags, 0x82, (2,))
        atc = _fixed(tags, 0x9F36, (2,))
        _fixed(tags, 0x9F26, (8,))
        iad = _fixed(tags, 0x9F10, range(8, 33))
        track2_value = tags.get(0x57)
        if track2_value is None:
            raise _malformed("mandatory tag 57 (track 2 equivalent) is missing")
        track2 = _parse_track2(track2_value)
        ctq = _fixed(tags, 0x9F6C, (2,), required=False)
        psn_value = _fixed(tags, 0x5F34, (1,), required=False)
        assert aip is not None and atc is not None and iad is not None

        pan = track2.pan
        if 0x5A in tags:
            pan_5a = decode_cn(tags[0x5A])
            if pan_5a != track2.pan:
                raise _malformed("the PAN in 5A differs from the one in track 2 (57)")
        expiry_date = _month_end(track2.yymm)
        if 0x5F24 in tags:
            expiry_5f24 = parse_date_n6(_fixed(tags, 0x5F24, (3,)) or b"")
            if f"{expiry_5f24:%y%m}" != track2.yymm:
                raise _malformed("the expiry in 5F24 differs from the one in track 2 (57)")
            expiry_date = expiry_5f24

        result.pan, result.pan_masked = pan, mask_pan(pan)
        result.expiry = track2.yymm
        result.psn = int(decode_bcd(psn_value)) if psn_value is not None else None
        result.atc = int.from_bytes(atc, "big")
        if iad[3] != 0x03:
            raise _malformed(f"IAD (9F10) does not hold a CVR where expected (byte 4 = {iad[3]:02X})")
        cryptogram = _CRYPTOGRAMS.get((iad[4] >> 4) & 0x03)
        if cryptogram is None:
            raise _malformed(f"CVR byte 2 = {iad[4]:02X} names no cryptogram type")
        result.cryptogram = cryptogram
        result.reasons.append(f"{cryptogram} from the CVR (9F10 byte 5 = {iad[4]:02X}), ATC {result.atc}")
        expired = expiry_date < self.today

        if cryptogram == "AAC":
            return self.finish(Outcome.DECLINED, Message.DECLINED, "the card declined (AAC)")
        if cryptogram == "ARQC":
            return self._online(card, ctq, expired)
        return self._offline(card, ctq, expired)

    def _online(self, card: _CardData, ctq: bytes | None, expired: bool) -> KernelResult:
        if not self.params.online_capable:
            return self.finish(Outcome.DECLINED, Message.DECLINED, "ARQC at an offline-only terminal")
        if expired:
            self.result.reasons.append("application expired: left to the issuer online")
        cvm = self._cvm(ctq)
        if cvm in ("pin-unavailable", "unavailable"):
            return self._cvm_failed(cvm, ctq)
        self.result.cvm = cvm
        self.result.field55 = self._field55(card, "ARQC", cvm)
        return self.finish(Outcome.ONLINE_REQUEST, Message.PROCESSING)

    def _offline(self, card: _CardData, ctq: bytes | None, expired: bool) -> KernelResult:
        if _bit(self.ttq, _TTQ_ONLINE_REQUIRED):
            return self.finish(Outcome.DECLINED, Message.DECLINED, "the card answered TC although online was required")
        ok, detail = self._fdda(card)
        self.result.reasons.append(detail)
        if not ok:
            self.result.oda = "fdda-failed"
            if ctq is not None and _bit(ctq, _CTQ_ONLINE_IF_ODA_FAILS):
                return self._needs_online("fDDA failed and the CTQ says go online")
            if ctq is not None and _bit(ctq, _CTQ_SWITCH_IF_ODA_FAILS):
                return self.finish(
                    Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE,
                    "fDDA failed and the CTQ says switch interface",
                )
            return self.finish(Outcome.DECLINED, Message.DECLINED, "fDDA failed")
        if expired:
            if ctq is not None and _bit(ctq, _CTQ_ONLINE_IF_EXPIRED):
                return self._needs_online("application expired and the CTQ says go online")
            return self.finish(Outcome.DECLINED, Message.DECLINED, "application expired (5F24)")
        cvm = self._cvm(ctq)
        if cvm == "online-pin":
            return self._needs_online("online PIN required on an offline approval")
        if cvm in ("pin-unavailable", "unavailable"):
            return self._cvm_failed(cvm, ctq)
        if cvm == "cdcvm":
            card_auth = card.tags.get(0x9F69)
            if card_auth is not None and self.result.oda == "fdda-v01-ok" and card_auth[5:7] != ctq:
                return self.finish(Outcome.DECLINED, Message.DECLINED, "CTQ in 9F69 disagrees with 9F6C (CDCVM)")
        self.result.cvm = cvm
        self.result.field55 = self._field55(card, "TC", cvm)
        return self.finish(Outcome.APPROVED, Message.APPROVED, "approved offline")

    def _needs_online(self, why: str) -> KernelResult:
        """A TC cannot be authorised online, so the only way online is a second tap asking for an ARQC."""
        if not self.params.online_capable:
            return self.finish(Outcome.DECLINED, Message.DECLINED, f"{why}; offline-only terminal")
        self.result.retry_online = True
        return self.finish(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, f"{why}; tap again for an ARQC")

    def _cvm_failed(self, cvm: str, ctq: bytes | None) -> KernelResult:
        if cvm == "pin-unavailable":
            return self.finish(
                Outcome.TRY_ANOTHER_INTERFACE, Message.PIN_REQUIRED, "online PIN required and no PIN pad"
            )
        if ctq is None:
            return self.finish(Outcome.DECLINED, Message.DECLINED, "CVM required and no CVM possible")
        return self.finish(
            Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE, "CVM required and the CTQ names none we support"
        )

    def _cvm(self, ctq: bytes | None) -> str:
        """Doc §3.3; "pin-unavailable" / "unavailable" are internal verdicts, never left in the result."""
        if not _bit(self.ttq, _TTQ_CVM_REQUIRED):
            return "none"
        params = self.params
        if ctq is None:
            if params.signature_supported:
                return "signature"
            return "online-pin" if params.online_pin_supported else "unavailable"
        if _bit(ctq, _CTQ_CDCVM_PERFORMED) and params.cdcvm_supported:
            return "cdcvm"
        if _bit(ctq, _CTQ_ONLINE_PIN) and params.online_pin_supported:
            return "online-pin"
        if _bit(ctq, _CTQ_SIGNATURE) and params.signature_supported:
            return "signature"
        if _bit(ctq, _CTQ_ONLINE_PIN):
            return "pin-unavailable"
        return "unavailable"

    def _fdda(self, card: _CardData) -> tuple[bool, str]:
        tags = card.tags
        version = 0
        card_auth = tags.get(0x9F69, b"")
        if _bit(self.ttq, _TTQ_FDDA_V01) and card_auth[:1] == b"\x01":
            version = 1
        try:
            index = tags.get(0x8F, b"")
            if len(index) != 1:
                raise oda.OdaError("capk", "CA public key index (8F) missing or not 1 byte")
            capk = self.params.capk(card.aid[:5], index[0])
            if capk is None:
                raise oda.OdaError("capk", f"no CA key {card.aid[:5].hex().upper()}/{index[0]:02X}")
            missing = [f"{tag:X}" for tag in (0x90, 0x9F32, 0x9F46, 0x9F47, 0x9F4B) if tag not in tags]
            if missing:
                raise oda.OdaError("missing", f"missing {' '.join(missing)}")
            pan = decode_cn(tags[0x5A]) if 0x5A in tags else (self.result.pan or "")
            issuer_key = oda.recover_issuer_key(
                capk, tags[0x90], tags.get(0x92, b""), tags[0x9F32], pan, self.today
            )
            static = oda.static_data_to_authenticate(card.oda_records, tags[0x82], tags.get(0x9F4A, b""))
            icc_key = oda.recover_icc_key(
                issuer_key, tags[0x9F46], tags.get(0x9F48, b""), tags[0x9F47], pan, static, self.today
            )
            terminal_data = oda.fdda_terminal_data(
                version, self.values[0x9F37], self.values[0x9F02], self.values[0x5F2A], card_auth
            )
            oda.verify_dynamic_data(icc_key, tags[0x9F4B], terminal_data)
        except oda.OdaError as error:
            return False, f"fDDA v{version:02d} failed: {error.reason}: {error.message}"
        except ValueError as error:  # a key or certificate field the RSA helpers refuse
            return False, f"fDDA v{version:02d} failed: {error}"
        self.result.oda = f"fdda-v{version:02d}-ok"
        return True, f"fDDA v{version:02d} ok"

    def _field55(self, card: _CardData, cryptogram: str, cvm: str) -> dict[int, bytes]:
        tags, values = card.tags, self.values
        data = {
            0x9F26: tags[0x9F26],
            0x9F27: bytes([_CID[cryptogram]]),
            0x9F10: tags[0x9F10],
            0x9F37: values[0x9F37],
            0x9F36: tags[0x9F36],
            0x95: values[0x95],
            0x9A: values[0x9A],
            0x9C: values[0x9C],
            0x9F02: values[0x9F02],
            0x5F2A: values[0x5F2A],
            0x82: tags[0x82],
            0x9F1A: values[0x9F1A],
            0x9F03: values[0x9F03],
            0x9F33: values[0x9F33],
            0x9F34: _CVM_RESULTS[cvm],
            0x9F35: values[0x9F35],
            0x84: card.aid,
            0x9F09: values[0x9F09],
        }
        if 0x5F34 in tags:
            data[0x5F34] = tags[0x5F34]
        return data


def run(
    transceive: Transceive,
    params: KernelParams,
    amount: int,
    *,
    today: date,
    unpredictable_number: bytes,
    on_card_read: Callable[[], None] = lambda: None,
    force_online: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> KernelResult:
    """One contactless purchase tap; whatever the card answers, the result is an outcome, never an exception.

    ``on_card_read`` fires right after the last card command, so the terminal can beep and say "Remove card"
    while fDDA and CVM run. ``force_online`` is for the re-tap a ``retry_online`` result asks for. A
    :class:`CardGone` (or subclass) raised by ``transceive`` gives ``TRY_AGAIN`` with nothing to send; any
    other exception from ``transceive`` (a reader fault, not the card's) is the caller's to handle.
    """
    if len(unpredictable_number) != 4:
        raise ValueError("the unpredictable number (9F37) is 4 bytes")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_AMOUNT_N12:
        return KernelResult(Outcome.END_APPLICATION, str(Message.ENTER_AMOUNT), reasons=[f"invalid amount {amount!r}"])
    if amount == 0:
        return KernelResult(Outcome.END_APPLICATION, str(Message.ENTER_AMOUNT), reasons=["amount 0 is not a purchase"])
    if amount >= params.contactless_limit:
        return KernelResult(
            Outcome.TRY_ANOTHER_INTERFACE, str(Message.INSERT_OR_SWIPE),
            reasons=[f"amount {amount} at or above the contactless limit {params.contactless_limit}"],
        )
    kernel = _Kernel(transceive, params, amount, today, unpredictable_number, force_online, clock)
    try:
        card = kernel.read_card()
    except CardGone as error:
        kernel.result.field55 = {}
        return kernel.finish(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, f"card gone: {type(error).__name__}")
    except _Stop as stop:
        return kernel.finish(stop.outcome, stop.message, stop.reason)
    except ValueError as error:  # every emvcore parser error is a ValueError
        return kernel.finish(Outcome.END_APPLICATION, Message.CARD_ERROR, f"card answer unreadable: {error}")
    kernel.link.closed = True
    if kernel.link.first is not None:
        kernel.result.timings["card_in_field"] = kernel.clock() - kernel.link.first
    on_card_read()
    try:
        return kernel.decide(card)
    except _Stop as stop:
        return kernel.finish(stop.outcome, stop.message, stop.reason)
    except ValueError as error:
        return kernel.finish(Outcome.END_APPLICATION, Message.CARD_ERROR, f"card data unreadable: {error}")
