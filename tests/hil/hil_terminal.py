"""The terminal under test, assembled from its configuration file the way `terminal.assemble` does it,
except that the GPIO comes from the rig (so the reader's RSTPDN is the rig's wire) and the reader is wrapped
to note each APDU in the trace. Sales, fares and settlement go through the product's own classes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hil_rig import RESET_PIN, Rig
from hil_trace import Trace, describe_command, describe_response
from pcscd import READER

from terminal.assemble import host_link, kernel_params, transit_psam
from terminal.config import TerminalConfig, load_config
from terminal.host.link import HostLink, SettlementResult
from terminal.kernel.transit import TransitResult
from terminal.reader.base import CardRemoved, Reader, Target
from terminal.reader.choose import make_reader
from terminal.sale import Counter, SaleResult
from terminal.ui.feedback import Feedback
from terminal.ui.gpio import Gpio, SimulatedGpio


def write_config(world_config: Path, target: Path, *, host_url: str, interface: str, reader_port: str | None,
                 journal: Path, host_timeout: float = 5.0, backend: str = "sim", reset_line: bool = True) -> Path:
    """The world's terminal.toml for this rig: its reader (port or bus) and RSTPDN pin, this host, no light
    animation (reading step 0, steady idle light), so the light sequence a scenario asserts is exact."""
    text = world_config.read_text()
    reader = {"hsu": f'port = "{reader_port}"', "pcsc": f'type = "pcsc"\nname = "{READER}"'}.get(
        interface, f'interface = "{interface}"')
    text = text.replace('port = "../pn532-pos"', reader + (f"\nreset_pin = {RESET_PIN}" if reset_line else ""))
    text = text.replace("http://127.0.0.1:8380", host_url)
    text = text.replace("[host]\n", f"[host]\ntimeout = {host_timeout}\n")
    text = text.replace('"terminal-journal.sqlite3"', f'"{journal}"')
    text += f'\n[gpio]\nbackend = "{backend}"\nreading_step_ms = 0\nidle_blink_ms = []\n'
    target.write_text(text)
    return target


class TracingReader:
    """The terminal's reader (PN532 or PC/SC), unchanged, with each call noted in the trace (APDUs masked)."""

    def __init__(self, reader: Reader, trace: Trace) -> None:
        self.inner = reader
        self.trace = trace
        self.apdus = 0

    def open(self) -> None:
        self.inner.open()

    def identify(self) -> str:
        return self.inner.identify()

    def wait_for_card(self, timeout: float) -> Target | None:
        target = self.inner.wait_for_card(timeout)
        if target is not None:
            self.trace.add("apdu", f"card activated: SAK {target.sel_res:02X}, ATS {target.ats.hex().upper()}")
        return target

    def transceive(self, apdu: bytes) -> bytes:
        started = time.monotonic()
        self.trace.add("apdu", f"C-APDU {describe_command(apdu)}")
        try:
            answer = self.inner.transceive(apdu)
        except CardRemoved as error:
            self.trace.add("apdu", f"R-APDU none: {error}")
            raise
        self.apdus += 1
        self.trace.add("apdu", f"R-APDU {describe_response(answer)} "
                               f"({(time.monotonic() - started) * 1000:.1f} ms measured)")
        return answer

    def release(self) -> None:
        self.inner.release()

    def reset(self) -> None:
        self.trace.add("apdu", "reader reset (RSTPDN pulse)")
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()


@dataclass
class Terminal:
    config: TerminalConfig
    counter: Counter
    reader: TracingReader
    feedback: Feedback
    host: HostLink
    gpio: Gpio
    trace: Trace
    sales: int = 0

    def sale(self, amount: int, *, wait: float = 10.0) -> SaleResult:
        self.trace.add("note", f"sale of {amount} fen")
        result = self.counter.sale(amount, wait_seconds=wait)
        self.trace.add("note", f"sale: {result.outcome} — {result.message}")
        self.sales += 1
        for name, seconds in result.timings.items():
            self.trace.measured[f"sale {self.sales} {name}"] = seconds
        return result

    def fare(self, amount: int, *, wait: float = 10.0) -> TransitResult:
        """A metro gate's fare, through the product's pipeline (its re-tap loop for a torn purchase included)."""
        self.trace.add("note", f"fare of {amount} fen")
        result = self.counter.fare(amount, wait_seconds=wait)
        self.trace.add("note", f"fare: {result.outcome} — {result.message}")
        return result

    def settle(self) -> SettlementResult:
        result = self.host.settle()
        self.trace.add("note", f"settlement of batch {result.batch}: rc {result.rc}, balanced {result.balanced}")
        return result

    def ui_events(self) -> list[tuple[str, str, object]]:
        self.feedback.settle(3.0)
        return self.feedback.events()


@contextlib.contextmanager
def terminal(config_path: Path, rig: Rig, trace: Trace) -> Iterator[Terminal]:
    config = load_config(config_path)
    gpio = rig.gpio()
    ui_start, gpio_marks = time.monotonic(), len(gpio.timeline) if isinstance(gpio, SimulatedGpio) else 0
    feedback = Feedback.from_config(config.gpio, gpio)
    reader = TracingReader(make_reader(config, gpio), trace)
    host = host_link(config)
    counter = Counter(reader, kernel_params(config), host, observers=[feedback.observe],
                      psam=transit_psam(config, host.journal))
    reader.open()
    try:
        yield Terminal(config, counter, reader, feedback, host, gpio, trace)
    finally:
        reader.close()
        feedback.close()
        host.journal.close()
        for seconds, what, _event, value in feedback.timeline():
            trace.add("ui", f"{what} {value}", at=ui_start + seconds)
        if isinstance(gpio, SimulatedGpio):
            for seconds, pin, event, value in gpio.timeline[gpio_marks:]:
                if pin == RESET_PIN:
                    trace.add("gpio", f"GPIO{pin} (RSTPDN) {event} {'high' if value else 'low'}",
                              at=rig.gpio_epoch + seconds)
