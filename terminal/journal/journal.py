"""The terminal's write-ahead journal: every sale, reversal and advice, on disk before the host hears of it.

Why write ahead: a sale whose request may have reached the host but whose answer was lost (timeout, crash,
power cut) can have moved the cardholder's money. The journal records the intent before the request leaves,
so that after any failure the terminal knows which sales to reverse (CUP reason 98) and never charges twice.

One SQLite file, WAL with synchronous=FULL (a commit survives a power cut on the Pi's SD card), one
BEGIN IMMEDIATE transaction per state change. One process owns a journal at a time.

Sales (kind ``sale``)::

    INTENT ──record_answer──▶ ANSWERED (rc; approved when 00) ──queue_reversal(96/A0/06)──┐
      │ ├────mark_failed───▶ FAILED (the host never saw it: nothing to undo)             │
      │ └────mark_unknown / recover()───▶ NEEDS_REVERSAL (98) ◀───────────────────────────┘
      │                                        └──reversal_done──▶ REVERSED
      └─ queue_reversal ─▶ NEEDS_REVERSAL

Advices (kind ``advice``, offline approvals, store-and-forward)::

    ADVICE_PENDING ──advice_done──▶ ADVISED

Transit (the software PSAM's memory): the terminal transaction serial, and the purchases that may have been torn
(DEBIT sent, no verified answer) until the same card taps again. Kept here, committed before the DEBIT leaves, so
that a terminal restarted between the tear and the next tap still asks GET TRANSACTION PROVE and never charges the
fare twice. No key is stored: the PSAM derives the session key again from its master key and the card's random.

PCI: the journal never holds a full PAN or track 2 in clear. Sales keep a masked PAN only, and a reversal needs
nothing more (STAN, date, amount, reason). An advice must be resent byte for byte with its ICC data, so its body
is sealed with AES-256-GCM under a key file (created 0600) and dropped once the host has acknowledged it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NewType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emvcore.tags import mask_pan
from hostproto.messages import REVERSAL_REASONS, Totals
from hostproto.responses import (
    AdviceAnswer,
    AuthorizationAnswer,
    Refusal,
    ReversalAnswer,
    SettlementAnswer,
    SettlementRefusal,
)
from terminal.journal.crashpoints import crash_point

__all__ = [
    "MAX_STAN",
    "EntryId",
    "Journal",
    "JournalEntry",
    "JournalError",
    "PendingItem",
    "SaleId",
    "SettlementTicket",
    "State",
    "TransitMemory",
]

MAX_STAN = 999_999
KEY_BYTES = 32
_SEAL_VERSION = b"\x01"

EntryId = NewType("EntryId", int)
SaleId = EntryId  # a sale is an entry of kind "sale"


class State(StrEnum):
    INTENT = "INTENT"
    ANSWERED = "ANSWERED"
    FAILED = "FAILED"
    NEEDS_REVERSAL = "NEEDS_REVERSAL"
    REVERSED = "REVERSED"
    ADVICE_PENDING = "ADVICE_PENDING"
    ADVISED = "ADVISED"


class JournalError(Exception):
    """A journal misuse (a transition that is not allowed, an unknown entry) or an unreadable journal."""


_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE stans (stan TEXT NOT NULL, local_date TEXT NOT NULL, batch INTEGER, issued TEXT NOT NULL);
CREATE INDEX stans_stan ON stans (stan);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('sale', 'advice')),
    state TEXT NOT NULL,
    mti TEXT NOT NULL,
    tid TEXT NOT NULL,
    stan TEXT NOT NULL,
    local_date TEXT NOT NULL,
    batch INTEGER,
    amount INTEGER NOT NULL,
    pan_masked TEXT,
    entry_mode TEXT,
    rc TEXT,
    text TEXT,
    rrn TEXT,
    auth_code TEXT,
    charged INTEGER,
    answer TEXT,
    failure TEXT,
    sealed_request BLOB,
    reversal_reason TEXT,
    reversal_stan TEXT,
    reversal_local_date TEXT,
    reversal_outcome TEXT,
    queue_seq INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (kind, stan, local_date)
);
CREATE INDEX entries_batch ON entries (batch);
CREATE INDEX entries_queue ON entries (queue_seq);
CREATE TABLE settlements (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL,
    stan TEXT NOT NULL,
    local_date TEXT NOT NULL,
    totals TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('SENT', 'ANSWERED')),
    rc TEXT,
    balanced INTEGER,
    answer TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
)
"""

