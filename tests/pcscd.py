"""A pcscd of the test's own with vsmartcard's virtual reader (Debian `pcscd`, `vsmartcard-vpcd`), for the PC/SC
tests (issue #16; doc pcsc.md): `pcscd -f -c reader.conf` with one reader entry on a private port.

pcscd's socket is fixed (/run/pcscd/pcscd.comm; pcsc-lite 1.9.9's daemon does not read PCSCLITE_CSOCK_NAME), so
there is one pcscd per machine: a test takes a machine-wide lock, starts it, and stops it at its end (tests run in
several processes). It runs as root (CI does; elsewhere through `sudo -n`). vpcd listens for the card on the private
port and the next one (its two slots) on every interface: the card side connects over the loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK = Path("/tmp/quickpass-pcscd.lock")
SOCKET = Path("/run/pcscd/pcscd.comm")
PID_FILE = Path("/run/pcscd/pcscd.pid")
DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
READER = "QuickPass virtual reader"
SLOT = f"{READER} 00 00"  # pcscd names a driver's slots "<friendly name> <reader> <slot>"
READY_SECONDS = 15.0
LISTEN_SECONDS = 3.0  # from pcscd's socket to vpcd's listener: it loads its drivers before it serves
ATTEMPTS = 3


@dataclass(frozen=True)
class Pcscd:
    port: int  # vpcd's first slot: where the card side connects
    log: Path
    slot: str = SLOT


@contextlib.contextmanager
def no_pcscd() -> Iterator[None]:
    """No pcscd on this machine meanwhile: the tests' take turns with it (for what happens without one)."""
    with _machine_lock():
        yield


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _refuse_a_pcscd_already_running()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def running_pcscd(folder: Path) -> Iterator[Pcscd]:
    folder.mkdir(parents=True, exist_ok=True)
    with _machine_lock():
        for _ in range(ATTEMPTS):  # another process may take the free ports before vpcd binds them: new ones
            port = _two_free_ports()
            process, log = _start(folder, port)
            if _wait_ready(process, port, log):
                break
            _stop(process)
        else:
            raise RuntimeError(f"vpcd did not listen on its port in {ATTEMPTS} tries: {log.read_text()[-2000:]}")
        try:
            yield Pcscd(port, log)
        finally:
            _stop(process)


def _start(folder: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    config = folder / "reader.conf"
    config.write_text(f'FRIENDLYNAME "{READER}"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {DRIVER}\n'
                      f"CHANNELID 0x{port:04X}\n")
    log = folder / "pcscd.log"
    command = ["pcscd", "--foreground", "--config", str(config)]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    with log.open("w") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), log


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _pid() -> int:
    """pcscd's pid from its pid file (pcsc-lite 1.9.9 writes it with a newline and a NUL)."""
    return int(PID_FILE.read_bytes().strip(b"\x00\n "))


def _refuse_a_pcscd_already_running() -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = _pid()
        if Path(f"/proc/{pid}/comm").read_text().strip() != "pcscd":  # a stale pid file, its number reused
            return
        raise RuntimeError(f"a pcscd is already running (pid {pid}), not this test's: stop it for the PC/SC tests "
                           "(sudo systemctl stop pcscd.socket pcscd.service)")


def _two_free_ports() -> int:
    """A port P with P+1 free as well (vpcd's two slots), on every interface as vpcd binds them."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("", port))
                second.bind(("", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two neighbouring free TCP ports for vpcd")


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """pcscd's socket there and vpcd listening on the port (False: pcscd is up, vpcd never listened: its port was
    taken). Seen in /proc, not by connecting: vpcd takes any connection for a card put in its slot."""
    deadline, served = time.monotonic() + READY_SECONDS, None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pcscd stopped at start (exit {process.returncode}): {log.read_text()[-2000:]}")
        if SOCKET.exists():
            if _listening(port, _pcscd_sockets()):
                return True
            served = served or time.monotonic()
            if time.monotonic() - served > LISTEN_SECONDS:
                return False
        time.sleep(0.05)
    raise RuntimeError(f"pcscd not ready in {READY_SECONDS} s: {log.read_text()[-2000:]}")


def _listening(port: int, sockets: set[str]) -> bool:
    """Whether one of `sockets` (inode numbers) listens on the TCP port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A" and fields[9] in sockets:
                    return True  # 0A: LISTEN, by pcscd itself (not whoever took the port meanwhile)
    return False


def _pcscd_sockets() -> set[str]:
    """The socket inodes pcscd holds (its pid from its pid file: with sudo, Popen's pid is sudo's)."""
    inodes = set()
    with contextlib.suppress(OSError, ValueError):
        folder = Path(f"/proc/{_pid()}/fd")
        for fd in folder.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes
