"""Properties of the terminal API: any broken field is a 400 that names it and stores nothing, never a 500;
signatures break under any change; local dates resolve to the nearest day."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api import MMDD, Terminal, counts, financial, reversal, settlement

from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from hostproto import messages, signing

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

NOT_A_STRING = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
NON_DIGIT = st.characters(exclude_characters="0123456789", exclude_categories=("Cs",))


def digits_of_length(length: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=length, max_size=length)


def with_a_non_digit(length: int) -> st.SearchStrategy[str]:
    """Right length, one character that is not an ASCII digit (a letter, a space, '٣'…)."""
    return st.tuples(digits_of_length(length), st.integers(0, length - 1), NON_DIGIT).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1:])


def bad_digits(low: int, high: int | None = None, *, none_is_valid: bool = False) -> st.SearchStrategy[Any]:
    high = low if high is None else high
    wrong_length = st.integers(0, 24).filter(lambda n: not low <= n <= high).flatmap(digits_of_length)
    base = st.one_of(NOT_A_STRING, wrong_length, with_a_non_digit(low))
    return base if none_is_valid else st.one_of(base, st.none())


def bad_integer(low: int, high: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.text(max_size=5), st.floats(), st.booleans(), st.lists(st.integers(), max_size=1),
                     st.integers(max_value=low - 1), st.integers(min_value=high + 1))


def anything_but(*allowed: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), NOT_A_STRING, st.text(max_size=6)).filter(lambda v: v not in allowed)


def bad_hex(low: int, high: int) -> st.SearchStrategy[Any]:
    """Not a string, odd length, a non-hex character, or a byte count outside the tag's."""
    wrong_size = st.integers(0, 40).filter(lambda n: not low <= n <= high).flatmap(
        lambda n: st.binary(min_size=n, max_size=n).map(lambda b: b.hex().upper()))
    return st.one_of(NOT_A_STRING, st.none(), wrong_size,
                     st.binary(min_size=low, max_size=high).map(lambda b: b.hex()[:-1] if b else "A"),
                     st.binary(min_size=max(low, 1), max_size=high).map(lambda b: "G" + b.hex()[1:]))


def bad_mmdd() -> st.SearchStrategy[Any]:
    impossible = st.sampled_from(["0000", "1301", "0230", "0431", "0100", "9999", "1232"])
    return st.one_of(bad_digits(4), impossible)


ICC_LENGTHS = {"9F26": (8, 8), "9F10": (1, 32), "9F37": (4, 4), "9F36": (2, 2), "95": (5, 5), "9A": (3, 3),
               "9C": (1, 1), "9F02": (6, 6), "5F2A": (2, 2), "82": (2, 2), "9F1A": (2, 2), "9F03": (6, 6)}


def authorization_mutations(terminal: Terminal) -> dict[str, st.SearchStrategy[Any]]:
    mutations: dict[str, st.SearchStrategy[Any]] = {
        "mti": anything_but("0200", "0100"),
        "tid": anything_but(terminal.tid),
        "stan": st.one_of(bad_digits(6), st.just("000000")),
        "local_date": bad_mmdd(),
        "batch": bad_integer(1, 999_999),
        "pan": bad_digits(13, 19),
        "psn": bad_digits(2, none_is_valid=True),
        "expiry": st.one_of(bad_digits(4), st.sampled_from(["2600", "2613", "9999"])),
        "amount": bad_integer(1, messages.MAX_AMOUNT),
        "currency": anything_but("156"),
        "entry_mode": bad_digits(3),
        "icc": st.one_of(st.none(), NOT_A_STRING.filter(lambda v: not isinstance(v, dict)), st.text(max_size=4)),
    }
    mutations.update({f"icc.{tag}": bad_hex(*size) for tag, size in ICC_LENGTHS.items()})
    mutations["icc.9A"] = st.one_of(bad_hex(3, 3), st.sampled_from(["261340", "261232", "260230"]))
    return mutations


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = mutated
    for name in parents:
        target = target[name]
    if value is None and path.startswith("icc."):
        del target[last]  # a missing mandatory tag
    else:
        target[last] = value
    return mutated


