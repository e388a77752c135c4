"""The software PN532 driven in memory, as a host sees it over HSU: framing rules, every command the POS,
the rig and nfcpy use, target mode between two chips in one field, fault injection and the link model.

The host here is a few lines of test code: it writes frames into `Pn532Chip.receive()` and parses what the
chip writes to its output with the shared `FrameParser`, waiting a bounded time for each event.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emvcore.apdu import CommandApdu
from firmware.apps.present import load_presentable
from firmware.issuing.layout import World
from firmware.simulator.air import SOFTWARE_CARD_ATS, Field, SoftwareCard, TypeAIdentity
from firmware.simulator.chip import Pn532Chip
from firmware.simulator.faults import KINDS, Faults
from firmware.simulator.frames import (
    ACK,
    ERROR_FRAME,
    NACK,
    TFI_CHIP,
    TFI_HOST,
    Ack,
    Event,
    Frame,
    FrameParser,
    Rejected,
    encode_frame,
)
from firmware.simulator.isodep import PN532_ATS, PiccEngine
from firmware.simulator.link import pn532_frame_bytes, uart_seconds
from firmware.simulator.timing import LinkModel

PN532PI_WAKEUP = bytes.fromhex("55000055")
DOTNET_WAKEUP = bytes.fromhex("5555") + bytes(25)
NFCPY_PREAMBLE = bytes(10)
GET_FIRMWARE_VERSION = bytes.fromhex("0000FF02FED4022A00")
FIRMWARE_VERSION_RESPONSE = bytes.fromhex("0000FF06FAD50332010607E800")
PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256).encode()
# pn532pi's EmulateTag: mode 05, SENS_RES 04 00 (LSB first), NFCID1t 12 34 56, SEL_RES 20, FeliCa 18 × 00,
# NFCID3t 10 × 00, no general bytes, no historical bytes.
NFCID1T = bytes.fromhex("123456")
TG_INIT_AS_TARGET = bytes([0x8C, 0x05, 0x04, 0x00]) + NFCID1T + bytes([0x20]) + bytes(18) + bytes(10) + b"\x00\x00"

ANSWER_WAIT = 1.0  # the longest any expected event may take
QUIET = 0.1  # how long "nothing arrives" is watched


class Host:
    """One host on one chip's HSU line: frames in through receive(), output parsed as it arrives."""

    def __init__(self, field: Field, *, name: str = "pos", link: LinkModel | None = None) -> None:
        self.raw = bytearray()
        self.events: queue.Queue[tuple[float, Event]] = queue.Queue()
        self.last_frame: Frame | None = None
        self._parser = FrameParser()
        self._lock = threading.Lock()
        self.chip = Pn532Chip(name, field, self._output, link=link, faults=Faults())

    def _output(self, data: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self.raw += data
            for event in self._parser.feed(data):
                self.events.put((now, event))

    def send(self, payload: bytes, *, wake: bool = True, extended: bool | None = None) -> float:
        """Write one command frame (pn532pi's wake-up first); the time just before the write."""
        started = time.monotonic()
        self.chip.receive((PN532PI_WAKEUP if wake else b"") + encode_frame(TFI_HOST, payload, extended=extended))
        return started

    def next_event(self, timeout: float = ANSWER_WAIT) -> tuple[float, Event] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def ack(self, timeout: float = ANSWER_WAIT) -> bool:
        item = self.next_event(timeout)
        return item is not None and isinstance(item[1], Ack)

    def response(self, code: int, timeout: float = ANSWER_WAIT) -> bytes | None:
        """The data of the answer to command `code` (after the response code); ERROR_FRAME for the error
        frame; None when nothing came in time."""
        item = self.next_event(timeout)
        if item is None:
            return None
        return self._data(code, item[1])

    def _data(self, code: int, event: Event) -> bytes:
        assert isinstance(event, Frame), f"expected a response frame, got {event}"
        self.last_frame = event
        if event.is_error:
            return ERROR_FRAME
        assert event.tfi == TFI_CHIP and event.payload[:1] == bytes([code + 1]), event
        return event.payload[1:]

    def command(self, payload: bytes, *, wake: bool = True, timeout: float = ANSWER_WAIT) -> tuple[bool, bytes | None]:
        """(ACK seen, response data): the helper every dialog test goes through."""
        self.send(payload, wake=wake)
        first = self.next_event(timeout)
        if first is None:
            return False, None
        if isinstance(first[1], Ack):
            return True, self.response(payload[0], timeout)
        return False, self._data(payload[0], first[1])

    def quiet(self, seconds: float = QUIET) -> bool:
        """True when nothing at all arrives for `seconds`."""
        return self.next_event(seconds) is None

    def abort(self) -> None:
        self.chip.receive(ACK)


class EchoPicc:
    """A card of the test's own: ISO-DEP by a PiccEngine with the PN532 ATS (FSC 64, so the air chains too)
    over a handler that answers every C-APDU with 300 bytes derived from it."""

    in_reach = True

    def __init__(self, uid: bytes = bytes.fromhex("08A1B2C3")) -> None:
        self.identity = TypeAIdentity.for_uid(uid)
        self.apdus: list[bytes] = []
        self.field_offs = 0
        self.engine = PiccEngine(self._echo, PN532_ATS)

    @staticmethod
    def answer_to(apdu: bytes) -> bytes:
        return (apdu * (300 // max(len(apdu), 1) + 1))[:298] + b"\x90\x00"

    def _echo(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        return self.answer_to(apdu)

    def activate(self) -> TypeAIdentity | None:
        self.engine.reset()
        return self.identity

    def exchange(self, frame: bytes, timeout: float) -> bytes | None:
        return self.engine.handle(frame)

    def halt(self) -> None:
        self.engine.reset()

    def field_off(self) -> None:
        self.field_offs += 1


@pytest.fixture
def field() -> Field:
    return Field()


@pytest.fixture
def make_host(field: Field) -> Iterator[Callable[..., Host]]:
    made: list[Host] = []

    def make(name: str = "pos", link: LinkModel | None = None) -> Host:
        made.append(Host(field, name=name, link=link))
        return made[-1]

    yield make
    for host in made:
        host.chip.close()


@pytest.fixture
def host(make_host: Callable[..., Host]) -> Host:
    return make_host()


@pytest.fixture
def card_path(world: World) -> Path:
    return world.path(Path(world.cards()[0]["file"]))


@pytest.fixture
def card(card_path: Path) -> SoftwareCard:
    return SoftwareCard(load_presentable(card_path))


def wait_until(condition: Callable[[], bool], timeout: float = ANSWER_WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def listing(uid: bytes, ats: bytes = b"") -> bytes:
    """InListPassiveTarget data for one ISO-DEP type A target with a 4-byte UID: NbTg 1, Tg 1, SENS_RES
    00 04 (MSB first), SEL_RES 20, NFCIDLength, NFCID1, [ATS]."""
    return bytes([0x01, 0x01, 0x00, 0x04, 0x20, len(uid)]) + uid + ats


def list_card(host: Host, field: Field, card: SoftwareCard) -> bytes:
    field.place(card)
    ack, data = host.command(bytes.fromhex("4A0100"))
    assert ack and data is not None and data[:2] == b"\x01\x01"
    return data


# --- HSU framing -----------------------------------------------------------------------------------------


def test_get_firmware_version_is_byte_exact(host: Host) -> None:
    host.chip.receive(NFCPY_PREAMBLE + GET_FIRMWARE_VERSION)
    assert host.ack()
    assert host.response(0x02) == bytes.fromhex("32010607")
    assert bytes(host.raw) == ACK + FIRMWARE_VERSION_RESPONSE
    assert host.last_frame is not None and host.last_frame.payload == bytes.fromhex("0332010607")


@pytest.mark.parametrize(
    "before",
    [PN532PI_WAKEUP, DOTNET_WAKEUP, NFCPY_PREAMBLE, b"", bytes.fromhex("1337AAFF55FF01"), bytes.fromhex("FF") * 40],
    ids=["pn532pi", "dotnet-iot", "nfcpy", "nothing", "junk", "ff-run"],
)
@pytest.mark.parametrize("bytewise", [False, True], ids=["one-write", "byte-by-byte"])
def test_wake_up_bytes_and_junk_before_the_start_code_are_tolerated(host: Host, before: bytes, bytewise: bool) -> None:
    stream = before + GET_FIRMWARE_VERSION
    for i in range(2):  # and again: nothing is left over from the first frame
        if bytewise:
            for byte in stream:
                host.chip.receive(bytes([byte]))
        else:
            host.chip.receive(stream)
        assert host.ack()
        assert host.response(0x02) == bytes.fromhex("32010607")
        assert bytes(host.raw) == (ACK + FIRMWARE_VERSION_RESPONSE) * (i + 1)
    if 0xFF not in before:  # (after a postamble 00, junk FF reads as a start code that then fails its LCS)
        assert host.chip.frames_rejected == 0


def test_the_ack_is_out_before_receive_returns_and_well_under_a_millisecond(host: Host) -> None:
    latencies = []
    for _ in range(20):
        started = host.send(b"\x02")
        at, event = host.events.get_nowait()  # raises queue.Empty if the ACK were not there yet
        assert isinstance(event, Ack)
        latencies.append(at - started)
        assert host.response(0x02) == bytes.fromhex("32010607")
    assert statistics.median(latencies) < 0.001, latencies


def test_diagnose_echoes_a_262_byte_parameter_in_extended_frames_both_ways(host: Host) -> None:
    parameter = bytes([0x00]) + bytes(i & 0xFF for i in range(262))  # nfcpy: NumTst 00 + 262 bytes
    host.send(b"\x00" + parameter, wake=False)
    assert host.ack()
    assert host.response(0x00) == parameter
    assert host.last_frame is not None and host.last_frame.extended
    response = bytes(host.raw[len(ACK) :])
    assert response[:5] == bytes.fromhex("0000FFFFFF") and response[5:7] == (1 + 1 + 263).to_bytes(2, "big")
    assert response == encode_frame(TFI_CHIP, b"\x01" + parameter)


def test_a_short_command_in_an_extended_frame_gets_the_smallest_format_back(host: Host) -> None:
    host.send(b"\x02", extended=True)
    assert host.ack()
    assert host.response(0x02) == bytes.fromhex("32010607")
    assert bytes(host.raw) == ACK + FIRMWARE_VERSION_RESPONSE


def test_a_host_ack_aborts_the_running_command_and_no_late_answer_follows(
    host: Host, field: Field, card: SoftwareCard
) -> None:
    host.send(bytes.fromhex("4A0100"))  # MxRtyPassiveActivation FF (default): polls until a card comes
    assert host.ack()
    assert host.quiet()
    host.abort()
    field.place(card)
    assert host.quiet()
    assert host.chip.targets == {}
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))  # the line is clean: no stale answer


def test_a_new_command_replaces_one_the_host_gave_up_on(host: Host, field: Field, card: SoftwareCard) -> None:
    host.send(bytes.fromhex("4A0100"))
    assert host.ack() and host.quiet()
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))  # pn532pi after its timeout: no ACK
    field.place(card)
    assert host.quiet()


def test_a_host_nack_repeats_the_last_answer(host: Host) -> None:
    host.chip.receive(NACK)
    assert host.quiet()  # nothing answered yet: nothing to repeat
    assert host.command(bytes.fromhex("060000")) == (True, b"\x00")
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))
    before = len(host.raw)
    host.chip.receive(NACK)
    assert host.response(0x02) == bytes.fromhex("32010607")
    assert bytes(host.raw[before:]) == FIRMWARE_VERSION_RESPONSE  # the frame alone: no ACK for a NACK
    host.chip.receive(PN532PI_WAKEUP + NACK)
    assert host.response(0x02) == bytes.fromhex("32010607")
    assert host.quiet()


