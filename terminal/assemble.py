"""Build a working terminal from its configuration: the one place that knows which part goes where."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from terminal.capk import load_capks
from terminal.config import TerminalConfig
from terminal.host.client import HostClient
from terminal.host.link import HostLink
from terminal.journal.journal import Journal
from terminal.kernel.params import KernelParams
from terminal.reader.pn532 import Pn532Reader
from terminal.sale import Counter, SaleResult
from terminal.ui.feedback import Feedback
from terminal.ui.gpio import open_gpio
from terminal.ui.receipt import print_receipt

log = logging.getLogger("terminal")


def kernel_params(config: TerminalConfig) -> KernelParams:
    return KernelParams(
        country=config.terminal.country, currency=config.terminal.currency,
        contactless_limit=config.limits.contactless_limit, floor_limit=config.limits.floor_limit,
        cvm_limit=config.limits.cvm_limit, supported_aids=config.limits.supported_aids,
        aid_limits=config.limits.aid_limits,
        capks=load_capks(config.capk.file),
    )


def host_link(config: TerminalConfig, *, clock: Callable[[], float] = time.time) -> HostLink:
    client = HostClient(config.host.url, config.terminal.id, config.host.key, timeout=config.host.timeout,
                        clock=clock)
    return HostLink(client, Journal.open(config.journal.path), tid=config.terminal.id)


@dataclass
class Parts:
    counter: Counter
    reader: Pn532Reader
    host: HostLink
    feedback: Feedback


@contextlib.contextmanager
def terminal(config: TerminalConfig) -> Iterator[Parts]:
    gpio = open_gpio(config.gpio)
    feedback = Feedback.from_config(config.gpio, gpio, log=log)
    reader = Pn532Reader(config, gpio)
    params = kernel_params(config)
    host = host_link(config)
    printer = None
    if config.receipt.printer is not None:
        device, baud, merchant = config.receipt.printer, config.receipt.baud, config.terminal.merchant_id

        def printer(sale: SaleResult) -> None:
            print_receipt(device, baud, sale.receipt(merchant))

    reader.open()
    try:
        yield Parts(Counter(reader, params, feedback, host, printer=printer), reader, host, feedback)
    finally:
        reader.close()
        feedback.close()
        host.journal.close()
        gpio.cleanup()