def _check_refused(terminal: Terminal, instance: Instance, path: str, body: Any, field: str) -> None:
    before = counts(instance)
    answer = terminal.post(path, json.dumps(body).encode())
    assert answer.status_code == 400, (field, body, answer.data)
    assert answer.json["field"] == field, (answer.json, body)
    assert counts(instance) == before


@pytest.fixture
def terminal(client: FlaskClient, world: World) -> Terminal:
    return Terminal(client, world)


@pytest.fixture
def signed_on(terminal: Terminal) -> Terminal:
    terminal.sign_on()
    return terminal


@pytest.fixture
def valid_sale(signed_on: Terminal, world: World) -> dict[str, Any]:
    return financial(signed_on, world, "icbc-debit", 23_45, 1)


@SETTINGS
@given(data=st.data())
def test_a_broken_authorization_field_is_a_400_naming_it(data: st.DataObject, signed_on: Terminal,
                                                         instance: Instance, valid_sale: dict[str, Any]) -> None:
    mutations = authorization_mutations(signed_on)
    field = data.draw(st.sampled_from(sorted(mutations)), label="field")
    value = data.draw(mutations[field], label="value")
    _check_refused(signed_on, instance, "/authorizations", _set(valid_sale, field, value), field)


@SETTINGS
@given(data=st.data())
def test_a_missing_or_unknown_field_is_named(data: st.DataObject, signed_on: Terminal, instance: Instance,
                                             valid_sale: dict[str, Any]) -> None:
    if data.draw(st.booleans(), label="missing"):
        field = data.draw(st.sampled_from(sorted(set(valid_sale) - {"psn"})), label="field")
        body = {k: v for k, v in valid_sale.items() if k != field}
    else:
        field = data.draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in valid_sale), label="field")
        body = {**valid_sale, field: data.draw(st.integers() | st.text(max_size=3))}
    _check_refused(signed_on, instance, "/authorizations", body, field)


@SETTINGS
@given(data=st.data())
def test_broken_reversal_and_settlement_fields_are_named(data: st.DataObject, signed_on: Terminal,
                                                         instance: Instance, valid_sale: dict[str, Any]) -> None:
    reversal_body = reversal(signed_on, valid_sale)
    settlement_body = settlement(signed_on, 1, 1, 2345)
    cases: dict[str, tuple[str, dict[str, Any], st.SearchStrategy[Any]]] = {
        "reversal.mti": ("/reversals", reversal_body, anything_but("0400", "0401", "0420", "0421")),
        "reversal.reason": ("/reversals", reversal_body, anything_but("98", "96", "A0", "06")),
        "reversal.original_stan": ("/reversals", reversal_body, st.one_of(bad_digits(6), st.just("000000"))),
        "reversal.original_local_date": ("/reversals", reversal_body, bad_mmdd()),
        "reversal.amount": ("/reversals", reversal_body, bad_integer(1, messages.MAX_AMOUNT)),
        "settlement.batch": ("/settlements", settlement_body, bad_integer(1, 999_999)),
        "settlement.totals": ("/settlements", settlement_body, st.one_of(st.none(), NOT_A_STRING.filter(
            lambda v: not isinstance(v, dict)))),
        "settlement.totals.debit_count": ("/settlements", settlement_body, bad_integer(0, 999)),
        "settlement.totals.debit_amount": ("/settlements", settlement_body, bad_integer(0, messages.MAX_AMOUNT)),
        "settlement.totals.credit_count": ("/settlements", settlement_body, bad_integer(0, 999)),
        "settlement.totals.credit_amount": ("/settlements", settlement_body, bad_integer(0, messages.MAX_AMOUNT)),
        "signon.local_date": ("/signon", {"mti": "0800", "tid": signed_on.tid, "stan": "000001", "local_date": MMDD},
                              bad_mmdd()),
    }
    case = data.draw(st.sampled_from(sorted(cases)), label="case")
    path, body, strategy = cases[case]
    field = case.split(".", 1)[1]
    _check_refused(signed_on, instance, path, _set(body, field, data.draw(strategy, label="value")), field)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)