def test_a_nack_after_an_error_frame_repeats_the_error_frame(host: Host) -> None:
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))
    assert host.command(b"\xfe") == (True, ERROR_FRAME)
    host.chip.receive(NACK)
    assert host.response(0xFE) == ERROR_FRAME  # not the firmware version of the command before


@pytest.mark.parametrize(
    "bad",
    [
        bytes.fromhex("0000FF02FFD4022A00"),  # LCS wrong
        bytes.fromhex("0000FF02FED4022B00"),  # DCS wrong
        bytes.fromhex("0000FF01FFD4022A00"),  # LEN wrong (its LCS fits): the data checksum fails
        bytes.fromhex("0000FF0000D4022A00"),  # LEN 0 (LCS fits)
        bytes.fromhex("0000FFFFFF010BF4D4022A00"),  # extended LENGTH 267 > 265
        bytes.fromhex("0000FFFFFF0002FFD4022A00"),  # extended LCS wrong
    ],
    ids=["lcs", "dcs", "len-short", "len-zero", "extended-too-long", "extended-lcs"],
)
def test_a_frame_with_a_bad_length_or_checksum_gets_no_answer(host: Host, bad: bytes) -> None:
    host.chip.receive(bad)
    assert host.quiet()
    assert host.raw == b""
    assert host.chip.frames_rejected >= 1
    host.chip.receive(bad + PN532PI_WAKEUP + GET_FIRMWARE_VERSION)  # a good frame right behind it is answered
    assert host.ack()
    assert host.response(0x02) == bytes.fromhex("32010607")
    assert host.quiet(0.02)


