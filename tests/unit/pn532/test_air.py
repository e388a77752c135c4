"""The virtual RF field: software cards of the test world answering through ISO-DEP, phones changing
their UID every tap, cards taken away mid-transaction, and a reader waiting for a card to come.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from emvcore import tlv
from emvcore.apdu import CommandApdu
from firmware.apps.present import load_presentable
from firmware.issuing.layout import World
from firmware.simulator.air import SOFTWARE_CARD_ATS, Field, SoftwareCard, TypeAIdentity
from firmware.simulator.isodep import IsoDepTimeout, PcdEngine, parse_ats

PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256).encode()
SMALL_FSC_ATS = bytes.fromhex("0200")  # T0 00: FSCI 0 → FSC 16, defaults otherwise


def reader_for(card: SoftwareCard, rats: bytes = b"\xe0\x80", fsd: int = 256) -> PcdEngine:
    ats = card.exchange(rats, 0.2)
    assert ats is not None
    return PcdEngine(lambda frame: card.exchange(frame, 0.2), fsc=parse_ats(ats).fsc, fsd=fsd)


def plain_card_path(world: World, index: int = 0) -> Path:
    return world.path(Path(world.cards()[index]["file"]))


class FakeChip:
    def __init__(self) -> None:
        self.apdus: list[bytes] = []
        self.field_offs = 0

    def transceive(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        return b"\x90\x00"

    def field_off(self) -> None:
        self.field_offs += 1


class FakePresentable:
    def __init__(self, uid: bytes = bytes.fromhex("04A1B2C3D4E5F6")) -> None:
        self.uid = uid
        self.chips: list[FakeChip] = []

    def uid_for_tap(self) -> bytes:
        return self.uid

    def chip(self) -> FakeChip:
        self.chips.append(FakeChip())
        return self.chips[-1]


class FakePicc:
    in_reach = True

    def __init__(self) -> None:
        self.field_offs = 0

    def activate(self) -> TypeAIdentity | None:
        return TypeAIdentity.for_uid(b"\x08\x01\x02\x03")

    def exchange(self, frame: bytes, timeout: float) -> bytes | None:
        return None

    def halt(self) -> None:
        pass

    def field_off(self) -> None:
        self.field_offs += 1


def fake_card(**kwargs: object) -> tuple[SoftwareCard, FakePresentable]:
    presentable = FakePresentable()
    return SoftwareCard(presentable, **kwargs), presentable  # type: ignore[arg-type]


# --- identities --------------------------------------------------------------------------------------


def test_sens_res_follows_the_uid_size() -> None:
    assert TypeAIdentity.for_uid(bytes(4)).sens_res == bytes.fromhex("0004")
    assert TypeAIdentity.for_uid(bytes(7)).sens_res == bytes.fromhex("0044")
    assert TypeAIdentity.for_uid(bytes(10)).sens_res == bytes.fromhex("0084")
    assert TypeAIdentity.for_uid(bytes(4)).sel_res == 0x20
    with pytest.raises(ValueError):
        TypeAIdentity.for_uid(bytes(5))
    with pytest.raises(ValueError):
        TypeAIdentity(b"\x04", bytes(4), 0x20)


def test_the_software_card_ats() -> None:
    ats = parse_ats(SOFTWARE_CARD_ATS)
    assert (ats.fsc, ats.fwi, ats.cid_supported, ats.nad_supported) == (256, 7, True, False)


# --- software cards of the test world ----------------------------------------------------------------------


def test_a_plain_card_answers_select_ppse_through_iso_dep(world: World) -> None:
    path = plain_card_path(world)
    card = SoftwareCard(load_presentable(path))
    identity = card.activate()
    assert identity is not None
    assert identity.uid == load_presentable(path).uid_for_tap()
    assert identity.sens_res == bytes.fromhex("0004") and identity.sel_res == 0x20
    assert card.exchange(b"\xe0\x80", 0.2) == SOFTWARE_CARD_ATS
    reader = PcdEngine(lambda frame: card.exchange(frame, 0.2), fsc=256)
    answer = reader.exchange(PPSE)
    assert answer == load_presentable(path).chip().transceive(PPSE)
    assert answer.endswith(b"\x90\x00") and answer.startswith(b"\x6f")
    assert reader.deselect() is True
    assert card.exchange(b"\x02" + PPSE, 0.2) is None  # deselected: silent until the next tap


def test_a_qpboc_select_chains_both_ways_at_fsc_16(world: World) -> None:
    path = plain_card_path(world, 3)
    card = SoftwareCard(load_presentable(path), ats=SMALL_FSC_ATS)
    card.activate()
    reader = reader_for(card, rats=b"\xe0\x00", fsd=16)
    fci = reader.exchange(PPSE)
    aid = tlv.find(fci[:-2], 0x4F)
    assert aid is not None
    select = CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, le=256).encode()
    answer = reader.exchange(select)
    assert len(answer) > 16 and answer.endswith(b"\x90\x00")
    direct = load_presentable(path).chip()
    direct.transceive(PPSE)
    assert answer == direct.transceive(select)


def test_a_phone_shows_a_new_uid_on_every_activation(world: World) -> None:
    phone = SoftwareCard(load_presentable(world.demo_phone))
    uids = []
    for _ in range(3):
        identity = phone.activate()
        assert identity is not None and len(identity.uid) == 4 and identity.uid[0] == 0x08
        assert identity.sens_res == bytes.fromhex("0004")
        uids.append(identity.uid)
        assert reader_for(phone).exchange(PPSE).endswith(b"\x90\x00")
        phone.field_off()
    assert len(set(uids)) == 3


def test_a_card_taken_away_mid_exchange_times_out(world: World) -> None:
    card = SoftwareCard(load_presentable(plain_card_path(world)), ats=SMALL_FSC_ATS)
    card.activate()
    reader = reader_for(card, rats=b"\xe0\x00", fsd=16)
    card.fault_remove_after(2)  # the second block of the chained SELECT never arrives
    with pytest.raises(IsoDepTimeout):
        reader.exchange(PPSE)
    assert card.removed
    assert card.exchange(b"\xb2", 0.2) is None
    assert card.activate() is None
    card.put_back()
    assert card.activate() is not None
    assert reader_for(card).exchange(PPSE).endswith(b"\x90\x00")


def test_remove_silences_the_card_and_ends_its_tap() -> None:
    card, presentable = fake_card()
    card.activate()
    assert card.exchange(b"\xe0\x80", 0.2) == SOFTWARE_CARD_ATS
    card.remove()
    assert presentable.chips[0].field_offs == 1
    assert card.exchange(b"\x02\x00\xa4\x04\x00", 0.2) is None
    assert presentable.chips[0].apdus == []


def test_a_tear_runs_the_command_but_loses_the_answer() -> None:
    card, presentable = fake_card()
    card.activate()
    reader = reader_for(card)
    card.fault_remove_after(1, after_handling=True)
    with pytest.raises(IsoDepTimeout):
        reader.exchange(b"\x80\xdc\x01\x00")
    assert presentable.chips[0].apdus == [b"\x80\xdc\x01\x00"]  # ran once, and only once


def test_field_off_and_deselect_end_the_chips_tap() -> None:
    card, presentable = fake_card()
    identity = card.activate()
    assert identity is not None and identity.sens_res == bytes.fromhex("0044")
    reader_for(card).exchange(b"\x00\xb2\x01\x0c\x00")
    card.field_off()
    assert presentable.chips[0].field_offs == 1
    assert card.exchange(b"\x03\x00", 0.2) is None  # no tap in progress until the next activation
    card.activate()
    reader = reader_for(card)
    assert reader.deselect() is True
    assert presentable.chips[1].field_offs == 1
    assert len(presentable.chips) == 2  # a fresh chip per tap


def test_fault_counts_from_one() -> None:
    card, _ = fake_card()
    with pytest.raises(ValueError):
        card.fault_remove_after(0)


def test_a_card_survives_two_threads() -> None:
    card, _ = fake_card()
    card.activate()
    reader = reader_for(card)
    errors: list[BaseException] = []

    def tap() -> None:
        try:
            for _ in range(200):
                reader.exchange(b"\x00\xb2\x01\x0c\x00")
        except IsoDepTimeout:
            pass  # the other thread took the card away
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    thread = threading.Thread(target=tap)
    thread.start()
    time.sleep(0.001)
    card.remove()
    thread.join(timeout=2)
    assert not thread.is_alive() and errors == []


# --- the field ---------------------------------------------------------------------------------------------


def test_wait_for_card_wakes_when_a_card_is_placed() -> None:
    field = Field()
    card, _ = fake_card()
    timer = threading.Timer(0.05, field.place, args=(card,))
    started = time.monotonic()
    timer.start()
    try:
        found = field.wait_for_card(0.9)
    finally:
        timer.cancel()
    assert found is card
    assert time.monotonic() - started < 0.5


def test_wait_for_card_times_out_on_an_empty_field() -> None:
    field = Field()
    started = time.monotonic()
    assert field.wait_for_card(0.05) is None
    assert 0.04 <= time.monotonic() - started < 0.5
    card, _ = fake_card()
    field.place(card)
    assert field.wait_for_card(0.0) is card  # already there: no wait


def test_place_and_remove_switch_the_old_card_off() -> None:
    field = Field()
    first, second = FakePicc(), FakePicc()
    field.place(first)
    assert field.current() is first
    field.place(first)
    assert first.field_offs == 0  # the same card again is not a new one
    field.place(second)
    assert first.field_offs == 1 and field.current() is second
    field.remove()
    assert second.field_offs == 1 and field.current() is None
    field.place(None)
    assert second.field_offs == 1


def test_emulated_targets_enter_and_leave_and_a_reader_skips_its_own() -> None:
    field = Field()
    own, other, placed = FakePicc(), FakePicc(), FakePicc()
    field.enter(own)
    assert field.current(exclude=own) is None
    assert field.wait_for_card(0.01, exclude=own) is None
    field.enter(other)
    assert field.current(exclude=own) is other
    field.place(placed)
    assert field.current(exclude=own) is placed  # a card held to the antenna is found first
    field.leave(other)
    assert other.field_offs == 1
    field.leave(other)
    assert other.field_offs == 1
    field.remove()
    assert field.current(exclude=own) is None and field.current() is own


def test_a_card_torn_away_while_still_placed_is_not_found_so_readers_keep_polling() -> None:
    field = Field()
    card, _ = fake_card()
    field.place(card)
    assert field.current() is card
    card.fault_remove_after(1)
    assert card.activate() is not None and card.exchange(b"\xe0\x80", 0.1) is None  # torn at its first frame
    assert field.current() is None and field.wait_for_card(0.01) is None
    card.put_back()
    assert field.current() is card
