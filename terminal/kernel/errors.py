"""Errors the kernel understands without importing the reader layer."""

from __future__ import annotations

__all__ = ["CardGone"]


class CardGone(Exception):
    """The card left the field or the link to it broke in the middle of an exchange.

    The kernel is pure logic and must not import the reader; the reader's ``CardRemoved`` subclasses this
    so that a torn tap becomes "present card again" instead of a crash.
    """
