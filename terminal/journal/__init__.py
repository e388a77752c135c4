"""The terminal's write-ahead journal of sales, reversals and advices (SQLite, crash-safe)."""

from terminal.journal.journal import EntryId, Journal, JournalEntry, JournalError, PendingItem, SaleId, State

__all__ = ["EntryId", "Journal", "JournalEntry", "JournalError", "PendingItem", "SaleId", "State"]
