"""Card, wallet and world files: JSON read with errors that name the field, written atomically.

A card file is the card's EEPROM: the ATC in it must never go backwards, so a crash while saving must
leave either the old or the new file, never half of one.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware.privatefiles import FILE_MODE, write_private

TEST_ONLY = "TEST ONLY: test keys for a simulated payment world; never use with real cards or money"


class FileFormatError(ValueError):
    """A card, wallet or world file is malformed; the message names the file and the field."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise FileFormatError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: not a text file (invalid UTF-8)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileFormatError(f"{path}: not valid JSON (line {error.lineno}: {error.msg})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{path}: expected a JSON object at the top level")
    return data


def write_json_atomic(path: Path, data: dict[str, Any], *, mode: int = FILE_MODE) -> None:
    """Card, wallet and world files are private (0600 in a 0700 folder) unless ``mode`` says otherwise."""
    write_private(path, json.dumps(data, indent=2, sort_keys=False) + "\n", mode=mode)


class Fields:
    """Typed, validating access to one JSON object; every error names the dotted path of the field."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise FileFormatError(f"{path}: must be an object")
        self.data: dict[str, Any] = data
        self.path = path

    def where(self, name: str) -> str:
        """The dotted path of field ``name``, for error messages."""
        return f"{self.path}.{name}" if self.path else name

    def only(self, *names: str) -> None:
        """Reject fields not in ``names``, so a typo in a file is an error rather than silently ignored."""
        for name in self.data:
            if name not in names:
                raise FileFormatError(f"{self.where(name)}: unknown field")

    def _get(self, name: str, kind: type | tuple[type, ...], what: str, default: Any) -> Any:
        if name not in self.data:
            if default is not _REQUIRED:
                return default
            raise FileFormatError(f"{self.where(name)}: missing")
        value = self.data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FileFormatError(f"{self.where(name)}: must be {what}")
        return value

    def str(self, name: str, *, pattern: str | None = None, default: Any = None) -> str:
        value = self._get(name, str, "a string", _REQUIRED if default is None else default)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise FileFormatError(f"{self.where(name)}: {value!r} does not match {pattern}")
        return value

    def int(self, name: str, *, minimum: int = 0, maximum: int | None = None, default: Any = None) -> int:
        value = self._get(name, int, "an integer", _REQUIRED if default is None else default)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"≥ {minimum}" if maximum is None else f"≥ {minimum} and ≤ {maximum}"
            raise FileFormatError(f"{self.where(name)}: must be an integer {bound}")
        return value

    def bool(self, name: str, *, default: Any = None) -> bool:
        return self._get(name, bool, "true or false", _REQUIRED if default is None else default)

    def hex(self, name: str, *, length: int | tuple[int, ...] | None = None, default: Any = None) -> bytes:
        text = self.str(name, default=default)
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise FileFormatError(f"{self.where(name)}: must be hexadecimal") from None
        allowed = (length,) if isinstance(length, int) else length
        if allowed is not None and len(value) not in allowed:
            sizes = " or ".join(str(n) for n in allowed)
            raise FileFormatError(f"{self.where(name)}: must be {sizes} bytes, not {len(value)}")
        return value

    def digits(self, name: str, *, length: int | tuple[int, int]) -> str:
        low, high = (length, length) if isinstance(length, int) else length
        return self.str(name, pattern=rf"[0-9]{{{low},{high}}}")

    def date(self, name: str) -> datetime.date:
        text = self.str(name)
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            raise FileFormatError(f"{self.where(name)}: must be a date YYYY-MM-DD") from None

    def choice(self, name: str, options: tuple[str, ...], *, default: Any = None) -> str:
        value = self.str(name, default=default)
        if value not in options:
            raise FileFormatError(f"{self.where(name)}: must be one of {', '.join(options)}")
        return value

    def obj(self, name: str) -> Fields:
        return Fields(self._get(name, dict, "an object", _REQUIRED), self.where(name))

    def objects(self, name: str) -> Iterator[Fields]:
        items = self._get(name, list, "a list", _REQUIRED)
        for index, item in enumerate(items):
            yield Fields(item, f"{self.where(name)}[{index}]")

    def header(self, expected_format: str, supported_version: int) -> None:
        """Every file says what it is and which version of the schema it follows."""
        found = self.str("format")
        if found != expected_format:
            raise FileFormatError(f"{self.where('format')}: this is a {found!r} file, not {expected_format!r}")
        version = self.int("version", minimum=1)
        if version > supported_version:
            raise FileFormatError(
                f"{self.where('version')}: version {version} is newer than this program reads ({supported_version})"
            )


_REQUIRED = object()
