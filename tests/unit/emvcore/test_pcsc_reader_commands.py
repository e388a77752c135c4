"""emvcore.pcsc: the ACR122U's LED and buzzer pseudo-APDU (ACR122U API v2.04, Appendix E's examples) and the PC/SC
Part 10 feature list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emvcore import pcsc


@pytest.mark.parametrize(("asked", "apdu"), [
    (pcsc.LedBuzzer(None, None), "FF 00 40 00 04 00 00 00 00"),  # Example 1: read the LEDs, change nothing
    (pcsc.LedBuzzer(True, True), "FF 00 40 0F 04 00 00 00 00"),  # Example 2: both on
    (pcsc.LedBuzzer(False, False), "FF 00 40 0C 04 00 00 00 00"),  # Example 2: both off
    (pcsc.LedBuzzer(False, None), "FF 00 40 04 04 00 00 00 00"),  # Example 3: red off, green unchanged
    (pcsc.LedBuzzer(None, None, beep_tenths=1), "FF 00 40 00 04 01 00 01 01"),  # a 100 ms beep, LEDs unchanged
])
def test_commands_are_the_api_manuals_examples(asked: pcsc.LedBuzzer, apdu: str) -> None:
    assert asked.command() == bytes.fromhex(apdu)
    assert pcsc.LedBuzzer.parse(bytes.fromhex(apdu)) == asked


def test_a_blinking_command_is_read_as_its_beep() -> None:
    """Examples 4 and 6: red for 2 s with the buzzer during T1; both blinking 3 × (500 + 500) ms, buzzer throughout."""
    assert pcsc.LedBuzzer.parse(bytes.fromhex("FF 00 40 50 04 14 00 01 01")) == pcsc.LedBuzzer(None, None, 20)
    assert pcsc.LedBuzzer.parse(bytes.fromhex("FF 00 40 F0 04 05 05 03 03")) == pcsc.LedBuzzer(None, None, 30)


def test_the_answer_carries_the_leds_state() -> None:
    assert pcsc.led_state_answer(True, True) == bytes.fromhex("9003")  # Example 2's answer
    assert pcsc.led_state_answer(False, True) == bytes.fromhex("9002")  # Example 3's
    assert pcsc.led_state_answer(False, False) == bytes.fromhex("9000")


@pytest.mark.parametrize("apdu", ["FF0040000400000000 00", "FF00400004000000", "FF0041000400000000",
                                  "FF0040000500000000", ""])
def test_anything_else_is_not_an_led_command(apdu: str) -> None:
    with pytest.raises(ValueError, match="not FF 00 40"):
        pcsc.LedBuzzer.parse(bytes.fromhex(apdu))


def test_a_beep_longer_than_the_reader_counts_is_refused() -> None:
    with pytest.raises(ValueError, match="0 to 255"):
        pcsc.LedBuzzer(None, None, beep_tenths=256).command()


@given(st.sampled_from([None, False, True]), st.sampled_from([None, False, True]), st.integers(0, 255))
def test_every_command_reads_back_as_itself(red: bool | None, green: bool | None, tenths: int) -> None:
    asked = pcsc.LedBuzzer(red, green, tenths)
    assert pcsc.LedBuzzer.parse(asked.command()) == asked


def test_the_feature_list_gives_each_features_control_code() -> None:
    """Part 10: tag, length 4, the code big-endian; libccid lists the escape (tag 13) only when allowed."""
    answer = bytes.fromhex("06 04 42 33 00 06 13 04 42 00 00 01")
    assert pcsc.feature_codes(answer) == {0x06: 0x42330006, pcsc.FEATURE_CCID_ESC_COMMAND: 0x42000001}
    assert pcsc.feature_codes(answer + bytes.fromhex("1302AB")) == {0x06: 0x42330006, 0x13: 0x42000001}
    assert pcsc.feature_codes(b"") == {}


def test_the_beep_at_card_detection_is_set_by_ff_00_52() -> None:
    """ACR122U API §6.7: P2 00 no beep when a card is detected, FF a beep (the default)."""
    assert pcsc.detection_buzzer(False) == bytes.fromhex("FF 00 52 00 00")
    assert pcsc.detection_buzzer(True) == bytes.fromhex("FF 00 52 FF 00")
    assert pcsc.detection_buzzer_setting(pcsc.detection_buzzer(False)) is False
    assert pcsc.detection_buzzer_setting(pcsc.detection_buzzer(True)) is True
    for wrong in ("FF 00 52 01 00", "FF 00 52 00", "FF 00 52 00 00 00", "FF 00 53 00 00"):
        with pytest.raises(ValueError, match="not FF 00 52"):
            pcsc.detection_buzzer_setting(bytes.fromhex(wrong))
