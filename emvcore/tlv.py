"""BER-TLV as EMV uses it (EMV Book 3 Annex B).

Tags are plain ints (``0x9F02``, ``0xBF0C``), values are bytes. Everything here is strict: a card or a
reader that sends broken data gets a :class:`TlvError`, never a half-parsed guess and never an
``IndexError`` from deep inside.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_LENGTH_BYTES",
    "MAX_TAG_BYTES",
    "Tlv",
    "TlvError",
    "TlvOverlongError",
    "TlvTruncatedError",
    "constructed",
    "encode",
    "encode_length",
    "find",
    "flatten",
    "is_constructed",
    "parse",
    "parse_one",
    "read_length",
    "read_tag",
    "tag_bytes",
    "walk",
]

MAX_TAG_BYTES = 4
"""Longest tag we accept; EMV itself never uses more than 2 or 3 bytes."""

MAX_LENGTH_BYTES = 4
"""Most subsequent length bytes (``84 xx xx xx xx``); EMV itself never needs more than ``82``."""

_PADDING = (0x00, 0xFF)


class TlvError(ValueError):
    """Malformed BER-TLV; a ValueError so callers can treat it as bad input."""


class TlvTruncatedError(TlvError):
    """The input ends inside a tag, a length or a value (a short read or a lying length)."""


class TlvOverlongError(TlvError):
    """A tag or length field is longer than we accept, or the length is indefinite (``80``)."""


def read_tag(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Read one tag at ``offset``; returns ``(tag, next_offset)``. Shared with the DOL parser."""
    if offset >= len(data):
        raise TlvTruncatedError(f"input ends where a tag was expected (offset {offset})")
    first = data[offset]
    if first in _PADDING:
        raise TlvError(f"padding byte {first:02X} where a tag was expected (offset {offset})")
    tag = first
    pos = offset + 1
    if first & 0x1F == 0x1F:
        while True:
            if pos - offset >= MAX_TAG_BYTES:
                raise TlvOverlongError(f"tag at offset {offset} is longer than {MAX_TAG_BYTES} bytes")
            if pos >= len(data):
                raise TlvTruncatedError(f"input ends inside the tag starting at offset {offset}")
            byte = data[pos]
            tag = (tag << 8) | byte
            pos += 1
            if not byte & 0x80:
                break
    return tag, pos


def read_length(data: bytes, offset: int) -> tuple[int, int]:
    """Read one length field at ``offset``; returns ``(length, next_offset)``."""
    if offset >= len(data):
        raise TlvTruncatedError(f"input ends where a length was expected (offset {offset})")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count == 0:
        raise TlvOverlongError(f"indefinite length (80) at offset {offset} is not allowed in EMV")
    if count > MAX_LENGTH_BYTES:
        raise TlvOverlongError(f"length field at offset {offset} has {count} subsequent bytes")
    end = offset + 1 + count
    if end > len(data):
        raise TlvTruncatedError(f"input ends inside the length field at offset {offset}")
    return int.from_bytes(data[offset + 1 : end], "big"), end


def tag_bytes(tag: int) -> bytes:
    """Encode a tag; rejects ints that would not read back as the same tag (so encoding can't lie)."""
    if isinstance(tag, bool) or not isinstance(tag, int):
        raise TypeError(f"tag must be an int, not {type(tag).__name__}")
    if not 0 < tag < 1 << (8 * MAX_TAG_BYTES):
        raise TlvError(f"tag {tag:#x} out of range")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    try:
        parsed, end = read_tag(raw)
    except TlvError as exc:
        raise TlvError(f"{tag:#X} is not a valid BER-TLV tag: {exc}") from None
    if end != len(raw) or parsed != tag:
        raise TlvError(f"{tag:#X} is not a valid BER-TLV tag")
    return raw


def is_constructed(tag: int) -> bool:
    """Bit 6 of the first tag byte: the value holds more TLV objects (templates 6F, 70, 77, A5, BF0C)."""
    return bool(tag_bytes(tag)[0] & 0x20)


