"""The `transactions` table: the terminal API's rows written and looked up, and what the dashboard reads.

Reads hand out dataclasses so neither the API nor the dashboard holds a driver's row.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acquirer_stub.store import events
from acquirer_stub.store.answers import StoredAnswer
from acquirer_stub.store.rows import columns, fetch_all, fetch_one, insert, newest


@dataclass(frozen=True)
class Transaction:
    id: int
    kind: str  # authorization, advice, reversal
    mti: str
    tid: str
    stan: str
    local_date: str
    request_hash: str
    state: str
    rc: str
    reason: str | None
    amount: int  # fen
    charged: int
    discount: int
    promotion_id: int | None
    currency: str | None
    batch: int | None
    issuer: str | None
    account_id: int | None
    token_id: int | None
    pan_masked: str | None
    entry_mode: str | None
    atc: int | None
    rrn: str | None
    auth_code: str | None
    original_stan: str | None
    response: str  # the JSON answer as sent
    icc_masked: str | None
    latency_ms: float | None
    created: str  # ISO with offset
    original_local_date: str | None
    ac_verified: int
    reversed_amount: int
    reversed_charged: int


@dataclass(frozen=True)
class TransactionDetail(Transaction):
    """A row with the names of what it refers to, for its own page."""

    issuer_name: str | None
    token_masked: str | None
    par: str | None
    promotion_title: str | None
    request_masked: str | None  # the request as received, masked (None for rows stored before it was kept)


@dataclass(frozen=True)
class RelatedTransaction:
    id: int
    kind: str
    mti: str
    stan: str
    rc: str
    state: str
    created: str


@dataclass(frozen=True)
class ReversalOrAdvice(Transaction):
    original_id: int | None  # the authorization a reversal names, when the host has it


@dataclass(frozen=True)
class AuthorizationOutcome:
    """What the overview counts of one authorization."""

    rc: str
    reason: str | None
    latency_ms: float | None
    created: str
    issuer: str | None
    issuer_name: str | None


def recent(connection: sqlite3.Connection, limit: int) -> list[Transaction]:
    """The newest first."""
    return newest(connection, Transaction, "transactions", limit)


def find(connection: sqlite3.Connection, transaction_id: int) -> Transaction | None:
    return fetch_one(connection, Transaction,
        f"SELECT {columns(Transaction)} FROM transactions WHERE id = ?", (transaction_id,))


def latest(connection: sqlite3.Connection, kind: str, tid: str, stan: str) -> Transaction | None:
    """The newest row of this kind for (TID, STAN): what an API event without a row id stands for."""
    return fetch_one(connection, Transaction,
        f"SELECT {columns(Transaction)} FROM transactions WHERE kind = ? AND tid = ? AND stan = ?"
        " ORDER BY id DESC LIMIT 1", (kind, tid, stan))


def detail(connection: sqlite3.Connection, transaction_id: int) -> TransactionDetail | None:
    return fetch_one(connection, TransactionDetail,
        f"SELECT {columns(Transaction, 't')}, i.name AS issuer_name, k.token_masked, k.par,"
        " p.title AS promotion_title, t.request_masked FROM transactions t LEFT JOIN issuers i ON i.code = t.issuer"
        " LEFT JOIN tokens k ON k.id = t.token_id LEFT JOIN promotions p ON p.id = t.promotion_id WHERE t.id = ?",
        (transaction_id,))


def related(connection: sqlite3.Connection, of: Transaction) -> list[RelatedTransaction]:
    """The other rows of the same sale on the same terminal: its original, its reversals and advices."""
    original = of.original_stan or ""
    return fetch_all(connection, RelatedTransaction,
        f"SELECT {columns(RelatedTransaction)} FROM transactions WHERE tid = ? AND id != ?"
        " AND (stan = ? OR original_stan = ? OR stan = ?) ORDER BY id", (of.tid, of.id, original, of.stan, original))


def reversals_and_advices(connection: sqlite3.Connection, limit: int) -> list[ReversalOrAdvice]:
    """The newest first, each reversal with the id of the authorization it names."""
    return fetch_all(connection, ReversalOrAdvice,
        f"SELECT {columns(Transaction, 'r')}, (SELECT o.id FROM transactions o WHERE o.kind = 'authorization'"
        "  AND o.tid = r.tid AND o.stan = r.original_stan ORDER BY o.id DESC LIMIT 1) AS original_id"
        " FROM transactions r WHERE r.kind IN ('reversal', 'advice') ORDER BY r.id DESC LIMIT ?", (limit,))


def in_batch(connection: sqlite3.Connection, tid: str, batch: int, limit: int) -> list[Transaction]:
    """A terminal's messages in one batch, the newest first."""
    return fetch_all(connection, Transaction,
        f"SELECT {columns(Transaction)} FROM transactions WHERE tid = ? AND batch = ? ORDER BY id DESC LIMIT ?",
        (tid, batch, limit))


