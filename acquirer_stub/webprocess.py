"""The web listener (dashboard, cardholder pages, logins, live feeds, token service) in a process of its own.

Why a process: a login flood, or any busy page, holds the interpreter lock of the process that serves it; the
terminal API must not wait for it (see `acquirer_stub.serving`). Both processes open the same instance and the
same SQLite file: the store already coordinates writers across processes (BEGIN IMMEDIATE, busy_timeout), and the
counters that throttle logins live in that database.

The parent (`acquirer-stub serve`, which serves the terminal API) starts the child and restarts it if it dies: the
API keeps answering whatever happens to the pages. The child runs at a lower CPU priority and ends when the parent
does (it watches a pipe from the parent: end of file means the parent is gone, even after a SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from pathlib import Path

from acquirer_stub.serving import Serving, lower_priority

log = logging.getLogger(__name__)

START_SECONDS = 60.0  # a cold Python and Flask on a Pi Zero take a few seconds; a bound, not a target
RESTART_SECONDS = (1.0, 30.0)  # the first wait before a restart, and the longest (doubling in between)


class WebProcessError(RuntimeError):
    """The web listener could not start (its port taken, its instance unreadable)."""


def _serve(root: str, host: str, port: int, api_url: str, parent: multiprocessing.connection.Connection) -> None:
    """The child: serve the web listener until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    lower_priority(Serving().web_niceness)  # before any thread starts: they inherit it
    try:
        from acquirer_stub.app import create_app
        from acquirer_stub.serving import create_server

        server = create_server(create_app(Path(root)), host, port, serves="web",
                               elsewhere=f"the terminal API is on {api_url}")
    except Exception as error:  # told to the parent, which says it to the operator
        parent.send(("error", str(getattr(error, "strerror", None) or error)))
        return
    parent.send(("listening", server.effective_port))
    threading.Thread(target=_exit_with_parent, args=(parent,), name="acquirer-web-parent", daemon=True).start()
    server.run()


def _exit_with_parent(parent: multiprocessing.connection.Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        parent.recv()
    os._exit(0)  # nothing to flush: every commit is already on disk


class WebProcess:
    """The web listener's process, started by `start()`, kept running (restarted after a crash) until `stop()`."""

    def __init__(self, root: Path, host: str, port: int, api_url: str) -> None:
        self._args = (str(root), host, port, api_url)
        self._context = multiprocessing.get_context("spawn")  # not fork: the parent may run threads
        self._process: multiprocessing.process.BaseProcess | None = None
        self._link: multiprocessing.connection.Connection | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.port = port

    def start(self) -> int:
        """Start the child and wait until it listens; its port. Raises WebProcessError."""
        self.port = self._spawn()
        self._args = (*self._args[:2], self.port, self._args[3])  # a restart binds the same port again
        self._watcher = threading.Thread(target=self._watch, name="acquirer-web-watch", daemon=True)
        self._watcher.start()
        return self.port

    def _spawn(self) -> int:
        link, child_end = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(*self._args, child_end), name="acquirer-web",
                                        daemon=False)
        process.start()
        child_end.close()
        self._process, self._link = process, link
        try:
            if not link.poll(START_SECONDS):
                raise WebProcessError(f"the web listener did not start within {START_SECONDS:g} s")
            what, detail = link.recv()
        except EOFError:
            what, detail = "error", f"the web listener's process ended (exit code {process.exitcode})"
        if what != "listening":
            self._end_child()
            host, port = self._args[1:3]
            raise WebProcessError(f"web listener on {host}:{port}: {detail}")
        return int(detail)

    def _watch(self) -> None:
        wait = RESTART_SECONDS[0]
        while not self._stopping.is_set():
            assert self._process is not None
            self._process.join()
            if self._stopping.wait(wait):
                return
            log.error("the web listener's process ended (exit code %s); starting it again", self._process.exitcode)
            try:
                self._spawn()
                wait = RESTART_SECONDS[0]
            except WebProcessError as error:
                log.error("%s; trying again in %g s", error, wait)
                wait = min(2 * wait, RESTART_SECONDS[1])

    def _end_child(self) -> None:
        if self._link is not None:
            self._link.close()  # the child sees end of file and exits
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()

    def stop(self) -> None:
        self._stopping.set()
        self._end_child()
        if self._watcher is not None:
            self._watcher.join(10)
