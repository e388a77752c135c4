"""Free text from people and phones: a string of printable characters, never longer than its limit.

Each limit is declared once, by the module that owns the field; this only enforces it, with a message that
names the field (the 400 a client sees).
"""

from __future__ import annotations


class FieldError(ValueError):
    """A field is missing, not text, too long or holds control characters; the message names it."""


def text(value: object, name: str, *, max_length: int, required: bool = True) -> str | None:
    if value is None:
        if required:
            raise FieldError(f"{name}: required")
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name}: must be a string")
    if len(value) > max_length:
        raise FieldError(f"{name}: at most {max_length} characters")
    if not value.isprintable():
        raise FieldError(f"{name}: printable characters only")
    return value
