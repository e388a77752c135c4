"""The README's main command end to end: `python -m posdemo --once` plays the whole story and leaves nothing behind."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from posdemo.stack import ACQUIRER_PORT, DEMO_DIR, ECR_PORT, ROOT, WEB_PORT

TIMEOUT = 120


def _run_once() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "posdemo", "--once"], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _our_children_left() -> list[str]:
    """Processes still running a part of the demo's stack (acquirer stub serve, terminal service)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(DEMO_DIR) in command and ("acquirer_stub.cli serve" in command or "terminal.cli" in command):
            left.append(f"{entry.name}: {command}")
    return left


def _assert_nothing_left() -> None:
    assert not any(_listening(port) for port in (ACQUIRER_PORT, ECR_PORT, WEB_PORT))
    assert not (DEMO_DIR / "demo.lock").exists()
    assert not (DEMO_DIR / "pn532-pos").is_symlink() and not (DEMO_DIR / "pn532-gate").is_symlink()
    assert _our_children_left() == []


def _demo_running() -> bool:
    """The demo holds an flock on its lock file while it runs (a killed run's file is no demo)."""
    lock = DEMO_DIR / "demo.lock"
    if not lock.exists():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@pytest.fixture
def ports_free(demo_ports: None) -> Iterator[None]:
    if any(_listening(port) for port in (ACQUIRER_PORT, ECR_PORT, WEB_PORT)) or _demo_running():
        pytest.fail("ports 8380/8381/8382 are taken (a demo running?): stop it, then run the tests again")
    yield


def test_the_whole_story_once(ports_free: None) -> None:
    run = _run_once()
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    for line in ("[ok] step 1: ", "[ok] step 2: See phone → fingerprint → Approved ¥12.34 on the new token ",
                 "[ok] step 3: fare ¥2.00 Approved without fingerprint", "[ok] step 4: lost → Declined (05); "
                 "found → Approved ¥11.11 (¥12.34 less ¥1.23 bank promotion)", "4/4 steps had the expected outcome"):
        assert line in out, out
    assert 'terminal shows "See phone"' in out and "token •••• " in out and "Bank promotion -¥1.23" in out
    assert "wallet app: picks ICBC Debit •••• " in out  # step 2 pays with the card step 1 bound
    assert "http://127.0.0.1:8382/dashboard/  operator login: operator / " in out
    assert "customer display: http://127.0.0.1:8381/display" in out
    assert "posdemo: stopped; no process left running" in out
    _assert_nothing_left()


def test_a_port_in_use_is_named_and_nothing_is_left(ports_free: None) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT from the test before is fine
        taken.bind(("127.0.0.1", ACQUIRER_PORT))
        taken.listen(1)
        run = _run_once()
    assert run.returncode != 0
    assert "port 8380 is in use" in run.stderr, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    _assert_nothing_left()


def test_a_second_start_names_the_running_demo(ports_free: None) -> None:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    lock = DEMO_DIR / "demo.lock"
    with open(lock, "w") as handle:  # what a running demo holds
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("4242\n")
        handle.flush()
        try:
            run = _run_once()
        finally:
            lock.unlink()
    assert run.returncode != 0
    assert "a demo is already running (pid 4242)" in run.stderr, run.stdout + run.stderr
    _assert_nothing_left()
