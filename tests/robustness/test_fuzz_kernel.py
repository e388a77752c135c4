"""A hostile card at every exchange the kernels parse: PPSE, SELECT, GPO format 1 and 2, READ RECORD, the fDDA
data, and the transit purse's SELECT / INITIALIZE / DEBIT / GET TRANSACTION PROVE answers.

A real world card answers every command (so later commands follow from earlier answers, as on the air); at one
exchange its real answer is replaced by a mutation of it: bit flips, cuts, insertions, one TLV value rewritten,
another status word. tests/terminal/test_kernel.py already replays random and single-byte-corrupted transcripts;
these add per-exchange targeting and the money properties:

* qPBOC: no exception; an offline approval always carries a verified fDDA; a changed SDAD or ODA record is never
  approved offline; reasons never carry a PAN.
* transit: whatever one answer of a fare says, after the rider taps again (honest answers), the card has paid
  exactly one fare per "Fare paid" the gate showed — never a fare it was not told about.
"""

from __future__ import annotations

import datetime
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzzing import fuzz, tried
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_parsers import mutations

from emvcore import tlv
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from terminal.kernel import KernelParams, Outcome, Psam, fare, run

TODAY = datetime.date.today()
NOW = datetime.datetime.combine(TODAY, datetime.time(8, 30))
UN = bytes.fromhex("1A2B3C4D")
FARE = 200
FLOWS = {  # exchange index → what the kernel parses there
    "online": ["PPSE", "SELECT", "GPO format 2"],
    "offline": ["PPSE", "SELECT", "GPO format 2 (fDDA data)", "READ RECORD", "READ RECORD", "READ RECORD"],
    "see-phone": ["PPSE", "SELECT", "GPO 6986"],
    "format-1": ["PPSE", "SELECT", "GPO format 1"],
}
TRANSIT = ["transit SELECT (9F0C)", "transit INITIALIZE", "transit DEBIT", "transit PROVE"]


def _primitives(data: bytes) -> int:
    return sum(1 for _, obj in tlv.walk(data) if not obj.constructed)


def rewrite_value(data: bytes, index: int, value: bytes) -> bytes:
    """`data` re-encoded with the index-th primitive TLV value replaced (templates re-sized around it)."""
    count = [0]

    def encode(objects: list[tlv.Tlv]) -> bytes:
        out = b""
        for obj in objects:
            if obj.constructed:
                out += tlv.encode(obj.tag, encode(obj.children()))
            else:
                out += tlv.encode(obj.tag, value if count[0] == index else obj.value)
                count[0] += 1
        return out

    return encode(tlv.parse(data))


def hostile(answer: bytes, data: st.DataObject, tlv_body: bool = True) -> tuple[bytes, str]:
    """One mutation of a real answer (data ‖ SW1 SW2) and its kind. `tlv_body` is False for an answer of fixed
    binary fields: its random bytes (a MAC, a card random) parse as TLV by chance, and what is drawn must not
    depend on chance (Hypothesis replays an example and requires the same draws)."""
    body, sw = answer[:-2], answer[-2:]
    kinds = ["bytes", "sw", "bare sw"]
    try:
        primitives = _primitives(body) if body and tlv_body else 0
    except tlv.TlvError:
        primitives = 0
    if primitives:
        kinds.append("tlv value")
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "bytes":
        return data.draw(mutations(answer), label="mutated"), kind
    if kind == "sw":
        return body + data.draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != sw), label="sw"), kind
    if kind == "bare sw":
        return data.draw(st.sampled_from([b"\x90\x00", b"\x61\x10", b"\x6c\x05", b"\x69\x86", b"\x6a\x82"])), kind
    index = data.draw(st.integers(0, primitives - 1), label="tlv index")
    value = data.draw(st.binary(max_size=300), label="value")
    return rewrite_value(body, index, value) + sw, f"{kind} {index}"


class Substitute:
    """The real card's transceive; at exchange `at` the card runs the command and its answer is replaced."""

    def __init__(self, transceive: Callable[[bytes], bytes], at: int, change: Callable[[bytes], bytes]) -> None:
        self._transceive, self.at, self._change = transceive, at, change
        self.count = 0
        self.original: bytes | None = None
        self.replaced: bytes | None = None

    def __call__(self, apdu: bytes) -> bytes:
        answer = self._transceive(apdu)
        self.count += 1
        if self.count - 1 == self.at:
            self.original, self.replaced = answer, self._change(answer)
            return self.replaced
        return answer


