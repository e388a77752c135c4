"""The acquirer app served on a real port: in this process (for the terminal's tests), or as `acquirer-stub serve`
in a child process (when the server itself is under test: crashes, attacks, its memory), or with the serving
set-up of `acquirer-stub serve` on a thread of this process (to try its budgets and timeouts with small values)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from acquirer_stub.serving import Serving, create_server

_WORKER_PORTS = 1000
_next_port = itertools.count(20000 + _WORKER_PORTS * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0))


def free_port() -> int:
    """A free port for a server that needs its number before it starts. Each pytest-xdist worker draws from its
    own block below the kernel's ephemeral range (32768-60999): a port one worker probed and released is never
    handed to another worker's server or bind(0) before the first one's server takes it."""
    for port in _next_port:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or still in TIME_WAIT from an earlier test
            return port
    raise AssertionError("unreachable")


@dataclasses.dataclass
class ServedAcquirer:
    """`acquirer-stub serve` in a child process: the terminal API on `port`, the web listener on `web_port`."""

    process: subprocess.Popen[bytes]
    port: int
    web_port: int | None

    def web_pid(self) -> int:
        """The web listener's process (a child of the served acquirer)."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and "spawn_main" in (stat.parent / "cmdline").read_text():
                    return int(stat.parent.name)
        raise AssertionError("the web listener's process is not running")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def serve_acquirer(instance_root: Path, port: int, *, web_port: int | None = None,
                   log: IO[bytes] | None = None, workers: int = 1) -> ServedAcquirer:
    """`acquirer-stub serve` on 127.0.0.1:port (and its web listener on web_port; None: no web listener) in a child
    process, once both answer /health; the caller stops it."""
    output = log if log is not None else subprocess.DEVNULL
    web_listen = f"127.0.0.1:{web_port}" if web_port is not None else ""
    process = subprocess.Popen(
        [sys.executable, "-m", "acquirer_stub.cli", "serve", "--instance", str(instance_root),
         "--listen", f"127.0.0.1:{port}", "--web-listen", web_listen, "--workers", str(workers)],
        stdout=output, stderr=output,
    )
    deadline = time.monotonic() + 60
    waiting = [p for p in (port, web_port) if p is not None]
    while waiting and time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{waiting[0]}/health", timeout=1):
                waiting.pop(0)
        except OSError:
            time.sleep(0.05)
    if not waiting:
        return ServedAcquirer(process, port, web_port)
    process.kill()
    process.wait()
    raise AssertionError("the acquirer stub did not start")


@contextlib.contextmanager
def served_in_thread(app: Any, serving: Serving | None = None) -> Iterator[int]:
    """`app` served by `acquirer_stub.serving.create_server` (with `serving`, or its defaults) on a thread of this
    process, on a free port; yields the port, closes the server after."""
    server = create_server(app, "127.0.0.1", 0, serving)
    thread = threading.Thread(target=server.run, name="acquirer-stub-waitress", daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.close()
        thread.join(timeout=10)


def process_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (VmRSS) or at its peak so far (VmHWM), in MB, from /proc."""
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


class HostServer:
    """The acquirer app on a real port; stop() and start() again keep the port, so a terminal can see its host
    go down and come back at the same address."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        assert self._server is None, "already running"
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="acquirer-stub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None, "not running"
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None
