"""Build a working terminal from its configuration: the one place that knows which part goes where."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from hostproto.messages import psam_id
from terminal.capk import load_capks
from terminal.config import ConfigError, TerminalConfig
from terminal.events import Observer
from terminal.host.client import HostClient
from terminal.host.link import HostLink
from terminal.journal.journal import Journal
from terminal.kernel.params import KernelParams
from terminal.kernel.transit import Psam
from terminal.reader.base import Reader
from terminal.reader.choose import make_reader
from terminal.reader.pcsc import PcscReader
from terminal.sale import Counter
from terminal.ui.feedback import Feedback
from terminal.ui.gpio import open_gpio
from terminal.ui.reader_lights import ReaderLights
from terminal.ui.receipt import ReceiptPrinter
from terminal.ui.screen import Screen

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


def transit_psam(config: TerminalConfig, journal: Journal) -> Psam | None:
    """The software PSAM of `[transit] keys`, its serial and torn purchases kept in the journal (a restart must
    not forget a rider who may have paid); None without keys."""
    path = config.transit.keys
    if path is None:
        return None
    try:
        cities = json.loads(path.read_text())["cities"]
        keys = {city["city_code"]: bytes.fromhex(city["purchase_master_key"]) for city in cities}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError("transit.keys", f"{path} is not a transit key file ({type(error).__name__})",
                          "point it at the world's transit/psam.json") from None
    number = psam_id(config.terminal.id)
    return Psam(keys, number, memory=journal.transit_memory(number))


def observers(config: TerminalConfig, feedback: Feedback) -> list[Observer]:
    """What shows and keeps each transaction: the lights and message line, the paper receipt when configured."""
    shown: list[Observer] = [feedback.observe]
    if config.receipt.printer is not None:
        shown.append(ReceiptPrinter(config.receipt.printer, config.receipt.baud, config.terminal.merchant_id))
    return shown


@dataclass
class Parts:
    counter: Counter
    reader: Reader
    host: HostLink
    feedback: Feedback
    screen: Screen  # the customer display's model, in step with the feedback


@contextlib.contextmanager
def terminal(config: TerminalConfig) -> Iterator[Parts]:
    gpio = open_gpio(config.gpio)
    feedback = Feedback.from_config(config.gpio, gpio, log=log)
    screen = Screen()
    feedback.watch(screen.show)
    reader = make_reader(config, gpio)
    host = host_link(config)
    try:  # whatever fails from here (a key file, the reader), the journal, the reader and the GPIO are released
        counter = Counter(reader, kernel_params(config), host, observers=observers(config, feedback),
                          psam=transit_psam(config, host.journal))
        reader.open()
        if config.reader.feedback == "acr122u" and isinstance(reader, PcscReader):  # the config allows no other
            feedback.attach(ReaderLights(reader.indicate, between_taps=reader.escape_available()))
        yield Parts(counter, reader, host, feedback, screen)
    finally:
        feedback.close()  # first: its last state (the lights off) still reaches the reader's own LED
        reader.close()
        host.journal.close()
        gpio.cleanup()
