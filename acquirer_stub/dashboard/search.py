"""The transaction search form read from a query string: each field checked, a clear message for each bad one.

A card is searched by what the host keeps of it, never by its full number: the last four digits, or the masked
number as the dashboard shows it (BIN, stars, last four). A full number typed in is refused, not searched, so
that nobody learns to paste card numbers into a URL.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass

from acquirer_stub.store.transactions import Search

PAGE_SIZE = 50
MAX_PAGE = 2_000  # 100 000 rows deep: further back, narrow the search
CSV_LIMIT = 10_000  # rows in one export; the page says when a result is larger
KINDS = ("authorization", "advice", "reversal")

_FIELDS = {  # name → (pattern, label, what it looks like)
    "rrn": (re.compile(r"[0-9A-Za-z]{12}"), "RRN", "12 digits"),
    "stan": (re.compile(r"[0-9]{1,6}"), "STAN", "up to 6 digits"),
    "auth_code": (re.compile(r"[0-9A-Za-z]{6}"), "Approval code", "6 letters or digits"),
    "tid": (re.compile(r"[0-9A-Za-z]{8}"), "Terminal", "an 8-character terminal id"),
    "rc": (re.compile(r"[0-9A-Za-z]{2}"), "Response code", "2 characters, e.g. 05"),
}
_LAST4 = re.compile(r"[0-9]{4}")
_MASKED = re.compile(r"(?P<bin>[0-9]{6})[*…xX. ]+(?P<last4>[0-9]{4})")


@dataclass(frozen=True)
class Query:
    search: Search
    page: int
    form: dict[str, str]  # what the form shows again, as typed (trimmed)
    errors: list[str]

    def args(self, **changes: object) -> dict[str, object]:
        """The query string of this search with some values changed (paging, the CSV link)."""
        values: dict[str, object] = {name: value for name, value in self.form.items() if value}
        values.update(changes)
        return values


def _card(text: str, errors: list[str]) -> dict[str, str]:
    compact = text.replace(" ", "")
    if _LAST4.fullmatch(compact):
        return {"last4": compact}
    found = _MASKED.fullmatch(text)
    if found:
        return {"bin": found["bin"], "last4": found["last4"]}
    if compact.isdigit() and len(compact) >= 12:
        errors.append("Card: a full card number is never searched; enter its last four digits or the masked "
                      "number (621700******1234).")
    else:
        errors.append("Card: enter the last four digits or the masked number (621700******1234).")
    return {}


def _day(text: str, label: str, errors: list[str]) -> datetime.date | None:
    if not text:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        errors.append(f"{label}: a date as YYYY-MM-DD.")
        return None


def parse(args: Mapping[str, str]) -> Query:
    """Never raises: a bad field becomes a message and matches nothing (the caller shows no rows)."""
    form = {name: str(args.get(name, "")).strip()[:40] for name in
            (*_FIELDS, "card", "kind", "from", "to")}
    errors: list[str] = []
    values: dict[str, object] = {}
    for name, (pattern, label, looks) in _FIELDS.items():
        text = form[name]
        if not text:
            continue
        if not pattern.fullmatch(text):
            errors.append(f"{label}: {looks}.")
            continue
        values[name] = text.zfill(6) if name == "stan" else text.upper()
    if form["kind"]:
        if form["kind"] in KINDS:
            values["kind"] = form["kind"]
        else:
            errors.append(f"Kind: one of {', '.join(KINDS)}.")
    if form["card"]:
        card = _card(form["card"], errors)
        if not card:
            form["card"] = ""  # never shown back: it may be a card number
        values.update(card)
    first, last = _day(form["from"], "From", errors), _day(form["to"], "To", errors)
    if first and last and last < first:
        errors.append("To: on or after From.")
    values.update(first_day=first, last_day=last)
    page_text = str(args.get("page", "1"))
    page = int(page_text) if page_text.isascii() and page_text.isdigit() and len(page_text) <= 6 else 0
    if not 1 <= page <= MAX_PAGE:
        errors.append(f"Page: 1 to {MAX_PAGE}; narrow the search to go further back.")
        page = 1
    return Query(Search(**values), page, form, errors)  # type: ignore[arg-type]
