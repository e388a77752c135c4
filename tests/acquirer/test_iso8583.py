"""The ISO 8583 endpoint: the CUP field spec round-trips, real taps are decided through the JSON API's service (one
transaction across both formats), and broken bytes are answered without a 500 and without a trace in the database."""

from __future__ import annotations

import datetime
import time
from typing import Any

import iso8583
import pytest
import reader
from flask.testing import FlaskClient
from hostdb import database_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyemv import ac, kd, mac, tools
from test_api import MMDD, Terminal, account, counts, financial, rows
from werkzeug.test import TestResponse

from acquirer_stub.instance import Instance
from acquirer_stub.iso8583 import mapping, spec
from emvcore import tlv
from firmware.issuing.layout import World
from hostproto import messages, signing

PATH = "/api/v1/iso8583"
OCTETS = "application/octet-stream"
TPDU, CUP_HEADER = "6000093019", "603100311003"  # TPDU 60 / destination 0009 / source 3019; CUP header
HEADER = TPDU + CUP_HEADER
RESPONSE_HEADER = "6030190009" + CUP_HEADER
TIME = "101530"
TYPE_CODES = {"0100": ("030000", "10"), "0200": ("000000", "22"), "0220": ("000000", "30"), "0221": ("000000", "30")}
AC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x82, 0x9F36)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class IsoTerminal(Terminal):
    """The demo terminal speaking ISO 8583 over the same signed HTTP transport."""

    def __init__(self, client: FlaskClient, world: World) -> None:
        super().__init__(client, world)
        self.mid = world.terminals()[0]["mid"]

    def send(self, raw: bytes, *, headers: dict[str, str] | None = None) -> TestResponse:
        signed = headers or signing.sign(self.key, self.tid, "POST", PATH, raw, now=time.time())
        return self.client.post(PATH, data=raw, headers=signed, content_type=OCTETS)

    def exchange(self, doc: dict[str, str]) -> dict[str, str]:
        """Send a message, decode the answer with the same spec."""
        response = self.send(spec.encode(doc))
        assert response.status_code == 200, response.data
        assert response.mimetype == OCTETS
        return spec.decode(response.data)

    def network(self, code: str, *, stan: str | None = None, batch: int = 0) -> dict[str, str]:
        return {"h": HEADER, "t": "0800", "11": stan or self.next_stan(), "41": self.tid, "42": self.mid,
                "60": f"00{batch:06d}{code}"}

    def iso_sign_on(self) -> int:
        answer = self.exchange(self.network("003"))
        assert (answer["t"], answer["39"]) == ("0810", "00")
        return int(answer["60"][2:8])


def iso_financial(terminal: IsoTerminal, body: dict[str, Any], *, track2: bool = True) -> dict[str, str]:
    """The JSON API's financial body as a CUP terminal's ISO message (DE55 from the same ICC data)."""
    processing, type_code = TYPE_CODES[body["mti"]]
    icc = b"".join(tlv.encode(int(tag, 16), bytes.fromhex(value)) for tag, value in body["icc"].items())
    doc = {"h": HEADER, "t": body["mti"], "2": body["pan"], "3": processing, "4": f"{body['amount']:012d}",
           "11": body["stan"], "12": TIME, "13": body["local_date"], "14": body["expiry"], "22": body["entry_mode"],
           "23": "0" + body["psn"], "25": "00", "41": body["tid"], "42": terminal.mid, "49": body["currency"],
           "55": icc.hex().upper(), "60": f"{type_code}{body['batch']:06d}000"}
    if track2:
        doc["35"] = body["icc"]["57"].rstrip("F")
    return doc


def iso_reversal(terminal: IsoTerminal, sale: dict[str, str], *, reason: str = "98", mti: str = "0400",
                 stan: str | None = None) -> dict[str, str]:
    original = f"{sale['t']}{sale['11']}{sale['13']}{sale['12']}" + "0" * 22
    return {"h": HEADER, "t": mti, "3": sale["3"], "4": sale["4"], "11": stan or terminal.next_stan(), "12": TIME,
            "13": MMDD, "39": reason, "41": terminal.tid, "42": terminal.mid, "49": "156", "60": sale["60"],
            "90": original}


