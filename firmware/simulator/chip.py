"""The PN532 chip as its host sees it over HSU (NXP UM0701-02): frames in, ACK and responses out.

Bytes from the host arrive on the transport's thread and are answered with an ACK at once; each command
then runs on the chip's own worker thread, because many of them wait (for a card in the field, for a
reader to activate the emulated target, for the card's answer). A host ACK aborts the command in flight:
its response is never sent. See ../shared/docs/pn532.md.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware.simulator import frames
from firmware.simulator.air import Field, Picc, TypeAIdentity
from firmware.simulator.faults import Faults
from firmware.simulator.isodep import IsoDepProtocolError, IsoDepTimeout, PcdEngine, PiccEngine, fsc_from_fsci
from firmware.simulator.link import BAUD_RATES
from firmware.simulator.timing import LinkModel

log = logging.getLogger(__name__)

FIRMWARE_VERSION = bytes.fromhex("32010607")  # PN532, firmware 1.6, ISO 14443A + B + 18092

# Status codes (status byte b5-b0), UM §7.1 / doc §2.4.
OK = 0x00
TIMEOUT = 0x01
INVALID_FRAME = 0x13
NOT_ACCEPTABLE = 0x27  # e.g. Tg = 0, or no such target
RELEASED = 0x29
INVALID_PARAMETER = 0x10
MORE_INFORMATION = 0x40  # b6 of Tg (host → chip) and of the status (chip → host)
MAX_DATA = 262  # bytes of DataIn/DataOut per frame

# SetParameters flags.
AUTOMATIC_RATS = 0x10
ISO14443_4_PICC = 0x20
DEFAULT_PARAMETERS = AUTOMATIC_RATS | ISO14443_4_PICC | 0x04  # 34h: what a chip behaves like at power-on

# Register file: CIU registers with their reset values (UM §8.6 / doc §2.1).
REGISTER_DEFAULTS = {
    0x6302: 0x80,  # CIU_TxMode: CRC on, 106 kbps, type A
    0x6303: 0x80,  # CIU_RxMode
    0x6304: 0x80,  # CIU_TxControl
    0x6305: 0x00,  # CIU_TxAuto
    0x6339: 0x26,  # CIU_FIFOData: what nfcpy reads as "no card in the field"
    0x633D: 0x00,  # CIU_BitFraming
    0xFFB0: 0x00,  # P3CFGA
    0xFFB1: 0x00,  # P3CFGB
    0xFFB2: 0x3F,  # P3
    0xFFB4: 0x00,  # P7CFGA
    0xFFB5: 0x00,  # P7CFGB
    0xFFF4: 0x07,  # P7
}
POLL_ATTEMPT_SECONDS = 0.005  # model: one WUPA + anticollision attempt when nothing answers
TARGET_ANSWER_SECONDS = 2.0  # how long the air waits for an emulating host's TgSetData (the chip would send WTX)


FrameObserver = Callable[[str, frames.Event, int], None]
"""Told of every frame: direction ("in" from the host, "out" to it), the frame, the UART rate at the time."""


class Aborted(Exception):
    """The host aborted the command with an ACK, or the chip was reset."""


class CommandError(Exception):
    """A syntax error in the command: answered with the error frame (after the ACK)."""


@dataclass
class _Job:
    payload: bytes
    aborted: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Target:
    """A target the initiator has listed (Tg 1 or 2)."""

    number: int
    picc: Picc
    identity: TypeAIdentity
    pcd: PcdEngine | None  # set once RATS/ATS made it an ISO-DEP target
    deselected: bool = False


class Pn532Chip:
    """One PN532: register file, parameters, RF configuration, initiator targets and target-mode state."""

    def __init__(
        self,
        name: str,
        field_: Field,
        output: Callable[[bytes], None],
        *,
        link: LinkModel | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.name = name
        self.field = field_
        self.link = link or LinkModel(enabled=False)
        self.faults = faults or Faults()
        self._output = output
        self._output_lock = threading.Lock()
        self._parser = frames.FrameParser()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._current: _Job | None = None
        self._last_response: bytes | None = None
        self._pending_baud: int | None = None
        self._state_lock = threading.RLock()
        self._target_mode = _TargetMode(self)
        self.frames_rejected = 0
        self.reset_listeners: list[Callable[[], None]] = []  # a bus target drops the frames not yet read
        self.frame_observers: list[FrameObserver] = []  # the frame log (pos-card pn532 --trace, the HIL report)
        self._output_parser = frames.FrameParser()
        self._power_on_state()
        self._worker = threading.Thread(target=self._work, name=f"pn532-{name}", daemon=True)
        self._worker.start()

    # -- transport side -----------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes from the host (any split). Never raises: a bad frame is dropped as a real chip does."""
        if self.faults.silent:
            return
        for event in self._parser.feed(data):
            for observer in self.frame_observers:
                observer("in", event, self.baud)
            if isinstance(event, frames.Frame):
                self._on_frame(event)
            elif isinstance(event, frames.Ack):
                self._on_host_ack()
            elif isinstance(event, frames.Nack):
                if self._last_response is not None:
                    self._emit(self._last_response)
            else:
                self.frames_rejected += 1
                log.info("%s: frame rejected (%s)", self.name, event.reason)

    def reset(self) -> None:
        """RSTPDN pulse: drop the command in flight, forget targets and settings, back to LowVbat."""
        with self._state_lock:
            if self._current is not None:
                self._current.aborted.set()
            self._target_mode.stop()
            self._field_off()
            self._parser.reset()
            self.faults.clear()
            self._power_on_state()
            for listener in self.reset_listeners:
                listener()

    def close(self) -> None:
        self.reset()
        self._jobs.put(None)

    def _power_on_state(self) -> None:
        self.power = "lowvbat"
        self.parameters = DEFAULT_PARAMETERS
        self.sam_mode = 0x01
        self.baud = 115200
        self.rf_on = True
        self.registers = dict(REGISTER_DEFAULTS)
        self.max_retries_passive = 0xFF
        self.retry_timeout_code = 0x0A  # RFConfiguration item 02: 51.2 ms for InCommunicateThru
        self.rf_items: dict[int, bytes] = {}
        self.targets: dict[int, _Target] = {}
        self._data_in_pending = b""  # InDataExchange response left for MI chaining
        self._data_out_pending = b""  # host data with MI set, waiting for the rest
        self.link.baud = self.baud
        self._last_response = None
        self._pending_baud = None

    def _on_frame(self, frame: frames.Frame) -> None:
        if frame.tfi != frames.TFI_HOST or not frame.payload:
            self.frames_rejected += 1
            return
        if self._pending_baud is not None:
            # The host's ACK after SetSerialBaudRate can be lost on a pty: nfcpy flushes its output right
            # after writing it. A host that sends the next frame has switched, so the chip follows.
            self._switch_baud()
        if self._current is not None:
            self._current.aborted.set()  # a new command replaces one the host gave up on
        self.link.host_frame(len(frame.payload))
        delay = self.faults.take("late_ack")
        if not self.faults.take("drop_ack"):
            if delay:
                time.sleep(float(delay))
            self._emit(frames.ACK)
        job = _Job(frame.payload)
        self._current = job
        self._jobs.put(job)

    def _on_host_ack(self) -> None:
        job = self._current
        if job is not None:
            job.aborted.set()
        if self._pending_baud is not None:  # SetSerialBaudRate: both sides switch after the host ACK
            self._switch_baud()

    def _switch_baud(self) -> None:
        self.baud = self.link.baud = self._pending_baud or self.baud
        self._pending_baud = None

    def _emit(self, data: bytes) -> None:
        with self._output_lock:
            if self.faults.silent:
                return  # silent means nothing at all, also an answer that was under way when it was armed
            data = self.faults.mangle_output(data)
            if data:
                if self.frame_observers:
                    for event in self._output_parser.feed(data):
                        for observer in self.frame_observers:
                            observer("out", event, self.baud)
                self.link.pace_uart(len(data))
                self._output(data)

    # -- worker ---------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.aborted.is_set():
                continue
            try:
                response = self._execute(job)
            except Aborted:
                continue
            except CommandError as error:
                log.info("%s: command %s rejected: %s", self.name, job.payload[:1].hex(), error)
                if not job.aborted.is_set():
                    self._last_response = frames.ERROR_FRAME  # a NACK asks for this answer, not an older one
                    self._emit(frames.ERROR_FRAME)
                continue
            except Exception:  # a bug must not kill the chip: answer as a syntax error
                log.exception("%s: command %s failed", self.name, job.payload[:1].hex())
                if not job.aborted.is_set():
                    self._last_response = frames.ERROR_FRAME
                    self._emit(frames.ERROR_FRAME)
                continue
            if response is None or job.aborted.is_set():
                continue
            encoded = frames.encode_frame(frames.TFI_CHIP, bytes([job.payload[0] + 1]) + response)
            self._last_response = encoded
            self._emit(encoded)

    def _execute(self, job: _Job) -> bytes | None:
        code, params = job.payload[0], job.payload[1:]
        handler = self._handlers().get(code)
        if handler is None:
            raise CommandError(f"unknown command {code:02X}")
        if self.faults.take("error_frame"):
            raise CommandError("injected error frame")
        if self.faults.take("no_answer"):
            self._wait(job, lambda: False, None)
        if self.power == "powerdown":
            self.power = "normal"  # any frame on HSU wakes it (lenient: no 0x55 required)
        return handler(job, params)

    def _handlers(self) -> dict[int, Callable[[_Job, bytes], bytes | None]]:
        return {
            0x00: self._diagnose,
            0x02: lambda job, p: FIRMWARE_VERSION,
            0x04: self._get_general_status,
            0x06: self._read_register,
            0x08: self._write_register,
            0x0C: lambda job, p: bytes([self.registers[0xFFB2], self.registers[0xFFF4], 0x00]),
            0x0E: self._write_gpio,
            0x10: self._set_serial_baud_rate,
            0x12: self._set_parameters,
            0x14: self._sam_configuration,
            0x16: self._power_down,
            0x32: self._rf_configuration,
            0x40: self._in_data_exchange,
            0x42: self._in_communicate_thru,
            0x44: self._in_deselect,
            0x4A: self._in_list_passive_target,
            0x52: self._in_release,
            0x54: self._in_select,
            0x86: self._target_mode.get_data,
            0x8A: self._target_mode.get_status,
            0x8C: self._target_mode.init_as_target,
            0x8E: self._target_mode.set_data,
            0x94: self._target_mode.set_meta_data,
        }

    @staticmethod
    def _wait(job: _Job, ready: Callable[[], bool], timeout: float | None, step: float = 0.002) -> bool:
        """Wait until ready() or the timeout; an abort ends the wait with Aborted."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            if job.aborted.is_set():
                raise Aborted
            if deadline is not None and time.monotonic() >= deadline:
                return False
            job.aborted.wait(step)
        if job.aborted.is_set():
            raise Aborted
        return True

    # -- miscellaneous commands -----------------------------------------------------------------------------

    def _diagnose(self, job: _Job, params: bytes) -> bytes:
        if not params:
            raise CommandError("Diagnose needs NumTst")
        test = params[0]
        if test == 0x00:  # communication line test: echo
            return params
        if test in (0x01, 0x02):  # ROM / RAM test
            return b"\x00"
        if test == 0x06:  # attention request / card presence
            present = any(not t.deselected for t in self.targets.values())
            return bytes([OK if present else TIMEOUT])
        if test == 0x07:  # antenna self test
            return b"\x00"
        if test == 0x04:  # polling test
            return b"\x00"
        raise CommandError(f"Diagnose test {test:02X} not supported")

    def _get_general_status(self, job: _Job, params: bytes) -> bytes:
        listed = list(self.targets.values())
        out = bytes([0x00, 0x01 if self.rf_on else 0x00, len(listed)])
        for target in listed:
            out += bytes([target.number, 0x00, 0x00, 0x00])
        return out + b"\x00"

    def _read_register(self, job: _Job, params: bytes) -> bytes:
        if not params or len(params) % 2:
            raise CommandError("ReadRegister takes address pairs")
        values = []
        for i in range(0, len(params), 2):
            address = params[i] << 8 | params[i + 1]
            if address == 0x6339:  # FIFOData: 26h when no card is in the field (nfcpy's check)
                values.append(0x26 if self.field.current(exclude=self._target_mode.picc) is None else 0x00)
            else:
                values.append(self.registers.get(address, 0x00))
        return bytes(values)

    def _write_register(self, job: _Job, params: bytes) -> bytes:
        if not params or len(params) % 3:
            raise CommandError("WriteRegister takes address/value triples")
        for i in range(0, len(params), 3):
            self.registers[params[i] << 8 | params[i + 1]] = params[i + 2]
        return b""

    def _write_gpio(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 2:
            raise CommandError("WriteGPIO takes P3 and P7")
        if params[0] & 0x80:
            self.registers[0xFFB2] = params[0] & 0x3F
        if params[1] & 0x80:
            self.registers[0xFFF4] = params[1] & 0x07
        return b""

    def _set_serial_baud_rate(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 1 or params[0] not in BAUD_RATES:
            raise CommandError("SetSerialBaudRate code 00-08")
        self._pending_baud = BAUD_RATES[params[0]]
        return b""

    def _set_parameters(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("SetParameters takes one flags byte")
        self.parameters = params[0]
        return b""

    def _sam_configuration(self, job: _Job, params: bytes) -> bytes:
        if not 1 <= len(params) <= 3 or params[0] not in (0x01, 0x02, 0x03, 0x04):
            raise CommandError("SAMConfiguration mode 01-04 [timeout] [IRQ]")
        self.sam_mode = params[0]
        self.power = "normal"
        return b""

    def _power_down(self, job: _Job, params: bytes) -> bytes:
        if not 1 <= len(params) <= 2:
            raise CommandError("PowerDown WakeUpEnable [GenerateIRQ]")
        self.power = "powerdown"
        self._field_off()
        return b"\x00"

    def _rf_configuration(self, job: _Job, params: bytes) -> bytes:
        if not params:
            raise CommandError("RFConfiguration needs an item")
        item, data = params[0], params[1:]
        sizes = {0x01: 1, 0x02: 3, 0x04: 1, 0x05: 3, 0x0A: 11, 0x0B: 8, 0x0C: 3, 0x0D: 9}
        if sizes.get(item) != len(data):
            raise CommandError(f"RFConfiguration item {item:02X} with {len(data)} bytes")
        self.rf_items[item] = data
        if item == 0x01:
            self.rf_on = bool(data[0] & 0x01)
            if not self.rf_on:
                self._field_off()  # every card in it loses power
        elif item == 0x02:
            self.retry_timeout_code = data[2]
        elif item == 0x05:
            self.max_retries_passive = data[2]
        return b""

    # -- initiator (reader) ------------------------------------------------------------------------------

    def _in_list_passive_target(self, job: _Job, params: bytes) -> bytes:
        if len(params) < 2 or params[0] not in (1, 2) or params[1] > 0x04:
            raise CommandError("InListPassiveTarget MaxTg(1-2) BrTy(00-04)")
        self._release_targets()
        self.rf_on = True
        if params[1] != 0x00:  # FeliCa, type B, Jewel: nothing of that kind exists in this air
            self._poll(job, lambda: None)
            return b"\x00"
        picc = self._poll(job, lambda: self.field.current(exclude=self._target_mode.picc))
        if picc is None:
            return b"\x00"
        identity = picc.activate()
        if identity is None:
            return b"\x00"
        wanted_uid = _without_cascade_tags(params[2:])
        if wanted_uid and wanted_uid != identity.uid:
            return b"\x00"
        self.link.air_activation(len(identity.uid))
        target = _Target(1, picc, identity, None)
        out = bytes([1, 1]) + identity.sens_res + bytes([identity.sel_res, len(identity.uid)]) + identity.uid
        if identity.sel_res & 0x20 and self.parameters & AUTOMATIC_RATS:
            ats = picc.exchange(b"\xe0\x80", self._rats_timeout())  # FSDI 8 (256 bytes), CID 0
            if ats is None or not ats or ats[0] != len(ats):
                return b"\x00"
            self.link.air_frames(2, len(ats))
            target.pcd = PcdEngine(lambda block: self._air_send(target, block), fsc=_fsc_of(ats))
            out += ats
        self.targets[1] = target
        return out

    def _poll(self, job: _Job, find: Callable[[], Picc | None]) -> Picc | None:
        """WUPA until something answers: MxRtyPassiveActivation FF polls until a card comes or an abort."""
        attempts = None if self.max_retries_passive == 0xFF else self.max_retries_passive + 1
        done = 0
        while True:
            picc = find()
            if picc is not None:
                return picc
            done += 1
            if attempts is not None and done >= attempts:
                return None
            self.field.wait_for_card(POLL_ATTEMPT_SECONDS, exclude=self._target_mode.picc)
            if job.aborted.is_set():
                raise Aborted

    def _rats_timeout(self) -> float:
        return 0.2

    def _air_send(self, target: _Target, block: bytes) -> bytes | None:
        answer = target.picc.exchange(block, TARGET_ANSWER_SECONDS)
        if answer is not None:
            self.link.air_frames(len(block), len(answer))
        return answer

    def _target(self, tg_byte: int) -> _Target | None:
        return self.targets.get(tg_byte & 0x3F)

    def _in_data_exchange(self, job: _Job, params: bytes) -> bytes:
        if not params:
            raise CommandError("InDataExchange needs Tg")
        tg, data = params[0], params[1:]
        target = self._target(tg)
        if target is None or target.deselected:
            return bytes([NOT_ACCEPTABLE])
        injected = self.faults.take("status")
        if injected is not None:
            return bytes([int(injected)])
        if not data and self._data_in_pending:  # the host collects the rest of a long answer
            return self._data_in_chunk()
        if tg & MORE_INFORMATION:  # the host has more to send: keep it until the last part
            self._data_out_pending += data
            return bytes([OK])
        apdu, self._data_out_pending = self._data_out_pending + data, b""
        if target.pcd is None:
            return bytes([INVALID_FRAME])  # not an ISO-DEP target (no RATS): nothing to carry APDUs
        started, air_before = time.monotonic(), self.link.hops["air"]
        try:
            answer = target.pcd.exchange(apdu)
        except IsoDepTimeout:
            return bytes([TIMEOUT])
        except IsoDepProtocolError:
            return bytes([INVALID_FRAME])
        # What the card took is the elapsed time minus the air time the link model accounted (and, when
        # enabled, slept) meanwhile: that time is already in the "air" hop and must not count twice.
        air_spent = self.link.hops["air"] - air_before
        self.link.card_processing(apdu, answer, max(0.0, time.monotonic() - started - air_spent))
        self._data_in_pending = answer
        return self._data_in_chunk()

    def _data_in_chunk(self) -> bytes:
        chunk, self._data_in_pending = self._data_in_pending[:MAX_DATA], self._data_in_pending[MAX_DATA:]
        return bytes([OK | (MORE_INFORMATION if self._data_in_pending else 0)]) + chunk

    def _in_communicate_thru(self, job: _Job, params: bytes) -> bytes:
        if not params:  # nothing to send, so nothing comes back: a real chip answers with its timeout status
            return bytes([TIMEOUT])
        injected = self.faults.take("status")
        if injected is not None:
            return bytes([int(injected)])
        target = self.targets.get(1)
        if target is None:
            picc = self.field.current(exclude=self._target_mode.picc)
            if picc is None:
                return bytes([TIMEOUT])
            target = _Target(1, picc, TypeAIdentity(b"\x00\x04", b"", 0x20), None)
        timeout = 0.0001 * 2 ** (self.retry_timeout_code - 1) if self.retry_timeout_code else 0.0
        answer = target.picc.exchange(params, max(timeout, TARGET_ANSWER_SECONDS))
        if answer is None:
            return bytes([TIMEOUT])
        self.link.air_frames(len(params), len(answer))
        return bytes([OK]) + answer

    def _in_deselect(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("InDeselect Tg")
        for target in self._addressed(params[0]):
            if target.pcd is not None and not target.deselected:
                target.pcd.deselect()
            target.deselected = True
        return bytes([OK]) if self._addressed(params[0]) or params[0] == 0 else bytes([NOT_ACCEPTABLE])

    def _in_release(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("InRelease Tg")
        addressed = self._addressed(params[0])
        if not addressed and params[0] != 0:
            return bytes([NOT_ACCEPTABLE])
        for target in addressed:
            self._release(target)
        return bytes([OK])

    def _in_select(self, job: _Job, params: bytes) -> bytes:
        if len(params) != 1:
            raise CommandError("InSelect Tg")
        target = self.targets.get(params[0])
        if target is None:
            return bytes([NOT_ACCEPTABLE])
        target.deselected = False
        return bytes([OK])

    def _addressed(self, tg: int) -> list[_Target]:
        return list(self.targets.values()) if tg == 0 else [t for n, t in self.targets.items() if n == tg]

    def _release(self, target: _Target) -> None:
        """InRelease: DESELECT and forget the target; the field stays on, so the card stays powered."""
        if target.pcd is not None and not target.deselected:
            with contextlib.suppress(IsoDepTimeout, IsoDepProtocolError):
                target.pcd.deselect()
        target.picc.halt()
        self.targets.pop(target.number, None)

    def _release_targets(self) -> None:
        for target in list(self.targets.values()):
            self._release(target)
        self._data_in_pending = self._data_out_pending = b""

    def _field_off(self) -> None:
        """RF off (RFConfiguration, PowerDown, a reset): every target released and the card in the field unpowered."""
        self._release_targets()
        self.field.power_off()


def _without_cascade_tags(uid: bytes) -> bytes:
    """InListPassiveTarget InitiatorData for type A: a 4-byte UID as is, a 7-byte one as 88 + UID (8 bytes),
    a 10-byte one as 88 + 3 bytes + 88 + 7 bytes (12); only those cascade tags go, a UID byte 88 stays."""
    if len(uid) == 8 and uid[0] == 0x88:
        return uid[1:]
    if len(uid) == 12 and uid[0] == 0x88 and uid[4] == 0x88:
        return uid[1:4] + uid[5:]
    return uid


def _fsc_of(ats: bytes) -> int:
    """FSC from the ATS format byte T0 (b4-b1 = FSCI); 32 bytes when the ATS has no T0."""
    return fsc_from_fsci(ats[1] & 0x0F) if len(ats) > 1 else 32


class _TargetMode:
    """The chip emulating a card (TgInitAsTarget … TgGetData / TgSetData), seen by other chips as a Picc."""

    def __init__(self, chip: Pn532Chip) -> None:
        self.chip = chip
        self.picc: _TargetPicc | None = None

    def stop(self) -> None:
        picc, self.picc = self.picc, None  # reset() and the worker may both stop it
        if picc is not None:
            picc.release()
            self.chip.field.leave(picc)

    def init_as_target(self, job: _Job, params: bytes) -> bytes:
        if len(params) < 37:
            raise CommandError("TgInitAsTarget parameters too short")
        mode, mifare = params[0], params[1:7]
        gt_length = params[35]
        if len(params) < 37 + gt_length:
            raise CommandError("TgInitAsTarget Gt length")
        tk_length = params[36 + gt_length]
        tk = params[37 + gt_length : 37 + gt_length + tk_length]
        if len(tk) != tk_length:
            raise CommandError("TgInitAsTarget Tk length")
        if not mode & 0x04 and not mifare[5] & 0x20:
            raise CommandError("only ISO 14443-4 PICC emulation (106 kbps type A) is modelled")
        self.stop()
        identity = TypeAIdentity(
            sens_res=bytes([mifare[1], mifare[0]]),  # LSB first in TgInitAsTarget, MSB first when listed
            uid=b"\x08" + mifare[2:5],
            sel_res=mifare[5],
        )
        picc = _TargetPicc(identity, bytes([5 + len(tk), 0x75, 0x33, 0x92, 0x03]) + tk)
        self.picc = picc
        self.chip.field.enter(picc)
        try:
            self.chip._wait(job, lambda: picc.first_frame is not None or picc.released, None)
        except Aborted:
            if self.picc is picc:
                self.stop()  # the host gave up waiting: the chip is no longer a card any reader could find
            raise
        if picc.released:
            return bytes([0x00]) + b""
        return bytes([0x08]) + picc.first_frame  # 106 kbps, ISO 14443-4 PICC, framing 106A

    def get_data(self, job: _Job, params: bytes) -> bytes:
        picc = self.picc
        if picc is None:
            return bytes([NOT_ACCEPTABLE])
        injected = self.chip.faults.take("status")
        if injected is not None:
            return bytes([int(injected)])
        self.chip._wait(job, lambda: picc.has_command() or picc.released, None)
        if picc.released and not picc.has_command():
            return bytes([RELEASED])
        return bytes([OK]) + picc.take_command()

    def set_data(self, job: _Job, params: bytes) -> bytes:
        picc = self.picc
        if picc is None or picc.released:
            return bytes([RELEASED])
        data, picc.meta = picc.meta + params, b""
        picc.answer(data)
        return bytes([OK])

    def set_meta_data(self, job: _Job, params: bytes) -> bytes:
        picc = self.picc
        if picc is None or picc.released:
            return bytes([RELEASED])
        picc.meta += params
        return bytes([OK])

    def get_status(self, job: _Job, params: bytes) -> bytes:
        picc = self.picc
        if picc is None:
            return bytes([0x00, 0x00])
        if picc.released:
            return bytes([0x80, 0x00])
        return bytes([0x81 if picc.first_frame is not None else 0x80, 0x00])


class _TargetPicc:
    """The emulated card in the air: the chip runs ISO-DEP itself and hands whole APDUs to its host."""

    def __init__(self, identity: TypeAIdentity, ats: bytes) -> None:
        self.identity = identity
        self.first_frame: bytes | None = None
        self.released = False
        self.meta = b""
        self._commands: list[bytes] = []
        self._answer: bytes | None = None
        self._condition = threading.Condition()
        self._engine = PiccEngine(self._forward, ats=ats, on_deselect=self.release)

    def activate(self) -> TypeAIdentity | None:
        return None if self.released else self.identity

    @property
    def in_reach(self) -> bool:
        return not self.released

    def exchange(self, frame: bytes, timeout: float) -> bytes | None:
        if self.released:
            return None
        if self.first_frame is None:
            with self._condition:
                self.first_frame = frame
                self._condition.notify_all()
        self._deadline = time.monotonic() + timeout
        try:
            return self._engine.handle(frame)
        except _NoAnswer:
            return None

    def halt(self) -> None:
        self.release()

    def field_off(self) -> None:
        self.release()

    def release(self) -> None:
        with self._condition:
            self.released = True
            self._condition.notify_all()

    def has_command(self) -> bool:
        return bool(self._commands)

    def take_command(self) -> bytes:
        with self._condition:
            return self._commands.pop(0)

    def answer(self, data: bytes) -> None:
        with self._condition:
            self._answer = data
            self._condition.notify_all()

    def _forward(self, apdu: bytes) -> bytes:
        with self._condition:
            self._answer = None
            self._commands.append(apdu)
            self._condition.notify_all()
            ready = self._condition.wait_for(
                lambda: self._answer is not None or self.released, max(0.0, self._deadline - time.monotonic())
            )
            if not ready or self._answer is None:
                raise _NoAnswer
            return self._answer


class _NoAnswer(Exception):
    pass
