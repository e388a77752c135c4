"""`pos-terminal read` and `doctor`: look at a card without paying, and check every part of the terminal.

`read` sends only what any reader may send to a payment card: SELECT PPSE, SELECT each application and
READ RECORD of the records a card shows without a transaction; it never asks for a cryptogram.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.bcd import decode_cn
from emvcore.tags import mask_pan
from terminal.assemble import host_link, kernel_params
from terminal.config import TerminalConfig
from terminal.host.client import HostError, HostRejected
from terminal.reader.base import Reader
from terminal.reader.pn532 import Pn532Reader
from terminal.ui.gpio import open_gpio


@dataclass
class CardView:
    uid_random: bool
    applications: list[dict[str, Any]] = field(default_factory=list)


def _send(reader: Reader, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.decode(reader.transceive(command.encode()))


def read_card(reader: Reader, timeout: float) -> CardView | None:
    """Labels, AIDs, masked PAN and expiry of every application the card offers; None if no card came."""
    target = reader.wait_for_card(timeout)
    if target is None:
        return None
    view = CardView(uid_random=len(target.uid) == 4 and target.uid[0] == 0x08)
    try:
        ppse = _send(reader, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256))
        for aid, label, priority in _applications(ppse.data if ppse.ok else b""):
            application: dict[str, Any] = {"aid": aid.hex().upper(), "label": label, "priority": priority}
            if _send(reader, CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, le=256)).ok:
                application.update(_first_record(reader))
            view.applications.append(application)
    finally:
        reader.release()
    return view


def _applications(ppse: bytes) -> list[tuple[bytes, str, int]]:
    found = []
    try:
        for top in tlv.parse(ppse):
            stack = [top]
            while stack:
                node = stack.pop()
                if node.tag == 0x61:
                    values = {child.tag: child.value for child in node.children()}
                    if 0x4F in values:
                        found.append((values[0x4F], values.get(0x50, b"").decode("ascii", "replace"),
                                      values.get(0x87, b"\x00")[0] & 0x0F))
                elif node.constructed:
                    stack.extend(reversed(node.children()))  # keep the PPSE order
    except tlv.TlvError:
        pass
    return found


def _first_record(reader: Reader) -> dict[str, str]:
    answer = _send(reader, CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256))
    if not answer.ok:
        return {"pan": "not readable without a transaction"}
    try:
        values = tlv.flatten(answer.data)
        pan = decode_cn(values[0x5A]) if 0x5A in values else None
    except (tlv.TlvError, ValueError):
        return {"pan": "unreadable record"}
    result = {"pan": mask_pan(pan) if pan else "not in record 1"}
    if 0x5F24 in values:
        expiry = values[0x5F24].hex()
        result["expiry"] = f"20{expiry[:2]}-{expiry[2:4]}"
    return result


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
            except Exception as error:  # any failure is a finding to report
                checks.append(Check("reader", False, str(error), READER_HINT))
    try:
        capks = kernel_params(config).capks
        checks.append(Check("capk", bool(capks), f"{len(capks)} CA keys from {config.capk.file}",
                            "" if capks else "the CAPK file is empty: offline approvals will fail fDDA"))
    except Exception as error:
        checks.append(Check("capk", False, str(error), "point [capk] file at the world's scheme/capk.json"))
    checks += _host_checks(config, clock)
    return checks


READER_HINT = "check the wiring, the HSU switches and [reader] port"


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
        own = Pn532Reader(config, gpio)
        own.open()
    except Exception as error:
        checks.append(Check("reader", False, str(error), READER_HINT))
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
    skew = abs(float(answer.get("host_time", started)) - started)
    return [Check("host", answer.get("rc") == "00", f"{config.host.url} answered {answer.get('rc')}"),
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
