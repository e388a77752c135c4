"""The demo's stack: a fresh test world, the acquirer stub, the software PN532 (two readers, one field) and the
terminal service, started in order and always stopped again.

The acquirer stub and the terminal service are child processes, each in its own process group (so a Ctrl-C
in the shell reaches this process only, and it stops them in order). The software PN532 runs in this process,
so the story can hold the phone in the field and touch its fingerprint sensor directly; its control socket
lets people do the same from another shell with `pos-card … --control var/demo/pn532-pos.ctl`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from firmware.issuing.build import create_world
from firmware.issuing.layout import GATE_CONFIG, World
from firmware.privatefiles import private_dir, private_file
from firmware.simulator.control import ControlServer
from firmware.simulator.rig import SoftwareRig
from terminal.config import load_config
from terminal.host.client import HostClient, HostError
from terminal.host.link import ECHO

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "var" / "demo"
HOST, ACQUIRER_PORT, ECR_PORT, WEB_PORT = "127.0.0.1", 8380, 8381, 8382
ACQUIRER_URL = f"http://{HOST}:{ACQUIRER_PORT}"  # the terminal API (the terminals' [host] url)
WEB_URL = f"http://{HOST}:{WEB_PORT}"  # the acquirer's dashboard, cardholder pages and token service
ECR_URL = f"http://{HOST}:{ECR_PORT}"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
ACQUIRER_PAGE_MARK = "<strong>QuickPass acquirer stub</strong>"  # the header of every page of the stub (base.html)


class DemoError(Exception):
    """The demo cannot start or went wrong; the message is for a person."""


class Stopped(Exception):
    """SIGTERM (or a second signal): stop everything."""


def port_in_use(port: int, host: str = HOST) -> bool:
    """Would a server fail to listen on host:port? (SO_REUSEADDR, like waitress, so TIME_WAIT does not count.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def is_our_acquirer(url: str, tid: str, key: bytes) -> bool:
    """Does the terminal API at `url` answer a signed echo from this world's terminal? Only an acquirer loaded from
    the same world can (a foreign server answers 200 to anything; the key itself never leaves). Raises HostError when
    nothing answers."""
    client = HostClient(url, tid, key, timeout=2.0)
    quiet = logging.getLogger("terminal.host")  # its warnings are a terminal's; here every poll would print one
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        answer = client.post(ECHO, {"mti": "0800", "tid": tid, "stan": "000001",
                                    "local_date": time.strftime("%m%d")})
    except HostError as error:
        if error.maybe_processed or getattr(error, "status", None) is not None:  # it answered, not as ours
            return False
        raise
    finally:
        quiet.disabled = was_disabled
    return answer.get("rc") == "00"


def is_our_web(url: str) -> bool:
    """Is the page at `url` (the login page) the acquirer stub's? No credentials are sent to find out. Raises OSError
    when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:
            page = answer.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError:
        return False  # something answers there, with an error: not our login page
    return ACQUIRER_PAGE_MARK in page and 'name="csrf_token"' in page


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the demo itself is killed (SIGKILL leaves no time to clean up)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Stack:
    """Everything the story needs; `start()` then `stop()` (always, from a finally)."""

    def __init__(self, demo_dir: Path = DEMO_DIR, *, say: Any = print) -> None:
        self.dir = demo_dir
        self.say = say
        self.world_dir = demo_dir / "world"
        self.instance = demo_dir / "acquirer"
        self.pos_link = demo_dir / "pn532-pos"
        self.gate_link = demo_dir / "pn532-gate"
        self.control_path = demo_dir / "pn532-pos.ctl"
        self.gate_config = demo_dir / "gate.toml"
        self.lock_path = demo_dir / "demo.lock"
        self.world: World | None = None
        self.phone: Path | None = None
        self.rig: SoftwareRig | None = None
        self._control: ControlServer | None = None
        self._lock: IO[str] | None = None
        self._children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._logs: list[IO[bytes]] = []
        self._links_ours = False  # the pn532-* links are this run's (another run's must outlive our failed start)

    # -- start -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._take_lock()
        for port, what in ((ACQUIRER_PORT, "the acquirer's terminal API"), (ECR_PORT, "the terminal's local ECR"),
                           (WEB_PORT, "the acquirer's dashboard")):
            if port_in_use(port):
                raise DemoError(f"port {port} is in use ({what} needs it): stop whatever listens there "
                                f"(see `ss -ltnp 'sport = :{port}'`) and start the demo again")
        self.say(f"test world: a fresh one in {self._rel(self.world_dir)} …")
        self.phone = create_world(self.world_dir, force=True)
        self.world = World.open(self.world_dir)
        self._acquirer()
        self._pn532()
        self._link_gate_config()
        self._terminal()

    def _take_lock(self) -> None:
        private_dir(self.dir, ours=True)  # the world's keys, the acquirer's database, the logs: the user's alone
        handle = open(private_file(self.lock_path), "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            handle.close()
            raise DemoError(f"a demo is already running (pid {pid}); stop it with Ctrl-C there "
                            f"(or kill {pid}) first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _acquirer(self) -> None:
        init = subprocess.run(
            [sys.executable, "-m", "acquirer_stub.cli", "init", "--world", str(self.world_dir),
             "--instance", str(self.instance), "--listen", f"{HOST}:{ACQUIRER_PORT}",
             "--web-listen", f"{HOST}:{WEB_PORT}", "--force"],
            capture_output=True, text=True, cwd=ROOT, check=False,
        )
        if init.returncode != 0:
            raise DemoError(f"acquirer-stub init failed: {init.stderr.strip() or init.stdout.strip()}")
        self._spawn("acquirer stub", [sys.executable, "-m", "acquirer_stub.cli", "serve",
                                      "--instance", str(self.instance)])
        config = load_config(self.world_dir / "terminal.toml")
        tid, key = config.terminal.id, config.host.key
        self._wait_for("acquirer stub", ACQUIRER_URL, lambda: is_our_acquirer(ACQUIRER_URL, tid, key))
        self._wait_for("acquirer stub", f"{WEB_URL}/login", lambda: is_our_web(f"{WEB_URL}/login"))
        self.say(f"acquirer stub: terminal API {ACQUIRER_URL}/, dashboard {WEB_URL}/dashboard/  "
                 f"(log: {self._rel(self._log_path('acquirer stub'))})")

    def _pn532(self) -> None:
        for link in (self.pos_link, self.gate_link):  # we hold the lock: a link here is a killed run's leftover
            if link.is_symlink():
                link.unlink()
        self._links_ours = True
        self.rig = SoftwareRig([self.pos_link, self.gate_link])
        self._control = ControlServer(self.control_path, self.rig)
        assert self.phone is not None
        self.rig.present(self.phone)
        self.say(f"software PN532: {self._rel(self.pos_link)} (shop counter) and {self._rel(self.gate_link)} "
                 f"(metro gate), one field; the demo phone is in reach")
        self.say(f"  control socket: {self._rel(self.control_path)}  "
                 f"(e.g. pos-card fingerprint --control {self._rel(self.control_path)})")

    def _link_gate_config(self) -> None:
        """The world made the gate's config (its own TID and key, known to the acquirer); gate.toml here is a
        link to it, so `pos-terminal --config var/demo/gate.toml` reads it with the world's relative paths."""
        target = self.world_dir / GATE_CONFIG
        if not target.is_file():
            raise DemoError(f"the world has no {GATE_CONFIG}; cannot configure the metro gate")
        with contextlib.suppress(FileNotFoundError):
            self.gate_config.unlink()
        self.gate_config.symlink_to(Path(self.world_dir.name) / GATE_CONFIG)

    @property
    def ecr_secret(self) -> str:
        """The terminal's [ecr] secret: the demo's register (the story) sends it with each local sale."""
        secret = load_config(self.world_dir / "terminal.toml").ecr.secret
        if secret is None:
            raise DemoError("the world's terminal.toml has no [ecr] secret")
        return secret

    def _terminal(self) -> None:
        config = self.world_dir / "terminal.toml"
        tid = load_config(config).terminal.id
        self._spawn("terminal", [sys.executable, "-m", "terminal.cli", "--config", str(config), "run"])

        def ready() -> bool | None:  # None: ours, still starting
            try:
                status = get_json(f"{ECR_URL}/status", timeout=1.0)
            except (urllib.error.HTTPError, ValueError):  # an answer, but not our status object
                return False
            if status.get("tid") != tid:
                return False
            return True if status.get("state") == "idle" else None

        self._wait_for("terminal service", f"{ECR_URL}/status", ready, child="terminal")
        self.say(f"terminal service: local ECR {ECR_URL}/sale, status {ECR_URL}/status, customer display "
                 f"{ECR_URL}/display  (log: {self._rel(self._log_path('terminal'))})")

    # -- children ----------------------------------------------------------------------------------------------

    def _log_path(self, name: str) -> Path:
        return self.dir / f"{name.split()[0]}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = private_file(self._log_path(name))
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # its own process group: Ctrl-C reaches the demo, which stops it in order
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._children.append((name, process, log_path))

    def _check_alive(self, name: str) -> None:
        for child, process, log_path in self._children:
            if child == name and process.poll() is not None:
                tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
                raise DemoError(f"the {name} exited (status {process.returncode}); {self._rel(log_path)}:\n{tail}")

    def _wait_for(self, name: str, url: str, is_ours: Callable[[], bool | None], *, child: str | None = None,
                  timeout: float = START_TIMEOUT) -> None:
        """Until `is_ours()` says True: our child answers at `url`. False means another program answers there;
        None ours, not ready yet; an exception (OSError, HostError, ValueError) nothing usable yet."""
        deadline = time.monotonic() + timeout
        foreign = False
        while True:
            self._check_alive(child or name)
            try:
                verdict = is_ours()
            except (OSError, HostError, ValueError):
                verdict = None
            if verdict:
                return
            foreign = foreign or verdict is False
            if time.monotonic() > deadline:
                if foreign:
                    raise DemoError(f"another program answers at {url}, not the demo's {name}: stop it "
                                    f"(see `ss -ltnp`) and start the demo again")
                raise DemoError(f"the {name} did not answer {url} within {timeout:.0f} s; "
                                f"see {self._rel(self._log_path(child or name))}")
            time.sleep(0.1)

    def dead_children(self) -> list[str]:
        return [name for name, process, _ in self._children if process.poll() is not None]

    # -- stop --------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Terminal first (it finishes a sale in flight), then the host, the rig, the lock. Never raises."""
        for name, process, _ in reversed(self._children):
            with contextlib.suppress(Exception):
                self._stop_child(name, process)
        self._children.clear()
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        self._logs.clear()
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.close()
            self._control = None
        if self.rig is not None:
            with contextlib.suppress(Exception):
                self.rig.close()
            self.rig = None
        for link in (self.pos_link, self.gate_link) if self._links_ours else ():
            if link.is_symlink():
                with contextlib.suppress(OSError):
                    link.unlink()
        self._links_ours = False
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None

    @staticmethod
    def _stop_child(name: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)

    @staticmethod
    def _rel(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)


def get_json(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        data = json.loads(answer.read())
    if not isinstance(data, dict):
        raise ValueError(f"{url}: not a JSON object")
    return data


def post_json(url: str, body: dict[str, Any], *, secret: str, timeout: float = 90.0) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")