@pytest.mark.parametrize(
    "payload",
    [
        "FE",  # no such command
        "58",  # RFRegulationTest: not implemented
        "0663",  # ReadRegister: half an address
        "086302",  # WriteRegister: the value missing
        "1400",  # SAMConfiguration mode 00
        "1401000000",  # SAMConfiguration: 4 bytes
        "1009",  # SetSerialBaudRate code 09
        "12",  # SetParameters without flags
        "3205FF01",  # RFConfiguration item 05 with 2 bytes
        "4A0300",  # InListPassiveTarget MaxTg 3
        "4A0105",  # InListPassiveTarget BrTy 05
        "40",  # InDataExchange without Tg
        "8C05",  # TgInitAsTarget too short
        "00",  # Diagnose without NumTst
    ],
)
def test_an_unknown_command_or_bad_parameters_get_the_ack_then_the_syntax_error_frame(host: Host, payload: str) -> None:
    assert host.command(bytes.fromhex(payload)) == (True, ERROR_FRAME)
    assert bytes(host.raw) == ACK + bytes.fromhex("0000FF01FF7F8100")
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


# --- miscellaneous commands ------------------------------------------------------------------------------


def test_read_and_write_several_registers_per_frame(host: Host, field: Field, card: SoftwareCard) -> None:
    assert host.command(bytes.fromhex("06630263036339")) == (True, bytes.fromhex("808026"))
    assert host.command(bytes.fromhex("08630200630540")) == (True, b"")
    assert host.command(bytes.fromhex("066302630563036304")) == (True, bytes.fromhex("00408080"))
    field.place(card)
    assert host.command(bytes.fromhex("066339")) == (True, b"\x00")  # FIFOData: a card is in the field
    field.remove()
    assert host.command(bytes.fromhex("066339")) == (True, b"\x26")  # nfcpy's "no card"


