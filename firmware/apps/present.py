"""What can be held near a reader: a plain card file or a phone wallet file, told apart by their format."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from firmware.apps.cards.card import Chip
from firmware.apps.cards.cardfile import CARD_FORMAT, PlainCard
from firmware.apps.wallet.wallet import WALLET_FORMAT, Wallet
from firmware.jsonfile import FileFormatError, read_json


class Presentable(Protocol):
    def uid_for_tap(self) -> bytes:
        """The UID the reader sees at anticollision, asked when a field powers the card (a phone draws a new random
        one each time; it keeps it while it stays powered, `firmware.simulator.air.SoftwareCard`)."""
        ...

    def chip(self) -> Chip:
        """The chip, fresh for a new tap (nothing selected)."""
        ...


def load_presentable(path: Path) -> PlainCard | Wallet:
    kind = read_json(path).get("format")
    if kind == CARD_FORMAT:
        return PlainCard.load(path)
    if kind == WALLET_FORMAT:
        return Wallet.load(path)
    raise FileFormatError(f"{path}: format: {kind!r} is neither a card ({CARD_FORMAT}) nor a wallet ({WALLET_FORMAT})")
