"""`pos-terminal doctor`: check every part of the terminal, each with what to do when it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from terminal.assemble import host_link, kernel_params
from terminal.config import TerminalConfig
from terminal.reader.base import Reader


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


def doctor(config: TerminalConfig, reader: Reader, *, clock: Callable[[], float] = time.time) -> list[Check]:
    """Reader, GPIO backend, CAPK, host reachability and clock (`clock`: the terminal's, unix seconds): each with
    pass/fail and what to do."""
    checks = []
    try:
        checks.append(Check("reader", True, reader.identify()))
    except Exception as error:  # any failure is a finding to report
        checks.append(Check("reader", False, str(error), "check the wiring, the HSU switches and [reader] port"))
    checks.append(Check("gpio", True, f"backend {config.gpio.backend}"
                        + (" (simulated: lights and tones are recorded, not shown)" if config.gpio.backend == "sim"
                           else "")))
    try:
        capks = kernel_params(config).capks
        checks.append(Check("capk", bool(capks), f"{len(capks)} CA keys from {config.capk.file}",
                            "" if capks else "the CAPK file is empty: offline approvals will fail fDDA"))
    except Exception as error:
        checks.append(Check("capk", False, str(error), "point [capk] file at the world's scheme/capk.json"))
    link = host_link(config, clock=clock)
    try:
        started = clock()
        answer = link.echo()
        skew = abs(float(answer.get("host_time", started)) - started)
        checks.append(Check("host", answer.get("rc") == "00", f"{config.host.url} answered {answer.get('rc')}"))
        checks.append(Check("clock", skew < 60, f"{skew:.1f} s from the host's clock",
                            "" if skew < 60 else "set the clock (NTP): signed requests allow ±300 s"))
    except Exception as error:
        checks.append(Check("host", False, str(error), "is acquirer-stub serve running at [host] url?"))
    finally:
        link.journal.close()
    return checks
