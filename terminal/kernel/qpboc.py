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
* **Application dates** (`terminal.kernel.dates`) are checked on a TC before fDDA: expired (5F24, else track 2's
  month) → go online when the CTQ says 1.4 and the terminal is online capable, else declined "Card expired";
  not yet effective (5F25) → declined (no CTQ bit asks for online). On an ARQC both are logged and left to the
  issuer, which holds the account's dates. A date that is not BCD or not a date ends the application.
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
* **PPSE and selection** are the Entry Point's (`terminal.kernel.entry`); this kernel starts at GPO with the
  selected AID's limits (TTQ 2.8 / 2.7).
* ``on_card_read`` runs only when the card was read completely (after GPO, or after the last record); an
  early outcome (see phone, errors, a torn tap) does not call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from emvcore import tlv
from emvcore.apdu import CommandApdu, describe_sw
from emvcore.bcd import MAX_AMOUNT_N12, amount_n12, date_n6, decode_bcd, decode_cn, encode_bcd
from emvcore.crypto import oda
from emvcore.dol import DolError, build_dol_data
from emvcore.qpboc import Cryptogram, Ctq, Iad, Ttq
from emvcore.tags import mask_pan, scrub_pans
from terminal.kernel.dates import ApplicationDates, application_dates
from terminal.kernel.entry import select_application
from terminal.kernel.errors import CardGone
from terminal.kernel.link import Link, Stop, Transceive, first_values, malformed
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.params import KernelParams

__all__ = ["KernelResult", "Transceive", "run"]

_SW_SEE_PHONE = 0x6986
_SW_CONDITIONS_NOT_SATISFIED = 0x6985

_MAX_RECORDS = 16  # nor READ RECORD forever (card-in-field budget ≤ 500 ms, doc §5)
_MAX_PDOL_DATA = 250  # keeps GPO a short APDU

_CVM_RESULTS = {
    "none": bytes.fromhex("3F0000"),
    "signature": bytes.fromhex("1E0300"),
    "cdcvm": bytes.fromhex("010002"),
    "online-pin": bytes.fromhex("020300"),
}


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


@dataclass
class _CardData:
    aid: bytes
    label: str | None
    tags: dict[int, bytes]  # GPO first, then records (first occurrence wins)
    oda_records: list[tuple[int, bytes]]
    has_afl: bool


def _parse_afl(afl: bytes) -> list[tuple[int, int, int, int]]:
    if not afl or len(afl) % 4:
        raise malformed(f"AFL (94) of {len(afl)} bytes is not a list of 4-byte entries")
    entries = []
    total = 0
    for i in range(0, len(afl), 4):
        sfi, first, last, oda_count = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if afl[i] & 0x07 or not 1 <= sfi <= 30 or first == 0 or last < first or oda_count > last - first + 1:
            raise malformed(f"AFL entry {afl[i : i + 4].hex().upper()} is invalid")
        total += last - first + 1
        entries.append((sfi, first, last, oda_count))
    if total > _MAX_RECORDS:
        raise malformed(f"AFL names {total} records (more than {_MAX_RECORDS})")
    return entries


@dataclass
class _Track2:
    pan: str
    yymm: str


def _parse_track2(value: bytes) -> _Track2:
    if not 1 <= len(value) <= 19:
        raise malformed(f"track 2 equivalent (57) has {len(value)} bytes")
    text = value.hex().upper()
    pan, separator, rest = text.partition("D")
    if not separator or not pan.isdigit() or not 12 <= len(pan) <= 19:
        raise malformed("track 2 equivalent (57) has no valid PAN field")
    if len(rest) < 7 or not rest[:7].isdigit() or not 1 <= int(rest[2:4]) <= 12:
        raise malformed("track 2 equivalent (57) has no valid expiry / service code")
    return _Track2(pan, rest[:4])


