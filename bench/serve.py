"""A WSGI app in its own process, served as `acquirer-stub serve` serves it (`acquirer_stub.serving`), on an
ephemeral port.

    python -m bench.serve host INSTANCE     # the acquirer stub's Flask app
    python -m bench.serve bare              # a bare endpoint: reads the body, answers a fixed JSON object

The first line on stdout is ``port N``. The parent (`Server`) stops it with SIGTERM.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The least a JSON endpoint does: read the request body, answer 200 with a small JSON body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    body = b'{"mti":"0210","rc":"00","text":"Approved"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv: list[str]) -> int:
    from acquirer_stub.serving import create_server

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N": the load is the point

    if argv[0] == "host":
        from acquirer_stub.app import create_app

        app: Any = create_app(Path(argv[1]))
    else:
        app = bare_app
    server = create_server(app, "127.0.0.1", 0, ident="bench")
    print(f"port {server.effective_port}", flush=True)
    server.run()
    return 0


class Server:
    """`python -m bench.serve …` as a child process; `url` once it listens."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "bench.serve", *args], cwd=cwd,
                                         stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            self.close()
            raise RuntimeError(f"bench server {args[0]} did not start")
        self.url = f"http://127.0.0.1:{line[1]}"
        self.pid = self._process.pid

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
