"""`pos-terminal doctor`: check every part of the terminal, each with what to do when it fails."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from terminal.assemble import host_link, kernel_params
from terminal.config import TerminalConfig
from terminal.host.client import HostError, HostRejected
from terminal.reader.base import Reader
from terminal.reader.choose import make_reader
from terminal.reader.pcsc import PcscReader
from terminal.reader.pcsc_escape import HINT as ESCAPE_HINT
from terminal.ui.gpio import open_gpio


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def doctor(config: TerminalConfig, reader: Reader | None = None, *,
           clock: Callable[[], float] = time.time) -> list[Check]:
    """Reader, GPIO backend, CAPK, host reachability and clock (`clock`: the terminal's, unix seconds): each with
    pass/fail and what to do. Every check runs, whatever failed before it: a person fixes them all in one go.
    Without `reader` the configured one is opened (and closed) here."""
    checks: list[Check] = []
    with _configured_reader(config, reader, checks) as opened:
        if opened is not None:
            try:
                checks.append(Check("reader", True, opened.identify()))
                if config.reader.feedback != "none" and isinstance(opened, PcscReader):
                    checks.append(_reader_feedback_check(opened))
            except Exception as error:  # any failure is a finding to report
                checks.append(Check("reader", False, str(error), reader_hint(config)))
    try:
        capks = kernel_params(config).capks
        checks.append(Check("capk", bool(capks), f"{len(capks)} CA keys from {config.capk.file}",
                            "" if capks else "the CAPK file is empty: offline approvals will fail fDDA"))
    except Exception as error:
        checks.append(Check("capk", False, str(error), "point [capk] file at the world's scheme/capk.json"))
    checks += _host_checks(config, clock)
    return checks


def _reader_feedback_check(reader: PcscReader) -> Check:
    """Passes either way: without the escape the reader's LED and buzzer still follow every tap, not the idle time."""
    if reader.escape_available():
        return Check("reader feedback", True, "the reader's LED and buzzer follow the terminal, between taps too")
    return Check("reader feedback", True, ESCAPE_HINT)


def reader_hint(config: TerminalConfig) -> str:
    if config.reader.type == "pcsc":
        return ("check that pcscd runs, the reader is plugged in and [reader] name is part of its name (pcsc_scan -r "
                "lists the readers pcscd sees)")
    return "check the wiring, the HSU switches and [reader] port"


@contextlib.contextmanager
def _configured_reader(config: TerminalConfig, reader: Reader | None, checks: list[Check]) -> Iterator[Reader | None]:
    """The reader to identify (None: opening it failed, already reported), and the GPIO check on the way."""
    if reader is not None:
        checks.append(_gpio_check(config))
        yield reader
        return
    try:
        gpio = open_gpio(config.gpio)
    except Exception as error:
        checks.append(Check("gpio", False, f"backend {config.gpio.backend}: {error}",
                            "on a Pi: RPi.GPIO (or rpi-lgpio) installed, the user in the gpio group"))
        gpio = None
    else:
        checks.append(_gpio_check(config))
    own = None
    try:
        own = make_reader(config, gpio)
        own.open()
    except Exception as error:
        checks.append(Check("reader", False, str(error), reader_hint(config)))
        yield None
    else:
        yield own
    finally:
        if own is not None:
            with contextlib.suppress(Exception):
                own.close()
        if gpio is not None:
            with contextlib.suppress(Exception):
                gpio.cleanup()


def _gpio_check(config: TerminalConfig) -> Check:
    return Check("gpio", True, f"backend {config.gpio.backend}"
                 + (" (simulated: lights and tones are recorded, not shown)" if config.gpio.backend == "sim" else ""))


def _host_checks(config: TerminalConfig, clock: Callable[[], float]) -> list[Check]:
    """The host answers a signed echo (so URL, terminal id and key are right), and our clock agrees with its."""
    try:
        link = host_link(config, clock=clock)
    except Exception as error:  # the journal (its folder, its key): the link is built on it
        return [Check("host", False, f"journal: {error}", "check [journal] path: a writable folder of ours")]
    try:
        started = clock()
        answer = link.echo()
    except HostError as error:
        return [Check("host", False, f"{config.host.url}: {error}", host_hint(error, config))]
    finally:
        link.journal.close()
    skew = abs(answer.host_time - started)
    return [Check("host", answer.rc == "00", f"{config.host.url} answered {answer.rc}"),
            Check("clock", skew < 60, f"{skew:.1f} s from the host's clock",
                  "" if skew < 60 else "set the clock (NTP): signed requests allow ±300 s")]


def host_hint(error: HostError, config: TerminalConfig) -> str:
    """What to fix, from how the host failed: a refusal means it runs and disagrees with us."""
    tid = config.terminal.id
    if isinstance(error, HostRejected):
        if error.reason == "unknown_terminal":
            return (f"the acquirer runs but does not know terminal {tid}: [terminal] id is wrong, or the acquirer "
                    f"was initialised from another world")
        if error.reason == "terminal_inactive":
            return f"the acquirer has terminal {tid} switched off: turn it on in the dashboard's terminals"
        if error.status == 401:
            return (f"the acquirer runs but refused our signature ({error.reason or 'HTTP 401'}): [host] key is not "
                    f"the key it holds for terminal {tid} ([terminal] id), or the clock is far off")
        return f"the acquirer runs but refused the echo (HTTP {error.status}): is [host] url its terminal API?"
    if getattr(error, "status", None) is not None:
        return "the acquirer answered with a server error: see its log"
    return "is acquirer-stub serve running at [host] url?"
