"""The acquirer stub served for real on 127.0.0.1 (a free port), with a tap on its terminal API.

The tap notes each request's path, status and latency in the scenario's trace, and keeps the last request
bodies in memory (never in a report: they hold the PAN) so a scenario can send one again, as a terminal
does after a lost answer. `stop()` and `start()` keep the port: the terminal sees its host go down and
come back at the same address.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from hostdb import rows as query
from hostserver import HostServer

from acquirer_stub.instance import Instance

HostRow = tuple[str, str, str, int]
"""What each scenario asserts of the acquirer's database: (kind, state, rc, amount)."""


class TappedHostServer(HostServer):
    def __init__(self, app: Flask, note: Callable[[str], None]) -> None:
        super().__init__(app)
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, JSON body), in memory only
        self._note = note
        inner = app.wsgi_app

        def tapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path, started = environ.get("PATH_INFO", ""), time.monotonic()
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length and path.startswith("/api/"):
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = _Replay(body)
                with contextlib.suppress(ValueError):
                    self.requests.append((path, json.loads(body)))

            def start(status: str, headers: Any, *rest: Any) -> Any:
                self._note(f"{environ.get('REQUEST_METHOD')} {path} → {status.split()[0]} "
                           f"({(time.monotonic() - started) * 1000:.0f} ms measured)")
                return start_response(status, headers, *rest)

            return inner(environ, start)

        app.wsgi_app = tapped  # type: ignore[method-assign]


class _Replay:
    """The request body put back for the app after the tap read it."""

    def __init__(self, body: bytes) -> None:
        self._body, self._at = body, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._body) if size is None or size < 0 else self._at + size
        chunk, self._at = self._body[self._at : end], min(end, len(self._body))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)




def host_rows(instance: Instance) -> list[HostRow]:
    """Every transaction the acquirer recorded, in order: the host's side of what the counter did."""
    return [(r["kind"], r["state"], r["rc"], r["amount"])
            for r in query(instance, "SELECT kind, state, rc, amount FROM transactions ORDER BY id")]
