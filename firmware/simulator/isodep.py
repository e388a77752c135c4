"""ISO/IEC 14443-4 (ISO-DEP) half-duplex block protocol: the card side and the reader side, bytes in and out.

Frames here carry no CRC_A: in the virtual air the PN532 adds and checks it "in hardware". FSC and FSD
still count those two CRC bytes, as ISO 14443-4 defines them, so a block's INF field is at most
FS − PCB − [CID] − [NAD] − 2 bytes. Block-number rules A–E and error-recovery rules 1–13 are those of
ISO 14443-4 §7.5.3–7.5.5.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

# --- PCB coding --------------------------------------------------------------------------------------

I_BLOCK = 0x02  # | block number, | CHAINING, | CID_FOLLOWS, | NAD_FOLLOWS
R_ACK = 0xA2  # | block number, | CID_FOLLOWS
R_NAK = 0xB2  # | block number, | CID_FOLLOWS
S_DESELECT = 0xC2  # | CID_FOLLOWS
S_WTX = 0xF2  # | CID_FOLLOWS, then one WTXM byte
CHAINING = 0x10
CID_FOLLOWS = 0x08
NAD_FOLLOWS = 0x04
BLOCK_NUMBER = 0x01
RATS = 0xE0  # then one parameter byte: FSDI (high nibble), CID (low nibble)

CRC_LENGTH = 2  # CRC_A: counted in FSC/FSD, absent from the frames in this model
FS_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)  # FSCI/FSDI 0–8
WTXM_MAX = 59
MAX_RESPONSE = 65536 + 2  # an extended R-APDU: anything longer is a card that never stops chaining

PN532_ATS = bytes.fromhex("0575339203")  # what a PN532 in PICC mode answers to RATS (doc §2.5)

FC_HZ = 13_560_000


def fsc_from_fsci(fsci: int) -> int:
    """Frame size for an FSCI/FSDI nibble; 9–F were RFU until 2016 and a receiver reads them as 8 (256)."""
    if not 0 <= fsci <= 0x0F:
        raise ValueError(f"FSCI/FSDI is a nibble (0-15), not {fsci}")
    return FS_TABLE[min(fsci, 8)]


def fsci_for_size(size: int) -> int:
    """The largest FSCI/FSDI whose frame size fits in `size` bytes (a reader picks its FSDI this way)."""
    if size < FS_TABLE[0]:
        raise ValueError(f"a frame size below {FS_TABLE[0]} bytes cannot be announced ({size})")
    return max(i for i, fs in enumerate(FS_TABLE) if fs <= size)


def max_inf(frame_size: int, *, cid: bool = False, nad: bool = False) -> int:
    """INF bytes that fit in one block of a frame of `frame_size` (PCB, CID, NAD and CRC_A included)."""
    return frame_size - 1 - int(cid) - int(nad) - CRC_LENGTH


def fwt_seconds(fwi: int) -> float:
    """Frame waiting time: (256 × 16 / fc) × 2^FWI."""
    return 256 * 16 * 2**fwi / FC_HZ


# --- block builders ----------------------------------------------------------------------------------


def _frame(pcb: int, inf: bytes = b"", *, cid: int | None = None, nad: int | None = None) -> bytes:
    head = bytearray([pcb | (CID_FOLLOWS if cid is not None else 0) | (NAD_FOLLOWS if nad is not None else 0)])
    if cid is not None:
        head.append(cid & 0x0F)
    if nad is not None:
        head.append(nad & 0x77)
    return bytes(head) + inf


def i_block(bn: int, inf: bytes, *, chaining: bool = False, cid: int | None = None, nad: int | None = None) -> bytes:
    return _frame(I_BLOCK | (bn & 1) | (CHAINING if chaining else 0), inf, cid=cid, nad=nad)


def r_ack(bn: int, *, cid: int | None = None) -> bytes:
    return _frame(R_ACK | (bn & 1), cid=cid)


def r_nak(bn: int, *, cid: int | None = None) -> bytes:
    return _frame(R_NAK | (bn & 1), cid=cid)


def s_deselect(*, cid: int | None = None) -> bytes:
    return _frame(S_DESELECT, cid=cid)


def s_wtx(wtxm: int, *, cid: int | None = None) -> bytes:
    """S(WTX) request (card) or response (reader, echoing the WTXM); power-level bits left at 0."""
    if not 1 <= wtxm <= WTXM_MAX:
        raise ValueError(f"WTXM must be 1-{WTXM_MAX}, not {wtxm}")
    return _frame(S_WTX, bytes([wtxm]), cid=cid)


def rats(fsdi: int = 8, cid: int = 0) -> bytes:
    if not 0 <= fsdi <= 0x0F or not 0 <= cid <= 14:
        raise ValueError("RATS: FSDI is 0-15 and CID 0-14")
    return bytes([RATS, (fsdi << 4) | cid])


# --- parsing ----------------------------------------------------------------------------------------


class Kind(enum.Enum):
    I_BLOCK = "I"
    R_ACK = "R(ACK)"
    R_NAK = "R(NAK)"
    DESELECT = "S(DESELECT)"
    WTX = "S(WTX)"


@dataclass(frozen=True)
class Block:
    kind: Kind
    bn: int = 0  # I- and R-blocks
    chaining: bool = False  # I-blocks
    cid: int | None = None
    nad: int | None = None  # I-blocks
    inf: bytes = b""  # I-blocks: the data; S(WTX): the WTXM byte

    @property
    def wtxm(self) -> int:
        return self.inf[0] & 0x3F if self.kind is Kind.WTX else 0


def parse_block(frame: bytes) -> Block | None:
    """The block in a frame, or None when it is not a valid ISO-DEP block (which the receiver must ignore)."""
    if not frame:
        return None
    pcb, rest = frame[0], frame[1:]
    cid = None
    if pcb & CID_FOLLOWS:
        if not rest or rest[0] & 0x30:  # CID byte: b8-b7 power level, b6-b5 zero, b4-b1 CID
            return None
        cid, rest = rest[0] & 0x0F, rest[1:]
    if pcb & 0xE2 == I_BLOCK:
        nad = None
        if pcb & NAD_FOLLOWS:
            if not rest or rest[0] & 0x88:
                return None
            nad, rest = rest[0], rest[1:]
        return Block(Kind.I_BLOCK, pcb & 1, bool(pcb & CHAINING), cid, nad, bytes(rest))
    if pcb & 0xE6 == 0xA2:  # R-block: 101x x01b
        if rest:
            return None
        return Block(Kind.R_NAK if pcb & 0x10 else Kind.R_ACK, pcb & 1, cid=cid)
    if pcb & 0xC7 == 0xC2:  # S-block: 11xx x010
        kind = pcb & 0x30
        if kind == 0x00 and not rest:
            return Block(Kind.DESELECT, cid=cid)
        if kind == 0x30 and len(rest) == 1 and 1 <= rest[0] & 0x3F <= WTXM_MAX:
            return Block(Kind.WTX, cid=cid, inf=bytes(rest))
    return None


@dataclass(frozen=True)
class Ats:
    """The interface bytes of an ATS, with ISO 14443-4 defaults for the absent ones."""

    fsci: int = 2
    ta1: int = 0x00
    fwi: int = 4
    sfgi: int = 0
    nad_supported: bool = False
    cid_supported: bool = True
    historical: bytes = b""

    @property
    def fsc(self) -> int:
        return fsc_from_fsci(self.fsci)

    @property
    def fwt(self) -> float:
        return fwt_seconds(self.fwi)


def parse_ats(ats: bytes) -> Ats:
    """Decode an ATS (TL first); ValueError when TL or T0 do not match the bytes."""
    if not ats or ats[0] != len(ats):
        raise ValueError(f"ATS {ats.hex()}: TL must equal the length")
    if len(ats) == 1:
        return Ats()
    t0 = ats[1]
    if t0 & 0x80:
        raise ValueError(f"ATS {ats.hex()}: T0 b8 must be 0")
    position, interface = 2, []
    for present in (0x10, 0x20, 0x40):  # TA1, TB1, TC1
        if t0 & present:
            if position >= len(ats):
                raise ValueError(f"ATS {ats.hex()}: T0 announces more interface bytes than there are")
            interface.append(ats[position])
            position += 1
        else:
            interface.append(None)
    ta1, tb1, tc1 = interface
    defaults = Ats()
    fwi = defaults.fwi if tb1 is None or tb1 >> 4 == 15 else tb1 >> 4  # 15 is RFU: read as the default
    sfgi = defaults.sfgi if tb1 is None or tb1 & 0x0F == 15 else tb1 & 0x0F
    tc1 = 0x02 if tc1 is None else tc1  # default TC1: CID supported, NAD not
    return Ats(
        fsci=t0 & 0x0F,
        ta1=defaults.ta1 if ta1 is None else ta1,
        fwi=fwi,
        sfgi=sfgi,
        nad_supported=bool(tc1 & 0x01),
        cid_supported=bool(tc1 & 0x02),
        historical=bytes(ats[position:]),
    )


# --- the card side -----------------------------------------------------------------------------------


class _State(enum.Enum):
    WAITING_RATS = "waiting for RATS"
    ACTIVE = "ISO-DEP active"
    HALTED = "deselected"


class PiccEngine:
    """ISO-DEP as a card runs it: RATS → ATS, then one answer (or silence) per received block.

    `apdu_handler` runs exactly once per complete C-APDU; a response is retransmitted from memory, never
    recomputed. `wtx_needed(apdu)` is asked before the handler and again after each S(WTX) response: a
    non-zero WTXM makes the card ask for more time first (a slow host behind a PN532 in target mode).
    `on_deselect` runs when S(DESELECT) ends the session.
    """

    def __init__(
        self,
        apdu_handler: Callable[[bytes], bytes],
        ats: bytes = PN532_ATS,
        *,
        wtx_needed: Callable[[bytes], int] | None = None,
        on_deselect: Callable[[], None] | None = None,
    ) -> None:
        self.ats = bytes(ats)
        self.ats_fields = parse_ats(self.ats)
        self.fsc = self.ats_fields.fsc
        self._handler = apdu_handler
        self._wtx_needed = wtx_needed
        self._on_deselect = on_deselect
        self.reset()

    def reset(self) -> None:
        """A new activation (WUPA + anticollision done): wait for RATS again."""
        self._state = _State.WAITING_RATS
        self.fsd = 256
        self.cid = 0
        self.bn = 1  # rule C
        self._last: tuple[int, bytes, int | None] | None = None  # (PCB without CID/NAD bits, INF, NAD)
        self._received = bytearray()
        self._receiving = False  # inside a chained command
        self._nad: int | None = None
        self._sending = b""  # what is left of a chained response
        self._pending: bytes | None = None  # an APDU waiting for the S(WTX) response

    @property
    def active(self) -> bool:
        return self._state is _State.ACTIVE

    @property
    def deselected(self) -> bool:
        return self._state is _State.HALTED

    def handle(self, frame: bytes) -> bytes | None:
        """The card's answer to one frame; None when ISO 14443-4 says to stay silent."""
        if self._state is _State.HALTED:
            return None
        if self._state is _State.WAITING_RATS:
            return self._rats(frame)
        if len(frame) + CRC_LENGTH > self.fsc:
            return None  # longer than we announced: a transmission error to the card
        block = parse_block(frame)
        if block is None or not self._addressed(block):
            return None
        if block.nad is not None and not self.ats_fields.nad_supported:
            return None
        if block.kind is Kind.I_BLOCK:
            return self._i_block(block)
        if block.kind in (Kind.R_ACK, Kind.R_NAK):
            return self._r_block(block)
        if block.kind is Kind.DESELECT:
            self._state = _State.HALTED
            if self._on_deselect is not None:
                self._on_deselect()
            return s_deselect(cid=block.cid)
        return self._wtx_response(block)

    def _rats(self, frame: bytes) -> bytes | None:
        if len(frame) != 2 or frame[0] != RATS or frame[1] & 0x0F == 0x0F:
            return None  # only RATS activates ISO-DEP; CID 15 is RFU
        self.fsd = fsc_from_fsci(frame[1] >> 4)
        self.cid = frame[1] & 0x0F if self.ats_fields.cid_supported else 0
        self._state = _State.ACTIVE
        return self.ats

    def _addressed(self, block: Block) -> bool:
        """A card that supports CID answers its own CID, and blocks without one only while its CID is 0."""
        if block.cid is None:
            return self.cid == 0
        return self.ats_fields.cid_supported and block.cid == self.cid

    def _i_block(self, block: Block) -> bytes | None:
        if self._sending or self._pending is not None:
            return None  # a new command while we are chaining or waiting for WTX: protocol error, ignore
        if self._receiving and block.nad is not None:
            return None  # NAD only in the first block of a chain
        self.bn ^= 1  # rule D
        if not self._receiving:
            self._nad = block.nad
        self._received += block.inf
        if block.chaining:
            self._receiving = True
            return self._send(R_ACK | self.bn, b"", block.cid, None)
        apdu, self._received, self._receiving = bytes(self._received), bytearray(), False
        return self._answer(apdu, block.cid)

    def _answer(self, apdu: bytes, cid: int | None) -> bytes:
        self._last = None  # should a callback fail, nothing stale may be retransmitted for this command
        wtxm = self._wtx_needed(apdu) if self._wtx_needed is not None else 0
        if wtxm:
            self._pending = apdu
            return self._send(S_WTX, bytes([min(max(wtxm, 1), WTXM_MAX)]), cid, None)
        self._pending = None
        response = self._handler(apdu)
        nad = None if self._nad is None else ((self._nad & 0x07) << 4) | ((self._nad >> 4) & 0x07)
        self._sending = bytes(response)
        return self._next_chunk(cid, nad)

    def _next_chunk(self, cid: int | None, nad: int | None) -> bytes:
        room = max_inf(self.fsd, cid=cid is not None, nad=nad is not None)
        chunk, self._sending = self._sending[:room], self._sending[room:]
        return self._send(I_BLOCK | self.bn | (CHAINING if self._sending else 0), chunk, cid, nad)

    def _r_block(self, block: Block) -> bytes | None:
        if block.bn == self.bn:  # rule 11: our last block was lost
            if self._last is None:
                return None  # nothing to repeat (the handler failed): silence, never a stale block
            pcb, inf, nad = self._last
            return _frame(pcb, inf, cid=block.cid, nad=nad)
        if block.kind is Kind.R_NAK:  # rule 12: the reader's block was lost
            return r_ack(self.bn, cid=block.cid)
        if self._sending:
            self.bn ^= 1  # rule E, then rule 13: go on chaining
            return self._next_chunk(block.cid, None)
        return None

    def _wtx_response(self, block: Block) -> bytes | None:
        if self._pending is None:
            return None
        return self._answer(self._pending, block.cid)

    def _send(self, pcb: int, inf: bytes, cid: int | None, nad: int | None) -> bytes:
        self._last = (pcb, inf, nad)
        return _frame(pcb, inf, cid=cid, nad=nad)


