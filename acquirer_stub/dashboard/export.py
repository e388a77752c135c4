"""A transaction search as CSV for a spreadsheet: masked card numbers only, amounts as plain yuan.

Cells a spreadsheet would run as a formula (starting with = + - @ or a control character) are written with a
leading apostrophe: every text cell came from a terminal or a card and is hostile until shown otherwise.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator

from acquirer_stub.dashboard.charts import response_text
from acquirer_stub.dashboard.present import entry_mode, reason_text, scrub, when
from acquirer_stub.store.transactions import Transaction
from hostproto.money import plain_yuan

HEADER = ("id", "received", "terminal", "kind", "mti", "stan", "rrn", "approval_code", "card", "entry_mode",
          "amount", "charged", "discount", "currency", "response_code", "response", "reason", "issuer", "batch",
          "host_ms")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _cell(value: object) -> str:
    text = "" if value is None else scrub(value)
    if text.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def _fields(row: Transaction) -> tuple[object, ...]:
    return (row.id, when(row.created), row.tid, row.kind, row.mti, row.stan, row.rrn, row.auth_code, row.pan_masked,
            entry_mode(row.entry_mode), plain_yuan(row.amount), plain_yuan(row.charged), plain_yuan(row.discount),
            row.currency, row.rc, response_text(row.rc), reason_text(row.reason), row.issuer, row.batch,
            None if row.latency_ms is None else f"{float(row.latency_ms):.1f}")


def lines(rows: Iterable[Transaction]) -> Iterator[str]:
    """The header, then one CSV line per row (RFC 4180: CRLF line ends, quotes where needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for fields in itertools.chain([HEADER], map(_fields, rows)):
        writer.writerow([_cell(value) for value in fields])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
