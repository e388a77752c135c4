"""ISO/IEC 7816-4 command and response APDUs, short and extended length.

The card emulator decodes what the reader sends and must answer a malformed command with a status word
rather than crash, so every decoding error is an :class:`ApduError` that carries the SW to send back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["ApduError", "CommandApdu", "ResponseApdu", "StatusWord", "describe_sw"]

_SHORT_MAX_LC = 255
_SHORT_MAX_LE = 256
_EXT_MAX_LC = 65535
_EXT_MAX_LE = 65536


class StatusWord(IntEnum):
    """The status words the project sends or expects (ISO 7816-4, EMV, PBOC e-purse)."""

    SUCCESS = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCED_DATA_INVALIDATED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986  # phone wallets: "see phone"
    SM_DATA_OBJECTS_MISSING = 0x6987
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN_ERROR = 0x6F00
    MAC_INVALID = 0x9302  # PBOC e-purse
    INSUFFICIENT_BALANCE = 0x9401  # PBOC e-purse
    KEY_INDEX_NOT_SUPPORTED = 0x9403


def describe_sw(sw: int) -> str:
    """Readable status for logs; never raises, whatever the card sent."""
    if isinstance(sw, int) and not isinstance(sw, bool) and 0 <= sw <= 0xFFFF:
        if sw in StatusWord._value2member_map_:
            return StatusWord(sw).name
        if sw >> 8 == 0x61:
            return f"61xx: 0x{sw & 0xFF:02X} bytes available"
        if sw >> 8 == 0x6C:
            return f"6Cxx: wrong Le, use 0x{sw & 0xFF:02X}"
        return f"unknown status 0x{sw:04X}"
    return f"unknown status {sw!r}"


class ApduError(ValueError):
    """A malformed APDU; ``sw`` is what a card should answer (default 6700, wrong length)."""

    def __init__(self, message: str = "", *, sw: int = StatusWord.WRONG_LENGTH) -> None:
        super().__init__(message or describe_sw(sw))
        self.sw = int(sw)


def _check_byte(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise ApduError(f"{name} must be a byte, got {value!r}", sw=StatusWord.WRONG_DATA)


@dataclass(frozen=True)
class CommandApdu:
    """A C-APDU; ``le`` is Ne, the number of bytes expected (Le byte 00 means ``le=256``)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > _EXT_MAX_LC:
            raise ApduError(f"{len(self.data)} data bytes do not fit even an extended APDU")
        if self.le is not None and (
            isinstance(self.le, bool) or not isinstance(self.le, int) or not 1 <= self.le <= _EXT_MAX_LE
        ):
            # le=0 is refused rather than guessed: the wire byte 00 means 256, so write le=256.
            raise ApduError(f"le must be None or 1..65536 (Le byte 00 is le=256), got {self.le!r}")

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 header only, 2 Le, 3 data, 4 data and Le."""
        if self.data:
            return 3 if self.le is None else 4
        return 1 if self.le is None else 2

    @property
    def extended(self) -> bool:
        """Whether :meth:`encode` needs the extended form (more than 255 data or 256 expected bytes)."""
        return len(self.data) > _SHORT_MAX_LC or (self.le is not None and self.le > _SHORT_MAX_LE)

    def encode(self) -> bytes:
        """Wire form; short unless the sizes force extended (most contactless readers are short-only)."""
        out = bytearray([self.cla, self.ins, self.p1, self.p2])
        if self.extended:
            out.append(0x00)
            if self.data:
                out += len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                out += (self.le % _EXT_MAX_LE).to_bytes(2, "big")
        else:
            if self.data:
                out.append(len(self.data))
                out += self.data
            if self.le is not None:
                out.append(self.le % _SHORT_MAX_LE)
        return bytes(out)

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        """Parse all short and extended cases; any length that does not add up is SW 6700."""
        raw = bytes(raw)
        if len(raw) < 4:
            raise ApduError(f"APDU of {len(raw)} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        n = len(body)
        if n == 0:
            return cls(cla, ins, p1, p2)
        if n == 1:
            return cls(cla, ins, p1, p2, le=body[0] or _SHORT_MAX_LE)
        if body[0] != 0:
            lc = body[0]
            if n == 1 + lc:
                return cls(cla, ins, p1, p2, body[1:])
            if n == 2 + lc:
                return cls(cla, ins, p1, p2, body[1:-1], body[-1] or _SHORT_MAX_LE)
            raise ApduError(f"Lc {lc} does not match a body of {n} bytes")
        if n == 2:
            raise ApduError("body 00 xx is neither a short nor an extended APDU")
        if n == 3:
            return cls(cla, ins, p1, p2, le=int.from_bytes(body[1:3], "big") or _EXT_MAX_LE)
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ApduError("extended Lc of 0000 is not allowed")
        if n == 3 + lc:
            return cls(cla, ins, p1, p2, body[3:])
        if n == 5 + lc:
            return cls(cla, ins, p1, p2, body[3:-2], int.from_bytes(body[-2:], "big") or _EXT_MAX_LE)
        raise ApduError(f"extended Lc {lc} does not match a body of {n} bytes")


@dataclass(frozen=True)
class ResponseApdu:
    """An R-APDU: response data followed by SW1 SW2."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if isinstance(self.sw, bool) or not isinstance(self.sw, int) or not 0 <= self.sw <= 0xFFFF:
            raise ApduError(f"status word must be 0..0xFFFF, got {self.sw!r}", sw=StatusWord.UNKNOWN_ERROR)
        object.__setattr__(self, "sw", int(self.sw))
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > _EXT_MAX_LE:
            raise ApduError(f"{len(self.data)} response bytes exceed 65536")

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        """Split off the trailing status word; fewer than 2 bytes is not a response at all."""
        raw = bytes(raw)
        if len(raw) < 2:
            raise ApduError(f"response of {len(raw)} bytes has no status word")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def encode(self) -> bytes:
        """Data ‖ SW1 ‖ SW2, as the card puts it on the wire."""
        return self.data + self.sw.to_bytes(2, "big")

    @property
    def ok(self) -> bool:
        """Only 9000 counts; 61xx/6Cxx need another command and are not success yet."""
        return self.sw == StatusWord.SUCCESS

    @property
    def sw1(self) -> int:
        """High status byte (61 / 6C tell the reader what to do next)."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """Low status byte (the count for 61xx / 6Cxx)."""
        return self.sw & 0xFF

    @classmethod
    def status(cls, sw: int) -> ResponseApdu:
        """A bare status word with no data, whatever it is."""
        return cls(b"", int(sw))

    @classmethod
    def success(cls, data: bytes = b"") -> ResponseApdu:
        """Data ‖ 9000."""
        return cls(bytes(data), StatusWord.SUCCESS)

    @classmethod
    def error(cls, sw: int) -> ResponseApdu:
        """A failure status with no data; 9000 here is a bug in the caller."""
        if sw == StatusWord.SUCCESS:
            raise ValueError("ResponseApdu.error() needs a failure status, not 9000")
        return cls.status(sw)
