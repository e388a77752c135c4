"""The acquirer's answers as `hostproto.responses` builds and reads them: the host's bytes stay what the stored
answers and the terminals expect, and a malformed answer names its field."""

from __future__ import annotations

import json

import pytest

from hostproto.messages import Totals
from hostproto.responses import (
    AdviceAnswer,
    AuthorizationAnswer,
    ClearingAnswer,
    EchoAnswer,
    FareResult,
    Figures,
    LoadAnswer,
    LoadConfirmationAnswer,
    LoadRefusal,
    MessageError,
    Refusal,
    ReversalAnswer,
    SettlementAnswer,
    SettlementRefusal,
    SignOnAnswer,
    parse_advice_answer,
    parse_authorization_answer,
    parse_clearing_answer,
    parse_echo_answer,
    parse_load_answer,
    parse_load_confirmation_answer,
    parse_reversal_answer,
    parse_settlement_answer,
    parse_signon_answer,
)

APPROVED = AuthorizationAnswer("0210", "00", "Approved", "000123", rrn="263400000042", auth_code="123456",
                               amount=1500, charged=1400, discount=100, promotion="满15减1", batch=7,
                               icc={"91": "0011223344556677" + "3030"})

ANSWERS = [
    (parse_signon_answer, SignOnAnswer("0810", "00", "Approved", "000001", 3, 1_790_000_000)),
    (parse_echo_answer, EchoAnswer("0810", "00", "Approved", "000002", signed_on=False, batch=None,
                                   host_time=1_790_000_000)),
    (parse_authorization_answer, APPROVED),
    (parse_authorization_answer, AuthorizationAnswer("0110", "05", "Do not honour", "000124", rrn="263400000043",
                                                     auth_code=None, amount=1500, charged=0, discount=0,
                                                     promotion=None, batch=None)),
    (parse_authorization_answer, Refusal("0210", "94", "Duplicate transmission", "000123")),
    (parse_advice_answer, AdviceAnswer("0230", "00", "Approved", "000125", rrn="263400000044", amount=900,
                                       charged=0, discount=0, promotion=None, batch=7, outcome="exception",
                                       exception="OVER_FLOOR_LIMIT")),
    (parse_reversal_answer, ReversalAnswer("0430", "00", "Approved", "000126", "000124", "partial")),
    (parse_settlement_answer, SettlementAnswer("0510", "00", "Approved", "000127", 7, False, "2",
                                               Totals(3, 4500, 0, 0), Figures(2, 3600), Figures(1, 900))),
    (parse_settlement_answer, SettlementRefusal("0510", "77", "Terminal not signed on or wrong batch", "000128",
                                                None)),
    (parse_load_answer, LoadAnswer("0210", "00", "Approved", "000129", 5000, "A1B2C3D4", "20261206193000")),
    (parse_load_answer, LoadRefusal("0210", "88", "Cryptographic failure", "000130", "MAC1 does not verify")),
    (parse_load_confirmation_answer, LoadConfirmationAnswer("0230", "00", "Approved", "000131", "000129",
                                                            "completed")),
    (parse_clearing_answer, ClearingAnswer("00", "Transit fares received", 1, 0, 1, 200, (
        FareResult("cleared", None), FareResult("refused", "the TAC does not verify")))),
]


@pytest.mark.parametrize(("parse", "answer"), ANSWERS, ids=lambda value: type(value).__name__)
def test_an_answer_survives_the_wire(parse, answer) -> None:
    text = answer.to_json()
    assert parse(json.loads(text)) == answer
    assert parse(json.loads(text)).to_json() == text


def test_the_host_bytes_keep_their_key_order() -> None:
    """Stored answers are compared byte for byte on a retransmission: the field order is the wire's."""
    assert APPROVED.to_json() == (
        '{"mti":"0210","rc":"00","text":"Approved","stan":"000123","rrn":"263400000042","auth_code":"123456",'
        '"amount":1500,"charged":1400,"discount":100,"promotion":"满15减1","batch":7,'
        '"icc":{"91":"00112233445566773030"}}')


def test_an_absent_optional_field_stays_absent() -> None:
    """icc (no issuer data) and exception (an accepted advice) are left out, never sent as null."""
    without = AuthorizationAnswer(**{**APPROVED.__dict__, "icc": None})
    assert "icc" not in without.as_dict()
    assert without.issuer_authentication_data is None
    assert APPROVED.issuer_authentication_data == "00112233445566773030"


@pytest.mark.parametrize(("change", "field"), [
    ({"rrn": None}, "rrn"),
    ({"charged": "1400"}, "charged"),
    ({"charged": True}, "charged"),
    ({"stan": "12345"}, "stan"),
    ({"mti": "0230"}, "mti"),
    ({"text": "x" * 201}, "text"),
    ({"icc": {"91": "zz"}}, "icc.91"),
    ({"icc": "00"}, "icc"),
])
def test_a_malformed_authorization_answer_names_its_field(change, field) -> None:
    body = {**APPROVED.as_dict(), **change}
    with pytest.raises(MessageError) as raised:
        parse_authorization_answer(body)
    assert raised.value.field == field


def test_errors_never_quote_the_value() -> None:
    with pytest.raises(MessageError) as raised:
        parse_authorization_answer({**APPROVED.as_dict(), "rrn": "6222021234567890"})
    assert "6222021234567890" not in str(raised.value)


@pytest.mark.parametrize(("parse", "body", "field"), [
    (parse_signon_answer, [], "body"),
    (parse_signon_answer, {"mti": "0810", "rc": "00", "text": "Approved", "stan": "000001", "host_time": 1},
     "batch"),
    (parse_echo_answer, {**ANSWERS[1][1].as_dict(), "signed_on": 1}, "signed_on"),
    (parse_settlement_answer, {**ANSWERS[7][1].as_dict(), "host_totals": {"debit_count": 1}},
     "host_totals.debit_amount"),
    (parse_settlement_answer, {**ANSWERS[7][1].as_dict(), "reconciliation": "3"}, "reconciliation"),
    (parse_load_answer, {**ANSWERS[9][1].as_dict(), "mac2": "a1b2c3d4"}, "mac2"),
    (parse_load_answer, {**ANSWERS[10][1].as_dict(), "reason": None}, "reason"),
    (parse_reversal_answer, {**ANSWERS[6][1].as_dict(), "outcome": "maybe"}, "outcome"),
    (parse_clearing_answer, {**ANSWERS[12][1].as_dict(), "results": [{"status": "lost"}]}, "results[0].status"),
    (parse_clearing_answer, {**ANSWERS[12][1].as_dict(), "results": []}, "results"),
])
def test_a_malformed_answer_names_its_field(parse, body, field) -> None:
    with pytest.raises(MessageError) as raised:
        parse(body)
    assert raised.value.field == field


def test_a_newer_host_may_add_fields() -> None:
    """Answers are open: a field the terminal does not know is ignored, not a reason to reverse the sale."""
    assert parse_authorization_answer({**APPROVED.as_dict(), "loyalty_points": 12}) == APPROVED
