"""The reader on PC/SC (pcscd) through pyscard: a USB contactless reader (ACS ACR122U, ACR1252U, Identiv …) or
vsmartcard's virtual one with the emulated cards in it (`pos-card vpcd`). Doc pcsc.md.

A card in the reader's slot is a card in the field. The reader reports an ISO 14443-4 card with a synthetic ATR
(`3B 8k 80 01` + its historical bytes, PC/SC Part 3) and answers GET DATA (FF CA) with the UID itself; nothing
else of the air (ATQA, SAK, the ATS) reaches an application, so the target is described from the ATR: ISO-DEP or
not, its UID, no ATS. A card found gone in the middle of a tap counts as presented again only when pcscd has seen it
inserted anew (its event count moved): a reader that learns of a removal by polling (vpcd, every 0.4 s) still
reports the old card present for a moment. Each tap is one
exclusive connection; `release` powers the card off, as a reader that drops its field, so the next
`wait_for_card` meets it afresh (a phone that wants its fingerprint is read again).

The reader's own LED and buzzer (ACR122U family, `[reader] feedback = "acr122u"`) are driven by `indicate`, which
never waits: a thread of this reader sends each command, over the card's connection while a tap holds it (the reader
answers FF 00 40 itself) or else over the reader's escape (pcsc_escape.py), which a driver may refuse. A light never
delays a card command: during a tap only commands that set the LEDs go out; a beep (which may hold the reader for
its length) waits for `release`, which sends what is waiting over the card's connection after the tap's last
command, so the tap's states reach the reader even without the escape. The reader's own beep at every card it
detects is turned off once per `open` (FF 00 52): the terminal's tones take its place.

pyscard is imported only here and only when this backend is configured (`pip install .[pcsc]`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from emvcore import pcsc
from terminal.config import ReaderConfig, TerminalConfig
from terminal.reader.base import ISO_DEP_SAK, CardRemoved, ReaderError, Target
from terminal.reader.pcsc_escape import Escape

log = logging.getLogger("terminal.reader")

INSTALL_HINT = "pip install .[pcsc] (Debian: sudo apt install pcscd swig libpcsclite-dev)"
OUTBOX = 16  # indications waiting at most; older ones are dropped (a reader that stopped answering must not grow it)


class PcscReader:
    """`Reader` on one PC/SC reader. Takes the whole TerminalConfig or its [reader] section."""

    def __init__(self, config: ReaderConfig | TerminalConfig) -> None:
        self.config = config.reader if isinstance(config, TerminalConfig) else config
        try:
            from smartcard import scard
        except ImportError as error:
            raise ReaderError(f"[reader] type = \"pcsc\" needs pyscard ({error}): {INSTALL_HINT}") from None
        self._scard: Any = scard
        self._lock = threading.RLock()  # the transaction thread's calls
        self._card_lock = threading.RLock()  # the card's connection, shared with the indications' thread
        self._outbox: collections.deque[bytes] = collections.deque(maxlen=OUTBOX)
        self._post = threading.Condition()  # guards the outbox; taken inside _card_lock, never around it
        self._courier: threading.Thread | None = None
        self._held: list[bytes] = []  # beeps kept back during a tap, for release() (under _card_lock)
        self._escape: Escape | None = None
        self._quiet_pending = False  # the reader's own beep at card detection is still to be turned off
        self._context: Any = None
        self.name = ""  # the reader's name as pcscd gives it
        self._card: Any = None
        self._protocol = 0
        self._insertion = -1  # pcscd's count of card events when the card in use was found
        self._left: int | None = None  # that count once the card was found gone: wait for a new insertion
        self.resets = 0

    # -- Reader --------------------------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._context is not None:
                return
            scard = self._scard
            result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if result != scard.SCARD_S_SUCCESS:
                raise ReaderError(self._problem(result, "cannot reach pcscd"))
            self._context = context
            try:
                self.name = self._choose_reader()
            except ReaderError:
                self._release_context()
                raise
            self._quiet_pending = self.config.feedback != "none"  # our tones replace it (at the first chance)
            with self._card_lock:
                self._escape = Escape(scard, self.name)
            log.info("reader: %s", self.identify())

    def identify(self) -> str:
        return f"PC/SC reader {self.name} (pcscd)"

    def wait_for_card(self, timeout: float) -> Target | None:
        with self._lock:
            self._require_open()
            with self._card_lock:
                self._disconnect(self._scard.SCARD_LEAVE_CARD)
            scard = self._scard
            deadline = time.monotonic() + max(0.0, timeout)
            known = scard.SCARD_STATE_UNAWARE
            while True:
                wait_ms = max(0, round((deadline - time.monotonic()) * 1000))
                result, states = scard.SCardGetStatusChange(self._context, wait_ms, [(self.name, known)])
                if result == scard.SCARD_E_TIMEOUT:
                    return None
                if result != scard.SCARD_S_SUCCESS:
                    raise ReaderError(self._problem(result, f"watching {self.name}"))
                _, event, _ = states[0]
                count = event >> 16  # pcsc-lite: the high word counts the slot's insertions and removals
                if (event & scard.SCARD_STATE_PRESENT and not event & scard.SCARD_STATE_MUTE
                        and count != self._left):  # not the card that just left, still reported (vpcd) present
                    target = self._connect()
                    if target is not None:
                        self._insertion, self._left = count, None
                        return target
                known = event & ~scard.SCARD_STATE_CHANGED
                if time.monotonic() >= deadline:
                    return None

    def transceive(self, apdu: bytes) -> bytes:
        with self._lock:
            self._require_open()
            scard = self._scard
            with self._card_lock:
                if self._card is None:
                    raise CardRemoved("no card is activated (none found yet, or the last one left)")
                result, response = scard.SCardTransmit(self._card, self._protocol, list(apdu))
                if result == scard.SCARD_S_SUCCESS and len(response) >= 2:
                    return bytes(response)
                self._disconnect(scard.SCARD_LEAVE_CARD)
            if result == scard.SCARD_S_SUCCESS or result in self._gone():
                self._left = self._insertion  # only a new insertion counts as the card presented again
            if result == scard.SCARD_S_SUCCESS:  # no status word: vpcd's answer when its card left mid-exchange
                raise CardRemoved("card removed: no answer to the APDU (no status word)")
            if result in self._gone():
                raise CardRemoved(f"card removed: {scard.SCardGetErrorMessage(result).strip()}")
            raise ReaderError(self._problem(result, f"sending an APDU through {self.name}"))

    def release(self) -> None:
        with self._lock, self._card_lock:
            held, self._held = self._held, []
            with self._post:
                waiting = held + list(self._outbox)
                self._outbox.clear()
                if self._card is None:  # the card went on its own: the courier tries the escape
                    self._outbox.extend(waiting)
                    self._post.notify()
                    waiting = []
            for command in waiting:  # after the tap's last command: what it showed reaches the reader, escape or not
                self._deliver(command)
            self._disconnect(self._scard.SCARD_UNPOWER_CARD)

    def reset(self) -> None:
        """pcscd or the reader went away and back: a new context, the reader looked up again."""
        with self._lock:
            self.resets += 1
            with self._card_lock:
                self._disconnect(self._scard.SCARD_LEAVE_CARD)
                self._release_context()
            self.open()

    def close(self) -> None:
        with self._lock:
            self.release()
            with self._card_lock:
                with self._post:
                    waiting = list(self._outbox)
                    self._outbox.clear()
                for command in waiting:  # the last state shown (the lights off) over the escape, if there is one
                    self._deliver(command)
                with self._post:
                    self._release_context()
                    courier, self._courier = self._courier, None
                    self._post.notify_all()  # the courier sees that it is no longer the one and ends
        if courier is not None:
            courier.join(timeout=5)

    # -- the reader's LED and buzzer ------------------------------------------------------------------------------

    def indicate(self, command: bytes) -> None:
        """Send a pseudo-APDU the reader answers itself (its LED and buzzer) as soon as it can; returns at once."""
        with self._post:
            if self._context is None:
                return
            self._outbox.append(command)
            if self._courier is None or not self._courier.is_alive():
                self._courier = threading.Thread(target=self._carry, name="pcsc-indications", daemon=True)
                self._courier.start()
            self._post.notify()

    def escape_available(self) -> bool:
        """Whether the reader takes its commands with no card in it (its LED and buzzer between taps)."""
        with self._card_lock:
            self._require_open()
            return self._escape is not None and self._escape.available()

    def _carry(self) -> None:
        me = threading.current_thread()
        while True:
            with self._post:
                while not self._outbox and self._courier is me:
                    self._post.wait()
                if self._courier is not me:  # closed (a reset keeps it: the context comes back)
                    return
            with self._card_lock:  # taken from the outbox only under the card's lock: release() may be emptying it
                with self._post:
                    command = self._outbox.popleft() if self._outbox else None
                if command is None or self._context is None:
                    continue
                if self._card is not None and pcsc.sequence_tenths(command):
                    self._held.append(command)  # it could hold the reader mid-tap: release() sends it
                else:
                    self._deliver(command)

    def _deliver(self, command: bytes) -> None:
        """Over the card's connection if there is one, else over the escape (if any); whatever goes wrong is logged,
        never raised: a payment must not fail for a light."""
        scard = self._scard
        try:
            if self._card is not None:
                result, answer = scard.SCardTransmit(self._card, self._protocol, list(command))
                answered = bytes(answer) if result == scard.SCARD_S_SUCCESS else None
            elif self._escape is not None:
                self._quiet_if_pending()
                answered = self._escape.send(command)
            else:
                return
        except Exception as error:
            log.warning("reader lights: %s sending %s", type(error).__name__, command[:4].hex())
            return
        if answered is None or answered[:1] != b"\x90":
            log.debug("reader lights: %s did not take %s (%s)", self.name, command.hex(),
                      answered.hex() if answered is not None else "no answer")

    def _quiet_if_pending(self) -> None:
        if self._quiet_pending and self._escape is not None and self._escape.send(pcsc.detection_buzzer(False)):
            self._quiet_pending = False

    # -- inside -----------------------------------------------------------------------------------------------

    def _choose_reader(self) -> str:
        scard = self._scard
        result, names = scard.SCardListReaders(self._context, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE or (result == scard.SCARD_S_SUCCESS and not names):
            raise ReaderError("pcscd sees no reader: plug the USB reader in (pcsc_scan -r lists what pcscd sees)")
        if result != scard.SCARD_S_SUCCESS:
            raise ReaderError(self._problem(result, "listing the readers"))
        wanted = self.config.pcsc_reader
        chosen = [name for name in names if wanted.lower() in name.lower()] if wanted else list(names)
        if not chosen:
            raise ReaderError(f"no PC/SC reader named like {wanted!r}; pcscd sees: {', '.join(names)} "
                              "(set [reader] name to part of one)")
        return str(chosen[0])

    def _connect(self) -> Target | None:
        """An exclusive connection to the card in the slot; None when it left meanwhile."""
        with self._card_lock:  # not while the indications' thread holds a direct connection
            return self._connect_exclusive()

    def _connect_exclusive(self) -> Target | None:
        scard = self._scard
        result, card, protocol = scard.SCardConnect(self._context, self.name, scard.SCARD_SHARE_EXCLUSIVE,
                                                    scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if result in self._gone():
            return None
        if result == scard.SCARD_E_SHARING_VIOLATION:
            raise ReaderError(f"another program holds the card in {self.name} (pcsc_scan, a browser's smart-card "
                              "support …): close it")
        if result != scard.SCARD_S_SUCCESS:
            raise ReaderError(self._problem(result, f"connecting to the card in {self.name}"))
        self._card, self._protocol = card, protocol
        if self._quiet_pending:  # no escape (or none tried yet): the card's connection reaches the reader too
            scard.SCardTransmit(card, protocol, list(pcsc.detection_buzzer(False)))
            self._quiet_pending = False
        result, _, _, _, atr = scard.SCardStatus(card)
        atr = bytes(atr) if result == scard.SCARD_S_SUCCESS else b""
        uid = b""
        result, answer = scard.SCardTransmit(card, protocol, list(pcsc.GET_UID))
        if result == scard.SCARD_S_SUCCESS and bytes(answer[-2:]) == pcsc.SW_OK:
            uid = bytes(answer[:-2])
        iso_dep = pcsc.is_contactless_iso_dep(atr)
        log.debug("reader: card in %s, ATR %s, UID %s (not an identity)", self.name, atr.hex(), uid.hex())
        return Target(uid=uid, sens_res=b"", sel_res=ISO_DEP_SAK if iso_dep else 0, ats=b"")

    def _disconnect(self, disposition: int) -> None:
        card, self._card = self._card, None
        if card is not None:
            self._scard.SCardDisconnect(card, disposition)

    def _release_context(self) -> None:
        escape, self._escape = self._escape, None
        if escape is not None:
            escape.close()
        context, self._context = self._context, None
        if context is not None:
            self._scard.SCardReleaseContext(context)

    def _gone(self) -> tuple[int, ...]:
        """What a card that left says. SCARD_E_NOT_TRANSACTED too: a contactless card taken away in the middle of
        an exchange fails the transmission (vpcd's slot does, and so do USB contactless readers)."""
        scard = self._scard
        return (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD,
                scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_NOT_TRANSACTED)

    def _problem(self, result: int, doing: str) -> str:
        scard = self._scard
        text = scard.SCardGetErrorMessage(result).strip().rstrip(".")
        if result in (scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED):
            return f"{doing}: {text}: is pcscd running? sudo systemctl start pcscd (Debian: sudo apt install pcscd)"
        if result in (scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_UNKNOWN_READER):
            return f"{doing}: {text}: the reader was unplugged? (pcsc_scan -r lists what pcscd sees)"
        return f"{doing}: {text} (0x{result & 0xFFFFFFFF:08X})"

    def _require_open(self) -> None:
        if self._context is None:
            raise ReaderError("the reader is not open (call open() first)")
