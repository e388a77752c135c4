"""The unit files: `systemd-analyze verify` and `security` against a realistic root, and the units' promises.

The root is a temporary folder holding the distribution's own units (/usr/lib/systemd/system, for
multi-user.target, network-online.target …), the executables ExecStart= names (/opt/quickpass/.venv/bin/…,
as install-pi.sh creates them) and our units in /etc/systemd/system: exactly what verify looks at on a Pi,
without touching this machine's /opt or /etc. systemd-analyze verify exits 0 even for an unknown key, so
any line it prints fails the test; the broken copies below prove it notices real mistakes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from deployhelp import SYSTEMD, need
from servicemanager import Unit

UNITS = ("pos-terminal.service", "acquirer-stub.service")
EXECUTABLES = ("/opt/quickpass/.venv/bin/pos-terminal", "/opt/quickpass/.venv/bin/acquirer-stub")


def _root(tmp_path: Path, units: dict[str, str] | None = None) -> Path:
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for executable in EXECUTABLES:
        path = root / executable.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for name in UNITS:
        (target / name).write_text((units or {}).get(name, (SYSTEMD / name).read_text()))
    return root


def _verify(root: Path, *units: str) -> tuple[int, str]:
    tool = need("systemd-analyze", "systemd")
    done = subprocess.run([tool, "verify", f"--root={root}", "--man=no", "--generators=no", *units],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def test_every_unit_verifies_clean(tmp_path: Path) -> None:
    assert _verify(_root(tmp_path), *UNITS) == (0, "")


@pytest.mark.parametrize(("mistake", "old", "new", "reported"), [
    ("a misspelt key", "WatchdogSec=60", "WatchdogSecs=60", "Unknown key 'WatchdogSecs'"),
    ("a bad value", "ProtectSystem=strict\n", "ProtectSystem=very\n", "protect system value, ignoring: very"),
    ("a missing executable", "/opt/quickpass/.venv/bin/pos-terminal", "/opt/quickpass/venv/bin/pos-terminal",
     "is not executable"),
    ("a bad device rule", "DeviceAllow=/dev/serial0 rw", "DeviceAllow=/dev/serial0 rwz", "Invalid device rights 'rwz'"),
])
def test_a_broken_unit_is_reported(tmp_path: Path, mistake: str, old: str, new: str, reported: str) -> None:
    text = (SYSTEMD / "pos-terminal.service").read_text()
    assert old in text
    code, output = _verify(_root(tmp_path, {"pos-terminal.service": text.replace(old, new, 1)}), *UNITS)
    assert code != 0 or output, f"{mistake} went unnoticed"
    assert reported in output and "pos-terminal.service" in output, output


def test_the_sandbox_keeps_the_exposure_low(tmp_path: Path) -> None:
    """`systemd-analyze security` scores the hardening (0 best, 10 worst; --threshold counts tenths); the units
    stay at 3 or below, and a copy without the main hardening directives fails the same bar."""
    tool = need("systemd-analyze", "systemd")

    def exposure(root: Path, unit: str) -> tuple[int, float]:
        done = subprocess.run([tool, "security", "--offline=yes", f"--root={root}", "--threshold=30", "--no-pager",
                               unit], capture_output=True, text=True, timeout=60)
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
        assert found is not None, done.stdout + done.stderr
        return done.returncode, float(found.group(1))

    root = _root(tmp_path)
    for unit in UNITS:
        code, score = exposure(root, unit)
        assert code == 0 and score <= 3, (unit, score)
    weak = re.sub(r"^(NoNewPrivileges|ProtectSystem|CapabilityBoundingSet|SystemCallFilter)=.*$", "",
                  (SYSTEMD / "pos-terminal.service").read_text(), flags=re.M)
    shutil.rmtree(root)
    code, score = exposure(_root(tmp_path, {"pos-terminal.service": weak}), "pos-terminal.service")
    assert code != 0 and score > 3


def test_the_terminal_unit_keeps_the_issues_promises() -> None:
    unit = Unit([SYSTEMD / "pos-terminal.service"])
    values = unit.values
    assert unit.get("Type") == "notify" and unit.get("Restart") == "on-failure"
    assert unit.get("NoNewPrivileges") == "yes" and unit.get("ProtectSystem") == "strict"
    assert unit.get("PrivateTmp") == "yes" and unit.get("DevicePolicy") == "closed"
    assert unit.get("StateDirectory") == "quickpass" and unit.get("User") == unit.get("Group") == "quickpass"
    assert set((unit.get("SupplementaryGroups") or "").split()) == {"dialout", "gpio"}
    assert set(values["DeviceAllow"]) == {"/dev/serial0 rw", "/dev/ttyAMA0 rw", "/dev/ttyS0 rw", "/dev/gpiomem rw",
                                          "char-gpiochip rw"}
    stub = Unit([SYSTEMD / "acquirer-stub.service"])
    assert stub.get("StateDirectory") == "quickpass/acquirer" and stub.get("PrivateDevices") == "yes"
    assert "--instance /var/lib/quickpass/acquirer" in (stub.get("ExecStart") or "")
