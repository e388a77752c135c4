"""ISO-DEP both ways: byte-level transcripts of the card side, the reader side against scripted cards,
and the two engines talking through a link that loses frames (recovered, or a timeout; never a wrong answer).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.simulator.isodep import (
    PN532_ATS,
    Ats,
    IsoDepProtocolError,
    IsoDepTimeout,
    Kind,
    PcdEngine,
    PiccEngine,
    fsc_from_fsci,
    fsci_for_size,
    fwt_seconds,
    i_block,
    max_inf,
    parse_ats,
    parse_block,
    r_ack,
    r_nak,
    rats,
    s_deselect,
    s_wtx,
)

SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
FCI = bytes.fromhex("6F10840E325041592E5359532E4444463031")
OK = bytes.fromhex("9000")
PHONE_ATS = bytes.fromhex("0578807002")


class Recorder:
    """An APDU handler that remembers what ran: each command must run exactly once."""

    def __init__(self, answer: Callable[[bytes], bytes] = lambda apdu: FCI + OK) -> None:
        self.apdus: list[bytes] = []
        self._answer = answer

    def __call__(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        return self._answer(apdu)


def active_card(
    ats: bytes = PN532_ATS, rats_frame: bytes = b"\xe0\x80", **kwargs: object
) -> tuple[PiccEngine, Recorder]:
    handler = Recorder()
    card = PiccEngine(handler, ats, **kwargs)  # type: ignore[arg-type]
    assert card.handle(rats_frame) == ats
    return card, handler


# --- helpers ------------------------------------------------------------------------------------------


def test_frame_size_table() -> None:
    assert [fsc_from_fsci(i) for i in range(9)] == [16, 24, 32, 40, 48, 64, 96, 128, 256]
    assert fsc_from_fsci(0x0C) == 256  # RFU values read as 8
    with pytest.raises(ValueError):
        fsc_from_fsci(16)
    assert fsci_for_size(64) == 5 and fsci_for_size(255) == 7 and fsci_for_size(4096) == 8
    with pytest.raises(ValueError):
        fsci_for_size(15)
    assert max_inf(64) == 61 and max_inf(16, cid=True, nad=True) == 11


def test_the_pn532_ats_decodes_as_documented() -> None:
    ats = parse_ats(PN532_ATS)
    assert (ats.fsc, ats.fwi, ats.sfgi, ats.ta1) == (64, 9, 2, 0x33)
    assert ats.cid_supported and ats.nad_supported and ats.historical == b""
    assert ats.fwt == pytest.approx(0.1547, abs=1e-4) == fwt_seconds(9)


def test_ats_defaults_and_errors() -> None:
    assert parse_ats(b"\x01") == Ats()
    assert parse_ats(b"\x01").fsc == 32 and parse_ats(b"\x01").cid_supported
    phone = parse_ats(PHONE_ATS)
    assert (phone.fsc, phone.fwi, phone.cid_supported, phone.nad_supported) == (256, 7, True, False)
    assert parse_ats(bytes.fromhex("04158041")).historical == b"A"  # only TA1, then one historical byte
    for bad in (b"", b"\x05\x75", bytes.fromhex("0295"), bytes.fromhex("027F")):
        with pytest.raises(ValueError):
            parse_ats(bad)


def test_block_builders_and_parser() -> None:
    assert i_block(1, b"\x55", chaining=True, cid=3) == bytes.fromhex("1B0355")
    assert i_block(0, b"", nad=0x12) == bytes.fromhex("0612")
    assert r_ack(1) == b"\xa3" and r_nak(0, cid=2) == bytes.fromhex("BA02")
    assert s_deselect() == b"\xc2" and s_wtx(5, cid=1) == bytes.fromhex("FA0105")
    assert rats() == bytes.fromhex("E080") and rats(5, 3) == bytes.fromhex("E053")
    with pytest.raises(ValueError):
        s_wtx(60)
    with pytest.raises(ValueError):
        rats(8, 15)
    block = parse_block(bytes.fromhex("1F0312AABB"))
    assert block is not None
    assert (block.kind, block.bn, block.chaining, block.cid, block.nad, block.inf) == (
        Kind.I_BLOCK, 1, True, 3, 0x12, b"\xaa\xbb"
    )
    assert parse_block(b"\xf2\xc5") is not None and parse_block(b"\xf2\xc5").wtxm == 5  # type: ignore[union-attr]
    for invalid in (b"", b"\xe0\x80", b"\x0a", b"\x06", b"\xa2\x00", b"\xc2\x00", b"\xf2", b"\xf2\x00",
                    b"\xf2\x3c", b"\xe2", b"\x22\x00", b"\x0a\x30", b"\xd0\x11"):
        assert parse_block(invalid) is None, invalid.hex()


# --- the card side, byte by byte -----------------------------------------------------------------------


def test_rats_answers_the_ats_and_nothing_before_it() -> None:
    handler = Recorder()
    card = PiccEngine(handler)
    assert card.handle(b"\x02" + SELECT_PPSE) is None  # no ISO-DEP before RATS
    assert card.handle(b"\xe0") is None and card.handle(b"\xe0\x8f") is None  # short, CID 15 (RFU)
    assert card.handle(bytes.fromhex("E080")) == bytes.fromhex("0575339203")
    assert card.active and card.fsd == 256
    assert card.handle(bytes.fromhex("E080")) is None  # RATS is not a block once active
    assert handler.apdus == []


def test_i_blocks_toggle_their_block_number() -> None:
    card, handler = active_card()
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\x02" + FCI + OK
    assert card.handle(b"\x03" + SELECT_PPSE) == b"\x03" + FCI + OK
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\x02" + FCI + OK
    assert handler.apdus == [SELECT_PPSE] * 3


def test_a_chained_command_is_acknowledged_block_by_block() -> None:
    card, handler = active_card()
    assert card.handle(b"\x12" + SELECT_PPSE[:7]) == b"\xa2"
    assert card.handle(b"\x13" + SELECT_PPSE[7:14]) == b"\xa3"
    assert handler.apdus == []
    assert card.handle(b"\x02" + SELECT_PPSE[14:]) == b"\x02" + FCI + OK
    assert handler.apdus == [SELECT_PPSE]


def test_a_long_answer_is_chained_within_fsd_and_repeated_when_lost() -> None:
    answer = bytes(range(30)) + OK  # 32 bytes; FSD 16 leaves 13 INF bytes per block
    card = PiccEngine(lambda apdu: answer)
    assert card.handle(bytes.fromhex("E000")) == PN532_ATS
    first = card.handle(b"\x02" + b"\x00\xb2\x01\x0c\x00")
    assert first == b"\x12" + answer[:13]
    assert card.handle(b"\xa2") == first  # R(ACK) with the card's own number: ours was lost, again
    assert card.handle(b"\xb2") == first  # R(NAK) likewise
    second = card.handle(b"\xa3")  # R(ACK) with the other number: go on
    assert second == b"\x13" + answer[13:26]
    assert card.handle(b"\xa3") == second
    assert card.handle(b"\xa2") == b"\x02" + answer[26:]
    assert card.handle(b"\xa2") == b"\x02" + answer[26:]
    assert card.handle(b"\x03\x00\xb2\x02\x0c\x00") == b"\x13" + answer[:13]  # next command


def test_r_nak_for_a_lost_command_gets_r_ack() -> None:
    card, handler = active_card()
    assert card.handle(b"\xb2") == b"\xa3"  # our first I-block never arrived: the card still has number 1
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\x02" + FCI + OK
    assert card.handle(b"\xb3") == b"\xa2"
    assert card.handle(b"\xa3") is None  # R(ACK) with the other number while not chaining: ignored
    assert handler.apdus == [SELECT_PPSE]


def test_deselect_then_silence_until_a_new_activation() -> None:
    deselected: list[bool] = []
    card, _ = active_card(on_deselect=lambda: deselected.append(True))
    assert card.handle(b"\xc2") == b"\xc2"
    assert card.deselected and deselected == [True]
    for frame in (b"\x02" + SELECT_PPSE, b"\xc2", b"\xe0\x80", b"\xb2"):
        assert card.handle(frame) is None
    card.reset()
    assert card.handle(b"\xe0\x80") == PN532_ATS
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\x02" + FCI + OK


def test_cid_is_honoured_and_echoed() -> None:
    card, handler = active_card(rats_frame=b"\xe0\x83")
    assert card.cid == 3
    assert card.handle(b"\x0a\x03" + SELECT_PPSE) == b"\x0a\x03" + FCI + OK
    assert card.handle(b"\x0b\x43" + SELECT_PPSE) == b"\x0b\x03" + FCI + OK  # power-level bits ignored
    assert card.handle(b"\x02" + SELECT_PPSE) is None  # no CID: not for a card whose CID is 3
    assert card.handle(b"\x0a\x02" + SELECT_PPSE) is None  # another card's CID
    assert card.handle(b"\xba\x03") == b"\xab\x03"  # R(NAK) with the other number: R(ACK)
    assert card.handle(b"\xbb\x03") == b"\x0b\x03" + FCI + OK  # R(NAK) with ours: the answer again
    assert card.handle(b"\xca\x03") == b"\xca\x03"
    assert len(handler.apdus) == 2


def test_cid_zero_accepts_blocks_with_and_without_cid() -> None:
    card, _ = active_card()
    assert card.handle(b"\x0a\x00" + SELECT_PPSE) == b"\x0a\x00" + FCI + OK
    assert card.handle(b"\x03" + SELECT_PPSE) == b"\x03" + FCI + OK


def test_a_card_without_cid_support_ignores_cid() -> None:
    ats = bytes.fromhex("0578807000")
    card, _ = active_card(ats, rats_frame=b"\xe0\x83")
    assert card.cid == 0
    assert card.handle(b"\x0a\x03" + SELECT_PPSE) is None
    assert card.handle(b"\x0a\x00" + SELECT_PPSE) is None
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\x02" + FCI + OK


def test_nad_is_answered_with_source_and_destination_swapped() -> None:
    card, handler = active_card()
    assert card.handle(b"\x06\x12" + SELECT_PPSE) == b"\x06\x21" + FCI + OK
    assert card.handle(b"\x17\x12" + SELECT_PPSE[:5]) == b"\xa3"  # NAD in the first block of a chain
    assert card.handle(b"\x06\x12" + SELECT_PPSE[5:]) is None  # … and only there
    assert card.handle(b"\x02" + SELECT_PPSE[5:]) == b"\x06\x21" + FCI + OK
    assert handler.apdus == [SELECT_PPSE, SELECT_PPSE]
    phone, _ = active_card(PHONE_ATS)  # TC1 02: no NAD
    assert phone.handle(b"\x06\x12" + SELECT_PPSE) is None


def test_wtx_before_a_slow_answer() -> None:
    waits = [3, 0]
    card, handler = active_card(wtx_needed=lambda apdu: waits.pop(0))
    assert card.handle(b"\x02" + SELECT_PPSE) == b"\xf2\x03"
    assert handler.apdus == []
    assert card.handle(b"\xb2") == b"\xf2\x03"  # the reader missed the request: repeated
    assert card.handle(b"\x03" + SELECT_PPSE) is None  # a new command while WTX is pending: ignored
    assert card.handle(b"\xf2\x03") == b"\x02" + FCI + OK
    assert handler.apdus == [SELECT_PPSE]
    assert card.handle(b"\xf2\x03") is None  # no WTX pending any more


def test_oversized_and_malformed_frames_are_ignored() -> None:
    card, _ = active_card()  # FSC 64: at most 62 bytes without CRC
    assert card.handle(b"\x02" + bytes(62)) is None
    assert card.handle(b"\x02" + bytes(61)) is not None
    for frame in (b"", b"\xff", b"\x0a", b"\xa2\x00", b"\xf2", b"\xc2\x00", b"\x22\x00"):
        assert card.handle(frame) is None


def test_a_failing_handler_leaves_nothing_stale_to_repeat() -> None:
    def broken(apdu: bytes) -> bytes:
        raise RuntimeError("host went away")

    card = PiccEngine(broken)
    card.handle(b"\xe0\x80")
    with pytest.raises(RuntimeError):
        card.handle(b"\x02" + SELECT_PPSE)
    assert card.handle(b"\xb2") is None  # the reader's R(NAK) must not get an old block back


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=70), max_size=12), st.sampled_from([PN532_ATS, PHONE_ATS]))
def test_the_card_never_raises_on_any_frames(frames: list[bytes], ats: bytes) -> None:
    card = PiccEngine(lambda apdu: apdu[:3] + OK, ats)
    card.handle(b"\xe0\x50")
    for frame in frames:
        answer = card.handle(frame)
        assert answer is None or len(answer) + 2 <= 64


# --- the reader side against scripted cards ------------------------------------------------------------


class Script:
    """A card that expects exact frames and gives canned answers."""

    def __init__(self, *steps: tuple[bytes, bytes | None]) -> None:
        self.steps = list(steps)
        self.wtxm_seen: list[int] = []

    def engine(self, **kwargs: object) -> PcdEngine:
        reader = PcdEngine(self.send, **{"fsc": 64, **kwargs})  # type: ignore[arg-type]
        self.reader = reader
        return reader

    def send(self, frame: bytes) -> bytes | None:
        expected, answer = self.steps.pop(0)
        assert frame == expected, f"sent {frame.hex()}, expected {expected.hex()}"
        self.wtxm_seen.append(self.reader.wtxm)
        return answer


def test_reader_transcript_select_and_toggle() -> None:
    script = Script(
        (b"\x02" + SELECT_PPSE, b"\x02" + FCI + OK),
        (b"\x03" + SELECT_PPSE, b"\x03" + OK),
    )
    reader = script.engine()
    assert reader.exchange(SELECT_PPSE) == FCI + OK
    assert reader.exchange(SELECT_PPSE) == OK
    assert script.steps == []


def test_reader_chains_by_fsc_and_collects_chained_answers() -> None:
    command = bytes(range(20))
    script = Script(
        (b"\x12" + command[:13], b"\xa2"),
        (b"\x03" + command[13:], b"\x13" + b"A" * 13),
        (b"\xa2", b"\x02" + OK),
    )
    assert script.engine(fsc=16).exchange(command) == b"A" * 13 + OK
    assert script.reader.bn == 1


def test_reader_recovers_lost_frames_as_iso_says() -> None:
    script = Script(
        (b"\x02" + SELECT_PPSE, None),  # lost: R(NAK)
        (b"\xb2", b"\xa3"),  # the card never saw it: retransmit
        (b"\x02" + SELECT_PPSE, None),  # the answer is lost: R(NAK)
        (b"\xb2", b"\x12" + b"B" * 10),  # repeated, and chained
        (b"\xa3", None),  # during the card's chaining a timeout is answered with R(ACK)
        (b"\xa3", b"\x03" + OK),
    )
    assert script.engine().exchange(SELECT_PPSE) == b"B" * 10 + OK


def test_reader_gives_up_after_two_retries() -> None:
    script = Script((b"\x02" + SELECT_PPSE, None), (b"\xb2", None), (b"\xb2", None))
    with pytest.raises(IsoDepTimeout):
        script.engine().exchange(SELECT_PPSE)
    assert script.steps == []


def test_reader_echoes_wtx_and_stretches_the_wait() -> None:
    script = Script(
        (b"\x02" + SELECT_PPSE, b"\xf2\x05"),
        (b"\xf2\x05", b"\xf2\x3b"),
        (b"\xf2\x3b", b"\x02" + OK),
        (b"\x03" + SELECT_PPSE, b"\x03" + OK),
    )
    reader = script.engine()
    assert reader.exchange(SELECT_PPSE) == OK
    assert reader.exchange(SELECT_PPSE) == OK
    assert script.wtxm_seen == [1, 5, 59, 1]


def test_reader_with_cid() -> None:
    script = Script((b"\x0a\x05" + SELECT_PPSE, b"\x0a\x05" + OK), (b"\xca\x05", b"\xca\x05"))
    reader = script.engine(cid=5)
    assert reader.exchange(SELECT_PPSE) == OK
    assert reader.deselect() is True


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"\xb2", "never sends"),  # R(NAK) from a card
        (b"\xc2", "never sends"),
        (b"\xff\x00", "not an ISO-DEP block"),
        (b"", "not an ISO-DEP block"),
        (b"\x03" + OK, "expected I-block 0"),  # wrong block number
        (b"\xa2", "did not chain"),  # R(ACK) with our number for a last block
        (b"\xa3", "old block number"),  # R(ACK) asking for a block again that it just received
        (b"\x0a\x01" + OK, "CID"),
        (b"\xf2\x00", "not an ISO-DEP block"),  # WTXM 0
        (b"\x02" + bytes(254), "exceeds FSD"),
    ],
)
def test_reader_refuses_nonsense(answer: bytes, message: str) -> None:
    script = Script((b"\x02" + SELECT_PPSE, answer))
    with pytest.raises(IsoDepProtocolError, match=message):
        script.engine().exchange(SELECT_PPSE)


def test_reader_refuses_an_answer_in_the_middle_of_its_chain() -> None:
    script = Script((b"\x12" + bytes(13), b"\x02" + OK))
    with pytest.raises(IsoDepProtocolError, match="before the chained command"):
        script.engine(fsc=16).exchange(bytes(20))


def test_reader_deselect() -> None:
    assert Script((b"\xc2", b"\xc2")).engine().deselect() is True
    silent = Script((b"\xc2", None), (b"\xc2", None), (b"\xc2", None))
    assert silent.engine().deselect() is False and silent.steps == []
    assert Script((b"\xc2", b"\x02")).engine().deselect() is False


def test_reader_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        PcdEngine(lambda frame: None, fsc=8)
    with pytest.raises(ValueError):
        PcdEngine(lambda frame: None, fsc=64, cid=15)


# --- both engines through a lossy link ------------------------------------------------------------------


class LossyLink:
    """Frames in both directions are numbered; the numbered ones in `drops` vanish."""

    def __init__(self, card: PiccEngine, drops: set[int]) -> None:
        self.card = card
        self.drops = drops
        self.sent = 0

    def send(self, frame: bytes) -> bytes | None:
        outbound, self.sent = self.sent, self.sent + 1
        if outbound in self.drops:
            return None
        answer = self.card.handle(frame)
        if answer is None:
            return None
        inbound, self.sent = self.sent, self.sent + 1
        return None if inbound in self.drops else answer


def payload(length: int, seed: int) -> bytes:
    """Distinct bytes for every seed (the first byte is the seed), so a stale answer shows."""
    return bytes([seed]) + bytes((seed * 31 + i * 7) & 0xFF for i in range(length - 1))


def expected_answers(commands: list[tuple[int, int, int]]) -> list[bytes]:
    return [payload(rlen, 100 + seed) for seed, (_, rlen, _) in enumerate(commands)]


def run_session(
    fsci: int, fsdi: int, cid: int | None, commands: list[tuple[int, int, int]], drops: set[int]
) -> tuple[list[bytes], list[bytes], list[bytes], bool]:
    """Returns (apdus sent, answers received, apdus the card ran, timed out)."""
    apdus = [payload(length, seed) for seed, (length, _, _) in enumerate(commands)]
    answers = dict(zip(apdus, expected_answers(commands), strict=True))
    waits = {apdu: wtx for apdu, (_, _, wtx) in zip(apdus, commands, strict=True)}
    handler = Recorder(lambda apdu: answers[apdu])

    def wtx_needed(apdu: bytes) -> int:
        if waits[apdu]:
            waits[apdu] -= 1
            return 1 + waits[apdu]
        return 0

    ats = bytes([0x05, 0x70 | fsci, 0x80, 0x70, 0x02])
    card = PiccEngine(handler, ats, wtx_needed=wtx_needed)
    assert card.handle(rats(fsdi, cid or 0)) == ats
    link = LossyLink(card, drops)
    reader = PcdEngine(link.send, fsc=fsc_from_fsci(fsci), fsd=fsc_from_fsci(fsdi), cid=cid)
    received = []
    for apdu in apdus:
        try:
            received.append(reader.exchange(apdu))
        except IsoDepTimeout:
            return apdus, received, handler.apdus, True
    return apdus, received, handler.apdus, False


commands_strategy = st.lists(
    st.tuples(st.integers(1, 261), st.integers(2, 258), st.integers(0, 2)), min_size=1, max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    fsci=st.sampled_from([0, 0, 5, 5, 2, 8]),
    fsdi=st.sampled_from([0, 5, 5, 8, 3]),
    cid=st.none() | st.integers(0, 14),
    commands=commands_strategy,
    drops=st.sets(st.integers(0, 140), max_size=8),
)
def test_lost_frames_are_recovered_or_time_out_never_a_wrong_answer(
    fsci: int, fsdi: int, cid: int | None, commands: list[tuple[int, int, int]], drops: set[int]
) -> None:
    apdus, received, ran, timed_out = run_session(fsci, fsdi, cid, commands, drops)
    assert received == expected_answers(commands)[: len(received)]  # every answer is the right one
    done = len(received)
    assert ran[:done] == apdus[:done]  # each command ran exactly once …
    assert ran == apdus[: len(ran)] and len(ran) <= done + 1  # … the one that timed out at most once
    assert timed_out or done == len(apdus)


@settings(max_examples=300, deadline=None)
@given(
    fsci=st.sampled_from([0, 5]),
    fsdi=st.sampled_from([0, 5, 8]),
    cid=st.none() | st.integers(0, 14),
    commands=commands_strategy,
    drop=st.integers(0, 120),
)
def test_a_single_lost_frame_is_always_recovered(
    fsci: int, fsdi: int, cid: int | None, commands: list[tuple[int, int, int]], drop: int
) -> None:
    apdus, received, ran, timed_out = run_session(fsci, fsdi, cid, commands, {drop})
    assert not timed_out
    assert received == expected_answers(commands)
    assert ran == apdus


def test_longest_short_apdus_chain_both_ways_at_fsc_16_and_64() -> None:
    for fsci in (0, 5):
        apdus, received, ran, timed_out = run_session(fsci, fsci, None, [(261, 258, 0), (5, 258, 1)], set())
        assert not timed_out and ran == apdus
        assert [len(r) for r in received] == [258, 258]
