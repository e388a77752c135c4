"""A terminal.toml pointed at another reader, for the tests of the reader backends."""

from __future__ import annotations

from pathlib import Path


def with_reader(config: Path, section: str) -> Path:
    """`config` with its [reader] section replaced by `section` (the lines after the header)."""
    text = config.read_text()
    start = text.index("[reader]\n")
    end = text.index("\n[", start + 1)
    config.write_text(text[:start] + "[reader]\n" + section + text[end:])
    return config