# version 2: the transit PSAM's memory (a terminal serial per PSAM terminal id, torn purchases per card)
_SCHEMA_2 = """
CREATE TABLE psam_serials (terminal_id TEXT PRIMARY KEY, serial INTEGER NOT NULL, updated TEXT NOT NULL);
CREATE TABLE psam_torn (
    terminal_id TEXT NOT NULL,
    card_number TEXT NOT NULL,
    purchase TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (terminal_id, card_number)
)
"""

# version 3: completed fares, each with its TAC, for transit clearing; a card's purse transaction number is
# recorded once, whatever is retried
_SCHEMA_3 = """
CREATE TABLE transit_fares (
    id INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    card_number TEXT NOT NULL,
    offline_serial INTEGER NOT NULL,
    record TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (card_number, offline_serial)
)
"""

# version 4: what transit clearing answered for each fare (NULL: not yet sent, or sent without an answer)
_SCHEMA_4 = """
ALTER TABLE transit_fares ADD COLUMN clearing TEXT;
CREATE INDEX transit_fares_to_clear ON transit_fares (terminal_id, id) WHERE clearing IS NULL
"""

# version 5: transit loads (top-up at the counter): a load whose CREDIT was sent (until the card proves what became
# of it), then credited with its TAC until the host confirmed it; one per card and online serial
_SCHEMA_5 = """
CREATE TABLE transit_loads (
    id INTEGER PRIMARY KEY,
    card_number TEXT NOT NULL,
    online_serial INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('credit_sent', 'credited', 'unproven', 'confirmed', 'refused')),
    record TEXT NOT NULL,
    confirm_stan TEXT,
    confirm_date TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (card_number, online_serial)
)
"""

_MIGRATIONS = (_SCHEMA, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4, _SCHEMA_5)  # the script that brings a journal to version i + 1
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class JournalEntry:
    """One sale or advice as the journal holds it (masked PAN only)."""

    id: EntryId
    kind: str
    state: State
    mti: str
    tid: str
    stan: str
    local_date: str
    batch: int | None
    amount: int
    pan_masked: str | None
    rc: str | None
    text: str | None
    rrn: str | None
    auth_code: str | None
    charged: int | None
    failure: str | None
    reversal_reason: str | None
    reversal_stan: str | None
    reversal_outcome: str | None
    attempts: int

    @property
    def approved(self) -> bool:
        return self.kind == "sale" and self.state is State.ANSWERED and self.rc == "00"


@dataclass(frozen=True)
class PendingItem:
    """A reversal or advice still to be acknowledged by the host, with the exact body to (re)send.

    `body` carries the first-attempt MTI (0400 / 0220); the sender switches to the repeat MTI (0401 / 0221)
    once `attempts` > 0: the host treats both as the same message.
    """

    entry_id: EntryId
    kind: str  # "reversal" or "advice"
    stan: str
    local_date: str
    amount: int
    attempts: int
    body: dict[str, Any]