def iso_settlement(terminal: IsoTerminal, batch: int, debit_count: int, debit_amount: int, *,
                   foreign: bool = True) -> dict[str, str]:
    domestic = f"{debit_amount:012d}{debit_count:03d}{0:012d}{0:03d}0"
    return {"h": HEADER, "t": "0500", "11": terminal.next_stan(), "41": terminal.tid, "42": terminal.mid,
            "48": domestic + ("0" * 31 if foreign else ""), "49": "156", "60": f"00{batch:06d}201"}


def pyemv_tag91(world: World, body: dict[str, Any], arc: bytes = b"00") -> bytes:
    """ARQC check and ARPC method 1 under the PBOC session key, recomputed with pyemv only."""
    issuer = next(c["issuer"] for c in world.cards() if c["pan"] == body["pan"])
    imk = bytes.fromhex(world.issuer_keys(issuer)["imk_ac"])
    icc = {int(tag, 16): bytes.fromhex(value) for tag, value in body["icc"].items()}
    atc = icc[0x9F36]
    udk = kd.derive_icc_mk_a(imk, body["pan"], body["psn"])
    session_key = tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + bytes(b ^ 0xFF for b in atc))
    arqc = mac.mac_iso9797_3(session_key[:8], session_key[8:], b"".join(icc[t] for t in AC_TAGS) + icc[0x9F10][3:7], 2)
    assert arqc == icc[0x9F26]
    return ac.generate_arpc_1(session_key, arqc, arc) + arc


@pytest.fixture
def terminal(client: FlaskClient, world: World) -> IsoTerminal:
    return IsoTerminal(client, world)


# --- the spec: every MTI round-trips through pyiso8583 --------------------------------------------------------------

