"""Amounts as people type them ("12.34", "¥1,234.5") → fen: the one parser, for the terminal's command line and
the dashboard's forms alike.

Only plain decimal notation is an amount: Decimal alone would take "1e9" (a thousand million yuan), "NaN" or
"1_000", none of which a merchant means.
"""

from __future__ import annotations

import re

__all__ = ["format_yuan", "parse_yuan", "plain_yuan"]

_YUAN = re.compile(r"¥?(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.(?P<fen>[0-9]{1,2}))?")


def parse_yuan(text: str) -> int:
    """Yuan with at most two decimals, an optional ¥ and thousands commas → fen (≥ 0); ValueError otherwise."""
    found = _YUAN.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not an amount in yuan (e.g. 12.34)")
    whole = int(found["whole"].replace(",", ""))
    return whole * 100 + int((found["fen"] or "").ljust(2, "0"))


def format_yuan(fen: int) -> str:
    """Fen → "¥1,234.56", the way a Chinese receipt shows yuan: the one format of every screen and receipt."""
    return f"{'-' if fen < 0 else ''}¥{plain_yuan(abs(fen), grouped=True)}"


def plain_yuan(fen: int, *, grouped: bool = False) -> str:
    """Fen → "1234.56" (a spreadsheet's number; "1,234.56" grouped), in integers: never through a float."""
    sign, fen = ("-" if fen < 0 else ""), abs(fen)
    whole = f"{fen // 100:,}" if grouped else str(fen // 100)
    return f"{sign}{whole}.{fen % 100:02d}"
