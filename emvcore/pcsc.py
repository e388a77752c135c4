"""PC/SC for contactless cards, as a reader shows them to applications (PC/SC Part 3, Supplemental Document for
Contactless ICCs; ISO/IEC 7816-3 for the ATR): the ATR a reader builds for an ISO 14443-4 card from its ATS, the
historical bytes read back out of an ATR, and the pseudo-APDUs a contactless reader answers itself.

Pure: bytes in, bytes out. The reader side (terminal/reader/pcsc.py) and the virtual reader slot of the emulated
cards (firmware/simulator/vpcd.py) both use it.
"""

from __future__ import annotations

TS_DIRECT = 0x3B
GET_DATA_CLA_INS = bytes.fromhex("FFCA")  # GET DATA (Part 3 §3.2.2.1.3): P1 00 the UID, P1 01 the ATS historicals
GET_UID = bytes.fromhex("FFCA000000")
SW_OK = bytes.fromhex("9000")
SW_WRONG_P1P2 = bytes.fromhex("6A81")  # function not supported
SW_WRONG_LENGTH = bytes.fromhex("6700")
MAX_HISTORICAL = 15  # K is four bits of T0


class AtrError(ValueError):
    """Bytes that are not an ATR (or an ATS) as ISO/IEC 7816-3 / 14443-4 lay them out."""


def ats_historical_bytes(ats: bytes) -> bytes:
    """The historical bytes of an ISO 14443-4 ATS (TL first, no CRC): after T0 and the TA1/TB1/TC1 it announces."""
    if not ats or ats[0] != len(ats):
        raise AtrError(f"ATS {ats.hex().upper()}: TL must be its length")
    if len(ats) == 1:
        return b""
    t0 = ats[1]
    start = 2 + sum(1 for present in (0x10, 0x20, 0x40) if t0 & present)
    if start > len(ats):
        raise AtrError(f"ATS {ats.hex().upper()}: T0 announces more interface bytes than there are")
    return bytes(ats[start:])


def contactless_atr(historical: bytes) -> bytes:
    """Part 3 §3.1.3.2.3.1, an ISO 14443-4 card: 3B 8k 80 01, its k historical bytes, TCK (XOR from T0 on)."""
    if len(historical) > MAX_HISTORICAL:
        raise AtrError(f"{len(historical)} historical bytes; an ATR holds at most {MAX_HISTORICAL}")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return bytes([TS_DIRECT]) + body + bytes([tck])


def atr_historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of any ATR (ISO/IEC 7816-3 §8.2: T0's K, the TAi..TDi chain), TCK checked when present."""
    if len(atr) < 2 or atr[0] not in (TS_DIRECT, 0x3F):
        raise AtrError(f"ATR {atr.hex().upper()}: no TS (3B or 3F) and T0")
    count, position, indicator, protocols = atr[1] & 0x0F, 2, atr[1], set()
    while True:
        for present in (0x10, 0x20, 0x40):
            position += bool(indicator & present)
        if not indicator & 0x80:
            break
        if position >= len(atr):
            raise AtrError(f"ATR {atr.hex().upper()}: cut inside its interface bytes")
        indicator = atr[position]
        protocols.add(indicator & 0x0F)
        position += 1
    historical = atr[position : position + count]
    if len(historical) != count:
        raise AtrError(f"ATR {atr.hex().upper()}: T0 announces {count} historical bytes, {len(historical)} follow")
    rest = atr[position + count :]
    if protocols - {0}:  # TCK is present unless T=0 alone is indicated
        check = 0
        for byte in atr[1:]:
            check ^= byte
        if len(rest) != 1 or check:
            raise AtrError(f"ATR {atr.hex().upper()}: TCK missing or wrong")
    elif rest:
        raise AtrError(f"ATR {atr.hex().upper()}: {len(rest)} bytes after the historical bytes")
    return bytes(historical)


def is_contactless_iso_dep(atr: bytes) -> bool:
    """An ATR a contactless reader made for an ISO 14443-4 card (3B 8k 80 01 …), i.e. one that carries APDUs."""
    return len(atr) >= 5 and atr[0] == TS_DIRECT and atr[1] & 0xF0 == 0x80 and atr[2:4] == bytes([0x80, 0x01])


def reader_answer(apdu: bytes, uid: bytes, ats: bytes) -> bytes | None:
    """What a contactless reader answers itself to a GET DATA pseudo-APDU (FF CA), or None for any other APDU
    (it goes to the card): P1 00 the UID, P1 01 the ATS historical bytes; Le 00 = all, else at most Le."""
    if apdu[:2] != GET_DATA_CLA_INS:
        return None
    if len(apdu) != 5 or apdu[3] != 0x00:
        return SW_WRONG_LENGTH if len(apdu) != 5 else SW_WRONG_P1P2
    if apdu[2] == 0x00:
        data = uid
    elif apdu[2] == 0x01:
        data = ats_historical_bytes(ats)
    else:
        return SW_WRONG_P1P2
    le = apdu[4] or 256
    if len(data) > le:
        return bytes([0x6C, len(data)])  # the wrong Le; the right one in SW2
    return data + SW_OK
