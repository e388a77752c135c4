"""A stand-in for systemd's service manager, playing its documented role for the few directives it reads.

Why a stand-in and not systemd: no real service manager can run in the test machine without privileges.
`systemd --user` (and so `systemd-run --user`) exits at once with "Trying to run as user instance, but the
system has not been booted with systemd" on a machine (container, CI runner) whose PID 1 is not systemd,
and systemd as PID 1 of a private PID namespace needs root, a cgroup hierarchy of its own and a console; in
the development VM it hung without a line of output. So this module does, for one unit, what
systemd.service(5), systemd.kill(5), sd_notify(3) and sd_watchdog_enabled(3) say the manager does:

* ``Type=notify`` (only that): start ``ExecStart=`` with ``$NOTIFY_SOCKET`` naming a real AF_UNIX datagram
  socket, the service is started when a datagram with ``READY=1`` arrives (within ``TimeoutStartSec=``);
  ``NotifyAccess=main`` (the default for Type=notify): datagrams whose SCM_CREDENTIALS pid is not the
  main process are ignored, as systemd does;
* ``WatchdogSec=``: ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` in the environment; the timer is armed when the
  service is up and re-armed by every ``WATCHDOG=1``; when it runs out, the main process gets
  ``WatchdogSignal=`` (SIGABRT by default) followed by SIGCONT, as systemd's kill_and_sigcont() does so that a
  stopped process sees it, and SIGKILL after ``TimeoutAbortSec=`` (default ``TimeoutStopSec=``);
* ``Restart=`` and ``RestartSec=``: after the main process ended, the table of systemd.service(5)
  ("Table 2. Exit causes and the effect of the Restart= settings") decides on a restart;
* ``KillSignal=`` (SIGTERM) followed by SIGCONT and ``TimeoutStopSec=`` for a stop, which never restarts;
* ``Environment=`` assignments.

Drop-ins are read like systemd reads them (later files win, an empty assignment resets a list), which is how a
test shortens ``WatchdogSec=`` or points ``ExecStart=`` at the development venv without editing the unit.
Everything else (User=, the sandbox, DeviceAllow=) is not run here: `systemd-analyze verify` checks those
directives, and only a Pi shows them working (docs/raspberry-pi.md). No start rate limit (StartLimitBurst=).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Event", "ServiceManager", "Unit", "parse_timespan", "should_restart"]

LIST_KEYS = {"ExecStart", "Environment", "DeviceAllow"}
HONOURED = {"Type", "NotifyAccess", "ExecStart", "WatchdogSec", "WatchdogSignal", "Restart", "RestartSec",
            "TimeoutStartSec", "TimeoutStopSec", "TimeoutAbortSec", "KillSignal", "Environment"}
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}  # systemd.service(5)
TIMESPAN_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0, "second": 1.0,
                  "seconds": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0,
                  "hr": 3600.0, "hour": 3600.0, "hours": 3600.0}


def parse_timespan(text: str) -> float:
    """systemd.time(7) time spans in seconds: "60", "1min 30s", "500ms"; a bare number is seconds."""
    text = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)", text)
    if not parts or re.sub(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)|\s", "", text):
        raise ValueError(f"{text!r} is not a systemd time span")
    try:
        return sum(float(number) * TIMESPAN_UNITS[unit] for number, unit in parts)
    except KeyError as error:
        raise ValueError(f"{text!r}: unknown time unit {error}") from None


def should_restart(policy: str, cause: str) -> bool:
    """systemd.service(5), Table 2. `cause`: clean (exit 0 or a clean signal), exit-code (unclean exit code),
    signal (an unclean signal, e.g. SIGABRT or SIGKILL), timeout, watchdog."""
    table = {
        "no": set(),
        "always": {"clean", "exit-code", "signal", "timeout", "watchdog"},
        "on-success": {"clean"},
        "on-failure": {"exit-code", "signal", "timeout", "watchdog"},
        "on-abnormal": {"signal", "timeout", "watchdog"},
        "on-abort": {"signal"},
        "on-watchdog": {"watchdog"},
    }
    if policy not in table:
        raise ValueError(f"Restart={policy} is not a systemd restart policy")
    return cause in table[policy]


class Unit:
    """The [Service] section of a unit file and its drop-ins, as systemd merges them."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.values: dict[str, list[str]] = {}
        for path in paths:
            section = ""
            for raw in Path(path).read_text().splitlines():
                line = raw.strip()
                if not line or line[0] in "#;":
                    continue
                if line.startswith("["):
                    section = line.strip("[]")
                    continue
                if section != "Service":
                    continue
                key, _, value = line.partition("=")
                key, value = key.strip(), value.strip()
                if key in LIST_KEYS:
                    if value:
                        self.values.setdefault(key, []).append(value)
                    else:
                        self.values[key] = []
                else:
                    self.values[key] = [value]

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.values.get(key)
        return values[-1] if values else default

    def seconds(self, key: str, default: str) -> float:
        return parse_timespan(self.get(key, default) or default)

    def signal(self, key: str, default: str) -> signal.Signals:
        name = self.get(key, default) or default
        return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]

    def exec_start(self) -> list[str]:
        commands = self.values.get("ExecStart", [])
        if len(commands) != 1:
            raise ValueError(f"Type=notify needs exactly one ExecStart=, the unit has {len(commands)}")
        if commands[0][0] in "-@:+!":
            raise ValueError(f"ExecStart= prefix {commands[0][0]!r} is not supported by this stand-in")
        return shlex.split(commands[0])

    def environment(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for line in self.values.get("Environment", []):
            for item in shlex.split(line):
                name, _, value = item.partition("=")
                pairs[name] = value
        return pairs


@dataclass
class Event:
    what: str  # start, ready, watchdog, status, watchdog-timeout, exit, restart, stopped, ignored
    pid: int
    detail: str = ""
    at: float = field(default_factory=time.monotonic)


class ServiceManager:
    """Runs one Type=notify unit like systemd would; `events` is what happened, in order."""

    def __init__(self, unit: Unit, folder: Path, env: dict[str, str] | None = None,
                 stderr: Path | None = None) -> None:
        if unit.get("Type") != "notify":
            raise ValueError(f"this stand-in runs Type=notify units only, not Type={unit.get('Type')}")
        if (unit.get("NotifyAccess") or "main") != "main":
            raise ValueError("this stand-in implements NotifyAccess=main only")
        self.unit = unit
        self.argv = unit.exec_start()
        self.watchdog_sec = unit.seconds("WatchdogSec", "0")
        self.watchdog_signal = unit.signal("WatchdogSignal", "SIGABRT")
        self.kill_signal = unit.signal("KillSignal", "SIGTERM")
        self.restart = unit.get("Restart", "no") or "no"
        should_restart(self.restart, "clean")  # an unknown policy fails now
        self.restart_sec = unit.seconds("RestartSec", "100ms")
        self.start_timeout = unit.seconds("TimeoutStartSec", "90s")
        self.stop_timeout = unit.seconds("TimeoutStopSec", "90s")
        self.abort_timeout = unit.seconds("TimeoutAbortSec", unit.get("TimeoutStopSec", "90s") or "90s")
        self.env = {**(os.environ if env is None else env), **unit.environment()}
        self.stderr_path = stderr
        self.events: list[Event] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._socket_path = str(folder / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._socket_path)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._supervise, name="service-manager", daemon=True)

    # -- what a test uses ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def stop(self) -> None:
        """`systemctl stop`: KillSignal=, then SIGKILL after TimeoutStopSec=; no restart."""
        self._stop.set()
        self._thread.join(self.stop_timeout + 10)
        self._sock.close()

    def wait_for(self, condition: Callable[[list[Event]], bool], seconds: float, what: str) -> list[Event]:
        deadline = time.monotonic() + seconds
        with self._changed:
            while not condition(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {seconds} s waiting for {what}; events: "
                                         + ", ".join(f"{e.what}({e.pid}{' ' + e.detail if e.detail else ''})"
                                                     for e in self.events))
                self._changed.wait(min(left, 0.1))
            return list(self.events)

    @property
    def main_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    # -- the manager's side -------------------------------------------------------------------------------------

    def _note(self, what: str, pid: int, detail: str = "") -> None:
        with self._changed:
            self.events.append(Event(what, pid, detail))
            self._changed.notify_all()

    def _spawn(self) -> None:
        env = {**self.env, "NOTIFY_SOCKET": self._socket_path}
        env.pop("WATCHDOG_USEC", None)
        env.pop("WATCHDOG_PID", None)
        argv = self.argv
        if self.watchdog_sec > 0:
            env["WATCHDOG_USEC"] = str(round(self.watchdog_sec * 1_000_000))
            # systemd sets WATCHDOG_PID to the main pid in the forked child; a shell that execs does the same
            argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"', *argv]
        stderr = self.stderr_path.open("ab") if self.stderr_path is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                            start_new_session=True)
        finally:
            if self.stderr_path is not None:
                stderr.close()  # type: ignore[union-attr]
        self._note("start", self.process.pid)

    def _receive(self) -> list[str] | None:
        """One datagram's lines from the main process, or None (nothing came, or a foreign sender)."""
        try:
            data, ancillary, _flags, _address = self._sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except TimeoutError:
            return None
        sender = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                sender = struct.unpack("3i", payload[:12])[0]
        if sender != self.main_pid:  # NotifyAccess=main
            self._note("ignored", sender or 0, data.decode(errors="replace"))
            return None
        return data.decode(errors="replace").split("\n")

    def _supervise(self) -> None:
        while True:
            cause = self._run_once()
            if cause is None:  # stopped on request
                return
            if not should_restart(self.restart, cause):
                self._note("stopped", self.main_pid, cause)
                return
            if self._stop.wait(self.restart_sec):
                self._note("stopped", self.main_pid, "stop requested during RestartSec")
                return
            self._note("restart", self.main_pid, cause)
            self._spawn()

    def _run_once(self) -> str | None:
        """Supervise the current main process until it ends; the exit cause, or None after a stop request."""
        assert self.process is not None
        process, pid = self.process, self.process.pid
        started = time.monotonic()
        ready = False
        last_ping = 0.0
        while True:
            if self._stop.is_set():
                self._terminate(process, self.kill_signal, self.stop_timeout)
                self._note("exit", pid, self._describe(process.returncode))
                self._note("stopped", pid, "stop requested")
                return None
            lines = self._receive()
            now = time.monotonic()
            if lines is not None:
                if "READY=1" in lines and not ready:
                    ready, last_ping = True, now  # the watchdog runs from here on
                    self._note("ready", pid)
                if "WATCHDOG=1" in lines:
                    last_ping = now
                    self._note("watchdog", pid)
                for line in lines:
                    if line.startswith("STATUS="):
                        self._note("status", pid, line[7:])
            code = process.poll()
            if code is not None:
                self._note("exit", pid, self._describe(code))
                if code == 0 or (code < 0 and signal.Signals(-code) in CLEAN_SIGNALS):
                    return "clean"
                return "exit-code" if code > 0 else "signal"
            if not ready and now - started > self.start_timeout:
                self._note("start-timeout", pid)
                self._terminate(process, self.kill_signal, self.stop_timeout)
                self._note("exit", pid, self._describe(process.returncode))
                return "timeout"
            if ready and self.watchdog_sec > 0 and now - last_ping > self.watchdog_sec:
                self._note("watchdog-timeout", pid, f"no WATCHDOG=1 for {self.watchdog_sec:g} s")
                self._terminate(process, self.watchdog_signal, self.abort_timeout)
                self._note("exit", pid, self._describe(process.returncode))
                return "watchdog"

    @staticmethod
    def _terminate(process: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
        """The signal, then SIGCONT (systemd's kill_and_sigcont), then SIGKILL when the timeout runs out."""
        if process.poll() is None:
            process.send_signal(sig)
            process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @staticmethod
    def _describe(code: int | None) -> str:
        if code is None:
            return "running"
        return f"status={code}" if code >= 0 else f"signal={signal.Signals(-code).name}"
