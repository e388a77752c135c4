"""The reader as the kernel sees it: find a card, trade APDUs with it, let it go.

Phones show a new random UID on every tap (doc pn532.md §10), so nothing above this layer may identify
a card or a tap by its UID: the kernel selects by AID and reads what it needs from the application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from terminal.kernel.errors import CardGone

ISO_DEP_SAK = 0x20


class CardRemoved(CardGone):
    """The card left the field (or the tap was torn) before the exchange finished: present it again."""


class ReaderError(Exception):
    """The reader itself failed (wiring, UART, a chip that stays silent after a reset)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """One ISO 14443 type A card or phone in the field, as anticollision and RATS described it."""

    uid: bytes  # random on phones: for logs only, never to recognise a card
    sens_res: bytes  # ATQA, MSB first
    sel_res: int  # SAK
    ats: bytes  # from its TL byte; empty when the target did not do RATS

    @property
    def iso_dep(self) -> bool:
        """Whether it speaks ISO 14443-4, i.e. can carry APDUs (payment cards and phones do)."""
        return bool(self.sel_res & ISO_DEP_SAK)


class Reader(Protocol):
    """A contactless reader; one user at a time (the transaction thread)."""

    def open(self) -> None:
        """Connect to the reader and bring it into a known state; ReaderError says what to check."""
        ...

    def identify(self) -> str:
        """A line for logs and the status API, e.g. "PN532 v1.6 on /dev/ttyAMA0 at 115200 baud"."""
        ...

    def wait_for_card(self, timeout: float) -> Target | None:
        """The next card in the field, activated and ready for APDUs; None after `timeout` seconds."""
        ...

    def transceive(self, apdu: bytes) -> bytes:
        """One C-APDU to the activated card, its R-APDU (with SW1 SW2) back.

        Raises CardRemoved when the card is gone and ReaderError when the reader is at fault.
        """
        ...

    def release(self) -> None:
        """End the tap: the card is deselected and forgotten."""
        ...

    resets: int = 0
    """Resets since the reader was made (the terminal's /metrics)."""

    def reset(self) -> None:
        """Bring a hung reader back (hardware reset line if wired, else reconnect) and re-initialise it."""
        ...

    def close(self) -> None: ...