def test_sam_configuration_takes_the_1_and_3_byte_forms(host: Host) -> None:
    assert host.chip.power == "lowvbat"
    assert host.command(bytes.fromhex("1401")) == (True, b"")
    assert host.chip.power == "normal"
    before = len(host.raw)
    host.chip.receive(NFCPY_PREAMBLE + bytes.fromhex("0000FF05FBD4140100001700"))
    assert host.ack() and host.response(0x14) == b""
    assert bytes(host.raw[before:]) == ACK + bytes.fromhex("0000FF02FED5151600")  # nfcpy compares it exactly
    assert host.command(bytes.fromhex("14011401")) == (True, b"")  # pn532pi's form


def test_power_down_answers_status_00_and_any_frame_wakes_the_chip(host: Host) -> None:
    assert host.command(bytes.fromhex("1401")) == (True, b"")
    assert host.command(bytes.fromhex("16B000")) == (True, b"\x00")  # nfcpy at close
    assert host.chip.power == "powerdown"
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))
    assert host.chip.power == "normal"
    assert host.command(bytes.fromhex("1610")) == (True, b"\x00")  # GenerateIRQ is optional
    assert host.chip.power == "powerdown"


def test_set_serial_baud_rate_switches_only_after_the_host_ack(host: Host) -> None:
    assert host.command(bytes.fromhex("1007")) == (True, b"")
    assert host.chip.baud == 115200 and host.chip.link.baud == 115200  # answered, not yet confirmed
    assert host.quiet(0.05)
    assert host.chip.baud == 115200
    host.abort()  # nfcpy's ACK after D5 11
    assert host.chip.baud == 921600 and host.chip.link.baud == 921600
    assert host.command(bytes.fromhex("1004")) == (True, b"")
    assert host.chip.baud == 921600
    host.abort()
    assert host.chip.baud == 115200
    assert host.quiet()


@pytest.mark.parametrize(
    ("flags", "with_ats"),
    [(None, True), (0x14, True), (0x34, True), (0x00, False), (0x04, False)],
    ids=["default", "14-dotnet", "34", "00-nfcpy", "04"],
)
def test_set_parameters_decides_whether_the_listing_carries_the_ats(
    host: Host, field: Field, card: SoftwareCard, card_path: Path, flags: int | None, with_ats: bool
) -> None:
    if flags is not None:
        assert host.command(bytes([0x12, flags])) == (True, b"")
    data = list_card(host, field, card)
    uid = load_presentable(card_path).uid_for_tap()
    assert data == listing(uid, SOFTWARE_CARD_ATS if with_ats else b"")
    assert sorted(host.chip.targets) == [1]


