"""The configured reader backend: a PN532 (pn532pi) or a PC/SC reader (pyscard, imported only when chosen)."""

from __future__ import annotations

from terminal.config import TerminalConfig
from terminal.reader.base import Reader
from terminal.reader.pn532 import Pn532Reader
from terminal.ui.gpio import Gpio


def make_reader(config: TerminalConfig, gpio: Gpio | None) -> Reader:
    if config.reader.type == "pcsc":
        from terminal.reader.pcsc import PcscReader

        return PcscReader(config)
    return Pn532Reader(config, gpio)
