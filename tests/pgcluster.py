"""A throw-away PostgreSQL cluster for the tests (issue #13 §2): Debian's server binaries, a folder of its own under
/tmp, a Unix socket only, settings that trade durability for speed (unless `durable=True`, as the benchmark asks).
Nothing here is for production.

initdb refuses to run as root, and the tests run as root in CI, so the server side (initdb, pg_ctl) runs as the
`postgres` system user through runuser in a folder that user owns; pytest's own tmp folders (/tmp/pytest-of-root)
are not traversable by it. The clients (psql, createdb, dropdb) run as the current user: root reads any folder, and a
non-root user owns the folder itself. Authentication is `trust`, which is safe only because the socket lives in a
0700 folder and the server listens on no TCP address.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

SERVER_USER = "postgres"
SUPERUSER = "postgres"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): the folder is ours, so no clash with another cluster

# Durability off (fsync, synchronous_commit, full_page_writes) is acceptable for this cluster only: it is thrown
# away at the end of the session and a crash only loses test data.
TEST_SETTINGS: dict[str, str] = {
    "listen_addresses": "",
    "port": str(PORT),
    "max_connections": "200",
    "shared_buffers": "32MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "unix_socket_permissions": "0700",
    "log_min_messages": "warning",
}
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
"""The settings `Cluster(durable=True)` leaves at PostgreSQL's defaults (on): a commit is on disk before it
returns, as SQLite's synchronous=FULL (the benchmark's cluster)."""

MISSING = ("PostgreSQL's server binaries (initdb, pg_ctl) are missing: install Debian's package `postgresql` "
           "(apt-get install postgresql, or run scripts/test, which installs it)")


class ClusterError(RuntimeError):
    """The cluster could not be set up, started or driven; the message says why in one line (plus the log)."""


def find_bindir() -> Path:
    """The server's bin folder: Debian keeps it off PATH under /usr/lib/postgresql/<major>/bin (highest major
    wins); elsewhere initdb is on PATH."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        def major(path: str) -> tuple[int, ...]:
            return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.parent.name))
        return Path(max(found, key=major)).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterError(MISSING)


def clean_environment() -> dict[str, str]:
    """The environment without PG* variables: a PGHOST, PGPORT or PGDATABASE from the caller's shell must not
    steer the clients to another server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class Cluster:
    """One PostgreSQL cluster in a fresh folder under /tmp: `start()`, then `url()`, `create_database()`,
    `drop_database()`, `psql()`; `stop()` kills it and removes the folder. Also a context manager."""

    def __init__(self, *, timeout: float = 60.0, durable: bool = False,
                 settings: dict[str, str] | None = None) -> None:
        self.timeout = timeout
        self.durable = durable
        self.settings = dict(settings or {})
        self.bindir = find_bindir()
        self._as_server = os.geteuid() == 0
        self.root: Path | None = None
        self.start_seconds: float | None = None

    @property
    def datadir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root()

    @property
    def logfile(self) -> Path:
        return self._root() / "server.log"

    def _root(self) -> Path:
        if self.root is None:
            raise ClusterError("the cluster is not started")
        return self.root

    def _binary(self, name: str) -> str:
        path = self.bindir / name
        if not path.exists():
            found = shutil.which(name)
            if not found:
                raise ClusterError(f"{name}: {MISSING}")
            return found
        return str(path)

    def _server(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server-side binary: as `postgres` through runuser when we are root (initdb refuses root)."""
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self._as_server else []
        return subprocess.run(prefix + args, cwd=self._root(), env=clean_environment(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def _client(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(args, cwd=self._root(), env=clean_environment(), capture_output=True, text=True,
                                timeout=timeout or self.timeout, check=False)
        if result.returncode != 0:
            raise ClusterError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def start(self) -> Cluster:
        """initdb (trust, no sync) and pg_ctl start -w (durable: fsync and synchronous commits at their defaults);
        on failure the folder goes and the error carries the log."""
        if self.root is not None:
            raise ClusterError(f"the cluster is already started in {self.root}")
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="pgcluster-", dir="/tmp"))
        try:
            os.chmod(self.root, 0o700)
            if self._as_server:
                try:
                    user = pwd.getpwnam(SERVER_USER)
                except KeyError:
                    raise ClusterError(f"no `{SERVER_USER}` system user to run the server as (root cannot): "
                                       "install Debian's package `postgresql`, which creates it") from None
                os.chown(self.root, user.pw_uid, user.pw_gid)
            result = self._server([self._binary("initdb"), "-D", str(self.datadir), "-A", "trust", "-U", SUPERUSER,
                                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], self.timeout)
            if result.returncode != 0:
                raise ClusterError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")
            settings = dict(TEST_SETTINGS, unix_socket_directories=str(self.socket_dir))
            if self.durable:
                for name in DURABILITY:
                    del settings[name]
            settings.update(self.settings)
            options = " ".join(f"-c {name}={shlex.quote(value)}" for name, value in settings.items())
            result = self._server([self._binary("pg_ctl"), "start", "-w", "-t", str(int(self.timeout)),
                                   "-D", str(self.datadir), "-l", str(self.logfile), "-o", options],
                                  self.timeout + 10)
            if result.returncode != 0:
                log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
                raise ClusterError(f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n{log}")
        except BaseException:
            self._kill_and_remove()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL on the socket, e.g. postgresql://postgres@/app?host=/tmp/pgcluster-x&port=5432."""
        return f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}?host={quote(str(self.socket_dir))}&port={PORT}"

    def _connect_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER]

    def create_database(self, name: str, template: str | None = None) -> str:
        """createdb (optionally from a template database, the fast way to a fresh schema); returns its URL."""
        args = [self._binary("createdb"), *self._connect_args()]
        if template is not None:
            args += ["-T", template]
        self._client([*args, "--", name])
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """dropdb --force: a test that leaked a connection must not keep its database alive."""
        self._client([self._binary("dropdb"), *self._connect_args(), "--force", "--if-exists", "--", name])

    def psql(self, dbname: str, sql: str) -> str:
        """One statement through psql on the URL, unaligned and tuples only (no ~/.psqlrc); its output."""
        result = self._client([self._binary("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql,
                               self.url(dbname)])
        return result.stdout.strip()

    def stop(self) -> None:
        """pg_ctl stop -m immediate (the data is thrown away, no checkpoint needed) and remove the folder.
        Idempotent."""
        if self.root is None:
            return
        self._kill_and_remove()

    def _kill_and_remove(self) -> None:
        root = self.root
        if root is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._server([self._binary("pg_ctl"), "stop", "-m", "immediate", "-w", "-t", str(int(self.timeout)),
                              "-D", str(self.datadir)], self.timeout + 10)
        finally:
            self.root = None
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One cluster for the session; each test makes its own databases (create_database, from a template)."""
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