def test_max_retries_00_on_an_empty_field_answers_no_target_quickly(host: Host) -> None:
    assert host.command(bytes.fromhex("3205FF0100")) == (True, b"")  # pn532pi setPassiveActivationRetries(0)
    started = time.monotonic()
    assert host.command(bytes.fromhex("4A0100")) == (True, b"\x00")
    assert time.monotonic() - started < 0.5
    assert host.chip.targets == {}


def test_max_retries_ff_waits_for_a_card_placed_from_another_thread(
    host: Host, field: Field, card: SoftwareCard, card_path: Path
) -> None:
    assert host.command(bytes.fromhex("3205FF01FF")) == (True, b"")
    host.send(bytes.fromhex("4A0100"))
    assert host.ack()
    assert host.quiet()
    timer = threading.Timer(0.05, field.place, args=(card,))
    timer.start()
    try:
        data = host.response(0x4A)
    finally:
        timer.cancel()
    assert data == listing(load_presentable(card_path).uid_for_tap(), SOFTWARE_CARD_ATS)


def test_initiator_data_selects_a_uid_with_or_without_cascade_tags(
    make_host: Callable[..., Host], field: Field
) -> None:
    host = make_host()
    short = EchoPicc(bytes.fromhex("08881234"))  # 88 inside a 4-byte UID is a UID byte, not a cascade tag
    field.place(short)
    assert host.command(bytes.fromhex("3205FF0100")) == (True, b"")
    ack, data = host.command(bytes.fromhex("4A010008881234"))
    assert ack and data is not None and data[:7] == listing(bytes.fromhex("08881234"))[:7]
    assert host.command(bytes.fromhex("4A010008881235")) == (True, b"\x00")
    double = EchoPicc(bytes.fromhex("04A1B2C3D4E5F6"))
    field.place(double)
    ack, data = host.command(bytes.fromhex("4A01008804A1B2C3D4E5F6"))  # CL1 with CT 88, then CL2
    assert ack and data is not None and data[6:13] == bytes.fromhex("04A1B2C3D4E5F6")
    assert host.command(bytes.fromhex("4A01008804A1B2C3D4E5F7")) == (True, b"\x00")


# --- initiator: exchanges with a listed card ---------------------------------------------------------------


def test_in_data_exchange_to_tg_0_is_not_acceptable_and_tg_1_carries_the_apdu(
    host: Host, field: Field, card: SoftwareCard, card_path: Path
) -> None:
    list_card(host, field, card)
    assert host.command(b"\x40\x00" + PPSE) == (True, b"\x27")  # pn532pi without inlist=True (issue #20)
    ack, data = host.command(b"\x40\x01" + PPSE)
    assert ack and data is not None and data[:1] == b"\x00"
    assert data[1:] == load_presentable(card_path).chip().transceive(PPSE)
    assert data.endswith(b"\x90\x00") and data[1:2] == b"\x6f"


def test_in_data_exchange_chains_with_mi_both_ways(host: Host, field: Field) -> None:
    picc = EchoPicc()
    field.place(picc)
    ack, data = host.command(bytes.fromhex("4A0100"))
    assert ack and data == listing(picc.identity.uid, PN532_ATS)
    apdu = bytes((i * 7 + 3) & 0xFF for i in range(300))
    assert host.command(b"\x40\x41" + apdu[:200]) == (True, b"\x00")  # MI: more to come
    assert picc.apdus == []
    ack, first = host.command(b"\x40\x01" + apdu[200:])
    answer = EchoPicc.answer_to(apdu)
    assert len(answer) == 300
    assert ack and first == b"\x40" + answer[:262]  # MI in the status: more to collect
    assert host.last_frame is not None and host.last_frame.extended  # 264 bytes after TFI
    assert host.command(b"\x40\x01") == (True, b"\x00" + answer[262:])
    assert picc.apdus == [apdu]  # the card saw the whole C-APDU, once
    ack, data = host.command(b"\x40\x01\x00\xb2\x01\x0c\x00")  # and the next exchange starts afresh
    assert ack and data == b"\x40" + EchoPicc.answer_to(b"\x00\xb2\x01\x0c\x00")[:262]


def test_an_empty_in_communicate_thru_times_out_as_the_chip_does(host: Host, field: Field,
                                                                  card: SoftwareCard) -> None:
    """Drivers send one during discovery and expect the timeout status (01), not a syntax error frame."""
    assert host.command(bytes.fromhex("42")) == (True, b"\x01")
    list_card(host, field, card)
    assert host.command(bytes.fromhex("42")) == (True, b"\x01")


