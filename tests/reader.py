"""A scripted reader for the tests of every package: terminal data and the APDUs a qPBOC kernel sends.

Written from the spec independently of the card code, so that tests check the card from outside.
"""

from __future__ import annotations

from pathlib import Path

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.bcd import encode_cn
from emvcore.dol import build_dol_data
from firmware.apps.cards.card import Chip
from firmware.apps.cards.cardfile import PlainCard
from firmware.issuing.layout import World

PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256)
TTQ_CARD_READER = bytes.fromhex("26000080")  # qPBOC, online PIN, signature, fDDA v01
TTQ_PHONE_READER = bytes.fromhex("26004080")  # + consumer-device CVM supported


def terminal_data(amount: int, *, ttq: bytes = TTQ_PHONE_READER, un: bytes = b"\x12\x34\x56\x78",
                  currency: str = "0156", txn_type: int = 0) -> dict[int, bytes]:
    return {
        0x9F66: ttq,
        0x9F02: bytes.fromhex(f"{amount:012d}"),
        0x9F03: bytes(6),
        0x9F1A: bytes.fromhex("0156"),
        0x95: bytes(5),
        0x5F2A: bytes.fromhex(currency),
        0x9A: bytes.fromhex("261127"),
        0x9C: bytes([txn_type]),
        0x9F37: un,
    }


def send(chip: Chip, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.decode(chip.transceive(command.encode()))


def select(chip: Chip, aid: bytes, *, next_occurrence: bool = False) -> ResponseApdu:
    return send(chip, CommandApdu(0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, aid, le=256))


def gpo(chip: Chip, pdol: bytes, values: dict[int, bytes]) -> ResponseApdu:
    data = build_dol_data(pdol, values)
    return send(chip, CommandApdu(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, data), le=256))


def tap(chip: Chip, aid: bytes, values: dict[int, bytes]) -> tuple[ResponseApdu, dict[int, bytes]]:
    """SELECT the AID and run GPO; returns the GPO answer and its flattened data."""
    fci = select(chip, aid)
    assert fci.ok, f"SELECT failed {fci.sw:04X}"
    answer = gpo(chip, tlv.find(fci.data, 0x9F38) or b"", values)
    return answer, (tlv.flatten(answer.data) if answer.ok else {})


def read_records(chip: Chip, afl: bytes) -> list[tuple[int, bytes]]:
    records = []
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for number in range(first, last + 1):
            answer = send(chip, CommandApdu(0x00, 0xB2, number, (sfi << 3) | 4, le=256))
            assert answer.ok, f"READ RECORD {sfi}/{number}: {answer.sw:04X}"
            records.append((sfi, answer.data))
    return records


DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
TTQ_ONLINE = bytes.fromhex("26800080")  # qPBOC, signature, online cryptogram required: the card sends an ARQC


def tap_icc(world: World, issuer: str, amount: int, *, ttq: bytes = TTQ_ONLINE) -> dict[str, str]:
    """Tap the issuer's world card and collect DE55 as a terminal would, 57 and 5A included: whoever
    receives it (host, journal) must keep those out of what it stores."""
    entry = next(c for c in world.cards() if c["issuer"] == issuer)
    card = PlainCard.load(world.path(Path(entry["file"])))
    values = terminal_data(amount, ttq=ttq)
    answer, data = tap(card.chip(), DEBIT_AID if entry["kind"] == "debit" else CREDIT_AID, values)
    assert answer.ok
    icc = {tag: values[tag] for tag in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)}
    icc.update({tag: data[tag] for tag in (0x9F26, 0x9F10, 0x9F36, 0x82, 0x57, 0x5F34)})
    icc[0x5A] = encode_cn(entry["pan"], 8)
    return {f"{tag:X}": value.hex().upper() for tag, value in icc.items()}
