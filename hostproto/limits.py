"""The offline floor limit: one rule for both ends of the link, so terminal and acquirer cannot disagree.

A terminal asks the card for an online cryptogram when the amount is above the floor limit of the selected AID
(TTQ byte 2 bit 8), so an honest terminal never has an offline approval (TC) above it; the acquirer takes an
advice above the same limit as an exception and moves no money for it. Both read the figures from the test world
(`acquirer/terminals.json` and the terminal's `terminal.toml`), per terminal and AID, and match an AID here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["DEFAULT_FLOOR_LIMIT", "floor_limit_for", "for_aid", "over_floor_limit"]

T = TypeVar("T")

DEFAULT_FLOOR_LIMIT = 200_000
"""Fen: ¥2,000.00, the sample per-AID DF19 of emv-qpboc.md §4; a business parameter, set per merchant."""


def for_aid(aid: bytes | None, per_aid: Mapping[bytes, T]) -> T | None:
    """The entry of the longest configured AID that `aid` starts with (a configured A0000003330101 covers every
    A0000003330101xx, as terminals match AIDs), else None."""
    if aid:
        matches = [prefix for prefix in per_aid if aid.startswith(prefix)]
        if matches:
            return per_aid[max(matches, key=len)]
    return None


def floor_limit_for(aid: bytes | None, default: int, per_aid: Mapping[bytes, int]) -> int:
    """The floor limit of the AID (see `for_aid`), else `default`."""
    limit = for_aid(aid, per_aid)
    return default if limit is None else limit


def over_floor_limit(amount: int, limit: int) -> bool:
    """Above the limit the card must go online; at the limit it may still approve offline."""
    return amount > limit