@dataclass(frozen=True)
class Search:
    """What an operator looks for; every field already checked (`acquirer_stub.dashboard.search`), None = any.

    A card is found by what the row keeps of it: its masked number's first six (BIN) and last four digits."""

    rrn: str | None = None
    stan: str | None = None
    auth_code: str | None = None
    tid: str | None = None
    rc: str | None = None
    kind: str | None = None
    bin: str | None = None
    last4: str | None = None
    first_day: datetime.date | None = None  # the host's local business days, as `created` is stamped
    last_day: datetime.date | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        parameters: list[object] = []
        for column in ("rrn", "stan", "auth_code", "tid", "rc", "kind"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if self.bin is not None or self.last4 is not None:  # LIKE needs no escaping: both are digits only
            clauses.append("pan_masked LIKE ?")
            parameters.append(f"{self.bin or ''}%{self.last4 or ''}")
        if self.first_day is not None:
            clauses.append("created >= ?")
            parameters.append(self.first_day.isoformat())
        if self.last_day is not None:
            clauses.append("created < ?")
            parameters.append((self.last_day + datetime.timedelta(days=1)).isoformat())
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", parameters


def search(connection: sqlite3.Connection, criteria: Search, *, limit: int, offset: int = 0) -> list[Transaction]:
    """The rows that match, newest first."""
    where, parameters = criteria.where()
    return fetch_all(connection, Transaction,
        f"SELECT {columns(Transaction)} FROM transactions{where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*parameters, limit, offset))


def count(connection: sqlite3.Connection, criteria: Search) -> int:
    where, parameters = criteria.where()
    return int(connection.execute(f"SELECT COUNT(*) FROM transactions{where}", parameters).fetchone()[0])


def authorizations_since(connection: sqlite3.Connection, since: str) -> list[AuthorizationOutcome]:
    """Authorizations created at or after `since` (compared as text: a prefilter, the caller applies the window)."""
    return fetch_all(connection, AuthorizationOutcome,
        "SELECT t.rc, t.reason, t.latency_ms, t.created, t.issuer, i.name AS issuer_name FROM transactions t"
        " LEFT JOIN issuers i ON i.code = t.issuer WHERE t.kind = 'authorization' AND t.created >= ?", (since,))


def add(connection: sqlite3.Connection, values: Mapping[str, object]) -> int:
    """One row (column → value, the others their defaults); its id."""
    return insert(connection, "transactions", values)


def add_with_event(connection: sqlite3.Connection, values: Mapping[str, object], kind: str, body: dict[str, Any], *,
                   at: datetime.datetime) -> None:
    """`add` (the row names its id) and `events.record` of its event: one statement on PostgreSQL (a data-modifying
    WITH, one round trip), two on SQLite."""
    if connection.dialect != "postgresql":
        add(connection, values)
        events.record(connection, kind, body, at=at)
        return
    names, marks = ", ".join(values), ", ".join("?" for _ in values)
    connection.execute(f"WITH added AS (INSERT INTO transactions ({names}) VALUES ({marks})) {events.INSERT}",
                       (*values.values(), *events.values(kind, body, at=at)))


def reserve_id(connection: sqlite3.Connection) -> int:
    """An id for the row about to be added (`add` with "id"), known before it so the RRN can be made of it.

    SQLite: the next one, exact inside the serial write transaction. PostgreSQL: drawn from the id's sequence,
    so two processes deciding at once never get the same one (a rolled-back decision leaves a gap)."""
    if connection.dialect == "postgresql":
        statement = "SELECT nextval(pg_get_serial_sequence('transactions', 'id'))"
    else:
        statement = "SELECT COALESCE(MAX(id), 0) + 1 FROM transactions"
    return int(connection.execute(statement).fetchone()[0])


def authorization(connection: sqlite3.Connection, tid: str, stan: str, local_date: str) -> Transaction | None:
    """The authorization a reversal names, by its key."""
    return fetch_one(connection, Transaction,
        f"SELECT {columns(Transaction)} FROM transactions WHERE kind = 'authorization' AND tid = ? AND stan = ?"
        " AND local_date = ?", (tid, stan, local_date))


def authorization_key(connection: sqlite3.Connection, tid: str, stan: str,
                      local_date: str) -> tuple[StoredAnswer | None, bool]:
    """What the key (TID, STAN, date) of a new authorization already has, in one statement: the answer stored under
    it (`answers.find` of kind 'authorization'), and whether a reversal came for this sale before the sale itself
    (its tombstone)."""
    stored, orphaned = None, False
    for row in connection.execute(
            "SELECT 'answer' AS found, request_hash, response FROM transactions WHERE kind = 'authorization'"
            " AND tid = ? AND stan = ? AND local_date = ?"
            " UNION ALL SELECT 'orphan', NULL, NULL FROM transactions WHERE kind = 'reversal' AND tid = ?"
            " AND original_stan = ? AND original_local_date = ? AND state = 'orphan'",
            (tid, stan, local_date, tid, stan, local_date)):
        if row["found"] == "answer":
            stored = StoredAnswer(row["request_hash"], row["response"])
        else:
            orphaned = True
    return stored, orphaned


def mark_reversed(connection: sqlite3.Connection, transaction_id: int, amount: int, refund: int, state: str) -> None:
    """Add a reversal's amount and refund to what was reversed of the sale (in SQL, not from the row read)."""
    connection.execute(
        "UPDATE transactions SET reversed_amount = reversed_amount + ?, reversed_charged = reversed_charged + ?,"
        " state = ? WHERE id = ?", (amount, refund, state, transaction_id))


def batch_debits(connection: sqlite3.Connection, tid: str, batch: int) -> tuple[int, int]:
    """(count, amount) of what stands in the batch: approved authorizations less their reversals, and advices."""
    count, amount = connection.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount - reversed_amount), 0) FROM transactions WHERE tid = ? AND batch = ?"
        " AND ((kind = 'authorization' AND state = 'approved') OR kind = 'advice')", (tid, batch)).fetchone()
    return int(count), int(amount)


def atc_used(connection: sqlite3.Connection, atc: int, *, token_id: int | None, account_id: int) -> bool:
    """Whether a verified cryptogram of this token (or, without one, of the card itself) already used the ATC."""
    if token_id is not None:
        return connection.execute("SELECT 1 FROM transactions WHERE token_id = ? AND atc = ? AND ac_verified = 1"
                                  " LIMIT 1", (token_id, atc)).fetchone() is not None
    return connection.execute("SELECT 1 FROM transactions WHERE account_id = ? AND token_id IS NULL AND atc = ?"
                              " AND ac_verified = 1 LIMIT 1", (account_id, atc)).fetchone() is not None


def approved_on(connection: sqlite3.Connection, account_id: int, day: str) -> tuple[int, int]:
    """(count, fen charged) of the account's approved authorizations created on `day` (ISO): its velocity."""
    count, total = connection.execute(
        "SELECT COUNT(*), COALESCE(SUM(charged), 0) FROM transactions WHERE account_id = ?"
        " AND kind = 'authorization' AND state = 'approved' AND substr(created, 1, 10) = ?",
        (account_id, day)).fetchone()
    return int(count), int(total)