@dataclass(frozen=True)
class SettlementTicket:
    """The STAN and date to send a settlement under; the same again while an earlier one is unanswered."""

    batch: int
    stan: str
    local_date: str
    totals: Totals
    reused: bool


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_or_create_key(key_file: Path) -> bytes:
    """The journal key, created whole (write, fsync, link into place) so a power cut never leaves half a key,
    and refused when others can read it: a readable key makes the sealed advices readable too."""
    if not key_file.exists():
        temporary = key_file.with_name(f".{key_file.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, secrets.token_bytes(KEY_BYTES))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temporary, key_file)  # fails if another process created it first: use theirs
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        _fsync_directory(key_file.parent)
    mode = key_file.stat().st_mode
    if mode & 0o077:
        raise JournalError(f"{key_file}: journal key must be readable by its owner only (chmod 600)")
    key = key_file.read_bytes()
    if len(key) != KEY_BYTES:
        raise JournalError(f"{key_file}: journal key must be {KEY_BYTES} bytes")
    return key


class Journal:
    """The write-ahead journal; see the module docstring for the states. Not thread-safe: one owner."""

    def __init__(self, connection: sqlite3.Connection, key: bytes, clock: Callable[[], datetime.datetime]) -> None:
        self._db = connection
        self._aead = AESGCM(key)
        self._clock = clock

    # --- opening -----------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, key_file: str | Path | None = None,
             clock: Callable[[], datetime.datetime] = _now) -> Journal:
        """Open (or create) the journal at `path`; the key file defaults to ``<path>.key`` beside it.

        On a real terminal keep the key file on other storage than the journal, so that a copied journal
        alone reveals nothing.
        """
        path = Path(path)
        key = load_or_create_key(Path(key_file) if key_file is not None else path.with_name(path.name + ".key"))
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives -wal/-shm the same mode
        connection = sqlite3.connect(path, timeout=10, isolation_level=None)
        connection.row_factory = sqlite3.Row
        try:
            if connection.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise JournalError(f"{path}: WAL mode not available")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA busy_timeout=10000")
            journal = cls(connection, key, clock)
            journal._migrate()
        except BaseException:
            connection.close()
            raise
        return journal

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(f"journal schema {version} is newer than this program ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        with self._transaction():
            # re-read under the write lock: another process may have migrated meanwhile
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            for script in _MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back by itself (a full disk, an I/O error)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as error:  # the write-ahead failed: nothing may go to the host
            raise JournalError(f"the journal cannot be written ({error}): is the disk full or read-only?") from None

    # --- meta: batch and STAN ----------------------------------------------------------------------------------

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row["value"])

    def _set_meta(self, name: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value ="
                         " excluded.value", (name, value))

    def _stamp(self) -> str:
        return self._clock().isoformat()

    def today(self) -> str:
        """Terminal local date MMDD (DE13), from the journal's clock."""
        return f"{self._clock():%m%d}"

    @property
    def batch(self) -> int | None:
        """The open batch (from the last sign-on), or None when signed off (never signed on, or settled)."""
        if self._meta("signed_on") != "1":
            return None
        value = self._meta("batch")
        return None if value is None else int(value)

    @property
    def last_batch(self) -> int | None:
        value = self._meta("batch")
        return None if value is None else int(value)

    def set_batch(self, batch: int) -> None:
        """Record a sign-on's batch: every sale from now on belongs to it."""
        with self._transaction():
            self._set_meta("batch", str(batch))
            self._set_meta("signed_on", "1")

    def sign_off(self) -> None:
        """The host no longer has us signed on (77, or a closed batch): sign on before the next sale."""
        with self._transaction():
            self._set_meta("signed_on", "0")

    def next_stan(self, local_date: str | None = None) -> str:
        """The next STAN (000001..999999, wrapping), persisted before it is used so a restart never reissues one.

        After a wrap, STANs already issued on the same day or in the open batch are skipped: the host's
        idempotency key is (TID, STAN, date), and a reused STAN would replay an old answer or be refused (94).
        """
        with self._transaction():
            return self._allocate_stan(local_date or self.today())

    def _allocate_stan(self, local_date: str) -> str:
        counter = int(self._meta("stan") or 0)
        batch = self.batch
        for _ in range(MAX_STAN):
            counter = counter % MAX_STAN + 1
            stan = f"{counter:06d}"
            used = self._db.execute(
                "SELECT 1 FROM stans WHERE stan = ? AND (local_date = ? OR (batch IS NOT NULL AND batch = ?))",
                (stan, local_date, batch)).fetchone()
            if used is None:
                break
        else:
            raise JournalError("every STAN has been used today or in this batch: settle first")
        # only the current day and the open batch matter for reuse: older STANs are forgotten
        self._db.execute("DELETE FROM stans WHERE local_date != ? AND (batch IS NULL OR batch IS NOT ?)",
                         (local_date, batch))
        self._db.execute("INSERT INTO stans (stan, local_date, batch, issued) VALUES (?, ?, ?, ?)",
                         (stan, local_date, batch, self._stamp()))
        self._set_meta("stan", str(counter))
        return stan

    # --- sealing -----------------------------------------------------------------------------------------------

    @staticmethod
    def _aad(stan: str, local_date: str) -> bytes:
        # binds a sealed body to its row: a body copied onto another advice does not open
        return f"quickpass-journal/advice/{stan}/{local_date}".encode()

    def _seal(self, body: Mapping[str, Any], stan: str, local_date: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return _SEAL_VERSION + nonce + self._aead.encrypt(nonce, _dumps(body).encode(), self._aad(stan, local_date))

    def _unseal(self, sealed: bytes, stan: str, local_date: str) -> dict[str, Any]:
        if sealed[:1] != _SEAL_VERSION:
            raise JournalError(f"advice {stan}: unknown sealing version")
        try:
            plain = self._aead.decrypt(sealed[1:13], sealed[13:], self._aad(stan, local_date))
        except InvalidTag:
            raise JournalError(f"advice {stan}: sealed body does not open with this journal key") from None
        value = json.loads(plain)
        if not isinstance(value, dict):
            raise JournalError(f"advice {stan}: sealed body is not an object")
        return value

    # --- entries -----------------------------------------------------------------------------------------------

    def _row(self, entry_id: int) -> sqlite3.Row:
        row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise JournalError(f"no journal entry {entry_id}")
        return row

    @staticmethod
    def _entry(row: sqlite3.Row) -> JournalEntry:
        return JournalEntry(
            id=EntryId(row["id"]), kind=row["kind"], state=State(row["state"]), mti=row["mti"], tid=row["tid"],
            stan=row["stan"], local_date=row["local_date"], batch=row["batch"], amount=row["amount"],
            pan_masked=row["pan_masked"], rc=row["rc"], text=row["text"], rrn=row["rrn"],
            auth_code=row["auth_code"], charged=row["charged"], failure=row["failure"],
            reversal_reason=row["reversal_reason"], reversal_stan=row["reversal_stan"],
            reversal_outcome=row["reversal_outcome"], attempts=row["attempts"],
        )

    def entry(self, entry_id: int) -> JournalEntry:
        return self._entry(self._row(entry_id))

    def entries(self, *, batch: int | None = None) -> list[JournalEntry]:
        """Every sale and advice, oldest first (of one batch when given): the receipt reprint and audit view."""
        if batch is None:
            rows = self._db.execute("SELECT * FROM entries ORDER BY id").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM entries WHERE batch = ? ORDER BY id", (batch,)).fetchall()
        return [self._entry(row) for row in rows]

    def _next_queue_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM entries").fetchone()[0])

    def _check(self, row: sqlite3.Row, kind: str, *states: State) -> None:
        if row["kind"] != kind:
            raise JournalError(f"journal entry {row['id']} is a {row['kind']}, not a {kind}")
        if row["state"] not in states:
            raise JournalError(f"journal entry {row['id']} is {row['state']}, expected "
                               + " or ".join(str(s) for s in states))

    def begin_sale(self, stan: str, local_date: str, amount: int, request: Mapping[str, Any]) -> SaleId:
        """INTENT, committed before the request leaves: from here on a lost answer means a reversal."""
        pan = request.get("pan")
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO entries (kind, state, mti, tid, stan, local_date, batch, amount, pan_masked, entry_mode,"
                " created, updated) VALUES ('sale', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (State.INTENT, str(request.get("mti", "0200")), str(request["tid"]), stan, local_date,
                 request.get("batch"), amount, mask_pan(pan) if isinstance(pan, str) else None,
                 request.get("entry_mode"), self._stamp(), self._stamp()),
            )
        return SaleId(int(cursor.lastrowid or 0))

    def record_answer(self, sale_id: SaleId, answer: AuthorizationAnswer | Refusal) -> None:
        """ANSWERED: the host's decision (approved when rc 00; a 94 is a decline). The answer holds no card data:
        as parsed, it keeps only the fields `hostproto.responses` knows (of the ICC data, tag 91)."""
        sale = answer if isinstance(answer, AuthorizationAnswer) else None
        with self._transaction():
            self._check(self._row(sale_id), "sale", State.INTENT)
            self._db.execute(
                "UPDATE entries SET state = ?, rc = ?, text = ?, rrn = ?, auth_code = ?, charged = ?, answer = ?,"
                " updated = ? WHERE id = ?",
                (State.ANSWERED, answer.rc, answer.text, sale.rrn if sale else None, sale.auth_code if sale else None,
                 sale.charged if sale else None, _dumps(answer.as_dict()), self._stamp(), sale_id),
            )

    def mark_failed(self, sale_id: SaleId, why: str) -> None:
        """FAILED: the host certainly never processed the request (unreachable, or refused with 4xx)."""
        with self._transaction():
            self._check(self._row(sale_id), "sale", State.INTENT)
            self._db.execute("UPDATE entries SET state = ?, failure = ?, updated = ? WHERE id = ?",
                             (State.FAILED, why[:200], self._stamp(), sale_id))

    def mark_unknown(self, sale_id: SaleId) -> None:
        """NEEDS_REVERSAL reason 98: the request left and no answer came back, so the host may have approved."""
        self.queue_reversal(sale_id, "98")

    def queue_reversal(self, sale_id: SaleId, reason: str) -> None:
        """NEEDS_REVERSAL: the reversal gets its own STAN and date now, so every resend is the same message."""
        if reason not in REVERSAL_REASONS:
            raise JournalError(f"reversal reason must be one of {', '.join(REVERSAL_REASONS)}")
        with self._transaction():
            row = self._row(sale_id)
            if row["kind"] == "sale" and row["state"] in (State.NEEDS_REVERSAL, State.REVERSED):
                return  # already queued or done: a second reversal would only repeat the first
            self._check(row, "sale", State.INTENT, State.ANSWERED)
            self._queue_reversal(row, reason)

    def _queue_reversal(self, row: sqlite3.Row, reason: str) -> None:
        local_date = self.today()
        stan = self._allocate_stan(local_date)
        self._db.execute(
            "UPDATE entries SET state = ?, reversal_reason = ?, reversal_stan = ?, reversal_local_date = ?,"
            " queue_seq = ?, attempts = 0, updated = ? WHERE id = ?",
            (State.NEEDS_REVERSAL, reason, stan, local_date, self._next_queue_seq(), self._stamp(), row["id"]),
        )

    def reversal_done(self, sale_id: SaleId, answer: ReversalAnswer | None = None) -> None:
        """REVERSED: the host acknowledged the reversal (rc 00); its `outcome` says what it undid."""
        with self._transaction():
            row = self._row(sale_id)
            if row["state"] == State.REVERSED:
                return
            self._check(row, "sale", State.NEEDS_REVERSAL)
            outcome = None if answer is None else answer.outcome
            self._db.execute("UPDATE entries SET state = ?, reversal_outcome = ?, queue_seq = NULL, updated = ?"
                             " WHERE id = ?", (State.REVERSED, outcome, self._stamp(), sale_id))

    def queue_advice(self, stan: str, request: Mapping[str, Any]) -> EntryId:
        """ADVICE_PENDING: an offline approval to forward; the exact body is sealed, the row keeps a masked PAN."""
        local_date = str(request["local_date"])
        pan = request.get("pan")
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO entries (kind, state, mti, tid, stan, local_date, batch, amount, pan_masked, entry_mode,"
                " sealed_request, queue_seq, created, updated)"
                " VALUES ('advice', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (State.ADVICE_PENDING, str(request.get("mti", "0220")), str(request["tid"]), stan, local_date,
                 request.get("batch"), int(request["amount"]), mask_pan(pan) if isinstance(pan, str) else None,
                 request.get("entry_mode"), self._seal(request, stan, local_date), self._next_queue_seq(),
                 self._stamp(), self._stamp()),
            )
        return EntryId(int(cursor.lastrowid or 0))

    def advice_done(self, advice_id: EntryId, answer: AdviceAnswer) -> None:
        """ADVISED: the host holds the sale now, so the sealed card data is dropped for good."""
        with self._transaction():
            row = self._row(advice_id)
            if row["state"] == State.ADVISED:
                return
            self._check(row, "advice", State.ADVICE_PENDING)
            self._db.execute(
                "UPDATE entries SET state = ?, rc = ?, text = ?, rrn = ?, charged = ?, answer = ?,"
                " sealed_request = NULL, queue_seq = NULL, updated = ? WHERE id = ?",
                (State.ADVISED, answer.rc, answer.text, answer.rrn, answer.charged, _dumps(answer.as_dict()),
                 self._stamp(), advice_id),
            )

    def note_attempt(self, entry_id: EntryId) -> int:
        """Count a send before it leaves, so a resend after a crash goes out as a repeat (0401 / 0221)."""
        with self._transaction():
            self._db.execute("UPDATE entries SET attempts = attempts + 1, updated = ? WHERE id = ?",
                             (self._stamp(), entry_id))
            return int(self._row(entry_id)["attempts"])

    # --- what to send, recovery, totals ------------------------------------------------------------------------

    def pending(self) -> list[PendingItem]:
        """Reversals and advices not yet acknowledged, in the order they were queued."""
        rows = self._db.execute("SELECT * FROM entries WHERE state IN (?, ?) ORDER BY queue_seq",
                                (State.NEEDS_REVERSAL, State.ADVICE_PENDING)).fetchall()
        return [self._pending(row) for row in rows]

    def _pending(self, row: sqlite3.Row) -> PendingItem:
        if row["kind"] == "advice":
            body = self._unseal(row["sealed_request"], row["stan"], row["local_date"])
            return PendingItem(EntryId(row["id"]), "advice", row["stan"], row["local_date"], row["amount"],
                               row["attempts"], body)
        body = {
            "mti": "0400", "tid": row["tid"], "stan": row["reversal_stan"], "local_date": row["reversal_local_date"],
            "reason": row["reversal_reason"], "original_stan": row["stan"], "original_local_date": row["local_date"],
            "amount": row["amount"],
        }
        return PendingItem(EntryId(row["id"]), "reversal", row["reversal_stan"], row["reversal_local_date"],
                           row["amount"], row["attempts"], body)

    def recover(self) -> list[PendingItem]:
        """After a crash: every sale still in INTENT may have reached the host, so it needs a reversal (98).
        Returns the reversals this queued (an empty list when there was nothing to recover)."""
        with self._transaction():
            rows = self._db.execute("SELECT * FROM entries WHERE kind = 'sale' AND state = ? ORDER BY id",
                                    (State.INTENT,)).fetchall()
            for row in rows:
                self._queue_reversal(row, "98")
            ids = [row["id"] for row in rows]
            return [self._pending(self._row(entry_id)) for entry_id in ids]

    def counts(self) -> dict[str, int]:
        """Entries per state: for the status screen and the health check."""
        rows = self._db.execute("SELECT state, COUNT(*) AS n FROM entries GROUP BY state").fetchall()
        result = {str(state): 0 for state in State}
        result.update({row["state"]: int(row["n"]) for row in rows})
        return result

    def totals(self, batch: int) -> Totals:
        """The batch as the host should count it: approved sales not reversed (nor waiting to be), plus every
        offline advice (the card approved those). Sale amounts (DE4), not the promotion-discounted charge."""
        count, amount = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM entries WHERE batch = ? AND ("
            "(kind = 'sale' AND state = ? AND rc = '00') OR (kind = 'advice' AND state IN (?, ?)))",
            (batch, State.ANSWERED, State.ADVICE_PENDING, State.ADVISED),
        ).fetchone()
        return Totals(debit_count=int(count), debit_amount=int(amount), credit_count=0, credit_amount=0)

    # --- settlement --------------------------------------------------------------------------------------------

    def begin_settlement(self, batch: int, totals: Totals) -> SettlementTicket:
        """The settlement to send: an unanswered one with the same totals is resent under its own STAN (the host
        may have closed the batch on it), otherwise a new STAN."""
        with self._transaction():
            row = self._db.execute(
                "SELECT * FROM settlements WHERE batch = ? AND state = 'SENT' AND totals = ? ORDER BY id DESC",
                (batch, _dumps(totals.as_dict())),
            ).fetchone()
            if row is not None:
                return SettlementTicket(batch, row["stan"], row["local_date"], totals, True)
            local_date = self.today()
            stan = self._allocate_stan(local_date)
            self._db.execute(
                "INSERT INTO settlements (batch, stan, local_date, totals, state, created, updated)"
                " VALUES (?, ?, ?, ?, 'SENT', ?, ?)",
                (batch, stan, local_date, _dumps(totals.as_dict()), self._stamp(), self._stamp()),
            )
            return SettlementTicket(batch, stan, local_date, totals, False)

    def record_settlement(self, ticket: SettlementTicket,
                          answer: SettlementAnswer | SettlementRefusal | Refusal) -> None:
        """The host's verdict; a balanced one closes the batch in the same commit (sign on again for a new one)."""
        balanced = isinstance(answer, SettlementAnswer) and answer.balanced
        with self._transaction():
            self._db.execute(
                "UPDATE settlements SET state = 'ANSWERED', rc = ?, balanced = ?, answer = ?, updated = ?"
                " WHERE batch = ? AND stan = ? AND local_date = ?",
                (answer.rc, int(balanced), _dumps(answer.as_dict()), self._stamp(), ticket.batch, ticket.stan,
                 ticket.local_date),
            )
            if balanced and self.batch == ticket.batch:
                self._set_meta("signed_on", "0")

    def settled(self, batch: int) -> bool:
        return self._db.execute("SELECT 1 FROM settlements WHERE batch = ? AND balanced = 1",
                                (batch,)).fetchone() is not None

    # --- transit: the software PSAM's memory -------------------------------------------------------------------

    def transit_loads(self) -> TransitLoads:
        """The loads' memory (`terminal.kernel.transit_load.LoadMemory`) and their confirmations, in this journal."""
        return TransitLoads(self)

    def transit_memory(self, terminal_id: bytes) -> TransitMemory:
        """The PSAM memory of one PSAM terminal id (`terminal.kernel.transit.PsamMemory`), in this journal."""
        return TransitMemory(self, terminal_id.hex().upper())