# --- the reader side ---------------------------------------------------------------------------------


class IsoDepTimeout(Exception):
    """The card stopped answering (taken away, or too many frames lost): ISO-DEP gave up."""


class IsoDepProtocolError(Exception):
    """The card answered something ISO-DEP does not allow at this point."""


class PcdEngine:
    """ISO-DEP as a reader runs it, once RATS/ATS are done: `exchange` carries one APDU each way.

    `send(frame)` puts one block in the air and returns the card's answer or None (nothing within FWT);
    while a WTX is granted, `wtxm` tells it by how much to stretch that wait.
    """

    def __init__(
        self,
        send: Callable[[bytes], bytes | None],
        fsc: int,
        fsd: int = 256,
        *,
        cid: int | None = None,
        max_retries: int = 2,
    ) -> None:
        if fsc < FS_TABLE[0] or fsd < FS_TABLE[0]:
            raise ValueError(f"FSC and FSD are at least {FS_TABLE[0]} bytes (got {fsc}, {fsd})")
        if cid is not None and not 0 <= cid <= 14:
            raise ValueError(f"CID must be 0-14, not {cid}")
        self._send = send
        self.fsc = fsc
        self.fsd = fsd
        self.cid = cid
        self.max_retries = max_retries
        self.bn = 0  # rule A
        self.wtxm = 1
        self._failures = 0
        self._recovered = False

    def exchange(self, apdu: bytes) -> bytes:
        """Send a C-APDU (chained by FSC) and return the whole R-APDU (chained by the card)."""
        self._failures = 0
        room = max_inf(self.fsc, cid=self.cid is not None)
        chunks = [apdu[i : i + room] for i in range(0, len(apdu), room)] or [b""]
        for position, chunk in enumerate(chunks):
            last = position == len(chunks) - 1
            block = i_block(self.bn, chunk, chaining=not last, cid=self.cid)
            while True:
                answer = self._await(block, r_nak(self.bn, cid=self.cid))
                if answer.kind is Kind.R_ACK and answer.bn != self.bn:
                    if not self._recovered:
                        raise IsoDepProtocolError("R(ACK) with the old block number in answer to an I-block")
                    continue  # rule 6: the card missed our block (it said so to our R(NAK))
                if answer.kind is Kind.R_ACK:
                    if last:
                        raise IsoDepProtocolError("R(ACK) for an I-block that did not chain")
                    self._progress()  # rule B, rule 7
                    break
                if not last:
                    raise IsoDepProtocolError("the card answered before the chained command was complete")
                return self._collect(answer)
        raise AssertionError("unreachable")

    def deselect(self) -> bool:
        """S(DESELECT); True when the card confirmed it (rule 8: retried, then the card is ignored)."""
        request = s_deselect(cid=self.cid)
        for _ in range(self.max_retries + 1):
            answer = self._send(request)
            if answer is None:
                continue
            block = parse_block(answer)
            return block is not None and block.kind is Kind.DESELECT and block.cid == self.cid
        return False

    def _collect(self, answer: Block) -> bytes:
        response = bytearray()
        while True:
            if answer.kind is not Kind.I_BLOCK or answer.bn != self.bn:
                raise IsoDepProtocolError(f"expected I-block {self.bn}, got {answer.kind.value} {answer.bn}")
            response += answer.inf
            if len(response) > MAX_RESPONSE:
                raise IsoDepProtocolError("the card's response chain does not end")
            self._progress()
            if not answer.chaining:
                return bytes(response)
            ack = r_ack(self.bn, cid=self.cid)  # rule 2, and rule 5 while the card chains
            answer = self._await(ack, ack)

    def _progress(self) -> None:
        self.bn ^= 1
        self._failures = 0

    def _await(self, frame: bytes, recovery: bytes) -> Block:
        """Send `frame`; on silence send `recovery` (at most max_retries times); answer WTX requests."""
        self._recovered = False  # whether the answer is to `recovery` rather than to `frame`
        while True:
            raw = self._send(frame)
            self.wtxm = 1
            if raw is None:
                if self._failures >= self.max_retries:
                    raise IsoDepTimeout(f"no answer from the card after {self._failures} retries")
                self._failures += 1
                frame, self._recovered = recovery, True
                continue
            block = self._check(raw)
            if block.kind is Kind.WTX:
                self.wtxm = block.wtxm
                frame = s_wtx(block.wtxm, cid=self.cid)
                continue
            return block

    def _check(self, raw: bytes) -> Block:
        if len(raw) + CRC_LENGTH > self.fsd:
            raise IsoDepProtocolError(f"a {len(raw)}-byte block exceeds FSD {self.fsd}")
        block = parse_block(raw)
        if block is None:
            raise IsoDepProtocolError(f"not an ISO-DEP block: {raw.hex()}")
        if block.cid != self.cid:
            raise IsoDepProtocolError(f"CID {block.cid} in a block for CID {self.cid}")
        if block.kind in (Kind.R_NAK, Kind.DESELECT):
            raise IsoDepProtocolError(f"a card never sends {block.kind.value}")
        return block
