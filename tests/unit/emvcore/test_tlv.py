"""BER-TLV: round trips, the doc's known encodings, and every way input can be broken."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emvcore import tlv
from emvcore.tlv import Tlv, TlvError, TlvOverlongError, TlvTruncatedError

PPSE_HEX = "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101"
PPSE = bytes.fromhex(PPSE_HEX)


# --- strategies -------------------------------------------------------------------------------------


@st.composite
def tag_encodings(draw: st.DrawFn, constructed: bool | None = None) -> bytes:
    """Wire bytes of a valid tag: 1 to 4 bytes, never starting with a padding byte."""
    multi = draw(st.booleans())
    first = draw(st.integers(0, 0xFE)) if not multi else None
    if first is None or first & 0x1F == 0x1F:
        # Multi-byte: class and constructed bits free, low five bits all set.
        first = (draw(st.integers(0, 6)) << 5) | 0x1F  # 0xFF would be padding, so top value 6 -> 0xDF
        count = draw(st.integers(1, 3))
        middle = [draw(st.integers(0x80, 0xFF)) for _ in range(count - 1)]
        last = draw(st.integers(0x00, 0x7F))
        raw = bytes([first, *middle, last])
    else:
        if first == 0:
            first = 0x01
        raw = bytes([first])
    if constructed is not None:
        raw = bytes([(raw[0] | 0x20) if constructed else (raw[0] & ~0x20)]) + raw[1:]
        if raw[0] in (0x00, 0xFF):
            raw = bytes([raw[0] ^ 0x40]) + raw[1:]
    return raw


def tags(constructed: bool | None = None) -> st.SearchStrategy[int]:
    return tag_encodings(constructed).map(lambda raw: int.from_bytes(raw, "big"))


padding = st.binary(max_size=3).map(lambda b: bytes(0x00 if x < 0x80 else 0xFF for x in b))

# A tree node: (tag, bytes) for a primitive, (tag, [children]) for a template.
Node = tuple[int, object]
leaves = st.tuples(tags(constructed=False), st.binary(max_size=300))
trees = st.recursive(
    leaves,
    lambda children: st.tuples(tags(constructed=True), st.lists(children, max_size=4)),
    max_leaves=12,
)


def encode_tree(node: Node) -> bytes:
    tag, body = node
    if isinstance(body, bytes):
        return tlv.encode(tag, body)
    assert isinstance(body, list)
    return tlv.constructed(tag, *(encode_tree(child) for child in body))


def preorder(node: Node, depth: int = 0) -> list[tuple[int, int]]:
    tag, body = node
    out = [(depth, tag)]
    if isinstance(body, list):
        for child in body:
            out += preorder(child, depth + 1)
    return out


# --- tags and lengths -------------------------------------------------------------------------------


@given(tag_encodings())
def test_tag_bytes_round_trip(raw: bytes) -> None:
    tag = int.from_bytes(raw, "big")
    assert tlv.tag_bytes(tag) == raw
    assert tlv.read_tag(raw + b"\x01\x02") == (tag, len(raw))


@pytest.mark.parametrize(
    ("tag", "raw"),
    [(0x9F02, "9F02"), (0x70, "70"), (0xBF0C, "BF0C"), (0x5F2A, "5F2A"), (0x9F8101, "9F8101")],
)
def test_tag_bytes_known(tag: int, raw: str) -> None:
    assert tlv.tag_bytes(tag) == bytes.fromhex(raw)


@pytest.mark.parametrize(
    "tag",
    [
        0x00,  # padding
        0x5F,  # announces a second byte that is missing
        0x9F82,  # last byte still says "more follows"
        0x0102,  # single-byte tag with an extra byte
        0xFF01,  # starts with the FF padding byte
        0x9F818181,  # four bytes yet still continuing
        1 << 32,
        -1,
    ],
)
def test_tag_bytes_rejects_tags_that_would_not_read_back(tag: int) -> None:
    with pytest.raises(TlvError):
        tlv.tag_bytes(tag)


def test_tag_bytes_rejects_non_int() -> None:
    with pytest.raises(TypeError):
        tlv.tag_bytes("9F02")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "raw"),
    [
        (0, "00"),
        (127, "7F"),
        (128, "8180"),
        (255, "81FF"),
        (256, "820100"),
        (65535, "82FFFF"),
        (65536, "83010000"),
        (0xFFFFFF, "83FFFFFF"),
    ],
)
def test_encode_length_forms(n: int, raw: str) -> None:
    assert tlv.encode_length(n) == bytes.fromhex(raw)
    assert tlv.read_length(bytes.fromhex(raw), 0) == (n, len(raw) // 2)


@given(st.integers(0, 0xFFFFFFFF))
def test_length_round_trip(n: int) -> None:
    raw = tlv.encode_length(n)
    assert tlv.read_length(raw, 0) == (n, len(raw))


def test_encode_length_rejects_negative_and_huge() -> None:
    with pytest.raises(TlvError):
        tlv.encode_length(-1)
    with pytest.raises(TlvOverlongError):
        tlv.encode_length(1 << 32)


def test_non_minimal_length_is_accepted() -> None:
    # Some cards write 81 05 for a short value; that is legal BER.
    data = bytes.fromhex("5A81056212345678")
    assert tlv.parse(data) == [Tlv(0x5A, bytes.fromhex("6212345678"))]


# --- encoding and round trips -----------------------------------------------------------------------


def test_encode_known() -> None:
    assert tlv.encode(0x9F02, bytes.fromhex("000000056399")) == bytes.fromhex("9F0206000000056399")
    assert tlv.encode(0x9F4B, bytes(128))[:4] == bytes.fromhex("9F4B8180")
    assert tlv.encode(0x90, bytes(300))[:4] == bytes.fromhex("9082012C")


@given(tags(), st.binary(max_size=700))
def test_encode_parse_round_trip(tag: int, value: bytes) -> None:
    raw = tlv.encode(tag, value)
    assert tlv.parse(raw) == [Tlv(tag, value)]
    assert tlv.parse_one(raw) == Tlv(tag, value)
    assert Tlv(tag, value).encode() == raw


@settings(deadline=None)
@given(st.lists(st.tuples(padding, trees), max_size=4), padding)
def test_trees_with_padding_round_trip(items: list[tuple[bytes, Node]], tail: bytes) -> None:
    data = b"".join(pad + encode_tree(node) for pad, node in items) + tail
    top = tlv.parse(data)
    assert [obj.tag for obj in top] == [node[0] for _, node in items]
    assert b"".join(obj.encode() for obj in top) == b"".join(encode_tree(node) for _, node in items)
    expected = [entry for _, node in items for entry in preorder(node)]
    assert [(depth, obj.tag) for depth, obj in tlv.walk(data)] == expected


@settings(deadline=None)
@given(trees)
def test_children_match_the_tree(node: Node) -> None:
    obj = tlv.parse_one(encode_tree(node))
    tag, body = node
    assert obj.tag == tag
    if isinstance(body, bytes):
        assert not obj.constructed
        assert obj.value == body
        with pytest.raises(TlvError):
            obj.children()
    else:
        assert obj.constructed
        assert [child.encode() for child in obj.children()] == [encode_tree(child) for child in body]


@settings(deadline=None)
@given(trees)
def test_flatten_and_find_take_the_first_occurrence(node: Node) -> None:
    data = encode_tree(node)
    expected: dict[int, bytes] = {}
    for _, obj in tlv.walk(data):
        expected.setdefault(obj.tag, obj.value)
    assert tlv.flatten(data) == expected
    for tag, value in expected.items():
        assert tlv.find(data, tag) == value


def test_flatten_first_occurrence_wins_across_templates() -> None:
    data = tlv.constructed(0x70, tlv.encode(0x9F26, b"\x01" * 8)) + tlv.constructed(
        0x77, tlv.encode(0x9F26, b"\x02" * 8), tlv.encode(0x82, b"\x7c\x00")
    )
    flat = tlv.flatten(data)
    assert flat[0x9F26] == b"\x01" * 8
    assert flat[0x82] == b"\x7c\x00"
    assert flat[0x77] == tlv.encode(0x9F26, b"\x02" * 8) + tlv.encode(0x82, b"\x7c\x00")
    assert tlv.find(data, 0x9F27) is None


def test_constructed_property_is_bit_six() -> None:
    assert Tlv(0x70, b"").constructed
    assert Tlv(0xBF0C, b"").constructed
    assert Tlv(0x77, b"").constructed
    assert not Tlv(0x9F02, b"").constructed
    assert not Tlv(0x5F2A, b"").constructed
    assert not Tlv(0x80, b"").constructed  # GPO format 1 is a primitive


def test_constructed_helper_refuses_a_primitive_tag() -> None:
    with pytest.raises(TlvError):
        tlv.constructed(0x9F02, tlv.encode(0x82, b"\x7c\x00"))


def test_tlv_rejects_invalid_tag() -> None:
    with pytest.raises(TlvError):
        Tlv(0x5F, b"")


def test_tlv_normalises_bytearray_value() -> None:
    obj = Tlv(0x82, bytearray(b"\x7c\x00"))
    assert type(obj.value) is bytes
    assert obj == Tlv(0x82, b"\x7c\x00")


# --- known encodings from the doc ----------------------------------------------------------------------


def test_ppse_response_from_the_doc() -> None:
    fci = tlv.parse_one(PPSE)
    assert fci.tag == 0x6F
    df_name, a5 = fci.children()
    assert df_name == Tlv(0x84, b"2PAY.SYS.DDF01")
    (bf0c,) = a5.children()
    (app,) = bf0c.children()
    assert app.tag == 0x61
    assert app.children() == [
        Tlv(0x4F, bytes.fromhex("A000000333010101")),
        Tlv(0x50, b"PBOC DEBIT"),
        Tlv(0x87, b"\x01"),
    ]
    assert tlv.find(PPSE, 0x4F) == bytes.fromhex("A000000333010101")
    assert set(tlv.flatten(PPSE)) == {0x6F, 0x84, 0xA5, 0xBF0C, 0x61, 0x4F, 0x50, 0x87}


def test_ppse_response_built_from_parts() -> None:
    app = tlv.constructed(
        0x61,
        tlv.encode(0x4F, bytes.fromhex("A000000333010101")),
        tlv.encode(0x50, b"PBOC DEBIT"),
        tlv.encode(0x87, b"\x01"),
    )
    built = tlv.constructed(
        0x6F,
        tlv.encode(0x84, b"2PAY.SYS.DDF01"),
        tlv.constructed(0xA5, tlv.constructed(0xBF0C, app)),
    )
    assert built == PPSE


def test_gpo_format2_response_shape_from_the_doc() -> None:
    iad = bytes.fromhex("07010103A00000010A01000000000079B28199")
    body = [
        tlv.encode(0x82, bytes.fromhex("7C00")),
        tlv.encode(0x9F36, bytes.fromhex("004E")),
        tlv.encode(0x57, bytes.fromhex("6212345678901234D25062010000000000000F")),
        tlv.encode(0x9F10, iad),
        tlv.encode(0x9F26, bytes(8)),
        tlv.encode(0x5F34, b"\x01"),
        tlv.encode(0x9F6C, bytes.fromhex("2000")),
        tlv.encode(0x9F5D, bytes(6)),
        tlv.encode(0x5F20, b" " * 20),
    ]
    data = tlv.constructed(0x77, *body)
    assert data[:2] == bytes.fromhex("7768")
    flat = tlv.flatten(data)
    assert flat[0x9F10] == iad
    assert len(iad) == 0x13
    assert flat[0x9F36] == b"\x00\x4e"


# --- padding and parse_one ----------------------------------------------------------------------------


def test_padding_is_skipped_everywhere() -> None:
    one = tlv.encode(0x9F36, b"\x00\x4e")
    two = tlv.encode(0x82, b"\x7c\x00")
    assert tlv.parse(b"\x00\xff" + one + b"\x00\x00" + two + b"\xff") == [
        Tlv(0x9F36, b"\x00\x4e"),
        Tlv(0x82, b"\x7c\x00"),
    ]
    assert tlv.parse(b"") == []
    assert tlv.parse(b"\x00\xff\x00") == []
    templ = tlv.encode(0x70, b"\x00" + one + b"\xff")
    assert tlv.parse_one(templ).children() == [Tlv(0x9F36, b"\x00\x4e")]


def test_parse_one_accepts_trailing_padding() -> None:
    raw = tlv.encode(0x9F36, b"\x00\x4e")
    assert tlv.parse_one(raw + b"\x00\xff\x00") == Tlv(0x9F36, b"\x00\x4e")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",
        tlv.encode(0x82, b"\x7c\x00") * 2,
        tlv.encode(0x82, b"\x7c\x00") + b"\x01",
        tlv.encode(0x82, b"\x7c\x00") + b"\x00\x9f",
    ],
    ids=["empty", "only-padding", "two-objects", "trailing-garbage", "garbage-after-padding"],
)
def test_parse_one_rejects_anything_but_one_object(data: bytes) -> None:
    with pytest.raises(TlvError):
        tlv.parse_one(data)


# --- malformed input ------------------------------------------------------------------------------------


@settings(deadline=None)
@given(trees)
def test_every_truncation_of_one_object_is_an_error(node: Node) -> None:
    raw = encode_tree(node)
    for cut in range(1, len(raw)):
        with pytest.raises(TlvTruncatedError):
            tlv.parse(raw[:cut])
        with pytest.raises(TlvTruncatedError):
            tlv.parse_one(raw[:cut])


@settings(deadline=None)
@given(st.lists(st.tuples(padding, trees), min_size=1, max_size=3))
def test_truncated_sequences_raise_or_give_a_true_prefix(items: list[tuple[bytes, Node]]) -> None:
    data = b""
    ends = []  # offset right after each complete object
    for pad, node in items:
        data += pad + encode_tree(node)
        ends.append(len(data))
    full = tlv.parse(data)
    for cut in range(len(data)):
        try:
            got = tlv.parse(data[:cut])
        except TlvTruncatedError:
            # Only a cut inside an object may fail.
            assert all(cut != end for end in ends)
            continue
        complete = sum(1 for end in ends if end <= cut)
        assert got == full[:complete]


@pytest.mark.parametrize(
    ("hex_data", "error"),
    [
        ("9F", TlvTruncatedError),  # tag announces a second byte
        ("9F81", TlvTruncatedError),  # second tag byte says more follows
        ("9F02", TlvTruncatedError),  # no length
        ("9F0281", TlvTruncatedError),  # long form without its length byte
        ("9F028201", TlvTruncatedError),  # two-byte length cut short
        ("9F020600000005", TlvTruncatedError),  # value shorter than declared
        ("8203FFFF", TlvTruncatedError),
        ("5A84FFFFFFFF00", TlvTruncatedError),  # 4 GB declared
        ("7005820100", TlvTruncatedError),  # lying outer length
        ("9F0280", TlvOverlongError),  # indefinite length
        ("6F8084010000", TlvOverlongError),  # indefinite constructed
        ("9F02850000000006", TlvOverlongError),  # 5-byte length field
        ("9F02FF", TlvOverlongError),
        ("9F8181818101", TlvOverlongError),  # 5-byte tag
        ("DF80808080", TlvOverlongError),
    ],
)
def test_malformed_inputs_raise_the_right_error(hex_data: str, error: type[TlvError]) -> None:
    data = bytes.fromhex(hex_data)
    with pytest.raises(error):
        tlv.parse(data)


def test_four_byte_tag_and_length_are_still_accepted() -> None:
    data = bytes.fromhex("9F818101") + bytes.fromhex("8400000002") + b"\xab\xcd"
    assert tlv.parse(data) == [Tlv(0x9F818101, b"\xab\xcd")]


def test_malformed_child_makes_flatten_and_find_fail() -> None:
    bad_template = tlv.encode(0x70, bytes.fromhex("9F0206000000"))  # child declares 6, has 3
    assert tlv.parse(bad_template) == [Tlv(0x70, bytes.fromhex("9F0206000000"))]
    with pytest.raises(TlvTruncatedError):
        tlv.parse_one(bad_template).children()
    with pytest.raises(TlvTruncatedError):
        tlv.flatten(bad_template)
    with pytest.raises(TlvTruncatedError):
        tlv.find(tlv.encode(0x82, b"\x7c\x00") + bad_template, 0x82)


def test_deep_nesting_does_not_hit_the_recursion_limit() -> None:
    data = tlv.encode(0x9F36, b"\x00\x01")
    for _ in range(2000):
        data = tlv.encode(0x70, data)
    assert tlv.find(data, 0x9F36) == b"\x00\x01"
    assert len(tlv.walk(data)) == 2001


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_tlv_errors(data: bytes) -> None:
    try:
        top = tlv.parse(data)
    except TlvError:
        return
    # Whatever parsed must be exactly what re-encodes (no silently invented objects).
    assert tlv.parse(b"".join(obj.encode() for obj in top)) == top
    try:
        flat = tlv.flatten(data)
    except TlvError:
        return
    assert set(flat) >= {obj.tag for obj in top}


@given(st.binary(max_size=60), st.binary(min_size=1, max_size=4))
def test_arbitrary_bytes_behind_a_valid_prefix(tail: bytes, junk: bytes) -> None:
    try:
        tlv.parse_one(tlv.encode(0x82, b"\x7c\x00") + junk + tail)
    except TlvError:
        pass
    else:
        # Only padding may follow the object.
        assert set(junk + tail) <= {0x00, 0xFF}


def test_non_bytes_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        tlv.parse("6F00")  # type: ignore[arg-type]
