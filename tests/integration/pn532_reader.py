"""A qPBOC tap through pn532pi, for the integration tests: what a terminal's reader layer does."""

from __future__ import annotations

import datetime

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.bcd import amount_n12, date_n6
from emvcore.dol import build_dol_data
from hardware.pn532 import SerialHsu, in_data_exchange

TTQ = bytes.fromhex("26004080")


def exchange(interface: SerialHsu, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.decode(in_data_exchange(interface, command.encode()))


def qpboc_tap(interface: SerialHsu, amount: int, un: bytes = b"\x01\x02\x03\x04") -> tuple[dict, dict, int]:
    """PPSE, SELECT, GPO; returns (card data, terminal data, GPO status word)."""
    ppse = exchange(interface, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256))
    assert ppse.ok, f"PPSE {ppse.sw:04X}"
    aid = tlv.find(ppse.data, 0x4F)
    fci = exchange(interface, CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, le=256))
    assert fci.ok, f"SELECT {fci.sw:04X}"
    terminal = {
        0x9F66: TTQ, 0x9F02: amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0156"),
        0x95: bytes(5), 0x5F2A: bytes.fromhex("0156"), 0x9A: date_n6(datetime.date.today()), 0x9C: b"\x00",
        0x9F37: un,
    }
    data = build_dol_data(tlv.find(fci.data, 0x9F38), terminal)
    gpo = exchange(interface, CommandApdu(0x80, 0xA8, 0x00, 0x00, tlv.encode(0x83, data), le=256))
    return (tlv.flatten(gpo.data) if gpo.ok else {}), terminal, gpo.sw
