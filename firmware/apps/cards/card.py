"""The contactless chip's application layer: PPSE, SELECT by AID, and routing to the selected application.

A plain card and a phone's secure element both look like this to a terminal; the phone only decides
which applications are offered and in which order.
"""

from __future__ import annotations

from collections.abc import Sequence

from emvcore import tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu, StatusWord
from firmware.apps.cards.base import CardApplication

PPSE_NAME = b"2PAY.SYS.DDF01"
SELECT_FIRST, SELECT_NEXT = 0x00, 0x02


def ppse_response(applications: Sequence[CardApplication]) -> bytes:
    """The PPSE FCI: one 61 entry per application, priority by position (1 = first choice)."""
    entries = [
        tlv.constructed(
            0x61,
            tlv.encode(0x4F, app.aid),
            tlv.encode(0x50, app.label.encode("ascii")),
            tlv.encode(0x87, bytes([min(position, 15)])),
        )
        for position, app in enumerate(applications, start=1)
    ]
    return tlv.constructed(
        0x6F, tlv.encode(0x84, PPSE_NAME), tlv.constructed(0xA5, tlv.constructed(0xBF0C, *entries))
    )


class Chip:
    """Answers APDUs for a set of applications; the order of `applications` is the PPSE order."""

    def __init__(self, applications: Sequence[CardApplication]) -> None:
        self.applications = list(applications)
        self._selected: CardApplication | None = None

    def transceive(self, raw: bytes) -> bytes:
        """One C-APDU in, one R-APDU out; malformed input gets a status word, never an exception."""
        try:
            command = CommandApdu.decode(raw)
        except ApduError as error:
            return ResponseApdu.error(error.sw).encode()
        return self.process(command).encode()

    def process(self, command: CommandApdu) -> ResponseApdu:
        if command.ins == 0xA4:
            if command.cla != 0x00:
                return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
            return self._select(command)
        if self._selected is None:
            if command.cla not in (0x00, 0x80):
                return ResponseApdu.error(StatusWord.CLA_NOT_SUPPORTED)
            return ResponseApdu.error(StatusWord.CONDITIONS_NOT_SATISFIED)
        return self._selected.process(command)

    def field_off(self) -> None:
        """The card left the field (or the reader dropped it): all per-transaction state goes."""
        if self._selected is not None:
            self._selected.deselect()
        self._selected = None

    def _select(self, command: CommandApdu) -> ResponseApdu:
        if command.p1 != 0x04 or command.p2 not in (SELECT_FIRST, SELECT_NEXT):
            return ResponseApdu.error(StatusWord.INCORRECT_P1P2)
        if not command.data:
            return ResponseApdu.error(StatusWord.WRONG_LENGTH)
        previous, self._selected = self._selected, None
        if previous is not None:
            previous.deselect()
        if command.data == PPSE_NAME:
            return ResponseApdu.success(ppse_response(self.applications))
        # EMV partial selection: the name may be the leading part of an AID; P2 = 02 moves to the next match.
        matches = [app for app in self.applications if app.aid.startswith(command.data)]
        if command.p2 == SELECT_NEXT and previous in matches:
            matches = matches[matches.index(previous) + 1 :]
        if not matches:
            return ResponseApdu.error(StatusWord.FILE_NOT_FOUND)
        self._selected = matches[0]
        return self._selected.select()
