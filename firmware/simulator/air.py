"""The virtual RF field: what sits near a reader antenna and answers ISO 14443-4 frames.

A reader (the software PN532 as initiator) finds a `Picc` in a `Field`, activates it (WUPA and
anticollision are modelled as one call), then trades frames with it. Cards and phones are
`SoftwareCard`s; a PN532 in target mode is another kind of Picc that enters the same field.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from firmware.apps.cards.card import Chip
from firmware.apps.present import Presentable
from firmware.simulator.isodep import PiccEngine

# The ATS of a software card (not a PN532) in the field. Decoded: TL 05; T0 78 = FSCI 8 (FSC 256),
# TA1 TB1 TC1 present; TA1 80 = 106 kbit/s only, same divisor both ways; TB1 70 = FWI 7 (FWT ≈ 38.7 ms),
# SFGI 0; TC1 02 = CID supported, NAD not; no historical bytes. It is the ATS nfcpy answers with in its
# own card emulation and the kind a phone's NFC controller reports; FSC 256 lets a 261-byte C-APDU go
# in two blocks (a PN532 target's ATS 05 75 33 92 03 limits it to FSC 64).
SOFTWARE_CARD_ATS = bytes.fromhex("0578807002")
ISO_DEP_SAK = 0x20


@dataclass(frozen=True)
class TypeAIdentity:
    """What anticollision tells the reader, in the byte order InListPassiveTarget reports it."""

    sens_res: bytes  # ATQA, MSB first: 00 04 (4-byte UID), 00 44 (7-byte), 00 84 (10-byte)
    uid: bytes
    sel_res: int  # SAK: 0x20 = ISO 14443-4 compliant

    def __post_init__(self) -> None:
        if len(self.sens_res) != 2:
            raise ValueError(f"SENS_RES is 2 bytes, not {len(self.sens_res)}")
        if not 0 <= self.sel_res <= 0xFF:
            raise ValueError(f"SEL_RES is one byte, not {self.sel_res}")

    @classmethod
    def for_uid(cls, uid: bytes, sel_res: int = ISO_DEP_SAK) -> TypeAIdentity:
        """SENS_RES follows from the UID size (b8-b7 of its low byte) with bit-frame anticollision (b5..b1)."""
        sizes = {4: 0x00, 7: 0x40, 10: 0x80}
        if len(uid) not in sizes:
            raise ValueError(f"a type A UID is 4, 7 or 10 bytes, not {len(uid)}")
        return cls(bytes([0x00, sizes[len(uid)] | 0x04]), bytes(uid), sel_res)


class Picc(Protocol):
    """A proximity card as a reader sees it through the air."""

    def activate(self) -> TypeAIdentity | None:
        """Field on, WUPA and anticollision: the identity, or None when nothing answers."""
        ...

    def exchange(self, frame: bytes, timeout: float) -> bytes | None:
        """One ISO 14443-4 frame (RATS or a block) in, the answer out; None = nothing within `timeout`."""
        ...

    def halt(self) -> None:
        """The reader ended the tap (InRelease, or a new poll) but its field stays on: the card stays powered, so a
        phone keeps the random UID it drew when the field powered it."""
        ...

    def field_off(self) -> None:
        """The reader's field is gone (or the card left it): the tap is over and the card unpowered."""
        ...

    @property
    def in_reach(self) -> bool:
        """False once taken away (or released) while still listed in the field: a reader keeps polling."""
        ...