class CountingPhone:
    """A phone's random UIDs, drawn in a known order (the test counts the draws instead of comparing random bytes)."""

    def __init__(self, card_path: Path) -> None:
        self.presentable = load_presentable(card_path)
        self.drawn = 0

    def uid_for_tap(self) -> bytes:
        self.drawn += 1
        return bytes([0x08, 0x00, 0x00, self.drawn])

    def chip(self) -> object:
        return self.presentable.chip()


def test_a_phone_keeps_its_uid_while_the_field_stays_on(host: Host, field: Field, card_path: Path) -> None:
    phone = CountingPhone(card_path)
    field.place(SoftwareCard(phone))  # type: ignore[arg-type]
    first = host.command(bytes.fromhex("4A0100"))[1]
    assert host.command(bytes.fromhex("5200")) == (True, b"\x00")  # InRelease: the field stays on
    again = host.command(bytes.fromhex("4A0100"))[1]
    assert first == again and first is not None and first[6:10] == bytes.fromhex("08000001") and phone.drawn == 1
    assert host.command(bytes.fromhex("320100")) == (True, b"")  # RFConfiguration: RF field off
    after = host.command(bytes.fromhex("4A0100"))[1]
    assert after is not None and after[6:10] == bytes.fromhex("08000002") and phone.drawn == 2
    field.remove()
    field.place(SoftwareCard(phone))  # type: ignore[arg-type]
    assert host.command(bytes.fromhex("4A0100"))[1][6:10] == bytes.fromhex("08000003")  # type: ignore[index]


def test_in_communicate_thru_carries_raw_iso_dep(host: Host, field: Field, card: SoftwareCard, card_path: Path) -> None:
    assert host.command(bytes.fromhex("1200")) == (True, b"")  # nfcpy: no automatic RATS
    uid = load_presentable(card_path).uid_for_tap()
    assert list_card(host, field, card) == listing(uid)
    assert host.command(bytes.fromhex("42E080")) == (True, b"\x00" + SOFTWARE_CARD_ATS)
    expected = load_presentable(card_path).chip().transceive(PPSE)
    assert host.command(b"\x42\x02" + PPSE) == (True, b"\x00\x02" + expected)
    assert host.command(b"\x42\x03" + PPSE) == (True, b"\x00\x03" + expected)
    assert host.command(bytes.fromhex("42C2")) == (True, bytes.fromhex("00C2"))  # S(DESELECT) confirmed
    assert host.command(b"\x42\x02" + PPSE) == (True, b"\x01")  # a deselected card is silent: timeout


def test_in_deselect_in_select_and_in_release_statuses(host: Host, field: Field, card: SoftwareCard) -> None:
    list_card(host, field, card)
    assert host.command(bytes.fromhex("4402")) == (True, b"\x27")  # no target 2
    assert host.command(bytes.fromhex("4401")) == (True, b"\x00")
    assert host.command(b"\x40\x01" + PPSE) == (True, b"\x27")  # deselected
    assert sorted(host.chip.targets) == [1]  # but still known
    assert host.command(bytes.fromhex("5402")) == (True, b"\x27")
    assert host.command(bytes.fromhex("5401")) == (True, b"\x00")
    assert host.command(bytes.fromhex("5201")) == (True, b"\x00")
    assert host.chip.targets == {}
    assert host.command(bytes.fromhex("5201")) == (True, b"\x27")  # already forgotten
    assert host.command(bytes.fromhex("5200")) == (True, b"\x00")  # Tg 0 = all: fine with none
    assert host.command(bytes.fromhex("5401")) == (True, b"\x27")
    assert host.command(b"\x40\x01" + PPSE) == (True, b"\x27")


# --- target mode: one chip emulates a card for another -------------------------------------------------------


