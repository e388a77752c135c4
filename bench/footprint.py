"""The terminal service's footprint: `pos-terminal run` from exec to READY=1 (sd_notify, read on a real AF_UNIX
datagram socket), and its resident memory once in service (after READY and one sale through its local ECR).
Beside each: a bare interpreter started the same way (`python -c ...`), interleaved with the service's starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from firmware.simulator.rig import SoftwareRig
from terminal.config import load_config

_BARE = "import os, sys; print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0], flush=True)"


@dataclass
class Start:
    ready_seconds: float
    rss_ready_mb: float
    rss_service_mb: float


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _free_port() -> int:
    with socket.socket() as probe:  # [ecr] listen needs a port number: one the kernel just handed out
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bare_interpreter(cwd: Path) -> tuple[float, float]:
    """Seconds from exec to the first line of a bare `python -c`, and its RSS (MB)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _BARE], cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, int(out.stdout.split()[0]) / 1024


def service_start(config: Path, rig: SoftwareRig, card: Path, cwd: Path) -> Start:
    """One `pos-terminal run`: READY, RSS; then a sale of ¥2,100.00 (online) on `card`, RSS again; SIGTERM."""
    port = _free_port()
    text = config.read_text()
    if 'listen = "127.0.0.1:8381"' not in text:
        raise RuntimeError(f"{config}: no [ecr] listen line to point at port {port}")
    run_config = config.with_name("terminal-footprint.toml")
    run_config.write_text(text.replace('listen = "127.0.0.1:8381"', f'listen = "127.0.0.1:{port}"'))
    secret = load_config(run_config).ecr.secret
    with tempfile.TemporaryDirectory(prefix="sdn-") as folder:  # AF_UNIX paths are short
        path = os.path.join(folder, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            env = {**os.environ, "NOTIFY_SOCKET": path}
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "terminal.cli", "--config", str(run_config), "run",
                                        "--wait", "10"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                sock.settimeout(30)
                while True:
                    datagram = sock.recv(4096).decode()
                    if "READY=1" in datagram.split("\n"):
                        break
                ready = time.perf_counter() - started
                rss_ready = _rss_mb(process.pid)
                rig.present(card)
                request = urllib.request.Request(f"http://127.0.0.1:{port}/sale", data=json.dumps(
                    {"amount": 210_000}).encode(), method="POST", headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {secret}"})
                with urllib.request.urlopen(request, timeout=30) as answer:
                    sale = json.loads(answer.read())
                if sale.get("outcome") != "Approved":
                    raise RuntimeError(f"footprint sale: {sale.get('outcome')} {sale.get('message')}")
                rss_service = _rss_mb(process.pid)
            finally:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                rig.remove()
    return Start(ready, rss_ready, rss_service)