@SETTINGS
@given(path=st.sampled_from(["/signon", "/echo", "/authorizations", "/reversals", "/advices", "/settlements"]),
       body=st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=40)))
def test_any_garbage_is_a_400_never_a_500(path: str, body: bytes, terminal: Terminal, instance: Instance) -> None:
    before = counts(instance)
    answer = terminal.post(path, body)
    assert answer.status_code == 400, answer.data
    assert "field" in answer.json and answer.json["error"]
    assert counts(instance) == before


@given(body=st.binary(max_size=64), path=st.sampled_from(["/api/v1/authorizations", "/api/v1/signon"]),
       change=st.sampled_from(["body", "path", "method", "timestamp", "nonce", "signature"]),
       salt=st.binary(min_size=1, max_size=4))
def test_signatures_break_under_any_change(body: bytes, path: str, change: str, salt: bytes) -> None:
    key, now = b"k" * 32, 1_700_000_000.0
    headers = signing.sign(key, "QP000001", "POST", path, body, now=now)
    keys = {"QP000001": key}
    assert signing.verify(headers, "POST", path, body, keys=keys, now=now).tid == "QP000001"
    method = "POST"
    if change == "body":
        body = body + salt
    elif change == "path":
        path = path + "x"
    elif change == "method":
        method = "PUT"
    elif change == "timestamp":
        headers = {**headers, signing.HEADER_TIMESTAMP: str(int(now) + 1)}
    elif change == "nonce":
        headers = {**headers, signing.HEADER_NONCE: signing.new_nonce()}
    else:
        flipped = "0" if headers[signing.HEADER_SIGNATURE][0] != "0" else "1"
        headers = {**headers, signing.HEADER_SIGNATURE: flipped + headers[signing.HEADER_SIGNATURE][1:]}
    with pytest.raises(signing.SignatureError) as refused:
        signing.verify(headers, method, path, body, keys=keys, now=now)
    assert refused.value.reason == "bad_signature"


@given(skew=st.integers(-10_000, 10_000))
def test_the_clock_window_is_inclusive_at_300_seconds(skew: int) -> None:
    key, now = b"k" * 32, 1_700_000_000
    headers = signing.sign(key, "QP000001", "POST", "/p", b"", now=now + skew)
    if abs(skew) <= 300:
        signing.verify(headers, "POST", "/p", b"", keys={"QP000001": key}, now=now)
    else:
        with pytest.raises(signing.SignatureError, match="300 s"):
            signing.verify(headers, "POST", "/p", b"", keys={"QP000001": key}, now=now)


@given(day=st.dates(min_value=datetime.date(2001, 1, 1), max_value=datetime.date(2098, 12, 31)),
       offset=st.integers(-150, 150))
def test_a_local_date_resolves_to_the_nearest_calendar_day(day: datetime.date, offset: int) -> None:
    sent = day + datetime.timedelta(days=offset)
    assert messages.resolve_mmdd(f"{sent:%m%d}", day) == sent


def test_validation_messages_never_quote_a_pan() -> None:
    pan = "6222020000000000001"
    body = {"mti": "0200", "tid": "QP000001", "stan": "000001", "local_date": "0101", "batch": 1, "pan": pan,
            "expiry": "3012", "amount": 1, "currency": "156", "entry_mode": "072",
            "icc": {"5A": pan + "A", "9F02": "000000000001"}}
    with pytest.raises(messages.MessageError) as error:
        messages.parse_authorization(body)
    assert error.value.field == "icc.5A" and pan not in str(error.value)
