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


@dataclass(frozen=True)
class Pcscd:
    port: int  # vpcd's first slot: where the card side connects
    log: Path
    slot: str = SLOT


@contextlib.contextmanager
def running_pcscd(folder: Path) -> Iterator[Pcscd]:
    folder.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _refuse_a_pcscd_already_running()
            port = _two_free_ports()
            config = folder / "reader.conf"
            config.write_text(f'FRIENDLYNAME "{READER}"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {DRIVER}\n'
                              f"CHANNELID 0x{port:04X}\n")
            log = folder / "pcscd.log"
            command = ["pcscd", "--foreground", "--config", str(config)]
            if os.geteuid() != 0:
                command = ["sudo", "-n", *command]
            with log.open("w") as output:
                process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            try:
                _wait_ready(process, port, log)
                yield Pcscd(port, log)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _refuse_a_pcscd_already_running() -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(PID_FILE.read_text().strip())
        os.kill(pid, 0)
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


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """pcscd's socket there and vpcd listening on the port. Seen in /proc, not by connecting: vpcd takes any
    connection for a card put in its slot."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pcscd stopped at start (exit {process.returncode}): {log.read_text()[-2000:]}")
        if SOCKET.exists() and _listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pcscd not ready in {READY_SECONDS} s: {log.read_text()[-2000:]}")


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
                    return True
    return False