def encode_length(n: int) -> bytes:
    """Shortest length field: one byte below 128, else ``81``/``82``/``83``/``84`` + big-endian length."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"length must be an int, not {type(n).__name__}")
    if n < 0:
        raise TlvError(f"negative length {n}")
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise TlvOverlongError(f"length {n} needs more than {MAX_LENGTH_BYTES} length bytes")
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


def encode(tag: int, value: bytes) -> bytes:
    """Encode one object: tag ‖ length ‖ value."""
    value = bytes(value)
    return tag_bytes(tag) + encode_length(len(value)) + value


def constructed(tag: int, *encoded_children: bytes) -> bytes:
    """Encode a template around already encoded children, e.g. ``constructed(0x77, encode(0x82, aip))``."""
    if not is_constructed(tag):
        raise TlvError(f"tag {tag:X} is primitive; a template needs a constructed tag")
    return encode(tag, b"".join(bytes(child) for child in encoded_children))


@dataclass(frozen=True)
class Tlv:
    """One decoded object; constructed ones keep their raw value and parse it on demand."""

    tag: int
    value: bytes

    def __post_init__(self) -> None:
        tag_bytes(self.tag)
        if not isinstance(self.value, bytes):
            object.__setattr__(self, "value", bytes(self.value))

    @property
    def constructed(self) -> bool:
        """True for templates, whose value is itself TLV."""
        return is_constructed(self.tag)

    def children(self) -> list[Tlv]:
        """The objects inside a template; a primitive value is opaque, so asking for children is a bug."""
        if not self.constructed:
            raise TlvError(f"tag {self.tag:X} is primitive and has no children")
        return parse(self.value)

    def encode(self) -> bytes:
        """Back to wire form (shortest length encoding)."""
        return encode(self.tag, self.value)


def _read_object(data: bytes, offset: int) -> tuple[Tlv, int]:
    tag, pos = read_tag(data, offset)
    length, pos = read_length(data, pos)
    end = pos + length
    if end > len(data):
        raise TlvTruncatedError(
            f"tag {tag:X} at offset {offset} declares {length} bytes but only {len(data) - pos} remain"
        )
    return Tlv(tag, bytes(data[pos:end])), end


def _skip_padding(data: bytes, offset: int) -> int:
    while offset < len(data) and data[offset] in _PADDING:
        offset += 1
    return offset


def _check_bytes(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"TLV input must be bytes, not {type(data).__name__}")
    return bytes(data)


def parse(data: bytes) -> list[Tlv]:
    """The top-level objects; ``00``/``FF`` bytes around them are padding (Annex B) and skipped."""
    data = _check_bytes(data)
    objects: list[Tlv] = []
    pos = _skip_padding(data, 0)
    while pos < len(data):
        obj, pos = _read_object(data, pos)
        objects.append(obj)
        pos = _skip_padding(data, pos)
    return objects


def parse_one(data: bytes) -> Tlv:
    """Exactly one object (padding around it allowed): a response that must be a single template."""
    data = _check_bytes(data)
    pos = _skip_padding(data, 0)
    if pos >= len(data):
        raise TlvError("no TLV object in input")
    obj, pos = _read_object(data, pos)
    rest = _skip_padding(data, pos)
    if rest < len(data):
        raise TlvError(f"{len(data) - rest} unexpected bytes after the object (offset {rest})")
    return obj


def walk(data: bytes) -> list[tuple[int, Tlv]]:
    """Every object, depth first in document order, as ``(depth, tlv)``.

    Iterative, so hostile deep nesting cannot blow the Python stack; a template whose value is not
    valid TLV makes the whole input invalid.
    """
    out: list[tuple[int, Tlv]] = []
    stack: list[tuple[int, Tlv]] = [(0, obj) for obj in reversed(parse(data))]
    while stack:
        depth, obj = stack.pop()
        out.append((depth, obj))
        if obj.constructed:
            stack.extend((depth + 1, child) for child in reversed(obj.children()))
    return out


def flatten(data: bytes) -> dict[int, bytes]:
    """Tag → value for every object at any depth, first occurrence wins (pick 9F26 out of 77)."""
    found: dict[int, bytes] = {}
    for _, obj in walk(data):
        found.setdefault(obj.tag, obj.value)
    return found


def find(data: bytes, tag: int) -> bytes | None:
    """First value of ``tag`` at any depth; validates the whole input so a bad tail is not missed."""
    return flatten(data).get(tag)
