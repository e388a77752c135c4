"""The contactless Entry Point: PPSE, the candidate list, final selection and which kernel takes the AID.

Kept apart from the kernels so a second kernel reuses it rather than copying it (EMV Book B's split; doc
emv-qpboc.md §2.1-§2.3). Pure like the kernels: the card is reached through a :class:`~terminal.kernel.link.Link`,
and anything that ends the tap is a :class:`~terminal.kernel.link.Stop` carrying its outcome.

Decisions (see the tests):

* A failed or unreadable PPSE, or one with no entries, makes the Entry Point SELECT the supported AIDs
  directly; a PPSE that lists only other applications (a transit-only card) ends the tap "not supported".
* Candidates are the supported AIDs the PPSE lists, by priority (87 b4-b1, 0 = none = last) and then PPSE order;
  the same AID listed twice is tried once; at most eight are tried.
* Pre-processing per AID (doc §4 rule 1): an AID whose contactless transaction limit the amount reaches is not
  a candidate; when that leaves none, the outcome is "try another interface".
"""

from __future__ import annotations

from dataclasses import dataclass

from emvcore import tlv
from emvcore.apdu import CommandApdu, describe_sw
from emvcore.qpboc import RID
from terminal.kernel.link import Link, Stop, first_values, malformed
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.params import KernelParams

__all__ = ["KERNELS", "PPSE_NAME", "Candidate", "Selected", "kernel_for", "ppse_entries", "select_application"]

PPSE_NAME = b"2PAY.SYS.DDF01"

KERNELS: dict[bytes, str] = {RID: "qpboc"}
"""RID → the kernel that processes its AIDs (EMV Kernel 7 serves UnionPay's A000000333)."""

_MAX_CANDIDATES = 8  # a hostile PPSE cannot make us SELECT forever
_NO_PRIORITY = 16  # 87 = 0 (or missing) sorts after every real priority (1 highest … 15)


@dataclass(frozen=True)
class Candidate:
    """One application the PPSE offers (or a supported AID tried directly)."""

    aid: bytes
    label: str | None
    priority: int
    order: int


@dataclass(frozen=True)
class Selected:
    """The application the card accepted: its DF name, label, FCI values and the kernel to run."""

    aid: bytes
    label: str | None
    fci: dict[int, bytes]
    kernel: str


def kernel_for(aid: bytes) -> str | None:
    """The kernel for an AID by its RID, None when this terminal has none."""
    return KERNELS.get(aid[:5])


def _label(value: bytes | None) -> str | None:
    """A card's label (50) as printable ASCII, so nothing it sends can forge a log line."""
    if value is None:
        return None
    text = value[:16].decode("ascii", "replace")
    return "".join(char if char.isprintable() else "?" for char in text)


def _select(name: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, name, le=256)


def ppse_entries(data: bytes) -> list[Candidate]:
    """The 61 entries of a PPSE FCI; raises ValueError (TlvError) on anything that is not one."""
    fci = tlv.parse_one(data)
    if fci.tag != 0x6F:
        raise tlv.TlvError(f"PPSE answer is {fci.tag:X}, not an FCI (6F)")
    entries = []
    for _, obj in tlv.walk(data):
        if obj.tag != 0x61:
            continue
        values = first_values(obj.children())
        aid = values.get(0x4F)
        if aid is None or not 5 <= len(aid) <= 16:
            continue
        priority_byte = values.get(0x87, b"")
        priority = priority_byte[0] & 0x0F if len(priority_byte) == 1 else 0
        entries.append(Candidate(aid, _label(values.get(0x50)), priority or _NO_PRIORITY, len(entries)))
    return entries


def _parse_fci(data: bytes) -> dict[int, bytes]:
    fci = tlv.parse_one(data)
    if fci.tag != 0x6F:
        raise malformed(f"SELECT answer is {fci.tag:X}, not an FCI (6F)")
    return first_values(obj for _, obj in tlv.walk(fci.value))


class _EntryPoint:
    def __init__(self, link: Link, params: KernelParams, amount: int, reasons: list[str]) -> None:
        self.link, self.params, self.amount, self.reasons = link, params, amount, reasons
        self.over_limit: list[str] = []

    def allowed(self, aid: bytes) -> bool:
        if self.params.contactless_allowed(self.amount, aid):
            return True
        limit = self.params.limits_for(aid).transaction_limit
        self.over_limit.append(f"{aid.hex().upper()} (limit {limit})")
        return False

    def candidates(self) -> list[Candidate]:
        response = self.link.send(_select(PPSE_NAME), "SELECT PPSE")
        entries: list[Candidate] | None = None
        if response.ok:
            try:
                entries = ppse_entries(response.data)
            except ValueError as error:
                self.reasons.append(f"PPSE unreadable ({error}); selecting AIDs directly")
        else:
            self.reasons.append(f"PPSE: {describe_sw(response.sw)}; selecting AIDs directly")
        if not entries:
            if entries is not None:
                self.reasons.append("PPSE lists no application; selecting AIDs directly")
            direct = [Candidate(aid, None, 0, i) for i, aid in enumerate(self.params.supported_aids)]
            return [candidate for candidate in direct if self.allowed(candidate.aid)]
        supported: dict[bytes, Candidate] = {}
        for entry in sorted(entries, key=lambda e: (e.priority, e.order)):
            if self.params.supports(entry.aid) and entry.aid not in supported and self.allowed(entry.aid):
                supported[entry.aid] = entry
        if not supported and not self.over_limit:
            listed = ", ".join(e.aid.hex().upper() for e in entries[:_MAX_CANDIDATES])
            raise Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, f"PPSE lists no supported AID ({listed})")
        return list(supported.values())[:_MAX_CANDIDATES]

    def select(self, candidate: Candidate) -> Selected | None:
        name = candidate.aid.hex().upper()
        response = self.link.send(_select(candidate.aid), f"SELECT {name}")
        if not response.ok:
            self.reasons.append(f"SELECT {name}: {describe_sw(response.sw)}; next candidate")
            return None
        try:
            fci = _parse_fci(response.data)
        except tlv.TlvError as error:
            raise malformed(f"SELECT {name}: FCI is not valid TLV ({error})") from None
        aid = fci.get(0x84, candidate.aid)
        if not aid.startswith(candidate.aid) or not self.params.supports(aid) or len(aid) > 16:
            self.reasons.append(f"SELECT {name}: DF name {aid.hex().upper()} does not match; next candidate")
            return None
        kernel = kernel_for(aid)
        if kernel is None:
            self.reasons.append(f"SELECT {name}: no kernel for {aid.hex().upper()}; next candidate")
            return None
        if not self.allowed(aid):  # a partial AID tried directly: the DF name's own limit
            self.reasons.append(f"SELECT {name}: amount at or above the contactless limit of {aid.hex().upper()}")
            return None
        return Selected(aid, _label(fci.get(0x50)) or candidate.label, fci, kernel)


def select_application(link: Link, params: KernelParams, amount: int, reasons: list[str]) -> Selected:
    """PPSE → candidates → the first one the card selects; a :class:`Stop` when none can be (reasons appended)."""
    entry = _EntryPoint(link, params, amount, reasons)
    for candidate in entry.candidates():
        selected = entry.select(candidate)
        if selected is not None:
            return selected
    if entry.over_limit:
        raise Stop(Outcome.TRY_ANOTHER_INTERFACE, Message.INSERT_OR_SWIPE,
                   f"amount {amount} at or above the contactless limit of {', '.join(entry.over_limit)}")
    raise Stop(Outcome.END_APPLICATION, Message.NOT_SUPPORTED, "no supported application could be selected")