class TransitMemory:
    """What a software PSAM must not forget across a restart, committed in the journal's SQLite file.

    `purchase` rows are plain JSON written by the PSAM (card number, amounts, serials, the card's random):
    a transit card number, no payment PAN and no key.
    """

    def __init__(self, journal: Journal, terminal_id: str) -> None:
        self._journal = journal
        self._terminal_id = terminal_id

    def serial(self) -> int:
        row = self._journal._db.execute("SELECT serial FROM psam_serials WHERE terminal_id = ?",
                                        (self._terminal_id,)).fetchone()
        return 0 if row is None else int(row["serial"])

    def store_serial(self, serial: int) -> None:
        """Committed before the purchase it numbers is sent, so a restart never reuses a terminal serial."""
        journal = self._journal
        with journal._transaction():
            journal._db.execute(
                "INSERT INTO psam_serials (terminal_id, serial, updated) VALUES (?, ?, ?) ON CONFLICT (terminal_id)"
                " DO UPDATE SET serial = excluded.serial, updated = excluded.updated",
                (self._terminal_id, serial, journal._stamp()))

    def remember_torn(self, card_number: str, purchase: Mapping[str, Any]) -> None:
        journal = self._journal
        with journal._transaction():
            journal._db.execute(
                "INSERT INTO psam_torn (terminal_id, card_number, purchase, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (terminal_id, card_number) DO UPDATE SET purchase = excluded.purchase,"
                " created = excluded.created",
                (self._terminal_id, card_number, _dumps(dict(purchase)), journal._stamp()))
        crash_point("fare.torn_saved")

    def torn(self, card_number: str) -> dict[str, Any] | None:
        row = self._journal._db.execute("SELECT purchase FROM psam_torn WHERE terminal_id = ? AND card_number = ?",
                                        (self._terminal_id, card_number)).fetchone()
        return None if row is None else dict(json.loads(row["purchase"]))

    def forget_torn(self, card_number: str) -> None:
        """The card never debited the torn purchase (GET TRANSACTION PROVE: not found): nothing to keep."""
        journal = self._journal
        with journal._transaction():
            journal._db.execute("DELETE FROM psam_torn WHERE terminal_id = ? AND card_number = ?",
                                (self._terminal_id, card_number))

    def complete(self, card_number: str, fare: Mapping[str, Any]) -> None:
        crash_point("fare.debited")  # the card has answered; until this commits the purchase still counts as torn
        journal = self._journal
        with journal._transaction():
            journal._db.execute("DELETE FROM psam_torn WHERE terminal_id = ? AND card_number = ?",
                                (self._terminal_id, card_number))
            journal._db.execute(
                "INSERT INTO transit_fares (terminal_id, card_number, offline_serial, record, created)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (card_number, offline_serial) DO NOTHING",
                (self._terminal_id, card_number, int(fare["offline_serial"]), _dumps(dict(fare)), journal._stamp()))

    def fares(self) -> list[dict[str, Any]]:
        rows = self._journal._db.execute("SELECT record FROM transit_fares WHERE terminal_id = ? ORDER BY id",
                                         (self._terminal_id,)).fetchall()
        return [dict(json.loads(row["record"])) for row in rows]

    def to_clear(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The oldest fares transit clearing has not answered yet, with their row ids."""
        rows = self._journal._db.execute(
            "SELECT id, record FROM transit_fares WHERE terminal_id = ? AND clearing IS NULL ORDER BY id LIMIT ?",
            (self._terminal_id, limit)).fetchall()
        return [(int(row["id"]), dict(json.loads(row["record"]))) for row in rows]

    def cleared(self, answers: Mapping[int, str]) -> None:
        """Transit clearing's answer per fare row ("cleared", "repeat", "refused: why"), in one commit."""
        journal = self._journal
        with journal._transaction():
            journal._db.executemany(
                "UPDATE transit_fares SET clearing = ? WHERE id = ? AND terminal_id = ? AND clearing IS NULL",
                [(answer, row_id, self._terminal_id) for row_id, answer in answers.items()])

    def clearing_counts(self) -> dict[str, int]:
        """Fares by clearing state: waiting (not answered yet), cleared (a repeat included) and refused."""
        rows = self._journal._db.execute(
            "SELECT CASE WHEN clearing IS NULL THEN 'waiting' WHEN clearing LIKE 'refused%' THEN 'refused'"
            " ELSE 'cleared' END AS state, COUNT(*) AS n FROM transit_fares WHERE terminal_id = ? GROUP BY state",
            (self._terminal_id,)).fetchall()
        counts = {"waiting": 0, "cleared": 0, "refused": 0}
        counts.update({row["state"]: int(row["n"]) for row in rows})
        return counts

    def torn_count(self) -> int:
        return int(self._journal._db.execute("SELECT COUNT(*) FROM psam_torn WHERE terminal_id = ?",
                                             (self._terminal_id,)).fetchone()[0])


@dataclass(frozen=True)
class LoadToConfirm:
    """A credited load whose TAC the host has not acknowledged yet; the STAN is kept once given (a resend is a
    retransmission the host answers from its store)."""

    load_id: int
    record: dict[str, Any]
    stan: str | None
    local_date: str | None


class TransitLoads:
    """Loads at this counter: the one whose CREDIT may have reached a card (per card), and the credited ones until
    the host confirmed their TAC. Plain JSON of transit card numbers, amounts, serials, MAC2 and TAC: no key."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def remember_credit(self, card_number: str, load: Mapping[str, Any]) -> None:
        journal = self._journal
        with journal._transaction():
            journal._db.execute(
                "INSERT INTO transit_loads (card_number, online_serial, state, record, created, updated)"
                " VALUES (?, ?, 'credit_sent', ?, ?, ?) ON CONFLICT (card_number, online_serial) DO UPDATE SET"
                " record = excluded.record, updated = excluded.updated WHERE state = 'credit_sent'",
                (card_number, int(load["online_serial"]), _dumps(dict(load)), journal._stamp(), journal._stamp()))
        crash_point("load.credit_saved")

    def credit_pending(self, card_number: str) -> dict[str, Any] | None:
        row = self._journal._db.execute(
            "SELECT record FROM transit_loads WHERE card_number = ? AND state = 'credit_sent' ORDER BY id DESC",
            (card_number,)).fetchone()
        return None if row is None else dict(json.loads(row["record"]))

    def forget_credit(self, card_number: str) -> None:
        journal = self._journal
        with journal._transaction():
            journal._db.execute("DELETE FROM transit_loads WHERE card_number = ? AND state = 'credit_sent'",
                                (card_number,))

    def complete_load(self, card_number: str, load: Mapping[str, Any]) -> None:
        crash_point("load.credited")  # the card has answered; until this commits the load counts as torn
        journal = self._journal
        state = "credited" if load.get("tac") else "unproven"
        with journal._transaction():
            journal._db.execute(
                "UPDATE transit_loads SET state = ?, record = ?, updated = ? WHERE card_number = ? AND"
                " online_serial = ? AND state = 'credit_sent'",
                (state, _dumps(dict(load)), journal._stamp(), card_number, int(load["online_serial"])))

    def to_confirm(self) -> list[LoadToConfirm]:
        rows = self._journal._db.execute(
            "SELECT id, record, confirm_stan, confirm_date FROM transit_loads WHERE state = 'credited' ORDER BY id"
        ).fetchall()
        return [LoadToConfirm(row["id"], dict(json.loads(row["record"])), row["confirm_stan"], row["confirm_date"])
                for row in rows]

    def give_stan(self, load_id: int, stan: str, local_date: str) -> None:
        """The confirmation's STAN, committed before it is first sent."""
        journal = self._journal
        with journal._transaction():
            journal._db.execute("UPDATE transit_loads SET confirm_stan = ?, confirm_date = ?, updated = ?"
                                " WHERE id = ?", (stan, local_date, journal._stamp(), load_id))

    def confirmed(self, load_id: int, *, accepted: bool) -> None:
        journal = self._journal
        with journal._transaction():
            journal._db.execute("UPDATE transit_loads SET state = ?, updated = ? WHERE id = ?",
                                ("confirmed" if accepted else "refused", journal._stamp(), load_id))

    def loads(self) -> list[dict[str, Any]]:
        """Every load this counter credited (its record and state), oldest first."""
        rows = self._journal._db.execute(
            "SELECT record, state FROM transit_loads WHERE state != 'credit_sent' ORDER BY id").fetchall()
        return [{**json.loads(row["record"]), "state": row["state"]} for row in rows]
