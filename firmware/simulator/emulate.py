"""`pos-card emulate`: a card or phone on a real PN532 in target mode, driven through pn532pi.

pn532pi's EmulateTag only knows an NDEF tag; a payment card needs the plain ISO-DEP loop: TgInitAsTarget
(wait for a reader), then TgGetData (a C-APDU) → the card → TgSetData (the R-APDU) until the reader
releases us (status 29), then the next tap. The PN532 answers RATS and does the ISO-DEP blocks itself.

A rig can also pull the card away in the middle of its first tap (`remove_after`, like the software
field's `remove_after` fault): the Nth C-APDU is never answered (with `tear`, the card processes it first,
so its counters move, as when a card leaves during a write), and the host puts its chip back in target
mode at once, so the reader loses the card and finds it again on its next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from firmware.simulator.rig import PresentedFile
from hardware.pn532 import Pn532Error, SerialHsu, command, open_pn532

EMULATOR_ACK_WAIT_MS = 1000
"""The card side waits longer for its chip's ACK than the terminal (hardware.pn532.ACK_WAIT_MS, 200 ms, after which
the terminal resets a chip it takes for hung): nothing here resets on silence, and on a loaded machine a software
PN532's thread can take that long to run (a CI run once saw TgInitAsTarget unacknowledged after 200 ms)."""

SET_PARAMETERS_PICC = bytes([0x12, 0x34])  # automatic RATS/ATR_RES, the chip is the ISO 14443-4 PICC
TG_INIT_AS_TARGET, TG_GET_DATA, TG_SET_DATA, TG_SET_META_DATA = 0x8C, 0x86, 0x8E, 0x94
MAX_DATA_OUT = 262  # bytes of DataOut one TgSetData takes; a longer R-APDU goes ahead in TgSetMetaData parts
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
    observe: Callable[[bytes, bytes | None], None] | None = None,
    remove_after: int | None = None,
    tear: bool = False,
    poll_ms: int = WAIT_SLICE_MS,
) -> int:
    """Serve taps until `taps` are done or `stop` is set; returns the number of taps served.

    `observe(c_apdu, r_apdu)` sees every exchange (r_apdu None: the card was pulled away before answering);
    `poll_ms` is how long each wait for the reader lasts before `stop` is checked again.
    """
    if remove_after is not None and remove_after < 1:
        raise ValueError(f"remove_after counts APDUs from 1, not {remove_after}")
    stop = stop or threading.Event()
    presented = PresentedFile(card_file)
    _, interface = open_pn532(port, ack_wait_ms=EMULATOR_ACK_WAIT_MS)
    try:
        command(interface, bytes([0x14, 0x01, 0x14, 0x01]))  # SAMConfiguration: normal mode
        command(interface, SET_PARAMETERS_PICC)
        served = 0
        while not stop.is_set() and (taps is None or served < taps):
            chip = presented.chip()
            uid = presented.uid_for_tap()
            if _await(interface, target_parameters(uid), stop, poll_ms) is None:
                break
            report(f"reader activated the card (UID 08{uid[1:4].hex().upper()})")
            pull_at, remove_after = remove_after, None  # only the first tap is cut short
            exchanged, pulled = _serve(interface, chip.transceive, stop, poll_ms, observe, pull_at, tear)
            chip.field_off()
            served += 1
            report(f"tap {served} over: {exchanged} APDUs" + (" (card pulled away)" if pulled else ""))
        return served
    finally:
        interface.abort()  # nothing may still wait in the chip
        interface.close()


def _await(interface: SerialHsu, payload: bytes, stop: threading.Event, poll_ms: int = WAIT_SLICE_MS) -> bytes | None:
    """Send a command that waits for the other side (a reader); None when stopped first."""
    if interface.writeCommand(bytearray(payload[:1]), bytearray(payload[1:])):
        raise Pn532Error(f"PN532 did not acknowledge command {payload[0]:02X}")
    while not stop.is_set():
        length, data = interface.readResponse(poll_ms)
        if length >= 0:
            return bytes(data)
    interface.abort()
    return None


def _serve(
    interface: SerialHsu,
    card: Callable[[bytes], bytes],
    stop: threading.Event,
    poll_ms: int = WAIT_SLICE_MS,
    observe: Callable[[bytes, bytes | None], None] | None = None,
    pull_at: int | None = None,
    tear: bool = False,
) -> tuple[int, bool]:
    """One tap's APDUs; returns how many were answered and whether the card was pulled away."""
    exchanged = 0
    while True:
        answer = _await(interface, bytes([TG_GET_DATA]), stop, poll_ms)
        if not answer or answer[0] & 0x3F:  # stopped, released (29) or another error: the tap is over
            return exchanged, False
        apdu = answer[1:]
        if pull_at is not None and exchanged + 1 == pull_at:
            if tear:
                card(apdu)  # the card did the work; its answer never leaves
            if observe is not None:
                observe(apdu, None)
            return exchanged, True
        response = card(apdu)
        if observe is not None:
            observe(apdu, response)
        # A phone with eight cards answers PPSE with ~280 bytes: the chip chains what TgSetMetaData gave it.
        parts = [response[i : i + MAX_DATA_OUT] for i in range(0, max(len(response), 1), MAX_DATA_OUT)]
        for code, part in [(TG_SET_META_DATA, p) for p in parts[:-1]] + [(TG_SET_DATA, parts[-1])]:
            reply = command(interface, bytes([code]) + part)
            if not reply or reply[0] & 0x3F:
                raise Pn532Error(f"{'TgSetData' if code == TG_SET_DATA else 'TgSetMetaData'} failed with status "
                                 f"{reply[:1].hex()}")
        exchanged += 1