def test_a_second_chip_in_target_mode_is_listed_read_and_released(make_host: Callable[..., Host]) -> None:
    reader, target = make_host("pos"), make_host("rig")
    target.send(TG_INIT_AS_TARGET)
    assert target.ack()
    assert target.quiet()  # waits for a reader to activate it
    ack, data = reader.command(bytes.fromhex("4A0100"))
    assert ack and data == listing(b"\x08" + NFCID1T, bytes.fromhex("0575339203"))
    assert target.response(0x8C) == bytes.fromhex("08E080")  # PICC at 106A, the reader's RATS
    assert target.command(b"\x8a") == (True, bytes.fromhex("8100"))  # activated ISO 14443-4 PICC
    assert target.command(bytes.fromhex("066339")) == (True, b"\x26")  # its own emulated card is no card to it

    reader.send(b"\x40\x01" + PPSE)
    assert reader.ack()
    assert target.command(b"\x86") == (True, b"\x00" + PPSE)
    assert reader.quiet(0.05)  # the reader waits for the target's host
    assert target.command(bytes.fromhex("8E6A82")) == (True, b"\x00")
    assert reader.response(0x40) == bytes.fromhex("006A82")

    target.send(b"\x86")
    assert target.ack()
    assert target.quiet(0.05)
    assert reader.command(bytes.fromhex("5201")) == (True, b"\x00")
    assert target.response(0x86) == b"\x29"  # released by the initiator
    assert target.command(b"\x8e\x90\x00") == (True, b"\x29")
    assert target.command(b"\x8a") == (True, bytes.fromhex("8000"))


def test_an_aborted_tg_init_as_target_leaves_the_field(make_host: Callable[..., Host], field: Field) -> None:
    reader, target = make_host("pos"), make_host("rig")
    target.send(TG_INIT_AS_TARGET)
    assert target.ack()
    assert field.wait_for_card(ANSWER_WAIT) is not None  # the emulated card is in the air
    target.abort()
    assert wait_until(lambda: field.current() is None)
    assert reader.command(bytes.fromhex("3205FF0100")) == (True, b"")
    assert reader.command(bytes.fromhex("4A0100")) == (True, b"\x00")
    assert target.quiet()


# --- faults ---------------------------------------------------------------------------------------------------


def test_fault_kinds_are_checked_when_armed() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.arm("explode")
    with pytest.raises(ValueError):
        faults.arm("status", 0x40)
    with pytest.raises(ValueError):
        faults.arm("drop_byte", -1)
    faults.arm("late_ack", "0.25")
    assert faults.armed() == {"late_ack": 0.25}
    assert set(KINDS) >= {"late_ack", "drop_ack", "no_answer", "error_frame", "status", "silent"}


def test_late_ack(host: Host) -> None:
    host.chip.faults.arm("late_ack", 0.05)
    started = host.send(b"\x02")
    item = host.next_event()
    assert item is not None and isinstance(item[1], Ack)
    assert item[0] - started >= 0.05
    assert host.response(0x02) == bytes.fromhex("32010607")
    started = host.send(b"\x02")  # once only
    item = host.next_event()
    assert item is not None and isinstance(item[1], Ack) and item[0] - started < 0.05
    assert host.response(0x02) == bytes.fromhex("32010607")


def test_drop_ack(host: Host) -> None:
    host.chip.faults.arm("drop_ack")
    assert host.command(b"\x02") == (False, bytes.fromhex("32010607"))
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


def test_no_answer_until_the_host_aborts(host: Host) -> None:
    host.chip.faults.arm("no_answer")
    host.send(b"\x02")
    assert host.ack()
    assert host.quiet()
    host.abort()
    assert host.quiet()
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


def test_error_frame(host: Host) -> None:
    host.chip.faults.arm("error_frame")
    assert host.command(b"\x02") == (True, ERROR_FRAME)
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


def test_status_fault_answers_the_next_in_data_exchange(
    host: Host, field: Field, card: SoftwareCard, card_path: Path
) -> None:
    list_card(host, field, card)
    host.chip.faults.arm("status", 0x01)
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))  # other commands leave it armed
    assert host.command(b"\x40\x01" + PPSE) == (True, b"\x01")
    ack, data = host.command(b"\x40\x01" + PPSE)
    assert ack and data == b"\x00" + load_presentable(card_path).chip().transceive(PPSE)


@pytest.mark.parametrize("kind", ["drop_byte", "corrupt_byte"])
def test_a_mangled_response_is_rejected_by_the_parser_and_a_nack_gets_it_whole(host: Host, kind: str) -> None:
    host.chip.faults.arm(kind, 7)
    host.send(b"\x02")
    assert host.ack()  # ACK frames pass untouched
    item = host.next_event()
    assert item is not None and isinstance(item[1], Rejected)
    assert FrameParser().feed(bytes(host.raw[len(ACK) :])) == [item[1]]
    assert len(host.raw) - len(ACK) == len(FIRMWARE_VERSION_RESPONSE) - (kind == "drop_byte")
    assert host.quiet()
    host.chip.receive(NACK)
    assert host.response(0x02) == bytes.fromhex("32010607")


