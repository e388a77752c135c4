"""The link model at run time: account the modelled time of every hop and, when enabled, take it.

`modelled_seconds` always adds up what a real rig would spend (UART bytes at the current baud rate or bus
transfers at the bus clock, ISO 14443 air time at 106 kbit/s, the card's processing time); with `enabled` the
chip also sleeps that time, so that measured times are realistic. The formulas live in `link` (pure).

A sleep always lasts a little longer than asked (timer slack and wake-up latency, typically 50–100 µs on
Linux), and a tap takes some twenty of them. That excess is carried over and taken off the next sleep, so the
time actually slept tracks the modelled time instead of drifting above it; only a small excess per sleep is
carried (a longer stall is the machine's, not the timer's, and stays visible).
"""

from __future__ import annotations

import threading
import time

from firmware.simulator import link

MAX_CARRIED_OVERSHOOT = 0.0005  # seconds per sleep: timer slack, not a stall


class LinkModel:
    def __init__(self, *, enabled: bool, card_timing: link.CardTiming | None = None) -> None:
        self.enabled = enabled
        self.card_timing = card_timing or link.CardTiming()
        self.baud = 115200
        self.host_link = "uart"  # or "i2c", "spi": then the bus target accounts each transfer, the UART nothing
        self._lock = threading.Lock()
        self.modelled_seconds = 0.0
        self.hops: dict[str, float] = {"uart": 0.0, "air": 0.0, "card": 0.0}
        self._overshoot = 0.0  # seconds slept beyond what was asked, still to be taken off the next sleep

    def reset_account(self) -> None:
        """Start a new account with no carried excess: within one account the excess taken off a sleep was
        overslept earlier in that account, so what it measures never takes less than its model (an excess
        carried in from before would let a loaded machine's exchange beat the model)."""
        with self._lock:
            self.modelled_seconds = 0.0
            self.hops = dict.fromkeys(self.hops, 0.0)
            self._overshoot = 0.0

    def _account(self, hop: str, seconds: float, *, already_spent: float = 0.0) -> None:
        with self._lock:
            self.modelled_seconds += seconds
            self.hops[hop] = self.hops.get(hop, 0.0) + seconds
        if self.enabled and seconds > already_spent:
            self._sleep(seconds - already_spent)

    def _sleep(self, seconds: float) -> None:
        with self._lock:
            credit = min(self._overshoot, seconds)
            self._overshoot -= credit
        wanted = seconds - credit
        if wanted <= 0:
            return
        started = time.perf_counter()
        time.sleep(wanted)
        over = time.perf_counter() - started - wanted
        if over > 0:
            with self._lock:
                self._overshoot += min(over, MAX_CARRIED_OVERSHOOT)

    def host_frame(self, payload_length: int) -> None:
        """A host → chip frame on the wire (the host's write returns before a real UART is done)."""
        if self.host_link == "uart":
            self._account("uart", link.uart_seconds(link.pn532_frame_bytes(payload_length), self.baud))

    def pace_uart(self, nbytes: int) -> None:
        """Chip → host bytes (ACK or response) on the wire."""
        if self.host_link == "uart":
            self._account("uart", link.uart_seconds(nbytes, self.baud))

    def bus_transfer(self, nbytes: int, clock_hz: int) -> None:
        """One I2C transaction or SPI transfer, whichever `host_link` is; the host's call lasts that long."""
        seconds = (link.i2c_seconds if self.host_link == "i2c" else link.spi_seconds)(nbytes, clock_hz)
        self._account(self.host_link, seconds)

    def air_activation(self, uid_length: int) -> None:
        self._account("air", link.activation_seconds(uid_length, with_rats=False))

    def air_frames(self, sent: int, received: int) -> None:
        """One ISO 14443-4 frame each way (RATS/ATS, a block and its answer)."""
        self._account("air", link.air_frame_seconds(sent) + link.air_frame_seconds(received))

    def card_processing(self, apdu: bytes, answer: bytes, elapsed: float) -> None:
        """The card's modelled processing time; what the simulated card already took counts toward it."""
        self._account("card", link.card_seconds(self.card_timing, apdu, answer), already_spent=elapsed)
