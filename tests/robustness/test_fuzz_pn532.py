"""PN532 frames both ways: the software chip fed hostile host bytes, and the terminal's adapter (hardware/pn532.py,
pn532pi underneath) fed hostile chip answers over a real pseudo-terminal.

* chip: any byte stream, and well-framed commands with any parameters, never reach the chip's "a bug must not
  kill the chip" handler (an unexpected exception logged as "command … failed"), and the chip still answers
  GetFirmwareVersion afterwards;
* adapter: whatever a chip answers to InDataExchange, `in_data_exchange` returns bytes or raises Pn532Error, and
  sends a bounded number of frames (a chip that sets the MI bit forever cannot keep the terminal asking).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import tty
from collections.abc import Callable, Iterator

import pytest
from fuzzing import fuzz, tried
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_parsers import mutations

from firmware.simulator import frames
from firmware.simulator.air import Field
from firmware.simulator.chip import Pn532Chip
from firmware.simulator.faults import Faults
from hardware import pn532 as adapter

GET_FIRMWARE_VERSION = frames.encode_frame(frames.TFI_HOST, b"\x02")
# the chip's command codes (UM0701-02 table 8) plus a few it does not know
COMMAND_CODES = [0x00, 0x02, 0x04, 0x06, 0x08, 0x0C, 0x0E, 0x10, 0x12, 0x14, 0x16, 0x32, 0x40, 0x42, 0x44, 0x46,
                 0x4A, 0x4E, 0x50, 0x52, 0x54, 0x56, 0x58, 0x60, 0x86, 0x88, 0x8A, 0x8C, 0x8E, 0x90, 0x92, 0x94,
                 0x1F, 0xFF]


class MemoryHost:
    """The chip's host side in memory: its output parsed into frame events."""

    def __init__(self) -> None:
        self.events: queue.Queue[frames.Event] = queue.Queue()
        self._parser = frames.FrameParser()
        self._lock = threading.Lock()
        self.chip = Pn532Chip("fuzz", Field(), self._output, faults=Faults())

    def _output(self, data: bytes) -> None:
        with self._lock:
            for event in self._parser.feed(data):
                self.events.put(event)

    def firmware_version(self, timeout: float = 2.0) -> bytes | None:
        """Abort whatever runs (host ACK), drain, then GetFirmwareVersion's answer."""
        self.chip.receive(frames.ACK)
        while True:
            try:
                self.events.get(timeout=0.01)
            except queue.Empty:
                break
        self.chip.receive(GET_FIRMWARE_VERSION)
        for _ in range(3):
            try:
                event = self.events.get(timeout=timeout)
            except queue.Empty:
                return None
            if isinstance(event, frames.Frame) and event.payload[:1] == b"\x03":
                return event.payload[1:]
        return None


@pytest.fixture(scope="module")
def memory_host() -> Iterator[MemoryHost]:
    host = MemoryHost()
    yield host
    host.chip.close()


HOST_FRAMES = st.one_of(
    st.tuples(st.sampled_from(COMMAND_CODES), st.binary(max_size=40)).map(
        lambda t: frames.encode_frame(frames.TFI_HOST, bytes([t[0]]) + t[1])),
    st.binary(min_size=1, max_size=80).map(lambda b: frames.encode_frame(frames.TFI_HOST, b)),
    st.binary(max_size=80).map(lambda b: frames.encode_frame(frames.TFI_CHIP, b)),  # a frame the wrong way
    st.binary(max_size=120),
    st.sampled_from([frames.ACK, frames.NACK, frames.ERROR_FRAME, b"\x55\x55\x00\x00\x00", b"\x00\x00\xff\xff\xff",
                     b"\x00\x00\xff\xff\xff\x01\x09\xf6", b"\x00\x00\xff\x00\x00"]),
)