def test_drop_response(host: Host) -> None:
    host.chip.faults.arm("drop_response")
    host.send(b"\x02")
    assert host.ack()
    assert host.quiet()
    host.chip.receive(NACK)
    assert host.response(0x02) == bytes.fromhex("32010607")


def test_silent_until_reset(host: Host) -> None:
    assert host.command(bytes.fromhex("1401")) == (True, b"")
    host.chip.faults.arm("silent")
    host.send(b"\x02")
    assert host.quiet()
    host.chip.receive(NACK)
    host.send(b"\x02")
    assert host.quiet()
    assert host.raw == ACK + encode_frame(TFI_CHIP, b"\x15")
    host.chip.reset()
    assert host.chip.power == "lowvbat"
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


def test_silent_also_swallows_an_answer_already_under_way(host: Host, field: Field, card: SoftwareCard) -> None:
    host.send(bytes.fromhex("4A0100"))  # waits for a card
    assert host.ack()
    host.chip.faults.arm("silent")
    field.place(card)
    assert host.quiet()
    host.chip.reset()
    assert host.command(b"\x02") == (True, bytes.fromhex("32010607"))


def test_reset_forgets_targets_and_settings(host: Host, field: Field, card: SoftwareCard) -> None:
    assert host.command(bytes.fromhex("1200")) == (True, b"")
    assert host.command(bytes.fromhex("1007")) == (True, b"")
    host.abort()
    assert host.chip.baud == 921600
    list_card(host, field, card)
    host.chip.reset()
    assert host.chip.targets == {}
    assert host.chip.baud == 115200 and host.chip.parameters == 0x34 and host.chip.power == "lowvbat"
    assert host.command(b"\x40\x01" + PPSE) == (True, b"\x27")


def test_a_card_taken_away_at_the_nth_exchange_times_out(host: Host, field: Field, card: SoftwareCard) -> None:
    list_card(host, field, card)
    card.fault_remove_after(2)
    ack, data = host.command(b"\x40\x01" + PPSE)
    assert ack and data is not None and data[:1] == b"\x00"
    assert host.command(b"\x40\x01" + PPSE) == (True, b"\x01")
    assert card.removed
    assert host.command(bytes.fromhex("3205FF0100")) == (True, b"")
    assert host.command(bytes.fromhex("4A0100")) == (True, b"\x00")  # gone: nothing answers the WUPA


# --- the link model -------------------------------------------------------------------------------------------


def get_firmware_version_seconds(host: Host) -> float:
    host.chip.link.reset_account()
    assert host.command(b"\x02", wake=False) == (True, bytes.fromhex("32010607"))
    return host.chip.link.modelled_seconds


def test_modelled_time_of_get_firmware_version_is_the_byte_count(host: Host) -> None:
    assert pn532_frame_bytes(1) == 9 and pn532_frame_bytes(5) == 13
    seconds = get_firmware_version_seconds(host)
    assert seconds == pytest.approx((9 + 6 + 13) * 10 / 115200)
    assert host.chip.link.hops == pytest.approx({"uart": seconds, "air": 0.0, "card": 0.0})
    assert host.command(bytes.fromhex("1007")) == (True, b"")
    host.abort()
    fast = get_firmware_version_seconds(host)
    assert fast == pytest.approx(uart_seconds(9 + 6 + 13, 921600))
    assert seconds / fast == pytest.approx(8.0)


def test_with_the_link_model_enabled_an_exchange_never_beats_the_model(
    make_host: Callable[..., Host], field: Field, card: SoftwareCard
) -> None:
    host = make_host(link=LinkModel(enabled=True))
    field.place(card)
    commands = [
        b"\x02",
        b"\x00\x00" + bytes(range(200)),
        bytes.fromhex("4A0100"),
        b"\x40\x01" + PPSE,
        b"\x40\x01" + PPSE,
        b"\x40\x01" + CommandApdu(0x00, 0xB2, 0x01, 0x0C, b"", le=256).encode(),
    ]
    for payload in commands:
        host.chip.link.reset_account()
        started = host.send(payload, wake=False)
        assert host.ack()
        item = host.next_event()
        assert item is not None and isinstance(item[1], Frame) and item[1].payload[0] == payload[0] + 1
        modelled = host.chip.link.modelled_seconds
        assert modelled > 0
        assert item[0] - started >= modelled, (payload[:2].hex(), item[0] - started, host.chip.link.hops)
    assert host.chip.link.hops["card"] > 0 and host.chip.link.hops["air"] > 0