@pytest.fixture(scope="module")
def fuzz_world(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("hostile-card") / "world"
    shutil.copytree(world_template.root, root)
    return World.open(root)


@pytest.fixture
def pristine(fuzz_world: World) -> Callable[[], None]:
    """Puts the card and phone files back as they were: every example starts from the same card state (an
    offline-approved tap counts towards the card's consecutive-offline limit, which changes the flow)."""
    files = {path: path.read_bytes() for path in (_card_file(fuzz_world), fuzz_world.demo_phone)}

    def restore() -> None:
        for path, content in files.items():
            path.write_bytes(content)

    return restore


def _card_file(world: World, issuer: str = "boc-debit") -> Path:
    return world.path(Path(next(c["file"] for c in world.cards() if c["issuer"] == issuer)))


def _params(world: World) -> KernelParams:
    return KernelParams(capks=tuple(world.capks()), floor_limit=50_000, cvm_limit=100_000)


def _format1(answer: bytes) -> bytes:
    """What a card that wants the full PBOC flow answers to GPO: 80 AIP ‖ AFL."""
    return tlv.encode(0x80, bytes.fromhex("7C00") + bytes.fromhex("08010300")) + b"\x90\x00"


@fuzz(250)
@given(flow=st.sampled_from(sorted(FLOWS)), data=st.data())
def test_a_hostile_answer_at_any_exchange_is_an_outcome_never_a_crash_or_a_forged_approval(
    fuzz_world: World, pristine: Callable[[], None], flow: str, data: st.DataObject
) -> None:
    pristine()
    at = data.draw(st.integers(0, len(FLOWS[flow]) - 1), label="exchange")
    tried(f"kernel: {FLOWS[flow][at]}")
    params = _params(fuzz_world)
    if flow in ("see-phone",):
        chip = Wallet.load(fuzz_world.demo_phone).chip()  # no fingerprint: GPO answers 6986
        amount = 100_000
    else:
        chip = PlainCard.load(_card_file(fuzz_world)).chip()
        amount = 60_000 if flow == "online" else 1_000

    def change(answer: bytes) -> bytes:
        if flow == "format-1" and at == 2:
            answer = _format1(answer)
        return hostile(answer, data)[0]

    tap = Substitute(chip.transceive, at, change)
    result = run(tap, params, amount, today=TODAY, unpredictable_number=UN)
    assert isinstance(result.outcome, Outcome)
    assert not re.search(r"[1-9][0-9]{12,}", " ".join(result.reasons))  # AIDs shown, no card number
    if result.outcome is Outcome.APPROVED:
        assert result.oda in ("fdda-v00-ok", "fdda-v01-ok") and result.cryptogram == "TC"
        assert result.field55[0x9F27] == b"\x40"
    if result.outcome in (Outcome.APPROVED, Outcome.ONLINE_REQUEST):
        assert result.pan is not None and result.pan.isdigit() and 12 <= len(result.pan) <= 19
        assert {0x9F26, 0x9F10, 0x9F36, 0x82, 0x9F02, 0x9F37} <= set(result.field55)
    if flow == "see-phone" and tap.replaced == tap.original:
        assert result.outcome is Outcome.SEE_PHONE


@fuzz(150)
@given(data=st.data())
def test_a_changed_sdad_or_oda_record_is_never_approved_offline(
    fuzz_world: World, pristine: Callable[[], None], data: st.DataObject
) -> None:
    """Flip one bit inside the fDDA signature (9F4B) or inside a record the AFL names for ODA."""
    pristine()
    at = data.draw(st.sampled_from([2, 3, 4, 5]), label="exchange")
    tried("kernel: fDDA-covered bit flips")

    def flip(answer: bytes) -> bytes:
        body = answer[:-2]
        if at == 2:  # inside 9F4B's value
            start = body.find(b"\x9f\x4b") + 3
            start += 1 if body[start - 1] == 0x81 else 0
            position = data.draw(st.integers(start, start + 100), label="position")
        else:  # inside the record's 70 template value
            position = data.draw(st.integers(3, len(body) - 1), label="position")
        bit = data.draw(st.integers(0, 7), label="bit")
        return body[:position] + bytes([body[position] ^ (1 << bit)]) + body[position + 1 :] + answer[-2:]

    chip = PlainCard.load(_card_file(fuzz_world)).chip()
    result = run(Substitute(chip.transceive, at, flip), _params(fuzz_world), 1_000, today=TODAY,
                 unpredictable_number=UN)
    assert result.outcome is not Outcome.APPROVED, result.reasons


# --- transit: the rider pays exactly the fares the gate said were paid ------------------------------------------


@pytest.fixture(scope="module")
def transit_setup(fuzz_world: World) -> tuple[Path, bytes, dict[str, bytes]]:
    entry = fuzz_world.transit_cards()[0]
    path = fuzz_world.path(Path(entry["file"]))
    keys = {city["city_code"]: bytes.fromhex(city["purchase_master_key"]) for city in fuzz_world.transit_keys()}
    return path, path.read_bytes(), keys


def _balance(path: Path) -> int:
    return PlainCard.load(path).applications[0].state.balance


@fuzz(200)
@given(data=st.data())
def test_whatever_one_transit_answer_says_the_card_pays_only_the_fares_shown_as_paid(
    transit_setup: tuple[Path, bytes, dict[str, bytes]], data: st.DataObject
) -> None:
    path, pristine, keys = transit_setup
    path.write_bytes(pristine)  # every example starts from the same purse
    start = _balance(path)
    psam = Psam(keys, bytes.fromhex("001122334455"))
    at = data.draw(st.integers(0, 3), label="exchange")
    tried(f"kernel: {TRANSIT[at]}")
    results = []
    if at == 3:  # PROVE only follows a tap torn after its DEBIT: tear one first
        first = fare(Substitute(PlainCard.load(path).chip().transceive, 2, lambda a: b""), psam, FARE, NOW)
        assert first.outcome is Outcome.TRY_AGAIN
        results.append(first)
        hostile_at = 1  # on the next tap: SELECT, then PROVE
    else:
        hostile_at = at
    tap = Substitute(PlainCard.load(path).chip().transceive, hostile_at,
                     lambda a: hostile(a, data, tlv_body=at == 0)[0])
    results.append(fare(tap, psam, FARE, NOW + datetime.timedelta(seconds=5)))
    for again in range(2):  # the rider taps again (honest answers) until the gate says paid
        if results[-1].outcome is Outcome.APPROVED:
            break
        results.append(fare(PlainCard.load(path).chip().transceive, psam, FARE,
                            NOW + datetime.timedelta(seconds=10 + again)))
    assert all(isinstance(r.outcome, Outcome) for r in results)
    if at == 3 and tap.replaced is not None and tap.replaced[-2:] == b"\x6a\x88":
        return  # the card's own word that it never debited (PROVE 6A88) is the protocol: it is believed
    paid_shown = sum(1 for r in results if r.outcome is Outcome.APPROVED)
    debited = start - _balance(path)
    assert debited == FARE * paid_shown, (
        [(r.outcome.name, r.reasons) for r in results], tap.original, tap.replaced)


@pytest.mark.parametrize("garble", ["status word 0000", "status word 9302", "MAC2 bit", "PROVE MAC2 bit"])
def test_regression_a_garbled_debit_answer_is_proven_on_the_next_tap_not_charged_again(
    transit_setup: tuple[Path, bytes, dict[str, bytes]], garble: str
) -> None:
    """Found by the property above: the card debited, its DEBIT answer was garbled (status word, or a bit of
    MAC2), and the kernel took it for a refusal ("nothing was debited") or a fake card, forgot the purchase,
    and the rider's next tap paid the fare a second time."""
    path, pristine_bytes, keys = transit_setup
    path.write_bytes(pristine_bytes)
    psam = Psam(keys, bytes.fromhex("001122334455"))
    changes = {
        "status word 0000": lambda a: a[:-2] + b"\x00\x00",
        "status word 9302": lambda a: a[:-2] + b"\x93\x02",
        "MAC2 bit": lambda a: a[:4] + bytes([a[4] ^ 0x01]) + a[5:],
    }
    if garble == "PROVE MAC2 bit":  # torn after the debit, then the proof itself garbled once
        assert fare(Substitute(PlainCard.load(path).chip().transceive, 2, lambda a: b""), psam, FARE,
                    NOW).outcome is Outcome.TRY_AGAIN
        first = fare(Substitute(PlainCard.load(path).chip().transceive, 1,
                                lambda a: bytes([a[0] ^ 0x80]) + a[1:]), psam, FARE, NOW)
    else:
        first = fare(Substitute(PlainCard.load(path).chip().transceive, 2, changes[garble]), psam, FARE, NOW)
    assert first.outcome is not Outcome.APPROVED
    assert _balance(path) == 5_000 - FARE  # the card did pay
    again = fare(PlainCard.load(path).chip().transceive, psam, FARE, NOW + datetime.timedelta(seconds=5))
    assert again.outcome is Outcome.APPROVED and again.recovered
    assert _balance(path) == 5_000 - FARE  # once
