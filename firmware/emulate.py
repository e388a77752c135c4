"""`pos-card emulate`: a card or phone on a real PN532 in target mode, driven through pn532pi.

pn532pi's EmulateTag only knows an NDEF tag; a payment card needs the plain ISO-DEP loop: TgInitAsTarget
(wait for a reader), then TgGetData (a C-APDU) → the card → TgSetData (the R-APDU) until the reader
releases us (status 29), then the next tap. The PN532 answers RATS and does the ISO-DEP blocks itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from firmware.pn532.rig import PresentedFile
from hardware.pn532 import Pn532Error, SerialHsu, command, open_pn532

SET_PARAMETERS_PICC = bytes([0x12, 0x34])  # automatic RATS/ATR_RES, the chip is the ISO 14443-4 PICC
TG_INIT_AS_TARGET, TG_GET_DATA, TG_SET_DATA = 0x8C, 0x86, 0x8E
RELEASED = 0x29
WAIT_SLICE_MS = 500  # how long each wait for a reader lasts before we check for a stop


def target_parameters(uid: bytes) -> bytes:
    """TgInitAsTarget for a 106 kbps ISO-DEP card: PICC only, SENS_RES 0004 (LSB first), SAK 20."""
    nfcid1t = (uid[1:4] if len(uid) >= 4 else uid.rjust(3, b"\x00"))[:3]
    return (
        bytes([TG_INIT_AS_TARGET, 0x05])  # PassiveOnly | PICCOnly
        + bytes([0x04, 0x00]) + nfcid1t + bytes([0x20])
        + bytes(18)  # FeliCa parameters (unused)
        + bytes(10)  # NFCID3t (unused)
        + b"\x00"  # no general bytes
        + b"\x00"  # no historical bytes
    )


def emulate(
    port: str,
    card_file: Path,
    *,
    taps: int | None = None,
    stop: threading.Event | None = None,
    report: Callable[[str], None] = print,
) -> int:
    """Serve taps until `taps` are done or `stop` is set; returns the number of taps served."""
    stop = stop or threading.Event()
    presented = PresentedFile(card_file)
    _, interface = open_pn532(port)
    try:
        command(interface, bytes([0x14, 0x01, 0x14, 0x01]))  # SAMConfiguration: normal mode
        command(interface, SET_PARAMETERS_PICC)
        served = 0
        while not stop.is_set() and (taps is None or served < taps):
            chip = presented.chip()
            uid = presented.uid_for_tap()
            if _await(interface, target_parameters(uid), stop) is None:
                break
            report(f"reader activated the card (UID 08{uid[1:4].hex().upper()})")
            exchanged = _serve(interface, chip.transceive, stop)
            chip.field_off()
            served += 1
            report(f"tap {served} over: {exchanged} APDUs")
        return served
    finally:
        interface.abort()  # nothing may still wait in the chip
        interface.close()


def _await(interface: SerialHsu, payload: bytes, stop: threading.Event) -> bytes | None:
    """Send a command that waits for the other side (a reader); None when stopped first."""
    if interface.writeCommand(bytearray(payload[:1]), bytearray(payload[1:])):
        raise Pn532Error(f"PN532 did not acknowledge command {payload[0]:02X}")
    while not stop.is_set():
        length, data = interface.readResponse(WAIT_SLICE_MS)
        if length >= 0:
            return bytes(data)
    interface.abort()
    return None


def _serve(interface: SerialHsu, card: Callable[[bytes], bytes], stop: threading.Event) -> int:
    exchanged = 0
    while True:
        answer = _await(interface, bytes([TG_GET_DATA]), stop)
        if not answer or answer[0] & 0x3F:  # stopped, released (29) or another error: the tap is over
            return exchanged
        response = card(answer[1:])
        reply = command(interface, bytes([TG_SET_DATA]) + response)
        if not reply or reply[0] & 0x3F:
            raise Pn532Error(f"TgSetData failed with status {reply[:1].hex()}")
        exchanged += 1
