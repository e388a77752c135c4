"""SQLite group commit (acquirer_stub/store/db.py `_Group`): the decisions of concurrent requests share one COMMIT,
none returns before it, a decision that raises is undone alone, and a COMMIT that fails fails its whole batch.

The first decision of each test holds its turn until the others are waiting for theirs (a condition on the
group's own counter, not a sleep), so which decisions share a batch is decided, not left to the scheduler."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waits import until

from acquirer_stub.store import db

OTHERS = 5


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "acquirer.sqlite3"
    connection = db.connect(path)
    connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    connection.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, who TEXT NOT NULL,"
                       " account_id INTEGER REFERENCES accounts (id))")
    connection.execute("INSERT INTO accounts (id, balance) VALUES (1, 1000)")
    connection.close()
    yield path


@pytest.fixture
def group(database: Path) -> Any:
    """The file's group, held for the test (the process keeps a group only while something uses it)."""
    return db._group(database)


def _commits(group: Any) -> list[str]:
    """The COMMITs the group's connection runs from now on."""
    seen: list[str] = []
    group.connection.set_trace_callback(lambda statement: seen.append(statement)
                                        if statement.strip().upper() == "COMMIT" else None)
    return seen


def _decide(path: Path, who: str, body: Callable[[Any], None] | None = None) -> None:
    """One decision as the terminal API makes it: its own request connection, the group's transaction."""
    connection = db.connect(path)
    try:
        with db.transaction(connection, serial=False) as grouped:
            grouped.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
            grouped.execute("INSERT INTO sales (who, account_id) VALUES (?, 1)", (who,))
            if body is not None:
                body(grouped)
    finally:
        connection.close()


def _run_batch(path: Path, first_body: Callable[[Any], None] | None,
               other_body: Callable[[str], Callable[[Any], None] | None]) -> dict[str, BaseException | str]:
    """The first decision holds its turn until OTHERS decisions wait for theirs; each thread's outcome, and for
    each one that returned, whether its sale was visible to another connection at that moment."""
    group = db._group(path)  # the test's (its `group` fixture holds it)
    outcomes: dict[str, BaseException | str] = {}

    def hold(grouped: Any) -> None:
        until(lambda: group.waiting == OTHERS, 10, f"{OTHERS} decisions waiting for their turn")
        if first_body is not None:
            first_body(grouped)

    def run(who: str, body: Callable[[Any], None] | None) -> None:
        try:
            _decide(path, who, body)
        except BaseException as error:  # the outcome under test
            outcomes[who] = error
            return
        reader = sqlite3.connect(path)  # another process's view: only what is committed
        try:
            visible = reader.execute("SELECT COUNT(*) FROM sales WHERE who = ?", (who,)).fetchone()[0]
        finally:
            reader.close()
        outcomes[who] = "committed" if visible == 1 else "returned before its commit"

    first = threading.Thread(target=run, args=("first", hold))
    first.start()
    until(lambda: group.busy, 10, "the first decision to take its turn")
    others = [threading.Thread(target=run, args=(f"other-{i}", other_body(f"other-{i}"))) for i in range(OTHERS)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(20)
        assert not thread.is_alive()
    return outcomes


def _stored(path: Path) -> tuple[int, list[str]]:
    connection = sqlite3.connect(path)
    try:
        balance = connection.execute("SELECT balance FROM accounts WHERE id = 1").fetchone()[0]
        who = [row[0] for row in connection.execute("SELECT who FROM sales ORDER BY who")]
    finally:
        connection.close()
    return balance, who


def test_concurrent_decisions_share_one_commit_and_none_returns_before_it(database: Path, group: Any) -> None:
    commits = _commits(group)
    outcomes = _run_batch(database, None, lambda _who: None)
    assert outcomes == {who: "committed" for who in ["first", *(f"other-{i}" for i in range(OTHERS))]}
    assert len(commits) == 1  # six decisions, one fsync
    assert _stored(database) == (1000 - 10 * (OTHERS + 1), sorted(["first", *(f"other-{i}" for i in range(OTHERS))]))
    _decide(database, "alone")  # nobody waiting: it commits at once, by itself
    assert len(commits) == 2 and _stored(database)[1].count("alone") == 1


def test_a_decision_that_raises_is_undone_alone(database: Path, group: Any) -> None:
    def refuse(_grouped: Any) -> None:
        raise ValueError("declined by the test")

    outcomes = _run_batch(database, None, lambda who: refuse if who == "other-2" else None)
    assert isinstance(outcomes.pop("other-2"), ValueError)
    assert set(outcomes.values()) == {"committed"}
    balance, who = _stored(database)
    assert balance == 1000 - 10 * OTHERS and "other-2" not in who and len(who) == OTHERS


def test_a_commit_that_fails_fails_every_decision_of_its_batch(database: Path, group: Any) -> None:
    """A foreign key checked at COMMIT (deferred) that one decision breaks: SQLite refuses the whole transaction."""
    def break_a_key(grouped: Any) -> None:
        grouped.execute("PRAGMA defer_foreign_keys = ON")
        grouped.execute("INSERT INTO sales (who, account_id) VALUES ('dangling', 99)")

    outcomes = _run_batch(database, break_a_key, lambda _who: None)
    assert len(outcomes) == OTHERS + 1
    assert all(isinstance(error, sqlite3.IntegrityError) for error in outcomes.values()), outcomes
    assert _stored(database) == (1000, [])
    _decide(database, "after")  # the group is usable again
    assert _stored(database) == (990, ["after"])


def test_the_group_lives_while_a_request_connection_uses_it(database: Path) -> None:
    """A process keeps no group (an open connection) for a database nothing uses any more, e.g. a test's."""
    connection = db.connect(database)
    with db.transaction(connection, serial=False) as grouped:
        grouped.execute("UPDATE accounts SET balance = balance + 1")
    key = (os.getpid(), str(database.resolve()))
    assert db._groups.get(key) is connection.group is not None
    connection.close()
    del connection, grouped
    gc.collect()
    assert db._groups.get(key) is None
    assert _stored(database)[0] == 1001
