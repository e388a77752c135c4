"""A WSGI app in its own process, served as `acquirer-stub serve` serves it (`acquirer_stub.serving`), on an
ephemeral port; or in N gunicorn worker processes as `acquirer-stub serve --workers N` serves the terminal API
(`acquirer_stub.workers.ApiWorkers`: gthread workers, `Serving.api_threads` threads each, on one bound socket).

    python -m bench.serve host INSTANCE              # the acquirer stub's Flask app (waitress, one process)
    python -m bench.serve bare                       # a bare endpoint: reads the body, answers a fixed JSON object
    python -m bench.serve host INSTANCE --workers N  # the terminal API in N worker processes
    python -m bench.serve bare --workers N           # the bare endpoint in N worker processes, the same settings

The first line on stdout is ``port N``. The parent (`Server`) stops it with SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
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

    if "--workers" in argv:
        at = argv.index("--workers")
        workers = int(argv[at + 1])
        return _serve_workers(argv[:at] + argv[at + 2:], workers)
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


def _serve_workers(argv: list[str], workers: int) -> int:
    """The host's terminal API (`ApiWorkers`, as `acquirer-stub serve --workers`) or the bare endpoint in the same
    gunicorn set-up (`BareWorkers`), on a socket bound here; gunicorn's arbiter ends on SIGTERM."""
    from acquirer_stub.workers import ApiWorkers, bind

    listener = bind("127.0.0.1", 0)
    print(f"port {listener.getsockname()[1]}", flush=True)
    try:
        if argv[0] == "host":
            ApiWorkers(Path(argv[1]), listener, workers, lambda: "no pages here").run()
        else:
            _bare_workers_class()(Path("."), listener, workers, lambda: "no pages here").run()
    except SystemExit as end:
        return int(end.code or 0)
    finally:
        with contextlib.suppress(OSError):  # gunicorn closed the fd it was given already, in workers and arbiter
            listener.close()
    return 0


def _bare_workers_class() -> type:  # gunicorn is imported only by the multi-process server
    from acquirer_stub.serving import Admission
    from acquirer_stub.workers import ApiWorkers

    class BareWorkers(ApiWorkers):  # type: ignore[misc]
        """`ApiWorkers` serving `bare_app` (behind the same `Admission`): the floor of N gunicorn workers."""

        def load(self) -> Any:
            return Admission(bare_app, self.serving, "api", self.elsewhere)

    return BareWorkers


class Server:
    """`python -m bench.serve …` as a child process; `url` once it listens. `workers`: in that many gunicorn
    worker processes, once one of them answered /health and the others had a moment to boot."""

    def __init__(self, *args: str, cwd: Path, workers: int = 0) -> None:
        extra = ["--workers", str(workers)] if workers else []
        self.workers = workers
        self._process = subprocess.Popen([sys.executable, "-m", "bench.serve", *args, *extra], cwd=cwd,
                                         stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 2 or line[0] != "port":
            self.close()
            raise RuntimeError(f"bench server {args[0]} did not start")
        self.url = f"http://127.0.0.1:{line[1]}"
        self.pid = self._process.pid
        if workers:
            self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=timeout) as answer:
                    answer.read()
                break
            except (OSError, urllib.error.HTTPError):
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.close()
                    raise RuntimeError(f"bench server on {self.url} did not answer") from None
                time.sleep(0.1)
        time.sleep(0.5 * self.workers)  # the arbiter forks the workers one after the other

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
