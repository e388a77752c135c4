"""`pos-terminal read`: look at a card without paying.

It sends only what any reader may send to a payment card: SELECT PPSE, SELECT each application and READ RECORD
of the records a card shows without a transaction; it never asks for a cryptogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.bcd import decode_cn
from emvcore.tags import mask_pan
from terminal.reader.base import Reader, Target


@dataclass
class CardView:
    uid_random: bool
    applications: list[dict[str, Any]] = field(default_factory=list)


def _send(reader: Reader, command: CommandApdu) -> ResponseApdu:
    return ResponseApdu.decode(reader.transceive(command.encode()))


def read_card(reader: Reader, target: Target) -> CardView:
    """Labels, AIDs, masked PAN and expiry of every application the card in the field (`target`) offers."""
    view = CardView(uid_random=len(target.uid) == 4 and target.uid[0] == 0x08)
    try:
        ppse = _send(reader, CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", le=256))
        for aid, label, priority in _applications(ppse.data if ppse.ok else b""):
            application: dict[str, Any] = {"aid": aid.hex().upper(), "label": label, "priority": priority}
            if _send(reader, CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, le=256)).ok:
                application.update(_first_record(reader))
            view.applications.append(application)
    finally:
        reader.release()
    return view


def _applications(ppse: bytes) -> list[tuple[bytes, str, int]]:
    found = []
    try:
        for top in tlv.parse(ppse):
            stack = [top]
            while stack:
                node = stack.pop()
                if node.tag == 0x61:
                    values = {child.tag: child.value for child in node.children()}
                    if 0x4F in values:
                        found.append((values[0x4F], values.get(0x50, b"").decode("ascii", "replace"),
                                      values.get(0x87, b"\x00")[0] & 0x0F))
                elif node.constructed:
                    stack.extend(reversed(node.children()))  # keep the PPSE order
    except tlv.TlvError:
        pass
    return found


def _first_record(reader: Reader) -> dict[str, str]:
    answer = _send(reader, CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256))
    if not answer.ok:
        return {"pan": "not readable without a transaction"}
    try:
        values = tlv.flatten(answer.data)
        pan = decode_cn(values[0x5A]) if 0x5A in values else None
    except (tlv.TlvError, ValueError):
        return {"pan": "unreadable record"}
    result = {"pan": mask_pan(pan) if pan else "not in record 1"}
    if 0x5F24 in values:
        expiry = values[0x5F24].hex()
        result["expiry"] = f"20{expiry[:2]}-{expiry[2:4]}"
    return result