def _fixed(tags: dict[int, bytes], tag: int, lengths: Iterable[int], *, required: bool = True) -> bytes | None:
    value = tags.get(tag)
    if value is None:
        if required:
            raise malformed(f"mandatory tag {tag:X} is missing")
        return None
    allowed = tuple(lengths)
    if len(value) not in allowed:
        expected = f"{allowed[0]}..{allowed[-1]}" if len(allowed) > 2 else "/".join(map(str, allowed))
        raise malformed(f"tag {tag:X} has {len(value)} bytes (expected {expected})")
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
        self.link = Link(transceive, clock)
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
        result.reasons = [scrub_pans(line) for line in result.reasons]  # logged: AIDs shown, PANs never
        return result

    # -- card phase ----------------------------------------------------------------------------------

    def read_card(self) -> _CardData:
        selected = select_application(self.link, self.params, self.amount, self.result.reasons)
        if selected.kernel != "qpboc":  # the Entry Point's table names no other kernel yet
            raise Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, f"no {selected.kernel} kernel here")
        self.result.aid, self.result.label = selected.aid.hex().upper(), selected.label
        self.result.reasons.append(f"selected {self.result.aid} ({selected.label or 'no label'})")
        return self._process_application(selected.aid, selected.label, selected.fci.get(0x9F38, b""))

    def _process_application(self, aid: bytes, label: str | None, pdol: bytes) -> _CardData:
        self.ttq = self.params.ttq(self.amount, force_online=self.force_online, aid=aid)  # the AID's floor limit
        self.values[0x9F66] = self.ttq
        try:
            pdol_data = build_dol_data(pdol, self.values)
        except (DolError, tlv.TlvError) as error:
            raise malformed(f"PDOL unreadable: {error}") from None
        if len(pdol_data) > _MAX_PDOL_DATA:
            raise malformed(f"PDOL asks for {len(pdol_data)} bytes")
        gpo = CommandApdu(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, pdol_data), le=256)
        response = self.link.send(gpo, "GPO")
        if response.sw == _SW_SEE_PHONE:
            raise Stop(Outcome.SEE_PHONE, Message.SEE_PHONE, "GPO 6986: the holder must authenticate on the phone")
        if response.sw == _SW_CONDITIONS_NOT_SATISFIED:
            raise Stop(Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE, "GPO 6985: conditions not satisfied")
        if not response.ok:
            raise malformed(f"GPO: {describe_sw(response.sw)}")
        try:
            template = tlv.parse_one(response.data)
            if template.tag == 0x80:
                raise Stop(
                    Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE,
                    "GPO format 1: the card wants the full PBOC flow, not qPBOC",
                )
            if template.tag != 0x77:
                raise malformed(f"GPO answer is {template.tag:X}, not format 2 (77)")
            tags = first_values(template.children())
        except tlv.TlvError as error:
            raise malformed(f"GPO answer is not valid TLV ({error})") from None
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
            raise malformed(f"{what}: {describe_sw(response.sw)}")
        return response.data

    @staticmethod
    def _record_tags(sfi: int, number: int, record: bytes) -> dict[int, bytes]:
        try:
            objects = tlv.parse(record)
        except tlv.TlvError as error:
            if sfi > 10:  # proprietary records only matter as ODA input
                return {}
            raise malformed(f"record {sfi}/{number} is not valid TLV ({error})") from None
        if len(objects) == 1 and objects[0].tag == 0x70:
            try:
                return first_values(obj for _, obj in tlv.walk(objects[0].value))
            except tlv.TlvError as error:
                raise malformed(f"record {sfi}/{number}: 70 template is not valid TLV ({error})") from None
        if sfi <= 10:
            raise malformed(f"record {sfi}/{number} is not a 70 template")
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
            raise malformed("mandatory tag 57 (track 2 equivalent) is missing")
        track2 = _parse_track2(track2_value)
        ctq_value = _fixed(tags, 0x9F6C, (2,), required=False)
        ctq = None if ctq_value is None else Ctq.from_bytes(ctq_value)
        psn_value = _fixed(tags, 0x5F34, (1,), required=False)
        assert aip is not None and atc is not None and iad is not None

        pan = track2.pan
        if 0x5A in tags:
            pan_5a = decode_cn(tags[0x5A])
            if pan_5a != track2.pan:
                raise malformed("the PAN in 5A differs from the one in track 2 (57)")
        try:
            dates = application_dates(track2.yymm, _fixed(tags, 0x5F24, (3,), required=False),
                                      _fixed(tags, 0x5F25, (3,), required=False), self.today)
        except ValueError as error:
            raise malformed(str(error)) from None

        result.pan, result.pan_masked = pan, mask_pan(pan)
        result.expiry = track2.yymm
        result.psn = int(decode_bcd(psn_value)) if psn_value is not None else None
        result.atc = int.from_bytes(atc, "big")
        try:
            cvr = Iad.decode(iad).cvr
        except ValueError as error:
            raise malformed(str(error)) from None
        kind = Cryptogram.of_cvr(cvr)
        if kind is None:
            raise malformed(f"CVR byte 2 = {cvr[1]:02X} names no cryptogram type")
        cryptogram = kind.name
        result.cryptogram = cryptogram
        result.reasons.append(f"{cryptogram} from the CVR (9F10 byte 5 = {cvr[1]:02X}), ATC {result.atc}")

        if cryptogram == "AAC":
            return self.finish(Outcome.DECLINED, Message.DECLINED, "the card declined (AAC)")
        if cryptogram == "ARQC":
            return self._online(card, ctq, dates)
        return self._offline(card, ctq, dates)

    def _online(self, card: _CardData, ctq: Ctq | None, dates: ApplicationDates) -> KernelResult:
        if not self.params.online_capable:
            return self.finish(Outcome.DECLINED, Message.DECLINED, "ARQC at an offline-only terminal")
        if dates.expired:
            self.result.reasons.append(f"application expired on {dates.expiry}: left to the issuer online")
        if dates.not_yet_effective:
            self.result.reasons.append(f"application not effective until {dates.effective}: left to the issuer")
        cvm = self._cvm(ctq)
        if cvm in ("pin-unavailable", "unavailable"):
            return self._cvm_failed(cvm, ctq)
        self.result.cvm = cvm
        self.result.field55 = self._field55(card, "ARQC", cvm)
        return self.finish(Outcome.ONLINE_REQUEST, Message.PROCESSING)

    def _offline(self, card: _CardData, ctq: Ctq | None, dates: ApplicationDates) -> KernelResult:
        if Ttq.ONLINE_CRYPTOGRAM_REQUIRED in Ttq.from_bytes(self.ttq):
            return self.finish(Outcome.DECLINED, Message.DECLINED, "the card answered TC although online was required")
        # Processing restrictions first: no offline approval of a card outside its dates, whatever fDDA says.
        if dates.expired:
            if ctq is not None and Ctq.ONLINE_IF_EXPIRED in ctq:
                return self._needs_online(f"application expired on {dates.expiry} and the CTQ says go online")
            return self.finish(Outcome.DECLINED, Message.CARD_EXPIRED, f"application expired on {dates.expiry} (5F24)")
        if dates.not_yet_effective:
            return self.finish(Outcome.DECLINED, Message.DECLINED,
                               f"application not effective until {dates.effective} (5F25)")
        ok, detail = self._fdda(card)
        self.result.reasons.append(detail)
        if not ok:
            self.result.oda = "fdda-failed"
            if ctq is not None and Ctq.ONLINE_IF_ODA_FAILS in ctq:
                return self._needs_online("fDDA failed and the CTQ says go online")
            if ctq is not None and Ctq.SWITCH_IF_ODA_FAILS in ctq:
                return self.finish(
                    Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE,
                    "fDDA failed and the CTQ says switch interface",
                )
            return self.finish(Outcome.DECLINED, Message.DECLINED, "fDDA failed")
        cvm = self._cvm(ctq)
        if cvm == "online-pin":
            return self._needs_online("online PIN required on an offline approval")
        if cvm in ("pin-unavailable", "unavailable"):
            return self._cvm_failed(cvm, ctq)
        if cvm == "cdcvm":
            card_auth = card.tags.get(0x9F69)
            if card_auth is not None and self.result.oda == "fdda-v01-ok" and card_auth[5:7] != ctq.to_bytes():
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

    def _cvm_failed(self, cvm: str, ctq: Ctq | None) -> KernelResult:
        if cvm == "pin-unavailable":
            return self.finish(
                Outcome.TRY_ANOTHER_INTERFACE, Message.PIN_REQUIRED, "online PIN required and no PIN pad"
            )
        if ctq is None:
            return self.finish(Outcome.DECLINED, Message.DECLINED, "CVM required and no CVM possible")
        return self.finish(
            Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE, "CVM required and the CTQ names none we support"
        )

    def _cvm(self, ctq: Ctq | None) -> str:
        """Doc §3.3; "pin-unavailable" / "unavailable" are internal verdicts, never left in the result."""
        if Ttq.CVM_REQUIRED not in Ttq.from_bytes(self.ttq):
            return "none"
        params = self.params
        if ctq is None:
            if params.signature_supported:
                return "signature"
            return "online-pin" if params.online_pin_supported else "unavailable"
        if Ctq.CDCVM_PERFORMED in ctq and params.cdcvm_supported:
            return "cdcvm"
        if Ctq.ONLINE_PIN in ctq and params.online_pin_supported:
            return "online-pin"
        if Ctq.SIGNATURE in ctq and params.signature_supported:
            return "signature"
        if Ctq.ONLINE_PIN in ctq:
            return "pin-unavailable"
        return "unavailable"

    def _fdda(self, card: _CardData) -> tuple[bool, str]:
        tags = card.tags
        version = 0
        card_auth = tags.get(0x9F69, b"")
        if Ttq.FDDA_V01 in Ttq.from_bytes(self.ttq) and card_auth[:1] == b"\x01":
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
            0x9F27: bytes([Cryptogram[cryptogram].cid]),
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
    if amount >= params.highest_transaction_limit():  # no supported AID could pay: the card need not be asked
        return KernelResult(
            Outcome.TRY_ANOTHER_INTERFACE, str(Message.INSERT_OR_SWIPE),
            reasons=[f"amount {amount} at or above the contactless limit {params.highest_transaction_limit()}"],
        )
    kernel = _Kernel(transceive, params, amount, today, unpredictable_number, force_online, clock)
    try:
        card = kernel.read_card()
    except CardGone as error:
        kernel.result.field55 = {}
        return kernel.finish(Outcome.TRY_AGAIN, Message.PRESENT_CARD_AGAIN, f"card gone: {type(error).__name__}")
    except Stop as stop:
        return kernel.finish(stop.outcome, stop.message, stop.reason)
    except ValueError as error:  # every emvcore parser error is a ValueError
        return kernel.finish(Outcome.END_APPLICATION, Message.CARD_ERROR, f"card answer unreadable: {error}")
    kernel.link.closed = True
    if kernel.link.first is not None:
        kernel.result.timings["card_in_field"] = kernel.clock() - kernel.link.first
    on_card_read()
    try:
        return kernel.decide(card)
    except Stop as stop:
        return kernel.finish(stop.outcome, stop.message, stop.reason)
    except ValueError as error:
        return kernel.finish(Outcome.END_APPLICATION, Message.CARD_ERROR, f"card data unreadable: {error}")
