"""Link model: hand computations from byte and bit counts, monotonicity, chaining, card processing choice."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore import tlv
from firmware.simulator.frames import MAX_PAYLOAD, TFI_CHIP, encode_frame
from firmware.simulator.link import (
    AIR_BIT_SECONDS,
    BAUD_RATES,
    FDT_PCD_SECONDS,
    FDT_PICC_SECONDS,
    CardTiming,
    activation_seconds,
    air_frame_seconds,
    card_seconds,
    iblock_count,
    isodep_exchange_seconds,
    pn532_frame_bytes,
    short_frame_seconds,
    uart_exchange_seconds,
    uart_seconds,
)
from firmware.simulator.timing import MAX_CARRIED_OVERSHOOT, LinkModel

FC = 13.56e6
BIT = 128 / FC
PAIR = FDT_PICC_SECONDS + FDT_PCD_SECONDS  # the gaps around one PICC answer

payload_sizes = st.integers(0, MAX_PAYLOAD)
bauds = st.sampled_from(sorted(BAUD_RATES.values()))

# --- UART --------------------------------------------------------------------------------------------


def test_baud_rate_codes() -> None:
    assert BAUD_RATES == {
        0: 9600,
        1: 19200,
        2: 38400,
        3: 57600,
        4: 115200,
        5: 230400,
        6: 460800,
        7: 921600,
        8: 1288000,
    }


def test_uart_seconds_is_ten_bits_per_byte() -> None:
    assert uart_seconds(1, 115200) == pytest.approx(86.8e-6, abs=0.05e-6)
    assert uart_seconds(100, 9600) == pytest.approx(100 * 10 / 9600)
    assert uart_seconds(0, 115200) == 0.0
    with pytest.raises(ValueError):
        uart_seconds(-1, 115200)
    with pytest.raises(ValueError):
        uart_seconds(1, 0)


def test_frame_bytes_of_the_doc_examples() -> None:
    assert pn532_frame_bytes(1) == 9  # 00 00 FF 02 FE D4 02 2A 00
    assert pn532_frame_bytes(5) == 13  # 00 00 FF 06 FA D5 03 32 01 06 07 E8 00
    assert pn532_frame_bytes(254) == 262  # LEN 255: still normal
    assert pn532_frame_bytes(255) == 266  # extended
    assert pn532_frame_bytes(MAX_PAYLOAD) == 275
    with pytest.raises(ValueError):
        pn532_frame_bytes(MAX_PAYLOAD + 1)


def test_frame_bytes_match_the_encoder_for_every_size() -> None:
    for size in range(MAX_PAYLOAD + 1):
        assert pn532_frame_bytes(size) == len(encode_frame(TFI_CHIP, bytes(size))), size


def test_get_firmware_version_at_115200_by_hand() -> None:
    # (9 command + 4 wake-up) + 6 ACK + 13 response = 32 bytes on the wire
    assert uart_exchange_seconds(1, 5, 115200) == pytest.approx(32 * 10 / 115200)
    assert uart_exchange_seconds(1, 5, 115200, wakeup_bytes=0) == pytest.approx(28 * 10 / 115200)  # nfcpy


@given(a=payload_sizes, b=payload_sizes, c=payload_sizes, d=payload_sizes, baud=bauds)
def test_more_uart_bytes_are_never_faster(a: int, b: int, c: int, d: int, baud: int) -> None:
    small = uart_exchange_seconds(min(a, b), min(c, d), baud)
    large = uart_exchange_seconds(max(a, b), max(c, d), baud)
    assert small <= large


@given(command=payload_sizes, response=payload_sizes, slow=bauds, fast=bauds)
def test_a_higher_baud_rate_is_never_slower(command: int, response: int, slow: int, fast: int) -> None:
    slow, fast = min(slow, fast), max(slow, fast)
    assert uart_exchange_seconds(command, response, fast) <= uart_exchange_seconds(command, response, slow)


# --- air frames --------------------------------------------------------------------------------------


def test_air_constants() -> None:
    assert pytest.approx(9.44e-6, abs=0.01e-6) == AIR_BIT_SECONDS
    assert pytest.approx(91.15e-6, abs=0.01e-6) == FDT_PICC_SECONDS
    assert pytest.approx(1172 / FC) == FDT_PCD_SECONDS


def test_frame_bit_counts() -> None:
    assert short_frame_seconds() == pytest.approx(9 * BIT)  # S + 7 bits + E
    assert air_frame_seconds(2, crc=False) == pytest.approx(20 * BIT)  # ATQA: S + 2·9 + E
    assert air_frame_seconds(1) == pytest.approx(29 * BIT)  # SAK + CRC_A: S + 3·9 + E
    assert air_frame_seconds(0, crc=False) == pytest.approx(2 * BIT)


@given(n=st.integers(0, 300), m=st.integers(0, 300), crc=st.booleans())
def test_longer_air_frames_are_never_faster(n: int, m: int, crc: bool) -> None:
    assert air_frame_seconds(min(n, m), crc=crc) <= air_frame_seconds(max(n, m), crc=crc)
    assert air_frame_seconds(n, crc=False) < air_frame_seconds(n, crc=True)


# --- activation --------------------------------------------------------------------------------------

WUPA_ATQA_BITS = 9 + 20
LEVEL_BITS = 20 + 47 + 83 + 29  # ANTICOLL 93 20 → UID+BCC (5), SELECT (7 + CRC) → SAK (1 + CRC)
RATS_ATS_BITS = 38 + 65  # RATS E0 xx + CRC → ATS 5 bytes + CRC


def test_activation_of_a_four_byte_uid_by_hand() -> None:
    expected = (WUPA_ATQA_BITS + LEVEL_BITS) * BIT + 3 * PAIR
    assert activation_seconds(4, with_rats=False) == pytest.approx(expected)


def test_activation_per_cascade_level() -> None:
    one_level = LEVEL_BITS * BIT + 2 * PAIR
    four = activation_seconds(4, with_rats=False)
    assert activation_seconds(7, with_rats=False) == pytest.approx(four + one_level)
    assert activation_seconds(10, with_rats=False) == pytest.approx(four + 2 * one_level)


def test_activation_with_rats() -> None:
    base = activation_seconds(4, with_rats=False)
    assert activation_seconds(4, with_rats=True) == pytest.approx(base + RATS_ATS_BITS * BIT + PAIR)
    # A longer ATS (the doc's 05 75 33 92 03 plus 3 historical bytes) costs 3 · 9 bits more.
    assert activation_seconds(4, with_rats=True, ats_length=8) == pytest.approx(
        activation_seconds(4, with_rats=True) + 27 * BIT
    )
    # SFGI 2 (the doc's ATS): the reader waits SFGT = 4096 · 4 / fc ≈ 1.2 ms instead of FDT_PCD.
    with_guard = activation_seconds(4, with_rats=True, sfgi=2)
    assert with_guard - activation_seconds(4, with_rats=True) == pytest.approx(4096 * 4 / FC - FDT_PCD_SECONDS)


def test_activation_of_a_phone_by_hand() -> None:
    # A 7-byte UID with RATS: 490 bits on the air and six command/answer gaps, about 5.7 ms.
    expected = (WUPA_ATQA_BITS + 2 * LEVEL_BITS + RATS_ATS_BITS) * BIT + 6 * PAIR
    assert expected == pytest.approx(5.69e-3, abs=0.01e-3)
    assert activation_seconds(7, with_rats=True) == pytest.approx(expected)


def test_activation_rejects_impossible_parameters() -> None:
    for kwargs in ({"uid_length": 5}, {"uid_length": 4, "ats_length": 0}, {"uid_length": 4, "sfgi": 15}):
        with pytest.raises(ValueError):
            activation_seconds(**kwargs, with_rats=True)


# --- ISO-DEP -----------------------------------------------------------------------------------------


def test_iblock_counts_at_fsc_64() -> None:
    # FSC 64 carries 61 INF bytes per block (PCB + CRC_A take 3).
    assert [iblock_count(n, 64) for n in (0, 1, 61, 62, 122, 123, 183, 184)] == [1, 1, 1, 2, 2, 3, 3, 4]
    assert iblock_count(261, 64) == 5  # the longest short C-APDU
    assert iblock_count(258, 256) == 2  # the longest short R-APDU at FSD 256 (253 per block)
    assert iblock_count(253, 256) == 1
    with pytest.raises(ValueError):
        iblock_count(10, 15)


def test_single_block_exchange_by_hand() -> None:
    # SELECT PPSE (20 bytes) → 50-byte answer: I-block, FDT, I-block, FDT.
    expected = (2 + 9 * (1 + 20 + 2)) * BIT + (2 + 9 * (1 + 50 + 2)) * BIT + PAIR
    assert isodep_exchange_seconds(20, 50) == pytest.approx(expected)


def test_chained_exchange_by_hand() -> None:
    # 100-byte APDU at FSC 64: blocks of 61 + 39, the first acknowledged by R(ACK).
    # 300-byte answer at FSD 256: blocks of 253 + 47, the first acknowledged by R(ACK).
    def block(inf: int) -> float:
        return (2 + 9 * (1 + inf + 2)) * BIT

    r_ack = block(0)
    expected = block(61) + r_ack + block(39) + block(253) + r_ack + block(47) + 3 * PAIR
    assert isodep_exchange_seconds(100, 300) == pytest.approx(expected)


@given(
    a=st.integers(0, 600),
    b=st.integers(0, 600),
    c=st.integers(0, 600),
    d=st.integers(0, 600),
    fsc=st.sampled_from([16, 24, 32, 40, 48, 64, 96, 128, 256]),
)
def test_more_apdu_bytes_are_never_faster(a: int, b: int, c: int, d: int, fsc: int) -> None:
    assert isodep_exchange_seconds(min(a, b), min(c, d), fsc) <= isodep_exchange_seconds(max(a, b), max(c, d), fsc)


@given(apdu=st.integers(0, 600), response=st.integers(0, 600), small=st.integers(16, 256), large=st.integers(16, 256))
def test_a_larger_frame_size_is_never_slower(apdu: int, response: int, small: int, large: int) -> None:
    small, large = min(small, large), max(small, large)
    assert isodep_exchange_seconds(apdu, response, large, large) <= isodep_exchange_seconds(
        apdu, response, small, small
    )


# --- card processing ---------------------------------------------------------------------------------

TIMING = CardTiming()
GPO = bytes.fromhex("80A8000004830220000000")  # any PDOL data will do: only INS matters
OK = b"\x90\x00"


def gpo_response(cvr_byte_2: int) -> bytes:
    iad = bytes([0x07, 0x01, 0x01, 0x03, cvr_byte_2, 0x00, 0x00, 0x01, 0x0A, 0x01]) + bytes(9)
    body = tlv.constructed(
        0x77, tlv.encode(0x82, b"\x7c\x00"), tlv.encode(0x9F36, b"\x00\x01"), tlv.encode(0x9F10, iad)
    )
    return body + OK


def test_card_timing_defaults_are_the_documented_model() -> None:
    assert (TIMING.select_seconds, TIMING.gpo_seconds, TIMING.gpo_offline_seconds) == (0.002, 0.030, 0.080)
    assert (TIMING.read_record_seconds, TIMING.purchase_seconds, TIMING.other_seconds) == (0.003, 0.015, 0.002)


def test_card_seconds_by_ins() -> None:
    assert card_seconds(TIMING, bytes.fromhex("00A404000E325041592E5359532E444446303100"), OK) == 0.002
    assert card_seconds(TIMING, bytes.fromhex("00B2011400"), OK) == 0.003
    assert card_seconds(TIMING, bytes.fromhex("805001020B01000000640000000000010F"), OK) == 0.015
    assert card_seconds(TIMING, bytes.fromhex("805401000F") + bytes(15) + b"\x08", OK) == 0.015
    assert card_seconds(TIMING, bytes.fromhex("0084000008"), OK) == 0.002
    assert card_seconds(TIMING, b"", b"") == 0.002
    slow = CardTiming(select_seconds=0.5)
    assert card_seconds(slow, bytes.fromhex("00A4040000"), OK) == 0.5


def test_gpo_online_or_offline_from_the_cvr() -> None:
    assert card_seconds(TIMING, GPO, gpo_response(0xA0)) == 0.030  # ARQC
    assert card_seconds(TIMING, GPO, gpo_response(0x90)) == 0.080  # TC: fDDA signature
    assert card_seconds(TIMING, GPO, gpo_response(0x80)) == 0.030  # AAC
    assert card_seconds(TIMING, GPO, bytes.fromhex("6985")) == 0.030  # refused: no TC
    assert card_seconds(TIMING, GPO, b"\x77\x05\x9f\x10" + OK) == 0.030  # broken TLV: assume online


def test_gpo_flag_overrides_the_response() -> None:
    assert card_seconds(TIMING, GPO, gpo_response(0xA0), offline=True) == 0.080
    assert card_seconds(TIMING, GPO, gpo_response(0x90), offline=False) == 0.030


def test_a_new_account_takes_no_excess_carried_from_before_it() -> None:
    """The excess of earlier sleeps is taken off later ones, but not across `reset_account`: one accounted
    exchange then never takes less than its model, however late the machine woke before it."""
    model = LinkModel(enabled=True)
    model._overshoot = MAX_CARRIED_OVERSHOOT * 4  # as left by a loaded machine's late wake-ups
    model.reset_account()
    started = time.perf_counter()
    model.pace_uart(100)
    assert time.perf_counter() - started >= model.modelled_seconds > 0
