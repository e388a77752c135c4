"""What every card application offers the card's APDU dispatcher (a plain card or the phone's secure element)."""

from __future__ import annotations

from typing import Protocol

from emvcore.apdu import CommandApdu, ResponseApdu


class CardApplication(Protocol):
    """One selectable application (qPBOC debit/credit, transit e-purse) on a card or in a phone wallet."""

    aid: bytes
    label: str

    def select(self) -> ResponseApdu:
        """Answer SELECT by AID: the FCI template (6F) and 9000."""
        ...

    def process(self, command: CommandApdu) -> ResponseApdu:
        """Answer any other command while this application is selected; never raise for bad input."""
        ...

    def deselect(self) -> None:
        """The field dropped or another application was selected: forget per-transaction state."""
        ...
