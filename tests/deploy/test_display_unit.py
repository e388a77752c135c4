"""systemd/pos-display.service, the customer display's kiosk: a user unit of the desktop session, checked by
`systemd-analyze --user verify` (which prints nothing for a clean unit, and exits 0 even for an unknown key, so
any output fails), and pointed at the page the terminal serves by default."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from deployhelp import SYSTEMD, need

from terminal.config import EcrConfig

UNIT = SYSTEMD / "pos-display.service"


def _verify(tmp_path: Path, text: str) -> tuple[int, str]:
    runtime = tmp_path / "runtime"  # a user manager needs its runtime folder, even only to verify
    runtime.mkdir(mode=0o700, exist_ok=True)
    unit = tmp_path / "pos-display.service"
    unit.write_text(text)
    done = subprocess.run([need("systemd-analyze", "systemd"), "--user", "verify", "--man=no", "--generators=no",
                           str(unit)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    return done.returncode, (done.stdout + done.stderr).strip()


def test_the_kiosk_unit_verifies_clean(tmp_path: Path) -> None:
    assert _verify(tmp_path, UNIT.read_text()) == (0, "")  # Chromium and bash are where it names them


@pytest.mark.parametrize(("old", "new", "reported"), [
    ("RestartSec=3", "RestartSecs=3", "Unknown key 'RestartSecs'"),
    ("Restart=on-failure", "Restart=sometimes", "sometimes"),
    ("ExecStart=/usr/bin/chromium", "ExecStart=/usr/bin/chromium-browsr", "is not executable"),
])
def test_a_broken_copy_is_reported(tmp_path: Path, old: str, new: str, reported: str) -> None:
    text = UNIT.read_text()
    assert old in text
    assert reported in _verify(tmp_path, text.replace(old, new))[1]


def test_it_shows_the_page_the_terminal_serves_by_default() -> None:
    host, port = EcrConfig().listen or ("", 0)
    text = UNIT.read_text()
    assert f"--app=http://{host}:{port}/display" in text and f"/dev/tcp/{host}/{port}" in text
    template = (SYSTEMD / "terminal.toml.in").read_text()
    assert f'listen = "{host}:{port}"' in template  # what install-pi.sh writes for the terminal
    assert "--kiosk" in text and "PartOf=graphical-session.target" in text
