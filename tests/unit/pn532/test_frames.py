"""PN532 HSU frame codec: the doc's frames byte-exact, every wake-up style, corruption, and stream splitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.simulator.frames import (
    ACK,
    ERROR_FRAME,
    MAX_PAYLOAD,
    NACK,
    TFI_CHIP,
    TFI_HOST,
    Ack,
    Event,
    Frame,
    FrameError,
    FrameParser,
    Nack,
    Rejected,
    decode_frame,
    encode_frame,
    is_ack,
    is_nack,
)

GET_FIRMWARE_VERSION = bytes.fromhex("0000FF02FED4022A00")
FIRMWARE_VERSION_RESPONSE = bytes.fromhex("0000FF06FAD50332010607E800")
SAM_CONFIGURATION = encode_frame(TFI_HOST, bytes.fromhex("14011401"))  # pn532pi: mode 01, timeout 14, IRQ 01
PN532PI_WAKEUP = bytes.fromhex("55000055")

# nfcpy's Diagnose line test: command 00, NumTst 00, then 262 bytes 00 01 02 … wrapping (263-byte parameter).
DIAGNOSE_PARAMETER = bytes([0x00]) + bytes(i & 0xFF for i in range(262))
DIAGNOSE_COMMAND = bytes([0x00]) + DIAGNOSE_PARAMETER
DIAGNOSE_RESPONSE = bytes([0x01]) + DIAGNOSE_PARAMETER


def parse(stream: bytes) -> list[Event]:
    return FrameParser().feed(stream)


def parse_bytewise(stream: bytes) -> list[Event]:
    parser = FrameParser()
    events: list[Event] = []
    for byte in stream:
        events += parser.feed(bytes([byte]))
    return events


# --- the doc's example frames ----------------------------------------------------------------------


def test_get_firmware_version_command_parses() -> None:
    assert parse(GET_FIRMWARE_VERSION) == [Frame(TFI_HOST, b"\x02", extended=False)]
    assert decode_frame(GET_FIRMWARE_VERSION).command == 0x02


def test_get_firmware_version_command_encodes_byte_exact() -> None:
    assert encode_frame(TFI_HOST, b"\x02") == GET_FIRMWARE_VERSION


def test_firmware_version_response_encodes_byte_exact() -> None:
    assert encode_frame(TFI_CHIP, bytes.fromhex("0332010607")) == FIRMWARE_VERSION_RESPONSE


def test_firmware_version_response_decodes() -> None:
    frame = decode_frame(FIRMWARE_VERSION_RESPONSE)
    assert frame == Frame(TFI_CHIP, bytes.fromhex("0332010607"))
    assert frame.command == 0x03
    assert frame.encode() == FIRMWARE_VERSION_RESPONSE


def test_encoding_emits_exactly_one_preamble_and_one_postamble() -> None:
    raw = encode_frame(TFI_CHIP, b"\x15")
    assert raw.startswith(b"\x00\x00\xff") and not raw.startswith(b"\x00\x00\x00")
    assert raw.endswith(b"\x00") and raw[-2] != 0x00  # DCS of D5 15 is 16


# --- ACK, NACK, error frame ------------------------------------------------------------------------


def test_ack_nack_and_error_frame_constants() -> None:
    assert bytes.fromhex("0000FF00FF00") == ACK
    assert bytes.fromhex("0000FFFF0000") == NACK
    assert encode_frame(0x7F, b"") == ERROR_FRAME


def test_ack_and_nack_recognised() -> None:
    assert parse(ACK) == [Ack()]
    assert parse(NACK) == [Nack()]
    assert parse(ACK + NACK + ACK) == [Ack(), Nack(), Ack()]


def test_error_frame_is_an_information_frame_flagged_as_error() -> None:
    (frame,) = parse(ERROR_FRAME)
    assert isinstance(frame, Frame)
    assert frame.is_error and frame.tfi == 0x7F and frame.payload == b"" and frame.command is None
    assert not decode_frame(FIRMWARE_VERSION_RESPONSE).is_error


def test_is_ack_and_is_nack() -> None:
    assert is_ack(ACK)
    assert is_ack(ACK[1:5])  # without preamble and postamble
    assert not is_ack(NACK) and not is_ack(ERROR_FRAME) and not is_ack(GET_FIRMWARE_VERSION)
    assert not is_ack(b"") and not is_ack(ACK[:4])
    assert not is_ack(ACK + b"\x55")
    assert is_nack(NACK) and not is_nack(ACK)


def test_decode_frame_refuses_ack() -> None:
    with pytest.raises(FrameError, match="ACK"):
        decode_frame(ACK)


# --- extended frames ---------------------------------------------------------------------------------


def test_diagnose_echo_command_is_an_extended_frame() -> None:
    assert len(DIAGNOSE_COMMAND) == MAX_PAYLOAD
    raw = encode_frame(TFI_HOST, DIAGNOSE_COMMAND)
    # LENGTH = 265 = 01 09, LCS = -(01 + 09) = F6
    assert raw[:8] == bytes.fromhex("0000FFFFFF0109F6")
    assert raw[8] == TFI_HOST and raw[9:-2] == DIAGNOSE_COMMAND
    assert (sum(raw[8:-1])) & 0xFF == 0 and raw[-1] == 0x00
    assert len(raw) == MAX_PAYLOAD + 11
    assert parse(raw) == [Frame(TFI_HOST, DIAGNOSE_COMMAND, extended=True)]


def test_diagnose_echo_response_round_trips_both_ways() -> None:
    raw = encode_frame(TFI_CHIP, DIAGNOSE_RESPONSE)
    frame = decode_frame(raw)
    assert frame == Frame(TFI_CHIP, DIAGNOSE_RESPONSE, extended=True)
    assert frame.encode() == raw
    assert parse_bytewise(raw) == [frame]


def test_smallest_format_that_fits() -> None:
    assert decode_frame(encode_frame(TFI_CHIP, bytes(254))).extended is False  # LEN 255
    assert decode_frame(encode_frame(TFI_CHIP, bytes(255))).extended is True  # LEN 256
    assert len(encode_frame(TFI_CHIP, bytes(254))) == 254 + 8
    assert len(encode_frame(TFI_CHIP, bytes(255))) == 255 + 11


def test_host_may_use_extended_format_for_a_short_frame() -> None:
    raw = encode_frame(TFI_HOST, b"\x02", extended=True)
    assert raw == bytes.fromhex("0000FFFFFF0002FED4022A00")
    assert parse(raw) == [Frame(TFI_HOST, b"\x02", extended=True)]


def test_encode_limits() -> None:
    encode_frame(TFI_HOST, bytes(MAX_PAYLOAD))
    with pytest.raises(ValueError, match="264"):
        encode_frame(TFI_HOST, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ValueError, match="extended"):
        encode_frame(TFI_HOST, bytes(255), extended=False)
    with pytest.raises(ValueError, match="TFI"):
        encode_frame(0x100, b"")


def test_extended_length_above_the_firmware_limit_is_rejected() -> None:
    # LENGTH 266 with a valid LCS: one byte more than the PN532 accepts; resync and keep going.
    header = bytes.fromhex("0000FFFFFF010AF5")
    events = parse(header + GET_FIRMWARE_VERSION)
    assert isinstance(events[0], Rejected) and "266" in events[0].reason
    assert events[1:] == [Frame(TFI_HOST, b"\x02")]


# --- ACK / NACK versus an extended header ----------------------------------------------------------


def test_nack_is_not_read_as_an_extended_header() -> None:
    parser = FrameParser()
    assert parser.feed(NACK[:4]) == []  # 00 00 FF FF could still become an extended header
    assert parser.feed(NACK[4:5]) == [Nack()]


def test_ack_nack_and_extended_frames_back_to_back() -> None:
    extended = encode_frame(TFI_CHIP, DIAGNOSE_RESPONSE)
    stream = ACK + extended + NACK + extended + ACK
    expected = [
        Ack(),
        Frame(TFI_CHIP, DIAGNOSE_RESPONSE, True),
        Nack(),
        Frame(TFI_CHIP, DIAGNOSE_RESPONSE, True),
        Ack(),
    ]
    assert parse(stream) == expected
    assert parse_bytewise(stream) == expected


def test_ack_without_postamble_followed_by_an_extended_frame() -> None:
    short_extended = encode_frame(TFI_HOST, b"\x02", extended=True)
    assert parse(ACK[:-1] + short_extended) == [Ack(), Frame(TFI_HOST, b"\x02", True)]


# --- corruption --------------------------------------------------------------------------------------


def test_bad_lcs_is_rejected_and_the_next_frame_still_parses() -> None:
    bad = bytearray(GET_FIRMWARE_VERSION)
    bad[4] ^= 0x01  # LCS
    events = parse(bytes(bad) + SAM_CONFIGURATION)
    assert events[0] == Rejected("bad LCS", bytes.fromhex("00FF02FF"))
    assert events[1:] == [decode_frame(SAM_CONFIGURATION)]


def test_corrupted_len_does_not_swallow_the_following_frame() -> None:
    bad = bytearray(encode_frame(TFI_HOST, bytes.fromhex("4A0100")))
    bad[3] = 0xF0  # LEN 240 would eat the next frame; the LCS no longer matches
    stream = bytes(bad) + GET_FIRMWARE_VERSION + ACK
    for events in (parse(stream), parse_bytewise(stream)):
        assert [type(event) for event in events] == [Rejected, Frame, Ack]
        assert events[1] == Frame(TFI_HOST, b"\x02")


def test_bad_dcs_is_rejected_and_the_next_frame_still_parses() -> None:
    bad = bytearray(GET_FIRMWARE_VERSION)
    bad[-2] ^= 0xFF  # DCS
    events = parse(bytes(bad) + SAM_CONFIGURATION)
    assert events[0] == Rejected("bad DCS", bytes(bad[1:-1]))
    assert events[1:] == [decode_frame(SAM_CONFIGURATION)]


def test_bad_dcs_does_not_rescan_the_payload_for_phantom_frames() -> None:
    bad = bytearray(encode_frame(TFI_HOST, bytes.fromhex("40 01") + ACK))  # an APDU that happens to hold an ACK
    bad[-2] ^= 0x01
    assert [type(event) for event in parse(bytes(bad) + GET_FIRMWARE_VERSION)] == [Rejected, Frame]


def test_zero_length_frame_is_rejected() -> None:
    events = parse(bytes.fromhex("0000FF0000") + GET_FIRMWARE_VERSION)
    assert events == [Rejected("length 0", bytes.fromhex("00FF0000")), Frame(TFI_HOST, b"\x02")]


def test_decode_frame_errors() -> None:
    bad_dcs = bytearray(GET_FIRMWARE_VERSION)
    bad_dcs[-2] ^= 0x01
    cases = {
        b"": "start code",
        GET_FIRMWARE_VERSION[:-3]: "truncated",
        bytes(bad_dcs): "bad DCS",
        PN532PI_WAKEUP + GET_FIRMWARE_VERSION: "before the start code",
        GET_FIRMWARE_VERSION + b"\x55": "after the frame",
        GET_FIRMWARE_VERSION + ACK: "after the frame",
    }
    for raw, message in cases.items():
        with pytest.raises(FrameError, match=message):
            decode_frame(raw)
    assert issubclass(FrameError, ValueError)


def test_decode_frame_accepts_any_number_of_zero_bytes_around_the_frame() -> None:
    assert decode_frame(bytes(5) + GET_FIRMWARE_VERSION + bytes(3)) == Frame(TFI_HOST, b"\x02")
    assert decode_frame(GET_FIRMWARE_VERSION[1:-1]) == Frame(TFI_HOST, b"\x02")


# --- what real drivers send --------------------------------------------------------------------------


def test_pn532pi_wakeup_before_every_frame() -> None:
    stream = PN532PI_WAKEUP + GET_FIRMWARE_VERSION + PN532PI_WAKEUP + SAM_CONFIGURATION + PN532PI_WAKEUP + ACK
    expected = [Frame(TFI_HOST, b"\x02"), decode_frame(SAM_CONFIGURATION), Ack()]
    assert parse(stream) == expected
    assert parse_bytewise(stream) == expected


def test_nfcpy_ten_zero_preamble() -> None:
    stream = bytes(10) + GET_FIRMWARE_VERSION + bytes(10) + encode_frame(TFI_HOST, bytes.fromhex("14010000"))
    assert parse(stream) == [Frame(TFI_HOST, b"\x02"), Frame(TFI_HOST, bytes.fromhex("14010000"))]


def test_dotnet_iot_long_wakeup() -> None:
    stream = b"\x55\x55" + bytes(25) + encode_frame(TFI_HOST, bytes.fromhex("14011700"))
    assert parse_bytewise(stream) == [Frame(TFI_HOST, bytes.fromhex("14011700"))]


def test_postamble_is_optional_and_never_awaited() -> None:
    parser = FrameParser()
    assert parser.feed(GET_FIRMWARE_VERSION[:-1]) == [Frame(TFI_HOST, b"\x02")]  # the ACK must not wait
    assert parser.feed(b"\x00" + ACK) == [Ack()]


def test_frames_without_preamble_or_postamble_back_to_back() -> None:
    # fRemovePrePostAmble: the next start code follows the DCS directly.
    frames = [GET_FIRMWARE_VERSION, FIRMWARE_VERSION_RESPONSE, ACK]
    stream = b"".join(raw[1:-1] for raw in frames)
    assert parse(stream) == [Frame(TFI_HOST, b"\x02"), decode_frame(FIRMWARE_VERSION_RESPONSE), Ack()]


def test_junk_is_dropped_and_the_buffer_stays_small() -> None:
    parser = FrameParser()
    assert parser.feed(bytes([0x55, 0xAA, 0xFF, 0x01]) * 500) == []
    assert parser.pending() == 0
    assert parser.feed(b"\x12\x00") == []
    assert parser.pending() == 1  # a trailing 00 may be half a start code


def test_pending_and_reset() -> None:
    parser = FrameParser()
    assert parser.feed(GET_FIRMWARE_VERSION[:6]) == []
    assert parser.pending() == 5  # from the start code on
    parser.reset()
    assert parser.pending() == 0
    assert parser.feed(GET_FIRMWARE_VERSION[6:]) == []  # the tail alone is junk
    assert parser.feed(SAM_CONFIGURATION) == [decode_frame(SAM_CONFIGURATION)]
    assert parser.pending() == 1  # its postamble


# --- streaming ---------------------------------------------------------------------------------------

STREAM = (
    PN532PI_WAKEUP
    + GET_FIRMWARE_VERSION
    + ACK
    + FIRMWARE_VERSION_RESPONSE
    + b"\x13\x37"
    + NACK
    + encode_frame(TFI_CHIP, DIAGNOSE_RESPONSE)
    + ERROR_FRAME
)
STREAM_EVENTS = parse(STREAM)


def test_reference_stream_events() -> None:
    assert [type(event) for event in STREAM_EVENTS] == [Frame, Ack, Frame, Nack, Frame, Frame]


def test_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        parser = FrameParser()
        assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) == STREAM_EVENTS, cut


def test_one_byte_at_a_time() -> None:
    assert parse_bytewise(STREAM) == STREAM_EVENTS


@st.composite
def frame_events(draw: st.DrawFn) -> tuple[Event, bytes]:
    kind = draw(st.sampled_from(["frame", "frame", "frame", "ack", "nack"]))
    if kind == "ack":
        return Ack(), ACK
    if kind == "nack":
        return Nack(), NACK
    tfi = draw(st.integers(0, 0xFF))
    payload = draw(st.binary(max_size=MAX_PAYLOAD))
    extended = draw(st.sampled_from([None, True] if len(payload) > 254 else [None, False, True]))
    raw = encode_frame(tfi, payload, extended=extended)
    return Frame(tfi, payload, extended=raw[3:5] == b"\xff\xff"), raw


# A postamble 00 followed by FF is a start code to any parser, so junk must not begin with FF either.
junk = st.binary(max_size=24).filter(lambda b: b"\x00\xff" not in b and not b.startswith(b"\xff"))


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(junk, frame_events()), max_size=8), tail=junk, data=st.data())
def test_frames_interleaved_with_junk_survive_any_split(
    items: list[tuple[bytes, tuple[Event, bytes]]], tail: bytes, data: st.DataObject
) -> None:
    stream = b"".join(gap + raw for gap, (_, raw) in items) + tail
    expected = [event for _, (event, _) in items]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    parser = FrameParser()
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += parser.feed(stream[start:end])
    assert events == expected
    assert parser.pending() <= 1


pieces = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\x00", b"\xff", b"\x00\xff", b"\x00\xff\xff", b"\x00\xff\xff\xff", ACK, NACK]),
    st.builds(encode_frame, st.integers(0, 0xFF), st.binary(max_size=40)),
    st.builds(lambda raw, i: raw[:i] + raw[i + 1 :], st.just(SAM_CONFIGURATION), st.integers(0, 8)),
)


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(pieces, max_size=20), data=st.data())
def test_any_input_parses_the_same_however_it_is_split(chunks: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(chunks)
    whole = FrameParser()
    expected = whole.feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    parser = FrameParser()
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        events += parser.feed(stream[start:end])
    assert events == expected
    assert parser.pending() == whole.pending() <= 7 + MAX_PAYLOAD + 2