@fuzz(150)
@given(stream=st.lists(HOST_FRAMES, min_size=1, max_size=6), split=st.integers(1, 16))
def test_hostile_host_bytes_never_break_the_software_chip(memory_host: MemoryHost, stream: list[bytes], split: int,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    tried("pn532 chip: hostile host frames")
    caplog.set_level(logging.ERROR, logger="firmware.simulator.chip")
    caplog.clear()
    data = b"".join(stream)
    for start in range(0, len(data), split):  # any split, as a UART delivers it
        memory_host.chip.receive(data[start : start + split])
    if memory_host.chip._parser.pending() > 1:
        # A header that announces more bytes than came (an extended LEN up to 265) makes the chip wait for them,
        # as a byte stream must; the host's way out is the one the terminal's reader takes: an RSTPDN reset.
        tried("pn532 chip: recovered by RSTPDN")
        memory_host.chip.reset()
    version = memory_host.firmware_version()
    assert version == bytes.fromhex("32010607")  # PN532 v1.6, still answering
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failures == [], failures


# --- the frame codec alone (pure: no chip thread, no pty), cheap enough for a million inputs ----------------------

REAL_FRAMES = [GET_FIRMWARE_VERSION, frames.ACK, frames.NACK, frames.ERROR_FRAME,
               frames.encode_frame(frames.TFI_CHIP, b"\x41\x00" + bytes(range(40)) + b"\x90\x00"),
               frames.encode_frame(frames.TFI_HOST, b"\x00" + bytes(range(256)), extended=True)]


CODEC_INPUT = st.one_of(st.binary(max_size=300), st.sampled_from(REAL_FRAMES).flatmap(mutations),
                        st.lists(st.sampled_from([b"\x00", b"\xff", b"\x00\xff", b"\xff\xff", b"\x01", b"\xd4"]),
                                 max_size=30).map(b"".join))


@fuzz(300)
@given(raw=CODEC_INPUT, split=st.integers(1, 17))
def test_the_frame_codec_raises_only_frame_errors_and_parses_the_same_however_split(raw: bytes, split: int) -> None:
    tried("pn532 frames: decode/stream parse (pure)")
    try:
        frame = frames.decode_frame(raw)
    except frames.FrameError:
        pass
    else:
        assert frames.decode_frame(frame.encode()) == frame  # what decodes re-encodes to the same frame
    assert isinstance(frames.is_ack(raw), bool) and isinstance(frames.is_nack(raw), bool)
    whole = frames.FrameParser()
    expected = whole.feed(raw)
    pieces = frames.FrameParser()
    events = [event for start in range(0, len(raw), split) for event in pieces.feed(raw[start : start + split])]
    assert events == expected
    assert pieces.pending() == whole.pending() <= 7 + frames.MAX_PAYLOAD + 2  # one unfinished frame at most
    for event in events:
        if isinstance(event, frames.Frame):
            assert frames.decode_frame(event.encode()) == event


# --- the terminal's adapter against a hostile chip on a real pseudo-terminal --------------------------------------


class HostileChip:
    """A chip on the master side of a pty: ACKs every host frame, then answers with `answer(payload)`."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.answer: Callable[[bytes], bytes] = lambda payload: b""
        self.frames_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        parser = frames.FrameParser()
        import select

        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for event in parser.feed(data):
                if isinstance(event, frames.Frame):
                    self.frames_seen += 1
                    os.write(self.master, frames.ACK + self.answer(event.payload))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture(scope="module")
def hostile_chip() -> Iterator[tuple[HostileChip, adapter.SerialHsu]]:
    chip = HostileChip()
    interface = adapter.SerialHsu(chip.path)
    interface.begin()
    yield chip, interface
    interface.close()
    chip.close()


def response(payload: bytes) -> bytes:
    """A well-framed InDataExchange answer (D5 41 …)."""
    return frames.encode_frame(frames.TFI_CHIP, b"\x41" + payload)


CHIP_ANSWERS = st.one_of(
    st.binary(max_size=40).map(lambda b: response(b"\x00" + b)),  # status OK, any data
    st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(lambda t: response(bytes([t[0]]) + t[1])),
    st.binary(max_size=60).map(lambda b: frames.encode_frame(frames.TFI_CHIP, b)),  # wrong response code
    st.binary(max_size=60),  # no frame at all
    st.sampled_from([frames.ERROR_FRAME, frames.NACK, frames.ACK, response(b""), response(b"\x40"),
                     b"\x00\x00\xff\xff\xff\x00\x03\xfd\xd5\x41\x00\xea\x00"]),
)


@fuzz(60)
@given(answers=st.lists(CHIP_ANSWERS, min_size=1, max_size=3), mi_forever=st.booleans())
def test_hostile_chip_answers_to_in_data_exchange_are_bytes_or_pn532_errors(
    hostile_chip: tuple[HostileChip, adapter.SerialHsu], answers: list[bytes], mi_forever: bool
) -> None:
    tried("pn532 adapter: hostile chip answers (pty)")
    chip, interface = hostile_chip
    queue_ = list(answers)

    def answer(payload: bytes) -> bytes:
        if mi_forever:
            return response(b"\x40" + b"\x90")  # status OK with More Information, for ever
        return queue_.pop(0) if queue_ else response(b"\x00\x90\x00")

    chip.answer = answer
    before = chip.frames_seen
    try:
        result = adapter.in_data_exchange(interface, bytes.fromhex("00A404000E325041592E5359532E444446303100"),
                                          timeout_ms=40)
    except adapter.Pn532Error as error:
        assert error.status is None or 0 <= error.status <= 0x3F
    else:
        assert isinstance(result, bytes)
        assert not mi_forever
    sent = chip.frames_seen - before
    assert sent <= adapter.MAX_CHAINED_FRAMES + 1, f"{sent} InDataExchange frames for one APDU"