class SoftwareCard(Picc):
    """A card or phone file in the air: a fresh chip and ISO-DEP engine for every activation.

    It answers at once, so `timeout` only matters to callers that model time themselves. The chip thread
    and a control thread (removing the card, injecting faults) may use it together.
    """

    def __init__(self, presentable: Presentable, *, ats: bytes = SOFTWARE_CARD_ATS, name: str = "") -> None:
        self.presentable = presentable
        self.ats = bytes(ats)
        self.name = name or type(presentable).__name__
        self.identity: TypeAIdentity | None = None
        self.exchanges = 0  # frames answered or swallowed since the last activation
        self._lock = threading.RLock()
        self._chip: Chip | None = None
        self._engine: PiccEngine | None = None
        self._removed = False
        self._fault: tuple[int, bool] | None = None  # (exchanges left before removal, after handling)

    def __repr__(self) -> str:
        return f"SoftwareCard({self.name})"

    @property
    def removed(self) -> bool:
        return self._removed

    @property
    def in_reach(self) -> bool:
        return not self._removed

    def activate(self) -> TypeAIdentity | None:
        """A new tap: nothing is selected on the chip; a phone powered up by this field draws its random UID now,
        and keeps it for every activation until the field goes off or it leaves (ISO 14443-3 random UID)."""
        with self._lock:
            if self._removed:
                return None
            self._end_tap()
            chip = self.presentable.chip()
            if self.identity is None:
                self.identity = TypeAIdentity.for_uid(self.presentable.uid_for_tap())
            self._chip = chip
            self._engine = PiccEngine(chip.transceive, self.ats, on_deselect=chip.field_off)
            self.exchanges = 0
            return self.identity

    def exchange(self, frame: bytes, timeout: float) -> bytes | None:
        with self._lock:
            if self._removed or self._engine is None:
                return None
            self.exchanges += 1
            if self._fault is not None:
                left, after_handling = self._fault
                if left > 1:
                    self._fault = (left - 1, after_handling)
                else:
                    self._fault = None
                    if after_handling:
                        self._engine.handle(frame)  # the card did the work; its answer never leaves
                    self.remove()
                    return None
            return self._engine.handle(frame)

    def halt(self) -> None:
        with self._lock:
            self._end_tap()

    def field_off(self) -> None:
        with self._lock:
            self._end_tap()
            self.identity = None

    def remove(self) -> None:
        """Taken away from the reader: silent from now on, the chip's tap state and its power are gone."""
        with self._lock:
            self._removed = True
            self._end_tap()
            self.identity = None

    def put_back(self) -> None:
        """Held to the reader again: it answers the next activation."""
        with self._lock:
            self._removed = False

    def fault_remove_after(self, n_exchanges: int, *, after_handling: bool = False) -> None:
        """Remove the card at the Nth exchange from now (1 = the next one).

        By default the Nth frame never reaches the card; with `after_handling` the card processes it
        (a command runs and its counters are saved) and is taken away before the answer leaves: a tear.
        """
        if n_exchanges < 1:
            raise ValueError(f"n_exchanges counts from 1, not {n_exchanges}")
        with self._lock:
            self._fault = (n_exchanges, after_handling)

    @property
    def armed_fault(self) -> dict[str, Any]:
        """The removal waiting for its exchange, as the rig's status shows armed faults ({} when none)."""
        with self._lock:
            if self._fault is None:
                return {}
            left, after_handling = self._fault
            return {"remove_after": {"exchanges_left": left, "tear": after_handling}}

    def clear_fault(self) -> None:
        """Disarm a pending removal (a reset of the rig clears every fault, this one too)."""
        with self._lock:
            self._fault = None

    def _end_tap(self) -> None:
        if self._chip is not None:
            self._chip.field_off()
        self._chip = None
        self._engine = None


class Field:
    """What is near one reader antenna: at most one placed card or phone, plus emulated targets.

    Other PN532s in target mode `enter` and `leave` the same field; a person `place`s and `remove`s a
    card. Readers poll `current()` or block in `wait_for_card()` until something comes.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._placed: Picc | None = None
        self._entered: list[Picc] = []

    def place(self, picc: Picc | None) -> None:
        """Hold a card to the antenna (None: take the card away); a card already there leaves first."""
        with self._condition:
            old, self._placed = self._placed, picc
            self._condition.notify_all()
        if old is not None and old is not picc:
            old.field_off()

    def remove(self) -> None:
        self.place(None)

    def power_off(self) -> None:
        """The reader's RF field went off: the placed card loses power (it stays placed, for the next field)."""
        with self._condition:
            placed = self._placed
        if placed is not None:
            placed.field_off()

    def enter(self, picc: Picc) -> None:
        """An emulated target (a PN532 in target mode) comes into the field."""
        with self._condition:
            if not any(p is picc for p in self._entered):
                self._entered.append(picc)
            self._condition.notify_all()

    def leave(self, picc: Picc) -> None:
        with self._condition:
            present = any(p is picc for p in self._entered)
            self._entered = [p for p in self._entered if p is not picc]
            if self._placed is picc:
                self._placed, present = None, True
        if present:
            picc.field_off()

    def current(self, *, exclude: Picc | None = None) -> Picc | None:
        """The card a reader would find now; `exclude` is the reader's own emulated target, if any."""
        with self._condition:
            return self._find(exclude)

    def wait_for_card(self, timeout: float, *, exclude: Picc | None = None) -> Picc | None:
        """Block until a card is in the field (at most `timeout` seconds); None if none came."""
        with self._condition:
            self._condition.wait_for(lambda: self._find(exclude) is not None, timeout)
            return self._find(exclude)

    def _find(self, exclude: Picc | None) -> Picc | None:
        candidates = ([self._placed] if self._placed is not None else []) + self._entered
        return next((p for p in candidates if p is not exclude and p.in_reach), None)

