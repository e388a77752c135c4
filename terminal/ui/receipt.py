"""Receipts on an ESC/POS thermal printer over a serial line: the optional paper copy of `SaleResult.receipt`.

Plain ASCII in the printer's default code page (¥ becomes "CNY ", the PAN is already masked); a printer
that is off or out of paper is logged, never a reason to fail a sale that the bank already approved.
"""

from __future__ import annotations

import logging

import serial

from terminal.events import Event, Step
from terminal.sale import SaleResult

log = logging.getLogger(__name__)
INITIALISE = b"\x1b@"  # ESC @
FEED_AND_CUT = b"\x1bd\x03\x1dV\x00"  # ESC d 3 (feed three lines), GS V 0 (full cut)


def escpos(lines: list[str]) -> bytes:
    """The bytes of one receipt: initialise, the lines, feed, cut."""
    text = "\n".join(lines).replace("¥", "CNY ").replace("•", "*")
    return INITIALISE + text.encode("ascii", "replace") + b"\n" + FEED_AND_CUT


def print_receipt(device: str, baud: int, lines: list[str]) -> bool:
    try:
        with serial.Serial(device, baudrate=baud, timeout=2, write_timeout=2) as printer:
            printer.write(escpos(lines))
            printer.flush()
    except (serial.SerialException, OSError) as error:
        log.warning("receipt printer %s: %s (the receipt is still in the log and /status)", device, error)
        return False
    return True


class ReceiptPrinter:
    """An observer of the pipeline: prints the receipt of every sale a card took part in (declined ones too)."""

    def __init__(self, device: str, baud: int, merchant: str) -> None:
        self.device, self.baud, self.merchant = device, baud, merchant

    def __call__(self, event: Event) -> None:
        if event.step is Step.DONE and isinstance(event.result, SaleResult) and event.result.taps:
            print_receipt(self.device, self.baud, event.result.receipt(self.merchant))
