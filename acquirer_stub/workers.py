"""The terminal API in several worker processes (gunicorn), for an acquirer that one process cannot carry.

`acquirer-stub serve --workers N` binds the listening socket first (a taken port is an error at once, port 0 picks a
free one) and starts the web process, then runs gunicorn's arbiter in a process of its own (`main` here, the socket
passed down by its descriptor): the arbiter forks N workers that each build their own app (their own database
pool: a connection is never shared across a fork) and serve the API on that socket with `api_threads` threads
each, behind the same `Admission` as the one-process server. Its own process, because a forked worker would
otherwise inherit the web process as a child it cannot stop or wait for. Several processes on one SQLite file
are safe (its write lock is the file's), but they decide one at a time; on PostgreSQL they decide side by side.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from acquirer_stub.serving import Admission, Serving


class ApiWorkers(BaseApplication):  # type: ignore[misc]
    def __init__(self, root: Path, listener: socket.socket, workers: int, elsewhere: str | Callable[[], str],
                 serving: Serving | None = None) -> None:
        self.root = root
        self.listener = listener
        self.workers = workers
        self.elsewhere = elsewhere
        self.serving = serving or Serving()
        super().__init__()

    def load_config(self) -> None:
        settings = {
            "bind": [f"fd://{self.listener.fileno()}"],
            "workers": self.workers,
            "worker_class": "gthread",
            "threads": self.serving.api_threads,
            "worker_connections": self.serving.connection_limit,
            "keepalive": self.serving.channel_timeout,
            "graceful_timeout": 10,
            "timeout": 60,
            "proc_name": "acquirer-stub-api",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from acquirer_stub.app import create_app

        return Admission(create_app(self.root), self.serving, "api", self.elsewhere)


def main(argv: list[str]) -> int:
    """The arbiter's process: `python -m acquirer_stub.workers ROOT FD WORKERS ELSEWHERE` (from `cli`)."""
    root, descriptor, workers, elsewhere = argv
    listener = socket.socket(fileno=int(descriptor))
    ApiWorkers(Path(root), listener, int(workers), elsewhere).run()  # returns by SystemExit when stopped
    return 0


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, inherited by every worker."""
    listener = socket.create_server((host, port), backlog=2048, reuse_port=False)
    listener.set_inheritable(True)
    return listener


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
