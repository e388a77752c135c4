"""The EMV bit fields a person reads on a transaction, in words: TVR (95), AIP (82), CVM results (9F34), the
qPBOC qualifiers TTQ (9F66) and CTQ (9F6C), and the CVR inside the issuer application data (9F10).

Bits are named as EMV 4.3 Book 3 Annex C (TVR C5, AIP C1) and Book 4 Annex A4 (CVM codes) name them; the CVR's
as doc emv-qpboc.md §8.1 lists them; TTQ and CTQ come from `emvcore.qpboc`, where the kernel reads them. Pure
functions: any bytes in (a card's, a terminal's), a list of lines out, never an exception.
"""

from __future__ import annotations

from emvcore.qpboc import Cryptogram, Ctq, Iad, IadError, Ttq

__all__ = ["AIP_BITS", "CTQ_WORDS", "CVM_METHODS", "CVR_BITS", "TTQ_WORDS", "TVR_BITS", "describe"]

Bits = dict[tuple[int, int], str]  # (byte 1…n, bit 8…1) → meaning when set

TVR_BITS: Bits = {
    (1, 8): "Offline data authentication was not performed", (1, 7): "SDA failed", (1, 6): "ICC data missing",
    (1, 5): "Card appears on terminal exception file", (1, 4): "DDA failed", (1, 3): "CDA failed",
    (1, 2): "SDA selected",
    (2, 8): "ICC and terminal have different application versions", (2, 7): "Expired application",
    (2, 6): "Application not yet effective", (2, 5): "Requested service not allowed for card product",
    (2, 4): "New card",
    (3, 8): "Cardholder verification was not successful", (3, 7): "Unrecognised CVM",
    (3, 6): "PIN Try Limit exceeded", (3, 5): "PIN entry required and PIN pad not present or not working",
    (3, 4): "PIN entry required, PIN pad present, but PIN was not entered", (3, 3): "Online PIN entered",
    (4, 8): "Transaction exceeds floor limit", (4, 7): "Lower consecutive offline limit exceeded",
    (4, 6): "Upper consecutive offline limit exceeded", (4, 5): "Transaction selected randomly for online processing",
    (4, 4): "Merchant forced transaction online",
    (5, 8): "Default TDOL used", (5, 7): "Issuer authentication failed",
    (5, 6): "Script processing failed before final GENERATE AC",
    (5, 5): "Script processing failed after final GENERATE AC",
}

AIP_BITS: Bits = {
    (1, 7): "SDA supported", (1, 6): "DDA supported", (1, 5): "Cardholder verification is supported",
    (1, 4): "Terminal risk management is to be performed", (1, 3): "Issuer authentication is supported",
    (1, 1): "CDA supported",
}

CVR_BITS: Bits = {  # bytes 2–4 of the 4-byte CVR; byte 1 is its length (03)
    (2, 4): "Issuer authentication failed", (2, 3): "Offline PIN verification performed",
    (2, 2): "Offline PIN verification failed", (2, 1): "Unable to go online",
    (3, 7): "PIN try limit exceeded", (3, 6): "Velocity checking exceeded", (3, 5): "New card",
    (3, 4): "Issuer authentication failed on last online transaction",
    (3, 3): "Issuer authentication not performed after online authorization",
    (3, 2): "Application blocked by issuer for PIN try limit", (3, 1): "SDA failed on last transaction",
    (4, 4): "Issuer script processing failed on last transaction", (4, 3): "DDA failed on last transaction",
}

TTQ_WORDS: dict[Ttq, str] = {  # two tables: a Ttq and a Ctq bit of one value are equal ints, one dict key
    Ttq.STANDARD_SUPPORTED: "Full (standard) PBOC supported", Ttq.QPBOC: "qPBOC supported",
    Ttq.CONTACT: "Contact chip supported", Ttq.OFFLINE_ONLY: "Offline-only reader",
    Ttq.ONLINE_PIN: "Online PIN supported", Ttq.SIGNATURE: "Signature supported",
    Ttq.ONLINE_CRYPTOGRAM_REQUIRED: "Online cryptogram required", Ttq.CVM_REQUIRED: "CVM required",
    Ttq.ISSUER_UPDATE: "Issuer update processing supported", Ttq.CDCVM: "Consumer device CVM supported",
    Ttq.FDDA_V01: "fDDA version 01 supported",
}
CTQ_WORDS: dict[Ctq, str] = {
    Ctq.ONLINE_PIN: "Online PIN required", Ctq.SIGNATURE: "Signature required",
    Ctq.ONLINE_IF_ODA_FAILS: "Go online if offline data authentication fails",
    Ctq.SWITCH_IF_ODA_FAILS: "Switch interface if offline data authentication fails",
    Ctq.ONLINE_IF_EXPIRED: "Go online if the application has expired",
    Ctq.SWITCH_FOR_CASH: "Switch interface for cash", Ctq.SWITCH_FOR_CASHBACK: "Switch interface for cashback",
    Ctq.CDCVM_PERFORMED: "Consumer device CVM performed", Ctq.ISSUER_UPDATE: "Issuer update processing supported",
}

