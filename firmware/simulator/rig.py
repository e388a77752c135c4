"""`pos-card pn532`: software PN532s on pseudo-terminals around one virtual RF field.

Each --link is one chip on its own pty; in-process users (the tests, the HIL rig) may put a chip on a simulated
I2C or SPI device node instead (`buses`, see devices.py). They share the field, so one chip can read a card file
placed in it, or another chip that a host put in target mode (TgInitAsTarget). A control socket lets tests and
people tap, hold and remove cards, do the phone's fingerprint, inject faults and reset a chip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.apps.cards.card import Chip
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.present import load_presentable
from firmware.apps.wallet.wallet import Wallet
from firmware.simulator import devices
from firmware.simulator.air import Field, SoftwareCard
from firmware.simulator.bus import I2C_DEFAULT_HZ, I2cTarget, SpiTarget
from firmware.simulator.chip import Pn532Chip
from firmware.simulator.faults import Faults
from firmware.simulator.pty import PtyLink
from firmware.simulator.timing import LinkModel


class RigError(Exception):
    """A control request that cannot be done (no such chip, nothing in the field, bad file …)."""


class PresentedFile:
    """A card or phone file in the field, read afresh at every tap: what changed meanwhile (a fingerprint
    done by another process, a counter) counts, and the file stays the single source of its state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.loaded: PlainCard | Wallet = load_presentable(path)  # fail now, not at the tap

    def uid_for_tap(self) -> bytes:
        return self.loaded.uid_for_tap()

    def chip(self) -> Chip:
        self.loaded = load_presentable(self.path)
        return self.loaded.chip()


class SoftwareRig:
    def __init__(self, links: list[Path], *, link_model: bool = False, buses: dict[str, str] | None = None,
                 i2c_hz: int = I2C_DEFAULT_HZ) -> None:
        """`links`: a chip on a pty at each path, named by the file name; `buses`: chip name → the simulated
        device node it answers on (/dev/i2c-N at `i2c_hz`, or /dev/spidevB.C)."""
        if not links and not buses:
            raise RigError("at least one --link is needed")
        self.field = Field()
        self.chips: dict[str, Pn532Chip] = {}
        self._ptys: dict[str, PtyLink] = {}
        self._nodes: dict[str, str] = {}
        self._card: SoftwareCard | None = None
        self._tap_timer: threading.Timer | None = None
        self._lock = threading.RLock()
        try:
            for path in links:
                self._add_chip(path.name, link_model, path=path)
            for name, node in (buses or {}).items():
                self._add_chip(name, link_model, node=node, i2c_hz=i2c_hz)
        except BaseException:
            self.close()
            raise

    def _add_chip(self, name: str, link_model: bool, *, path: Path | None = None, node: str | None = None,
                  i2c_hz: int = I2C_DEFAULT_HZ) -> None:
        if name in self.chips:
            raise RigError(f"two links named {name}")
        sink: list[Callable[[bytes], None]] = []

        def output(data: bytes) -> None:
            if sink:
                sink[0](data)

        chip = Pn532Chip(name, self.field, output, link=LinkModel(enabled=link_model), faults=Faults())
        self.chips[name] = chip
        if path is not None:
            pty = self._ptys[name] = PtyLink(path, chip.receive)
            sink.append(pty.write)
            return
        assert node is not None
        if not node.startswith(("/dev/i2c-", "/dev/spidev")):
            raise RigError(f"{node}: a simulated bus is /dev/i2c-N or /dev/spidevB.C")
        target = I2cTarget(chip, i2c_hz) if node.startswith("/dev/i2c-") else SpiTarget(chip)
        sink.append(target.output)
        devices.attach(node, target)
        self._nodes[name] = node

    # -- the field ---------------------------------------------------------------------------------------------

    def present(self, path: Path, *, seconds: float | None = None) -> SoftwareCard:
        """Hold a card or phone to the readers; with `seconds`, take it away again after that time (a tap)."""
        try:
            card = SoftwareCard(PresentedFile(path), name=path.name)
        except (ValueError, OSError) as error:
            raise RigError(str(error)) from None
        with self._lock:
            self._cancel_tap()
            self._card = card
            self.field.place(card)
            if seconds is not None:
                self._tap_timer = threading.Timer(seconds, self._end_tap, args=(card,))
                self._tap_timer.daemon = True
                self._tap_timer.start()
        return card

    def remove(self) -> None:
        with self._lock:
            self._cancel_tap()
            if self._card is not None:
                self._card.remove()
            self._card = None
            self.field.place(None)

    def fingerprint(self, finger: str, path: Path | None = None) -> bool:
        """The holder touches the sensor of the phone in the field (or of the phone file given)."""
        with self._lock:
            if path is None:
                if self._card is None or not isinstance(self._card.presentable, PresentedFile):
                    raise RigError("no phone in the field; name its wallet file")
                path = self._card.presentable.path
        try:
            wallet = Wallet.load(path)
        except ValueError as error:
            raise RigError(str(error)) from None
        return wallet.authenticate(finger)

    def remove_card_after(self, exchanges: int, *, tear: bool = False) -> None:
        with self._lock:
            if self._card is None:
                raise RigError("no card in the field")
            self._card.fault_remove_after(exchanges, after_handling=tear)

    def reset(self, name: str | None = None) -> None:
        """RSTPDN on a chip; the faults armed from the control socket go too, the card's removal included."""
        chip = self.chip(name)
        with self._lock:
            if self._card is not None:
                self._card.clear_fault()
        chip.reset()

    def _end_tap(self, card: SoftwareCard) -> None:
        with self._lock:
            if self._card is card:
                self.remove()

    def _cancel_tap(self) -> None:
        if self._tap_timer is not None:
            self._tap_timer.cancel()
            self._tap_timer = None

    # -- the chips -----------------------------------------------------------------------------------------------

    def chip(self, name: str | None) -> Pn532Chip:
        if name is None and len(self.chips) == 1:
            return next(iter(self.chips.values()))
        if name not in self.chips:
            raise RigError(f"no chip {name!r}; chips: {', '.join(self.chips)}")
        return self.chips[name]

    def status(self) -> dict[str, Any]:
        with self._lock:
            card = self._card
        return {
            "field": None if card is None else {"card": card.name, "removed": card.removed,
                                                "faults_armed": card.armed_fault},
            "chips": {
                name: {
                    "link": str(self._ptys[name].link) if name in self._ptys else self._nodes[name],
                    "device": self._ptys[name].device if name in self._ptys else self._nodes[name],
                    "baud": chip.baud,
                    "power": chip.power,
                    "targets": sorted(chip.targets),
                    "faults_armed": chip.faults.armed(),
                    "frames_rejected": chip.frames_rejected,
                    "modelled_seconds": round(chip.link.modelled_seconds, 6),
                }
                for name, chip in self.chips.items()
            },
        }

    def close(self) -> None:
        with self._lock:
            self._cancel_tap()
        for node in self._nodes.values():
            devices.detach(node)
        for chip in self.chips.values():
            chip.close()
        for pty in self._ptys.values():
            pty.close()
