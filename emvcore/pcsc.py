"""PC/SC for contactless cards, as a reader shows them to applications (PC/SC Part 3, Supplemental Document for
Contactless ICCs; ISO/IEC 7816-3 for the ATR): the ATR a reader builds for an ISO 14443-4 card from its ATS, the
historical bytes read back out of an ATR, the pseudo-APDUs a contactless reader answers itself, the LED and buzzer
pseudo-APDU of the ACS ACR122U family (ACR122U API v2.04 §6.2 and Appendix E), and the PC/SC Part 10 feature list
that says how to reach a reader with no card in it (its CCID escape).

Pure: bytes in, bytes out. The reader side (terminal/reader/pcsc.py) and the virtual reader slot of the emulated
cards (firmware/simulator/vpcd.py) both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

TS_DIRECT = 0x3B
GET_DATA_CLA_INS = bytes.fromhex("FFCA")  # GET DATA (Part 3 §3.2.2.1.3): P1 00 the UID, P1 01 the ATS historicals
GET_UID = bytes.fromhex("FFCA000000")
SW_OK = bytes.fromhex("9000")
SW_WRONG_P1P2 = bytes.fromhex("6A81")  # function not supported
SW_WRONG_LENGTH = bytes.fromhex("6700")
MAX_HISTORICAL = 15  # K is four bits of T0
LED_BUZZER = bytes.fromhex("FF0040")  # ACR122U: bi-colour LED and buzzer control, P2 the LED state control
SW_LED_FAILED = bytes.fromhex("6300")
DETECTION_BUZZER = bytes.fromhex("FF0052")  # ACR122U: the buzzer when a card is detected, P2 00 off / FF on (§6.7)
GET_FEATURE_REQUEST = 3400  # PC/SC Part 10 CM_IOCTL_GET_FEATURE_REQUEST, as SCARD_CTL_CODE(3400)
FEATURE_CCID_ESC_COMMAND = 0x13  # Part 10's tag of the control code for the reader's escape (a command without card)
CCID_ESCAPE = 3500  # SCARD_CTL_CODE(3500): the escape's code where a driver does not list it (ACS's own acsccid)


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


@dataclass(frozen=True)
class LedBuzzer:
    """The ACR122U's FF 00 40 as the terminal uses it: each LED's final state (None: unchanged) and one beep of
    `beep_tenths` × 100 ms (0: silent). The reader's blinking (P2 bits 4–7, a repetition count) is read on the card
    side but never asked for: the terminal times its own sequences."""

    red: bool | None
    green: bool | None
    beep_tenths: int = 0

    def command(self) -> bytes:
        if not 0 <= self.beep_tenths <= 0xFF:
            raise ValueError(f"a beep of {self.beep_tenths} × 100 ms: the reader counts 0 to 255")
        control = 0
        for final, mask, state in ((0x01, 0x04, self.red), (0x02, 0x08, self.green)):
            if state is not None:
                control |= mask | (final if state else 0)
        beep = self.beep_tenths
        return LED_BUZZER + bytes([control, 0x04, beep, 0x00, 1 if beep else 0, 1 if beep else 0])

    @classmethod
    def parse(cls, apdu: bytes) -> LedBuzzer:
        """A whole FF 00 40 command; the beep is what its T1/T2 durations, repetitions and link to buzzer add up to."""
        if apdu[:3] != LED_BUZZER or len(apdu) != 9 or apdu[4] != 0x04:
            raise ValueError(f"{apdu.hex().upper()} is not FF 00 40 P2 04 T1 T2 repetitions link")
        control, t1, t2, repetitions, link = apdu[3], apdu[5], apdu[6], apdu[7], apdu[8]
        red = bool(control & 0x01) if control & 0x04 else None
        green = bool(control & 0x02) if control & 0x08 else None
        beep = repetitions * ((t1 if link & 0x01 else 0) + (t2 if link & 0x02 else 0))
        return cls(red, green, beep)


def sequence_tenths(command: bytes) -> int:
    """How long an FF 00 40 keeps the reader busy, in 100 ms: repetitions × (T1 + T2) (the manual applies the final
    LED state after the sequence); 0 for one that only sets the LEDs, or for any other command."""
    if command[:3] != LED_BUZZER or len(command) != 9:
        return 0
    return command[7] * (command[5] + command[6])


def detection_buzzer(on: bool) -> bytes:
    """The ACR122U's own beep at every card it detects (on by default), on or off: a terminal that sounds its own
    tones turns it off, or the shopper hears a beep before the card is read."""
    return DETECTION_BUZZER + bytes([0xFF if on else 0x00, 0x00])


def detection_buzzer_setting(apdu: bytes) -> bool:
    """What an FF 00 52 command sets (True: beep at detection); ValueError for anything else."""
    if apdu[:3] != DETECTION_BUZZER or len(apdu) != 5 or apdu[3] not in (0x00, 0xFF) or apdu[4] != 0x00:
        raise ValueError(f"{apdu.hex().upper()} is not FF 00 52 00|FF 00")
    return apdu[3] == 0xFF


def led_state_answer(red: bool, green: bool) -> bytes:
    """What FF 00 40 answers: 90, then the LEDs as they are now (bit 0 red, bit 1 green)."""
    return bytes([0x90, (0x01 if red else 0) | (0x02 if green else 0)])


def feature_codes(answer: bytes) -> dict[int, int]:
    """A Part 10 GET_FEATURE_REQUEST answer (tag, length 4, the control code big-endian, repeated) as tag → code;
    a malformed tail ends the list (what came before it stands)."""
    codes: dict[int, int] = {}
    position = 0
    while position + 6 <= len(answer) and answer[position + 1] == 4:
        codes[answer[position]] = int.from_bytes(answer[position + 2 : position + 6], "big")
        position += 6
    return codes