CVM_METHODS = {
    0x00: "Fail CVM processing", 0x01: "Plaintext PIN verified by ICC", 0x02: "Enciphered PIN verified online",
    0x03: "Plaintext PIN verified by ICC and signature", 0x04: "Enciphered PIN verified by ICC",
    0x05: "Enciphered PIN verified by ICC and signature", 0x1E: "Signature (paper)",
    0x1F: "No CVM required", 0x3F: "No CVM performed",
}
CVM_RESULTS = {0: "Unknown", 1: "Failed", 2: "Successful"}

_ALGORITHMS = {0x01: "3DES", 0x04: "SM4"}


_CVR_VALUES = {(1, bit) for bit in range(1, 9)} | {(byte, bit) for byte in (2, 4) for bit in (8, 7, 6, 5)}
"""CVR bits read as values, not flags: byte 1 is the length, byte 2 b8–b5 the cryptogram types, byte 4 b8–b5 the
number of issuer script commands."""


def _set_bits(raw: bytes, names: Bits, skip: set[tuple[int, int]] | None = None) -> list[str]:
    lines = []
    for index, byte in enumerate(raw, start=1):
        for bit in range(8, 0, -1):
            if byte & (1 << (bit - 1)) and (index, bit) not in (skip or set()):
                lines.append(names.get((index, bit), f"byte {index} bit {bit}: RFU (set)"))
    return lines


def _qualifier(raw: bytes, kind: type[Ttq] | type[Ctq], words: dict) -> list[str]:  # type: ignore[type-arg]
    value = kind.from_bytes(raw)
    lines = [words[member] for member in kind if member in value]
    known = 0
    for member in kind:
        known |= int(member)
    unknown = int(value) & ~known
    return lines + ([f"Other bits {unknown:0{2 * kind.width()}X}"] if unknown else [])


def _cvm(raw: bytes) -> list[str]:
    if len(raw) != 3:
        return [f"{len(raw)} bytes, not the 3 of CVM results"]
    method = CVM_METHODS.get(raw[0] & 0x3F, f"method {raw[0] & 0x3F:02X}")
    lines = [f"Performed: {method}", f"Condition {raw[1]:02X}", f"Result: {CVM_RESULTS.get(raw[2], f'{raw[2]:02X}')}"]
    if raw[0] & 0x40:
        lines.insert(1, "Apply succeeding CV rule if unsuccessful")
    return lines


def _iad(raw: bytes) -> list[str]:
    try:
        iad = Iad.decode(raw)
    except IadError as error:
        return [str(error)]
    cvr = iad.cvr
    first = Cryptogram.of_cvr(cvr)
    second = {0b10: "not requested", 0b00: "AAC", 0b01: "TC"}.get(cvr[1] >> 6, "RFU")
    lines = [f"CVN {iad.cvn:02X}, key index (DKI) {iad.dki:02X}, "
             f"algorithm {_ALGORITHMS.get(iad.algorithm, f'{iad.algorithm:02X}')}",
             f"CVR {cvr.hex().upper()}: first GENERATE AC {first.name if first else 'RFU'}, second {second}"]
    lines += _set_bits(cvr, CVR_BITS, _CVR_VALUES)
    if cvr[3] >> 4:
        lines.append(f"{cvr[3] >> 4} issuer script command(s)")
    return lines


def describe(tag: int, raw: bytes) -> list[str]:
    """What the bits of one of the fields above say, line by line; [] for any other tag."""
    if tag == 0x95:
        return _set_bits(raw, TVR_BITS) or ["No bit set: nothing to report"]
    if tag == 0x82:
        return _set_bits(raw, AIP_BITS) or ["No function supported"]
    if tag == 0x9F34:
        return _cvm(raw)
    if tag == 0x9F66:
        return _qualifier(raw, Ttq, TTQ_WORDS)
    if tag == 0x9F6C:
        return _qualifier(raw, Ctq, CTQ_WORDS)
    if tag == 0x9F10:
        return _iad(raw)
    return []
