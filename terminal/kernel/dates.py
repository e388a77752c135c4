"""Processing restrictions on the application's dates: expiry (5F24) and effective date (5F25).

The expiry is 5F24 when the card gives it (it must name the month track 2 names, doc emv-qpboc.md §2.5), else the
last day of track 2's YYMM; the card is valid through that day. A card is not yet effective before 5F25. Every
value comes from the card, so a date that is not BCD, or not a date (month 13, 30 February), is a ``ValueError``
with a message that names the tag, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from emvcore.bcd import parse_date_n6

__all__ = ["ApplicationDates", "application_dates", "month_end"]


@dataclass(frozen=True)
class ApplicationDates:
    """The two verdicts the kernel acts on (with the dates, for the reasons it logs)."""

    expiry: date
    effective: date | None
    expired: bool
    not_yet_effective: bool


def month_end(yymm: str) -> date:
    """The last day of a YYMM month (YY 50-99 = 19YY, as EMV n6 dates); ValueError when it is not a month."""
    if len(yymm) != 4 or not yymm.isdigit() or not 1 <= int(yymm[2:]) <= 12:
        raise ValueError(f"{yymm!r} is not a YYMM month")
    year = 2000 + int(yymm[:2]) if int(yymm[:2]) < 50 else 1900 + int(yymm[:2])
    month = int(yymm[2:])
    return date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def _n6(tag: str, value: bytes) -> date:
    try:
        return parse_date_n6(value)
    except ValueError as error:
        raise ValueError(f"{tag} is not a valid YYMMDD date ({error})") from None


def application_dates(track2_yymm: str, expiry_5f24: bytes | None, effective_5f25: bytes | None,
                      today: date) -> ApplicationDates:
    """Both dates checked against today; ValueError for a malformed date or a 5F24 that disagrees with track 2."""
    expiry = month_end(track2_yymm)
    if expiry_5f24 is not None:
        expiry = _n6("the expiry (5F24)", expiry_5f24)
        if f"{expiry:%y%m}" != track2_yymm:
            raise ValueError("the expiry in 5F24 differs from the one in track 2 (57)")
    effective = None if effective_5f25 is None else _n6("the effective date (5F25)", effective_5f25)
    if effective is not None and effective > expiry:
        raise ValueError(f"the effective date (5F25) {effective:%Y-%m-%d} is after the expiry {expiry:%Y-%m-%d}")
    return ApplicationDates(expiry, effective, expiry < today, effective is not None and today < effective)
