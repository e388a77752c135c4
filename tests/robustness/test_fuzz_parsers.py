"""The pure parsers fed hostile bytes: BER-TLV, DOL, command and response APDUs, and the card side (a world card
fed random commands). Only the documented error types, and a refused command changes no card file.

tests/unit/emvcore already fuzzes random bytes into each parser; these add mutations of real card answers (bit
flips, cuts, insertions, length-byte lies, deep nesting) and the properties that must hold for what does parse.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from fuzzing import fuzz, tried
from hypothesis import given
from hypothesis import strategies as st

from emvcore import dol, tlv
from emvcore.apdu import ApduError, CommandApdu, ResponseApdu
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World

# a real GPO format-2 answer and a real PPSE FCI shape (values from the world's cards, fixed here)
GPO_77 = bytes.fromhex(
    "7781AF82027C0094040801030057136210010504343148D31122201000000000000F5F3401019F10130701010390000000"
    "00000000000000000000000000009F2608A1B2C3D4E5F607189F3602000A9F6C0220009F4B8180" + "5A" * 128)
PPSE_FCI = bytes.fromhex("6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A"
                         "5549435320444542495487010100")
PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Bit flips, cuts, insertions, deletions and lying length bytes on a real answer."""
    index = st.integers(0, max(len(seed) - 1, 0))
    flip = st.tuples(index, st.integers(0, 7)).map(
        lambda t: seed[: t[0]] + bytes([seed[t[0]] ^ (1 << t[1])]) + seed[t[0] + 1 :])
    cut = index.map(lambda i: seed[:i])
    insert = st.tuples(index, st.binary(min_size=1, max_size=8)).map(lambda t: seed[: t[0]] + t[1] + seed[t[0] :])
    delete = st.tuples(index, st.integers(1, 8)).map(lambda t: seed[: t[0]] + seed[t[0] + t[1] :])
    lie = st.tuples(index, st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x85, 0xFF])).map(
        lambda t: seed[: t[0]] + bytes([t[1]]) + seed[t[0] + 1 :])
    return st.one_of(flip, cut, insert, delete, lie)


def nested(depth: int) -> bytes:
    data = tlv.encode(0x5A, b"\x01")
    for _ in range(depth):
        data = tlv.constructed(0x70, data)
    return data


HOSTILE_TLV = st.one_of(
    st.binary(max_size=300),
    mutations(GPO_77),
    mutations(PPSE_FCI),
    st.integers(1, 200).map(nested).flatmap(mutations),
    st.lists(st.sampled_from([b"\x70", b"\x81", b"\xff", b"\x00", b"\x9f", b"\xbf\x0c", b"\x84\xff\xff\xff\xff"]),
             max_size=40).map(b"".join),
)


@fuzz(400)
@given(data=HOSTILE_TLV)
def test_tlv_parsers_raise_only_tlv_errors_and_what_parses_re_encodes(data: bytes) -> None:
    tried("tlv: parse/walk/flatten/find")
    try:
        objects = tlv.parse(data)
    except tlv.TlvError:
        objects = None
    if objects is not None:
        # every object read back is re-encodable, and re-parsing the re-encoding gives the same objects
        assert tlv.parse(b"".join(obj.encode() for obj in objects)) == objects
    for call in (tlv.walk, tlv.flatten, tlv.parse_one, lambda d: tlv.find(d, 0x9F26)):
        with contextlib.suppress(tlv.TlvError):
            call(data)


@fuzz(300)
@given(dol_bytes=st.one_of(st.binary(max_size=40), mutations(PDOL)), data=st.binary(max_size=60),
       values=st.dictionaries(st.sampled_from([0x9F66, 0x9F02, 0x5A, 0x9F37, 0x70, 0xBF0C]), st.binary(max_size=20)))
def test_dol_parsers_raise_only_dol_errors_and_build_matches_split(dol_bytes: bytes, data: bytes,
                                                                    values: dict[int, bytes]) -> None:
    tried("dol: parse/build/split")
    try:
        entries = dol.parse_dol(dol_bytes)
    except dol.DolError:
        return
    built = dol.build_dol_data(dol_bytes, values)
    assert len(built) == dol.dol_length(dol_bytes) == sum(length for _, length in entries)
    split = dol.split_dol_data(dol_bytes, built)
    assert set(split) == {tag for tag, _ in entries}
    try:
        dol.split_dol_data(dol_bytes, data)
    except dol.DolError:
        assert len(data) != len(built)


@fuzz(400)
@given(raw=st.one_of(st.binary(max_size=300), mutations(bytes.fromhex("80A8000023832326000080") + bytes(33) + b"\x00"),
                     mutations(bytes.fromhex("00A404000E325041592E5359532E444446303100")),
                     mutations(bytes.fromhex("00A40400") + bytes([0, 1, 0]) + bytes(256) + b"\x01\x00")))
def test_apdu_decoders_raise_only_apdu_errors_and_round_trip(raw: bytes) -> None:
    tried("apdu: command/response decode")
    try:
        command = CommandApdu.decode(raw)
    except ApduError as error:
        assert 0x6000 <= error.sw <= 0x6FFF
    else:
        assert CommandApdu.decode(command.encode()) == command
    try:
        response = ResponseApdu.decode(raw)
    except ApduError:
        assert len(raw) < 2
    else:
        assert response.encode() == raw


# --- the card side: hostile commands never change a card file unless the card accepted them ----------------------

CARD_COMMANDS = st.one_of(
    st.binary(max_size=60),
    mutations(bytes.fromhex("00A404000E325041592E5359532E444446303100")),
    mutations(bytes.fromhex("00A4040008A00000033301010100")),
    mutations(bytes.fromhex("80A8000023832326000080") + bytes(33) + b"\x00"),
    mutations(bytes.fromhex("00B2010C00")),
    st.tuples(st.sampled_from([0x00, 0x80, 0x84]), st.sampled_from([0xA4, 0xA8, 0xB2, 0xCA, 0x50, 0x54, 0x5A, 0xAE,
                                                                    0xC0, 0x5C]),
              st.binary(min_size=2, max_size=2), st.binary(max_size=40)).map(
        lambda t: bytes([t[0], t[1]]) + t[2] + (bytes([len(t[3])]) + t[3] if t[3] else b"") + b"\x00"),
)


@pytest.fixture(scope="module")
def card_files(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import shutil

    root = tmp_path_factory.mktemp("card-fuzz") / "world"
    shutil.copytree(world_template.root, root)
    world = World.open(root)
    return {
        "debit": world.path(Path(next(c["file"] for c in world.cards() if c["issuer"] == "boc-debit"))),
        "transit": world.path(Path(world.transit_cards()[0]["file"])),
        "phone": world.demo_phone,
    }


@fuzz(150)
@given(which=st.sampled_from(["debit", "transit", "phone"]), commands=st.lists(CARD_COMMANDS, min_size=1, max_size=6))
def test_a_card_fed_hostile_commands_answers_a_status_word_and_keeps_its_file(
    card_files: dict[str, Path], which: str, commands: list[bytes]
) -> None:
    tried(f"card side: hostile APDUs ({which})")
    path = card_files[which]
    card = Wallet.load(path) if which == "phone" else PlainCard.load(path)
    chip = card.chip()
    for command in commands:
        before = path.read_bytes()
        answer = chip.transceive(command)
        assert isinstance(answer, bytes) and len(answer) >= 2
        sw = int.from_bytes(answer[-2:], "big")
        if sw != 0x9000 and answer[-2] != 0x61:
            assert path.read_bytes() == before, f"{command.hex()} refused with {sw:04X} but changed the card file"
