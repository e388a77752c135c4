"""How many SQL statements one approved sale sends: each is a round trip to PostgreSQL (and the decision's time
there is mostly the driver's per-statement cost), so the count is held down by a test (issue #13 §3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from test_api import Terminal, financial

from acquirer_stub.store import db, postgres
from firmware.issuing.layout import World

MAX_STATEMENTS = {"sqlite": 17, "postgresql": 13}
"""BEGIN and COMMIT included: the signature's checks, the decision, its row and its event (20 on both before issue
#13 §3 merged some). PostgreSQL forgets old nonces in the statement that spends one and writes the row with its event
in one; SQLite cannot (no INSERT or DELETE in a WITH), and its statements cost no network round trip; its group
commit adds the decision's SAVEPOINT and RELEASE (no I/O), and shares BEGIN and COMMIT among concurrent decisions."""


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement either backend's connection is asked to run, in order."""
    sent: list[str] = []
    for connection_class in (db.Connection, postgres.Connection):
        run = connection_class.execute

        def counted(self: Any, statement: str, parameters: Any = (), *, _run: Any = run) -> Any:
            sent.append(" ".join(statement.split()))
            return _run(self, statement, parameters)

        monkeypatch.setattr(connection_class, "execute", counted)
    yield sent


def test_an_approved_sale_sends_few_statements(client: FlaskClient, world: World, database_url: str,
                                                statements: list[str]) -> None:
    terminal = Terminal(client, world)
    batch = terminal.sign_on()
    terminal.post("/authorizations", financial(terminal, world, "icbc-debit", 1_00, batch))  # warm: pool, caches
    statements.clear()
    answer = terminal.post("/authorizations", financial(terminal, world, "icbc-debit", 2_00, batch))
    assert answer.json["rc"] == "00", answer.json
    backend = "postgresql" if database_url else "sqlite"
    assert len(statements) <= MAX_STATEMENTS[backend], "\n".join(statements)
