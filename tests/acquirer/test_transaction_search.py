"""The operator's transaction search and its CSV export, through Flask's test client, on both databases."""

from __future__ import annotations

import csv
import datetime
import io
import sqlite3

import pytest
from flask.testing import FlaskClient
from test_dashboard import FULL_PAN, NOW, add_transaction

from acquirer_stub.dashboard import export, search


@pytest.fixture
def sales(connection: sqlite3.Connection) -> dict[str, int]:
    """Five rows that differ in one searchable field each; name → row id."""
    day = datetime.timedelta(days=1)
    return {
        "plain": add_transaction(connection, stan="000101", rrn="261290000101", auth_code="A1B2C3"),
        "other_card": add_transaction(connection, stan="000102", rrn="261290000102", auth_code="000102",
                                      pan_masked="622202*********9876"),
        "other_terminal": add_transaction(connection, stan="000103", rrn="261290000103", auth_code="000103",
                                          tid="QP000002"),
        "declined": add_transaction(connection, stan="000104", rrn="261290000104", auth_code=None, rc="51",
                                    state="declined", reason="INSUFFICIENT_FUNDS"),
        "yesterday_advice": add_transaction(connection, stan="000105", rrn="261290000105", auth_code="000105",
                                            kind="advice", mti="0220", created=NOW - day),
    }


def _found(client: FlaskClient, **args: str) -> list[int]:
    answer = client.get("/dashboard/transactions", query_string=args)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:800]
    html = answer.get_data(as_text=True)
    body = html.split('<tbody>', 1)[1].split("</tbody>", 1)[0]
    return sorted(int(part.split('"', 1)[0]) for part in body.split('<tr data-id="')[1:])


@pytest.mark.parametrize(("args", "expected"), [
    ({}, ["plain", "other_card", "other_terminal", "declined", "yesterday_advice"]),
    ({"rrn": "261290000103"}, ["other_terminal"]),
    ({"stan": "104"}, ["declined"]),  # typed without its leading zeros
    ({"auth_code": "a1b2c3"}, ["plain"]),  # case does not matter
    ({"card": "9876"}, ["other_card"]),
    ({"card": "622202******9876"}, ["other_card"]),
    ({"card": "621700******9876"}, []),  # the BIN counts too
    ({"tid": "QP000002"}, ["other_terminal"]),
    ({"rc": "51"}, ["declined"]),
    ({"kind": "advice"}, ["yesterday_advice"]),
    ({"from": "2026-05-08", "to": "2026-05-08"}, ["yesterday_advice"]),
    ({"from": "2026-05-09"}, ["plain", "other_card", "other_terminal", "declined"]),
    ({"to": "2026-05-08"}, ["yesterday_advice"]),
    ({"card": "4567", "rc": "00", "tid": "QP000001", "kind": "authorization"}, ["plain"]),
])
def test_search_finds_by_each_field(operator: FlaskClient, sales: dict[str, int], args: dict[str, str],
                                    expected: list[str]) -> None:
    assert _found(operator, **args) == sorted(sales[name] for name in expected)


@pytest.mark.parametrize(("args", "message"), [
    ({"rrn": "12345"}, "RRN: 12 digits."),
    ({"stan": "12a"}, "STAN: up to 6 digits."),
    ({"tid": "QP1' OR 1=1"}, "Terminal: an 8-character terminal id."),
    ({"kind": "refund"}, "Kind: one of authorization, advice, reversal."),
    ({"card": "12"}, "Card: enter the last four digits"),
    ({"from": "yesterday"}, "From: a date as YYYY-MM-DD."),
    ({"from": "2026-05-09", "to": "2026-05-08"}, "To: on or after From."),
    ({"page": "0"}, "Page: 1 to"),
    ({"page": "-1"}, "Page: 1 to"),
])
def test_a_bad_field_is_named_and_finds_nothing(operator: FlaskClient, sales: dict[str, int], args: dict[str, str],
                                                message: str) -> None:
    answer = operator.get("/dashboard/transactions", query_string=args)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in html
    assert 'data-id="' not in html
    assert operator.get("/dashboard/transactions.csv", query_string=args).status_code == 400


def test_a_full_card_number_is_refused_and_never_shown_back(operator: FlaskClient, sales: dict[str, int]) -> None:
    answer = operator.get("/dashboard/transactions", query_string={"card": FULL_PAN})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "a full card number is never searched" in html
    assert FULL_PAN not in html and FULL_PAN[-8:] not in html


def test_results_come_in_pages_newest_first(operator: FlaskClient, connection: sqlite3.Connection) -> None:
    ids = [add_transaction(connection, tid="QP000009") for _ in range(search.PAGE_SIZE + 3)]
    first = operator.get("/dashboard/transactions?tid=QP000009").get_data(as_text=True)
    assert f"{len(ids)} transactions, page 1 of 2." in first and 'rel="next"' in first and 'rel="prev"' not in first
    assert _found(operator, tid="QP000009") == sorted(ids[-search.PAGE_SIZE:])
    assert _found(operator, tid="QP000009", page="2") == sorted(ids[:3])
    last = operator.get("/dashboard/transactions?tid=QP000009&page=2").get_data(as_text=True)
    assert 'rel="prev"' in last and 'rel="next"' not in last
    assert _found(operator, tid="QP000009", page="3") == []  # past the end: an empty page, not an error


def test_the_csv_holds_the_whole_result_with_masked_cards(operator: FlaskClient, connection: sqlite3.Connection,
                                                          sales: dict[str, int]) -> None:
    hostile = add_transaction(connection, reason="=HYPERLINK(\"http://x\")", amount=123456, discount=456,
                              tid="QP000001")
    answer = operator.get("/dashboard/transactions.csv?tid=QP000001")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="transactions-')
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert tuple(rows[0]) == export.HEADER
    by_id = {int(row[0]): dict(zip(export.HEADER, row, strict=True)) for row in rows[1:]}
    expected = sorted([sales["plain"], sales["other_card"], sales["declined"], sales["yesterday_advice"], hostile])
    assert sorted(by_id) == expected
    assert [int(row[0]) for row in rows[1:]] == sorted(expected, reverse=True)  # newest first, as on the page
    assert by_id[hostile]["reason"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert (by_id[hostile]["amount"], by_id[hostile]["charged"], by_id[hostile]["discount"]) == (
        "1234.56", "1230.00", "4.56")
    assert by_id[sales["declined"]]["reason"] == "Insufficient funds"
    assert by_id[sales["plain"]]["card"] == "621700*********4567"
    assert by_id[sales["plain"]]["received"] == "2026-05-09 10:30:20 UTC"
    assert FULL_PAN not in answer.get_data(as_text=True)


def test_the_page_links_the_export_of_the_same_search(operator: FlaskClient, sales: dict[str, int]) -> None:
    html = operator.get("/dashboard/transactions?rc=51&card=4567").get_data(as_text=True)
    link = html.split('id="csv-export" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    rows = list(csv.reader(io.StringIO(operator.get(link).get_data(as_text=True))))
    assert [int(row[0]) for row in rows[1:]] == [sales["declined"]]