ICC_SAMPLE = (tlv.encode(0x9F26, bytes.fromhex("1122334455667788")) + tlv.encode(0x9F36, b"\x00\x07")).hex().upper()
SAMPLES: dict[str, dict[str, str]] = {
    "0800 sign-on": {"h": HEADER, "t": "0800", "11": "000001", "41": "QP000001", "42": "898310054110001",
                     "60": "00000000003", "63": "001"},
    "0800 echo": {"h": HEADER, "t": "0800", "11": "000002", "41": "QP000001", "42": "898310054110001",
                  "60": "00000001301"},
    "0810": {"h": RESPONSE_HEADER, "t": "0810", "11": "000001", "39": "00", "41": "QP000001",
             "42": "898310054110001", "60": "00000001003", "62": "AB" * 24},
    "0200": {"h": HEADER, "t": "0200", "2": "6210028741875789", "3": "000000", "4": "000000001234", "11": "000003",
             "12": TIME, "13": "1127", "14": "3112", "22": "072", "23": "001", "25": "00",
             "35": "6210028741875789D31122200010000", "41": "QP000001", "42": "898310054110001", "49": "156",
             "55": ICC_SAMPLE, "60": "22000001000", "64": "0102030405060708"},
    "0100 (19-digit PAN)": {"h": HEADER, "t": "0100", "2": "6212345678901234567", "3": "030000",
                            "4": "000000050000", "11": "000004", "13": "1127", "14": "3112", "22": "071",
                            "25": "06", "41": "QP000001", "42": "898310054110001", "49": "156", "55": ICC_SAMPLE,
                            "60": "1000000100050"},
    "0210": {"h": RESPONSE_HEADER, "t": "0210", "3": "000000", "4": "000000001234", "11": "000003", "12": TIME,
             "13": "1127", "37": "263310000001", "38": "123456", "39": "00", "41": "QP000001",
             "42": "898310054110001", "49": "156", "55": "910A" + "11" * 8 + "3030", "60": "22000001000"},
    "0110": {"h": RESPONSE_HEADER, "t": "0110", "11": "000004", "37": "263310000002", "39": "51", "41": "QP000001",
             "42": "898310054110001", "60": "10000001000"},
    "0220": {"h": HEADER, "t": "0220", "2": "6210028741875789", "3": "000000", "4": "000000000200", "11": "000005",
             "13": "1127", "14": "3112", "22": "072", "41": "QP000001", "42": "898310054110001", "49": "156",
             "55": ICC_SAMPLE, "60": "30000001000"},
    "0221": {"h": HEADER, "t": "0221", "2": "6210028741875789", "3": "000000", "4": "000000000200", "11": "000005",
             "13": "1127", "14": "3112", "22": "072", "41": "QP000001", "42": "898310054110001", "49": "156",
             "55": ICC_SAMPLE, "60": "30000001000"},
    "0230": {"h": RESPONSE_HEADER, "t": "0230", "11": "000005", "37": "263310000003", "39": "00", "41": "QP000001",
             "42": "898310054110001", "60": "30000001000"},
    "0400": {"h": HEADER, "t": "0400", "3": "000000", "4": "000000001234", "11": "000006", "13": "1127",
             "39": "98", "41": "QP000001", "42": "898310054110001", "49": "156", "60": "22000001000",
             "90": "02000000031127101530" + "0" * 22},
    "0401": {"h": HEADER, "t": "0401", "3": "000000", "4": "000000001234", "11": "000006", "13": "1127",
             "39": "A0", "41": "QP000001", "42": "898310054110001", "90": "02000000031127101530" + "0" * 22},
    "0410": {"h": RESPONSE_HEADER, "t": "0410", "3": "000000", "4": "000000001234", "11": "000006", "39": "00",
             "41": "QP000001", "42": "898310054110001"},
    "0420": {"h": HEADER, "t": "0420", "3": "030000", "4": "000000050000", "11": "000007", "13": "1127",
             "39": "06", "41": "QP000001", "42": "898310054110001", "90": "01000000041127101530" + "0" * 22},
    "0421": {"h": HEADER, "t": "0421", "3": "030000", "4": "000000050000", "11": "000007", "13": "1127",
             "39": "96", "41": "QP000001", "42": "898310054110001", "90": "01000000041127101530" + "0" * 22},
    "0430": {"h": RESPONSE_HEADER, "t": "0430", "11": "000007", "39": "00", "41": "QP000001",
             "42": "898310054110001"},
    "0500": {"h": HEADER, "t": "0500", "11": "000008", "41": "QP000001", "42": "898310054110001",
             "48": "000000001234001000000000000000" + "0" + "0" * 31, "49": "156", "60": "00000001201",
             "63": "001"},
    "0510": {"h": RESPONSE_HEADER, "t": "0510", "11": "000008", "39": "00", "41": "QP000001",
             "42": "898310054110001", "48": "0000000012340010000000000000001" + "0" * 30 + "1",
             "60": "00000001201"},
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_mti_round_trips_through_pyiso8583(name: str) -> None:
    doc = SAMPLES[name]
    raw = spec.encode(doc)
    decoded, _ = iso8583.decode(raw, spec.SPEC)
    assert {k: v for k, v in decoded.items() if k not in ("p", "1")} == doc
    assert spec.decode(raw) == decoded
    assert raw[:11].hex().upper() == doc["h"] and raw[11:13] == bytes.fromhex(doc["t"])  # TPDU + header, BCD MTI
    assert ("1" in decoded) == ("90" in doc)  # the secondary bitmap only for DE90
    assert spec.encode(decoded) == raw


def test_the_wire_layout_is_the_cup_one() -> None:
    _, encoded = iso8583.decode(spec.encode(SAMPLES["0200"]), spec.SPEC)
    assert encoded["2"] == {"len": b"\x16", "data": bytes.fromhex("6210028741875789")}  # LLVAR: digit count in BCD
    assert encoded["22"]["data"] == b"\x00\x72"  # n3, left-padded
    assert encoded["23"]["data"] == b"\x00\x01"
    assert encoded["35"]["len"] == b"\x31" and encoded["35"]["data"][-1] == 0x00  # 31 nibbles, right-padded
    assert encoded["49"]["data"] == b"156"  # an3 ASCII
    assert encoded["55"]["len"] == b"\x00\x16"  # LLLVAR binary: 16 bytes, counted in 2-byte BCD (not 00 10)
    assert encoded["60"] == {"len": b"\x00\x11", "data": bytes.fromhex("220000010000")}  # 11 digits, right-padded
    _, encoded = iso8583.decode(spec.encode(SAMPLES["0800 sign-on"]), spec.SPEC)
    assert encoded["60"]["data"] == bytes.fromhex("000000000030")
    with pytest.raises(iso8583.EncodeError):
        spec.encode({**SAMPLES["0200"], "42": "89831005411000"})  # ans15 is fixed
    with pytest.raises(iso8583.EncodeError):
        spec.encode({**SAMPLES["0200"], "2": "6" * 20})  # n..19


@given(pan=st.text("0123456789", min_size=13, max_size=19), stan=st.text("0123456789", min_size=6, max_size=6),
       field60=st.text("0123456789", min_size=11, max_size=17), icc=st.binary(max_size=255),
       field48=st.text("0123456789", min_size=0, max_size=322), header=st.binary(min_size=11, max_size=11))
def test_any_well_formed_field_values_round_trip(pan: str, stan: str, field60: str, icc: bytes, field48: str,
                                                 header: bytes) -> None:
    doc = {**SAMPLES["0200"], "h": header.hex().upper(), "2": pan, "11": stan, "60": field60, "55": icc.hex().upper(),
           "48": field48}
    doc = {k: v for k, v in doc.items() if v}
    decoded = spec.decode(spec.encode(doc))
    assert {k: v for k, v in decoded.items() if k != "p"} == doc


@pytest.mark.parametrize(("name", "kind"), [
    ("0800 sign-on", "signon"), ("0800 echo", "echo"), ("0200", "authorization"),
    ("0100 (19-digit PAN)", "authorization"), ("0221", "advice"), ("0400", "reversal"), ("0421", "reversal"),
    ("0500", "settlement"),
])
def test_requests_map_to_the_json_api_messages(name: str, kind: str) -> None:
    sample = {**SAMPLES[name]}
    if "55" in sample:  # the JSON rules want the EMV minimum in DE55 and DE4 = 9F02, DE49 = 5F2A
        icc = {0x9F26: bytes(8), 0x9F10: bytes.fromhex("07010103A00000"), 0x9F37: bytes(4), 0x9F36: b"\x00\x07",
               0x95: bytes(5), 0x9A: bytes.fromhex("261127"), 0x9C: b"\x00",
               0x9F02: bytes.fromhex(sample["4"]), 0x5F2A: bytes.fromhex("0156"), 0x82: b"\x00\x00",
               0x9F1A: bytes.fromhex("0156"), 0x9F03: bytes(6)}
        sample["55"] = b"".join(tlv.encode(tag, value) for tag, value in icc.items()).hex().upper()
    request = mapping.to_request(sample, today=datetime.date(2026, 11, 27))
    assert isinstance(request, mapping.Request), request
    assert request.kind == kind
    assert request.body["tid"] == "QP000001" and request.body["stan"] == sample["11"]
    assert "35" not in request.echo and "2" not in request.echo and "pan" not in request.echo
    if kind == "settlement":
        assert request.body["local_date"] == "1127"  # no DE13 in a CUP 0500: the host's date
        assert request.body["totals"] == {"debit_amount": 1234, "debit_count": 1, "credit_amount": 0,
                                          "credit_count": 0}
        assert request.foreign_block
    if kind == "reversal":
        assert (request.body["original_stan"], request.body["original_local_date"]) == (sample["90"][4:10], "1127")


@pytest.mark.parametrize(("change", "field", "rc"), [
    ({"4": "00000000123A"}, "4", "30"),  # a BCD nibble that is not a digit
    ({"3": "200000", "60": "23000001000"}, "3", "12"),  # a void: not offered
    ({"3": "310000", "60": "01000001000"}, "3", "12"),  # a balance inquiry
    ({"11": "000000"}, "11", "30"),
    ({"23": "123"}, "23", "30"),
    ({"35": "6210028741875780D31122200010000"}, "35", "30"),  # track 2 of another PAN
    ({"49": "840"}, "49", "30"),
    ({"60": "2200000100"}, "60", "30"),  # 10 digits: no 60.3
    ({"55": "9F2608112233"}, "55", "30"),  # truncated TLV
    ({"t": "0320"}, "t", "12"),  # CUP batch upload: not offered
])
def test_bad_requests_map_to_an_iso_answer_not_an_exception(change: dict[str, str], field: str, rc: str) -> None:
    doc = {**SAMPLES["0200"], **change}
    rejected = mapping.to_request(doc, today=datetime.date.today())
    assert isinstance(rejected, mapping.Rejected)
    assert (rejected.field, rejected.rc, rejected.response["39"]) == (field, rc, rc)
    assert rejected.response["h"] == RESPONSE_HEADER
    assert rejected.response["t"] == messages.response_mti(doc["t"])
    assert "2" not in rejected.response and "35" not in rejected.response
    spec.decode(spec.encode(rejected.response))  # the answer itself always encodes


# --- end to end: real taps, one service, one transaction ------------------------------------------------------------


def test_signon_and_echo_over_iso(terminal: IsoTerminal, instance: Instance) -> None:
    echo = terminal.exchange(terminal.network("301"))
    assert (echo["t"], echo["39"], echo["60"]) == ("0810", "00", "00000000301")  # not signed on: no batch
    assert terminal.iso_sign_on() == 1
    request = terminal.network("001")
    answer = terminal.exchange(request)
    assert answer["60"] == "00000002001" and answer["h"] == RESPONSE_HEADER
    assert {k: answer[k] for k in ("11", "41", "42")} == {k: request[k] for k in ("11", "41", "42")}
    assert terminal.exchange(terminal.network("301"))["60"] == "00000002301"
    before = counts(instance)
    assert terminal.exchange(terminal.network("002"))["39"] == "12"  # another network code: not offered
    assert counts(instance) == before


def test_approval_end_to_end_with_a_real_arqc_and_an_arpc_that_pyemv_reproduces(
        terminal: IsoTerminal, world: World, instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    body = financial(terminal, world, "icbc-debit", 12_34, batch)
    request = iso_financial(terminal, body)
    answer = terminal.exchange(request)

    assert (answer["t"], answer["39"], answer["h"]) == ("0210", "00", RESPONSE_HEADER)
    assert len(answer["38"]) == 6 and answer["38"].isdigit()
    assert len(answer["37"]) == 12 and answer["37"].isdigit()
    for field in ("3", "4", "11", "12", "13", "41", "42", "49"):
        assert answer[field] == request[field], field
    assert answer["60"] == f"22{batch:06d}000"
    assert "2" not in answer and "35" not in answer
    (tag91,) = tlv.parse(bytes.fromhex(answer["55"]))
    assert tag91.tag == 0x91 and tag91.value == pyemv_tag91(world, body)
    assert account(instance, world, "icbc-debit")["balance"] == 500_000 - 1234
    (row,) = rows(instance, "SELECT * FROM transactions")
    assert (row["kind"], row["mti"], row["state"], row["rrn"], row["auth_code"]) == (
        "authorization", "0200", "approved", answer["37"], answer["38"])


def test_the_same_request_twice_gets_identical_bytes_and_one_charge(terminal: IsoTerminal, world: World,
                                                                    instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    raw = spec.encode(iso_financial(terminal, financial(terminal, world, "abc-debit", 99_99, batch)))
    first, again = terminal.send(raw), terminal.send(raw)  # each signed afresh
    assert spec.decode(first.data)["39"] == "00"
    assert first.data == again.data
    assert account(instance, world, "abc-debit")["balance"] == 500_000 - 9999
    assert len(rows(instance, "SELECT id FROM transactions")) == 1
    assert len(rows(instance, "SELECT id FROM events WHERE kind = 'retransmission'")) == 1


def test_a_sale_sent_as_json_then_as_iso_is_one_transaction(terminal: IsoTerminal, world: World,
                                                             instance: Instance) -> None:
    batch = terminal.sign_on()
    body = financial(terminal, world, "boc-debit", 25_00, batch)
    as_json = terminal.post("/authorizations", body).json
    assert as_json["rc"] == "00"
    answer = terminal.exchange(iso_financial(terminal, body))
    assert (answer["39"], answer["37"], answer["38"]) == ("00", as_json["rrn"], as_json["auth_code"])
    assert tlv.find(bytes.fromhex(answer["55"]), 0x91) == bytes.fromhex(as_json["icc"]["91"])
    assert account(instance, world, "boc-debit")["balance"] == 500_000 - 2500
    assert len(rows(instance, "SELECT id FROM transactions")) == 1

    # the other way round, and different content under the key: 94 in either format, nothing moves
    second = financial(terminal, world, "boc-debit", 3_00, batch)
    first_iso = terminal.exchange(iso_financial(terminal, second))
    assert terminal.post("/authorizations", second).json["rrn"] == first_iso["37"]
    before = counts(instance)
    conflict = terminal.exchange(iso_financial(terminal, {**second, "entry_mode": "071"}))
    assert (conflict["t"], conflict["39"], conflict["11"]) == ("0210", "94", second["stan"])
    assert "38" not in conflict
    after = counts(instance)
    assert (after["money"], after["transactions"]) == (before["money"], before["transactions"])


def test_a_reversal_0400_with_reason_98_gives_the_money_back(terminal: IsoTerminal, world: World,
                                                             instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    sale = iso_financial(terminal, financial(terminal, world, "icbc-debit", 250_00, batch))
    assert terminal.exchange(sale)["39"] == "00"
    assert account(instance, world, "icbc-debit")["balance"] == 500_000 - 25_000

    request = iso_reversal(terminal, sale, reason="98")
    raw = spec.encode(request)
    first = terminal.send(raw)
    answer = spec.decode(first.data)
    assert (answer["t"], answer["39"], answer["11"], answer["4"]) == ("0410", "00", request["11"], sale["4"])
    assert account(instance, world, "icbc-debit")["balance"] == 500_000
    assert terminal.send(spec.encode({**request, "t": "0401"})).data == first.data  # the repeat: same answer
    reversal_row = rows(instance, "SELECT state, reason, original_stan FROM transactions WHERE kind = 'reversal'")[0]
    assert tuple(reversal_row) == ("reversed", "98", sale["11"])
    assert rows(instance, "SELECT state FROM transactions WHERE kind = 'authorization'")[0]["state"] == "reversed"
    advice = terminal.exchange(iso_reversal(terminal, sale, reason="06", mti="0420"))
    assert (advice["t"], advice["39"]) == ("0430", "00")
    assert account(instance, world, "icbc-debit")["balance"] == 500_000


def test_a_settlement_0500_balances_and_closes_the_batch(terminal: IsoTerminal, world: World,
                                                         instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    for issuer, amount in (("icbc-debit", 10_00), ("ccb-debit", 20_00)):
        sale = iso_financial(terminal, financial(terminal, world, issuer, amount, batch))
        assert terminal.exchange(sale)["39"] == "00"
    advice = financial(terminal, world, "bocom-debit", 12_34, batch, mti="0220", ttq=reader.TTQ_CARD_READER)
    assert terminal.exchange(iso_financial(terminal, advice))["t"] == "0230"
    host = f"{3000 + 1234:012d}003{0:012d}000"

    unbalanced = terminal.exchange(iso_settlement(terminal, batch, 3, 3000 + 1235))
    assert (unbalanced["t"], unbalanced["39"], unbalanced["48"]) == ("0510", "00", host + "2" + "0" * 30 + "1")
    assert rows(instance, "SELECT signed_on FROM terminals WHERE tid = ?", terminal.tid)[0]["signed_on"] == 1

    request = iso_settlement(terminal, batch, 3, 3000 + 1234, foreign=False)
    balanced = terminal.exchange(request)
    assert (balanced["39"], balanced["48"], balanced["60"]) == ("00", host + "1", f"00{batch:06d}201")
    assert (balanced["11"], balanced["41"], balanced["42"]) == (request["11"], request["41"], request["42"])
    assert rows(instance, "SELECT signed_on FROM terminals WHERE tid = ?", terminal.tid)[0]["signed_on"] == 0
    assert [r["balanced"] for r in rows(instance, "SELECT balanced FROM settlements ORDER BY id")] == [0, 1]


def test_track_2_in_de35_is_checked_and_never_stored(terminal: IsoTerminal, world: World, instance: Instance,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    batch = terminal.iso_sign_on()
    body = financial(terminal, world, "hzb-debit", 8_00, batch)
    request = iso_financial(terminal, body)
    track2 = request["35"]
    wrong = {**request, "35": track2[:4] + str((int(track2[4]) + 1) % 10) + track2[5:]}
    before = counts(instance)
    assert terminal.exchange(wrong)["39"] == "30"
    assert counts(instance) == before
    answer = terminal.exchange(request)
    assert answer["39"] == "00" and "35" not in answer

    _, encoded = iso8583.decode(spec.encode(request), spec.SPEC)
    raw = database_bytes(instance)
    for form in (track2, track2.lower(), track2.replace("D", "="), body["pan"]):
        assert form.encode() not in raw, form
    assert encoded["35"]["data"] not in raw
    assert not any(track2 in r.getMessage() or body["pan"] in r.getMessage() for r in caplog.records)


# --- refusals: HTTP 401/400, or an ISO answer that stores nothing ---------------------------------------------------


def test_unsigned_forged_and_non_iso_requests_are_refused(terminal: IsoTerminal, world: World,
                                                          instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    raw = spec.encode(iso_financial(terminal, financial(terminal, world, "njcb-debit", 6_00, batch)))
    before = counts(instance)
    unsigned = terminal.client.post(PATH, data=raw, content_type=OCTETS)
    assert (unsigned.status_code, unsigned.json["reason"]) == (401, "missing_header")
    forged = terminal.send(raw, headers=signing.sign(bytes(32), terminal.tid, "POST", PATH, raw, now=time.time()))
    assert (forged.status_code, forged.json["reason"]) == (401, "bad_signature")
    other_path = signing.sign(terminal.key, terminal.tid, "POST", "/api/v1/authorizations", raw, now=time.time())
    assert terminal.send(raw, headers=other_path).status_code == 401
    json_body = terminal.send(b'{"mti": "0200"}')
    assert (json_body.status_code, json_body.json["field"]) == (400, "h")
    a_response = terminal.send(spec.encode(SAMPLES["0210"]))  # not a request: nothing to answer it with
    assert (a_response.status_code, a_response.json["field"]) == (400, "t")
    no_tpdu = terminal.send(raw[:0] + bytes(5) + raw[5:])
    assert (no_tpdu.status_code, no_tpdu.json["field"]) == (400, "h")
    assert counts(instance) == before


def test_another_terminals_tid_or_mid_is_answered_without_a_decision(terminal: IsoTerminal, world: World,
                                                                     instance: Instance) -> None:
    batch = terminal.iso_sign_on()
    request = iso_financial(terminal, financial(terminal, world, "psbc-debit", 5_00, batch))
    before = counts(instance)
    assert terminal.exchange({**request, "41": "QP000002"})["39"] == "30"
    assert terminal.exchange({**request, "42": "898310054110002"})["39"] == "03"
    assert counts(instance) == before
    assert terminal.exchange(request)["39"] == "00"


def _refused_before_deciding(raw: bytes, terminal: IsoTerminal) -> bool:
    """Independent of the endpoint: bytes the pure layers refuse, or that name another terminal or merchant."""
    try:
        doc = spec.decode(raw)
    except spec.IsoFormatError:
        return True
    if not mapping.answerable(doc):
        return True
    parsed = mapping.to_request(doc, today=datetime.date.today())
    return isinstance(parsed, mapping.Rejected) or parsed.body["tid"] != terminal.tid or doc["42"] != terminal.mid


def _check_answer(terminal: IsoTerminal, instance: Instance, raw: bytes, *, allowed: tuple[str, ...]) -> None:
    before = counts(instance)
    response = terminal.send(raw)
    assert response.status_code in (200, 400), (response.status_code, response.data)
    if response.status_code == 400:
        assert response.json["field"] in ("h", "t")
        assert counts(instance) == before
        return
    answer = spec.decode(response.data)
    request_mti = raw[11:13].hex().upper()
    assert answer["t"] == messages.response_mti(request_mti)
    if _refused_before_deciding(raw, terminal):
        assert answer["39"] in allowed, answer["39"]
        assert counts(instance) == before


@pytest.fixture
def valid_sale(terminal: IsoTerminal, world: World) -> bytes:
    batch = terminal.iso_sign_on()
    return spec.encode(iso_financial(terminal, financial(terminal, world, "cmb-debit", 4_56, batch)))


@SETTINGS
@given(data=st.one_of(st.binary(max_size=400),
                      st.binary(max_size=300).map(lambda b: bytes.fromhex(HEADER + "0200") + b),
                      st.binary(max_size=300).map(lambda b: bytes.fromhex(HEADER + "0800") + b)))
def test_random_bytes_are_never_a_500_and_store_nothing(terminal: IsoTerminal, instance: Instance,
                                                         data: bytes) -> None:
    _check_answer(terminal, instance, data, allowed=("30", "12"))
    assert _refused_before_deciding(data, terminal)


@SETTINGS
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_truncations_are_never_a_500_and_store_nothing(terminal: IsoTerminal, instance: Instance, valid_sale: bytes,
                                                       cut: int) -> None:
    truncated = valid_sale[:cut % len(valid_sale)]
    _check_answer(terminal, instance, truncated, allowed=("30",))
    assert _refused_before_deciding(truncated, terminal)


@SETTINGS
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=0, max_value=255))
def test_single_byte_corruptions_are_never_a_500(terminal: IsoTerminal, instance: Instance, valid_sale: bytes,
                                                 position: int, value: int) -> None:
    """A corruption that still reads as a well-formed message is decided like any other (an STAN digit, a DE55
    value byte); every other one is refused and leaves the database as it was."""
    index = position % len(valid_sale)
    corrupted = valid_sale[:index] + bytes([value]) + valid_sale[index + 1:]
    _check_answer(terminal, instance, corrupted, allowed=("30", "12", "03"))


def test_the_openapi_document_describes_the_binary_endpoint(client: FlaskClient) -> None:
    operation = client.get("/api/v1/openapi.json").json["paths"]["/iso8583"]["post"]
    assert set(operation["requestBody"]["content"]) == {OCTETS}
    assert set(operation["responses"]["200"]["content"]) == {OCTETS}
    assert {"400", "401", "403", "413", "500"} <= set(operation["responses"])
