"""A PC/SC reader's escape: commands the reader answers itself with no card in it (the ACR122U's LED and buzzer
between taps), sent by SCardControl on a direct connection of a context of its own, so it never waits on the context
the transaction thread may be blocked in (SCardGetStatusChange).

Drivers differ in the control code and in whether they allow it at all: libccid lists it as PC/SC Part 10 feature
0x13 (FEATURE_CCID_ESC_COMMAND, its SCARD_CTL_CODE(1)) only when `ifdDriverOptions` has 0x0001; ACS's own driver and
Windows take SCARD_CTL_CODE(3500) (ACR122U API v2.04, Appendix A); vsmartcard's vpcd has none. A harmless command
(FF 00 40 that changes nothing) is the probe.
"""

from __future__ import annotations

import logging
from typing import Any

from emvcore import pcsc

log = logging.getLogger("terminal.reader")

HINT = ("the reader's lights follow the terminal only while a card is in the field: its driver offers no escape "
        "(vsmartcard's vpcd never does; a USB reader on libccid: set ifdDriverOptions to 0x0001 in "
        "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Info.plist and restart pcscd)")


class Escape:
    """The escape of one reader (by pcscd's name). Not thread-safe: its owner serialises the calls."""

    def __init__(self, scard: Any, reader: str) -> None:
        self._scard = scard
        self._reader = reader
        self._context: Any = None
        self._code: int | None = None  # None: not known yet; 0: the driver refused the probe
        self._told = False

    def available(self) -> bool:
        return bool(self._lookup())

    def send(self, command: bytes) -> bytes | None:
        """The reader's answer, or None when there is no escape or it failed this time."""
        code = self._lookup()
        if not code:
            return None
        return self._control(lambda handle: self._scard.SCardControl(handle, code, list(command)))

    def close(self) -> None:
        context, self._context, self._code = self._context, None, None
        if context is not None:
            self._scard.SCardReleaseContext(context)

    def _lookup(self) -> int:
        """The control code, looked up until the driver answers the probe one way or the other (a reader busy with
        another program is asked again next time)."""
        if self._code is not None:
            return self._code
        scard = self._scard
        if self._context is None:
            result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if result != scard.SCARD_S_SUCCESS:
                return 0
            self._context = context

        def probe(handle: Any) -> tuple[int, list[int]]:
            result, answer = scard.SCardControl(handle, scard.SCARD_CTL_CODE(pcsc.GET_FEATURE_REQUEST), [])
            listed = pcsc.feature_codes(bytes(answer)) if result == scard.SCARD_S_SUCCESS else {}
            code = listed.get(pcsc.FEATURE_CCID_ESC_COMMAND, scard.SCARD_CTL_CODE(pcsc.CCID_ESCAPE))
            result, answer = scard.SCardControl(handle, code, list(pcsc.LedBuzzer(None, None).command()))
            self._code = code if result == scard.SCARD_S_SUCCESS and bytes(answer[:1]) == b"\x90" else 0
            return result, answer

        self._control(probe)
        if self._code == 0 and not self._told:
            self._told = True
            log.info("reader lights: %s", HINT)
        return self._code or 0

    def _control(self, call: Any) -> bytes | None:
        scard = self._scard
        result, handle, _ = scard.SCardConnect(self._context, self._reader, scard.SCARD_SHARE_DIRECT, 0)
        if result != scard.SCARD_S_SUCCESS:
            log.debug("reader lights: no direct connection to %s (0x%08X)", self._reader, result & 0xFFFFFFFF)
            return None
        try:
            result, answer = call(handle)
        finally:
            scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
        return bytes(answer) if result == scard.SCARD_S_SUCCESS else None
