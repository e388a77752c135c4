"""`pos-card vpcd`: an emulated card or phone in the slot of vsmartcard's virtual PC/SC reader (vpcd), so any PC/SC
application (pcsc_scan, pyscard, OpenSC, the terminal's PC/SC backend) reaches it through a real pcscd.

vpcd is a reader driver loaded by pcscd. Its card side (vsmartcard calls it the vicc) is this process, over TCP:
every message both ways is a 2-byte big-endian length and the payload; a 1-byte payload from vpcd is a control
message (00 power off, 01 power on, 02 reset, 04 the ATR, which the vicc answers), anything longer a C-APDU
(answered with the R-APDU). A connection is a card in the slot; closing it takes the card away (doc pcsc.md).

vpcd listens (Debian's /etc/reader.conf.d/vpcd: `DEVICENAME /dev/null:0x8C7B`: port 35963 for its first slot and
35964 for its second, on every interface) and this connects (`--vpcd HOST:PORT`). vpcd can also be told to connect
out instead (`DEVICENAME 127.0.0.1:PORT`), but Debian's vsmartcard 3.3 then aborts pcscd ("bit out of range 0 -
FD_SETSIZE on fd_set") unless a card listens on its second slot's port as well: not used here.

Here the bridge also plays the contactless reader around the card: it makes the ATR a PC/SC reader makes for an ISO
14443-4 card (emvcore.pcsc) and answers GET DATA (FF CA) for the UID itself, and it has an ACR122U's bi-colour LED
and buzzer (FF 00 40, answered with the LEDs' state; kept in `indications`, shown by `status`) and its beep at card
detection (FF 00 52). Every power-on is a new tap: a phone draws a new random UID, and the file is read afresh at
the tap's first command (a fingerprint given meanwhile counts, as pcscd powers a card on as soon as it is put in). A
card taken out stays out for OUT_SECONDS before it can be back, so pcscd sees it leave.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emvcore import pcsc
from firmware.apps.cards.card import Chip
from firmware.apps.wallet.wallet import Wallet
from firmware.simulator.air import SOFTWARE_CARD_ATS
from firmware.simulator.rig import PresentedFile, RigError

log = logging.getLogger(__name__)

VPCD_PORT = 0x8C7B  # 35963: vsmartcard's default
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
MAX_MESSAGE = 0xFFFF
Observer = Callable[[bytes, bytes | None], None]
RECONNECT_SECONDS = 0.5
OUT_SECONDS = 1.0  # a card taken out stays out this long: pcscd asks vpcd for the card every 0.4 s, and a card back
# before it asked again would look as if it never left (still powered; APDUs with no power-on before them)
SW_NO_CARD_POWER = bytes.fromhex("6F00")  # an APDU before power-on: no precise diagnosis


class VpcdError(Exception):
    """vpcd cannot be reached (pcscd not running, no vsmartcard-vpcd), or its address is malformed."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VpcdError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:{VPCD_PORT})")
    return Endpoint(host, int(port))


def check_card(path: Path) -> None:
    """A card or phone file the slot can hold; RigError names what is wrong with it."""
    try:
        PresentedFile(path)
    except (ValueError, OSError) as error:
        raise RigError(str(error)) from None


@dataclass
class _Inserted:
    name: str


