"""acquirer_stub/store/ is the only home of SQL (issue 13 §1): the web side reads and writes through its repositories.

A PostgreSQL backend then changes the store alone. NOT_YET (empty now) names modules whose SQL has yet to move;
everything else of acquirer_stub (a new module too) must hold no statement, no cursor call and no driver row.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "acquirer_stub"
MOVED = ("dashboard/views.py", "dashboard/feed.py", "dashboard/clearing.py", "dashboard/charts.py",
         "dashboard/transit.py", "cardholder/pages.py", "accounts.py", "throttle.py", "web.py", "exception_queue.py",
         "ecr/__init__.py", "ecr/handover.py", "loader.py",
         "tsp/binding.py", "tsp/lifecycle.py", "tsp/api.py", "api/security.py", "api/service.py",
         "api/transit_load.py", "issuer/engine.py", "issuer/promotions.py", "iso8583/endpoint.py")
NOT_YET: tuple[str, ...] = ()  # every module's SQL has moved
CURSOR_CALLS = {"execute", "executemany", "executescript"}
STATEMENT = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.S)


def sql_in(path: Path) -> list[str]:
    """What of `path` talks to the database directly, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CURSOR_CALLS:
            found.append(f"{node.lineno}: .{node.func.attr}(")
        elif isinstance(node, ast.Constant | ast.JoinedStr) and STATEMENT.search(text := _text(node)):
            found.append(f"{node.lineno}: SQL text {text[:40]!r}")
        elif isinstance(node, ast.Attribute) and node.attr == "Row" and isinstance(node.value, ast.Name) and \
                node.value.id == "sqlite3":
            found.append(f"{node.lineno}: sqlite3.Row")
    return found


def _text(node: ast.Constant | ast.JoinedStr) -> str:
    """A string's text; an f-string's with its placeholders left out (SQL built with f-strings counts too)."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else ""
    return "".join(part.value for part in node.values if isinstance(part, ast.Constant) and isinstance(part.value, str))


def outside_the_store() -> list[str]:
    names = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")]
    return sorted(name for name in names if not name.startswith("store/") and not name.startswith(NOT_YET))


@pytest.mark.parametrize("name", MOVED)
def test_the_moved_modules_hold_no_sql(name: str) -> None:
    assert sql_in(PACKAGE / name) == [], f"{name}: SQL belongs in acquirer_stub/store/"


def test_no_module_outside_the_store_and_the_later_steps_holds_sql() -> None:
    offenders = {name: found for name in outside_the_store() if (found := sql_in(PACKAGE / name))}
    assert offenders == {}, "SQL belongs in acquirer_stub/store/"


def test_the_scan_sees_sql() -> None:
    """The guard itself: a module that queries is caught, whichever way it does."""
    store = PACKAGE / "store"
    assert any(": .execute(" in line for line in sql_in(store / "events.py"))
    assert any("SQL text" in line for line in sql_in(store / "clearing.py"))
    assert set(MOVED) <= set(outside_the_store())