class VirtualSlot:
    """The card side of one vpcd slot. The control socket drives it like the software PN532's rig: present,
    remove, fingerprint, status (firmware/simulator/control.py)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._lock = threading.RLock()
        self._card: PresentedFile | None = None
        self._tap_timer: threading.Timer | None = None
        self._connection: socket.socket | None = None
        self._out_since = 0.0  # time.monotonic() when the last card left the slot
        self._pull_at: int | None = None
        self._tear = False
        self._observe: Observer | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.taps = 0  # power-ons since the start: one per tap
        self.apdus = 0
        self.leds = (False, False)  # the "reader's" red and green LEDs
        self.detection_beep = True  # and its beep at every card detected (the ACR122U's default)
        self.indications: list[pcsc.LedBuzzer] = []  # every FF 00 40 the reader was sent, in order
        self._thread = threading.Thread(target=self._serve, name="vpcd-slot", daemon=True)
        self._thread.start()

    # -- what the control socket asks --------------------------------------------------------------------

    def present(self, path: Path, *, seconds: float | None = None, remove_after: int | None = None,
                tear: bool = False, observe: Observer | None = None) -> _Inserted:
        """Put a card or phone in the slot; with `seconds`, take it out again after that time. As with the
        software PN532's card emulation (emulate.py): `remove_after` N pulls the card away at the Nth C-APDU of
        its first tap, unanswered (with `tear` it ran it first), and puts it back (after OUT_SECONDS);
        `observe(c, r)` sees every exchange (r None: pulled away)."""
        if remove_after is not None and remove_after < 1:
            raise RigError(f"remove_after counts APDUs from 1, not {remove_after}")
        try:
            card = PresentedFile(path)
        except (ValueError, OSError) as error:
            raise RigError(str(error)) from None
        with self._lock:
            self._cancel_tap()
            self._drop_connection()
            self._card = card
            self._pull_at, self._tear, self._observe = remove_after, tear, observe
            if seconds is not None:
                self._tap_timer = threading.Timer(seconds, self.remove)
                self._tap_timer.daemon = True
                self._tap_timer.start()
        self._wake.set()
        return _Inserted(path.name)

    def remove(self) -> None:
        with self._lock:
            self._cancel_tap()
            self._card = None
            self._drop_connection()

    def fingerprint(self, finger: str, path: Path | None = None) -> bool:
        with self._lock:
            if path is None:
                if self._card is None or not isinstance(self._card.loaded, Wallet):
                    raise RigError("no phone in the slot; name its wallet file")
                path = self._card.path
        try:
            return Wallet.load(path).authenticate(finger)
        except ValueError as error:
            raise RigError(str(error)) from None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"slot": {"card": None if self._card is None else self._card.path.name,
                             "connected": self._connection is not None, "vpcd": str(self.endpoint)},
                    "taps": self.taps, "apdus": self.apdus,
                    "reader": {"red": self.leds[0], "green": self.leds[1],
                               "beeps": sum(1 for asked in self.indications if asked.beep_tenths),
                               "detection_beep": self.detection_beep}}

    def chip(self, name: str | None) -> Any:
        raise RigError("a virtual PC/SC reader has no PN532 to fault or reset")

    reset = chip

    def remove_card_after(self, exchanges: int, *, tear: bool = False) -> None:
        raise RigError("remove_after is the software PN532's; on vpcd take the card away with remove")

    def close(self) -> None:
        self._stop.set()
        self.remove()
        self._wake.set()
        self._thread.join(timeout=5)

    # -- the vpcd side ------------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        """At start: whether vpcd answers; VpcdError says what to do."""
        try:
            socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=2).close()
        except TimeoutError:  # vpcd listens but takes no second card into a slot: it leaves it waiting
            host, port = self.endpoint.host, self.endpoint.port
            raise VpcdError(f"vpcd on {self.endpoint} does not take the card (timed out): its slot holds another one "
                            f"(another pos-card vpcd?): take that out, or use the second slot, --vpcd {host}:{port + 1}"
                            "; or nothing answers at that address") from None
        except OSError as error:
            raise VpcdError(f"no vpcd on {self.endpoint} ({error.strerror or error}): is pcscd running with "
                            "vsmartcard's driver? sudo apt install pcscd vsmartcard-vpcd, then "
                            "sudo systemctl restart pcscd") from None

    def _serve(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                card = self._card
            if card is None:
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            out = self._out_since + OUT_SECONDS - time.monotonic()
            if out > 0:
                self._stop.wait(out)
                continue
            connection = self._meet()
            if connection is None:
                continue
            with self._lock:
                if self._card is not card:  # taken away (or another one put in) while meeting
                    connection.close()
                    continue
                self._connection = connection
            try:
                self._session(connection, card)
            except OSError:
                pass  # vpcd went away, or the card was taken out: both end the insertion
            finally:
                with self._lock:
                    if self._connection is connection:
                        self._connection = None
                    self._out_since = time.monotonic()
                with contextlib.suppress(OSError):
                    connection.close()

    def _meet(self) -> socket.socket | None:
        try:
            connection = socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=2)
            connection.settimeout(None)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection
        except OSError as error:
            log.info("vpcd %s: %s", self.endpoint, error)
            self._stop.wait(RECONNECT_SECONDS)
            return None

    def _session(self, connection: socket.socket, card: PresentedFile) -> None:
        chip: Chip | None = None
        powered = False
        uid = b""
        exchanged = 0  # C-APDUs of this tap
        while True:
            message = _receive(connection)
            if message is None:
                return
            if len(message) == 1:
                if message[0] in (POWER_ON, RESET):  # a new tap; the card file is read at its first command
                    chip, powered, uid, exchanged = None, True, card.uid_for_tap(), 0
                    with self._lock:
                        self.taps += 1
                elif message[0] == POWER_OFF:
                    chip, powered = None, False
                elif message[0] == GET_ATR:
                    _send(connection, pcsc.contactless_atr(pcsc.ats_historical_bytes(SOFTWARE_CARD_ATS)))
                continue
            answer = self.reader_command(message) or pcsc.reader_answer(message, uid, SOFTWARE_CARD_ATS)
            if answer is None:
                if powered and chip is None:  # pcscd powers a card on when it is put in, maybe long before the
                    chip = card.chip()  # tap: a phone unlocked meanwhile is unlocked for it
                exchanged += 1
                with self._lock:
                    self.apdus += 1
                    pulled, tear, observe = exchanged == self._pull_at, self._tear, self._observe
                    if pulled:
                        self._pull_at = None  # only the first tap is cut short
                if pulled:
                    if tear and chip is not None:
                        chip.transceive(message)  # the card did the work; its answer never leaves
                    if observe is not None:
                        observe(message, None)
                    return  # the connection closes: the card left; the serve loop puts it back after OUT_SECONDS
                answer = chip.transceive(message) if chip is not None else SW_NO_CARD_POWER
                if observe is not None:
                    observe(message, answer)
            _send(connection, answer)

    def reader_command(self, apdu: bytes) -> bytes | None:
        """The "reader's" answer to its own commands, FF 00 40 (LEDs and buzzer) and FF 00 52 (the beep at card
        detection), over the card's connection or a test's stand-in for an escape; None for anything else."""
        try:
            if apdu[:3] == pcsc.LED_BUZZER:
                asked = pcsc.LedBuzzer.parse(apdu)
                with self._lock:
                    red, green = self.leds
                    self.leds = (red if asked.red is None else asked.red,
                                 green if asked.green is None else asked.green)
                    self.indications.append(asked)
                    return pcsc.led_state_answer(*self.leds)
            if apdu[:3] == pcsc.DETECTION_BUZZER:
                setting = pcsc.detection_buzzer_setting(apdu)
                with self._lock:
                    self.detection_beep = setting
                return pcsc.SW_OK
        except ValueError:
            return pcsc.SW_LED_FAILED
        return None

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _cancel_tap(self) -> None:
        if self._tap_timer is not None:
            self._tap_timer.cancel()
            self._tap_timer = None


def _receive(connection: socket.socket) -> bytes | None:
    head = _exactly(connection, 2)
    if head is None:
        return None
    return _exactly(connection, int.from_bytes(head, "big"))


def _exactly(connection: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        # vpcd writes a message's length and its bytes in two sends: ACK at once, or its Nagle waits for our delayed
        # ACK (40 ms on Linux) before the second half leaves
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = connection.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send(connection: socket.socket, payload: bytes) -> None:
    if len(payload) > MAX_MESSAGE:
        raise OSError("answer too long for vpcd")
    connection.sendall(len(payload).to_bytes(2, "big") + payload)
