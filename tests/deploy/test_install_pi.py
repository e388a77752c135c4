"""systemd/install-pi.sh: shell checks, and two runs into a staging root with the system's tools stubbed.

The stubs (groupadd, useradd, usermod, getent, chown, runuser, systemctl, python3 -m venv and the venv's
pip, pos-card, acquirer-stub and pos-terminal) record their arguments and keep the little state the script
asks about (which users and groups exist), so the test sees what the script would do to a Pi: whom it
creates, what it installs where, which units it enables, and that a second run changes nothing it must keep.
The configuration it writes is rendered by the real template and loaded by the real `load_config`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from deployhelp import SYSTEMD, need

from firmware.issuing.layout import World
from terminal.config import load_config

SCRIPT = SYSTEMD / "install-pi.sh"

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUBS/calls"
"""
STUBS = {
    # users and groups: getent answers from what groupadd/useradd recorded
    "getent": STUB + 'grep -qx "$1 $2" "$STUBS/db" 2>/dev/null\n',
    "groupadd": STUB + 'for a; do last=$a; done; echo "group $last" >> "$STUBS/db"\n',
    "useradd": STUB + 'for a; do last=$a; done; echo "passwd $last" >> "$STUBS/db"\n',
    "usermod": STUB, "chown": STUB, "systemctl": STUB,
    "runuser": STUB + 'shift 3; exec "$@"\n',  # runuser -u USER -- COMMAND…
    "python3": STUB + 'case "$1" in -c) exit 0 ;; esac\n'  # the script's checks (python3 -c …) pass
               'mkdir -p "$3/bin"; for tool in pip pos-card acquirer-stub pos-terminal; do '
               'cp "$STUBS/venv-$tool" "$3/bin/$tool"; done; ln -s "$REAL_PYTHON" "$3/bin/python"\n',
    "venv-pip": STUB,
    "venv-pos-terminal": STUB + '[ -z "$DOCTOR_FAILS" ] || { echo "reader: no answer from a PN532" >&2; exit 1; }\n',
    "venv-pos-card": STUB + 'cp -a "$TEST_WORLD" "$2"\n',
    "venv-acquirer-stub": STUB + 'mkdir -p "$5" && echo "{}" > "$5/config.json"\n',
}


def _stubs(folder: Path) -> None:
    folder.mkdir()
    for name, text in STUBS.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)


def _install(stubs: Path, root: Path, world: World, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STUBS": str(stubs), "QUICKPASS_ROOT": str(root),
           "REAL_PYTHON": sys.executable, "TEST_WORLD": str(world.root), **env_extra}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_script_passes_bash_n_and_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert "\nset -euo pipefail\n" in SCRIPT.read_text() and os.access(SCRIPT, os.X_OK)
    done = subprocess.run([need("shellcheck", "shellcheck"), str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_install_twice_into_a_staging_root(tmp_path: Path, world: World) -> None:
    stubs, root = tmp_path / "stubs", tmp_path / "root"
    _stubs(stubs)
    first = _install(stubs, root, world, "--with-acquirer")
    assert first.returncode == 0, first.stderr
    calls = (stubs / "calls").read_text().splitlines()
    assert "groupadd --system gpio" in calls and "groupadd --system dialout" in calls
    assert any(c.startswith("useradd --system --user-group --groups dialout,gpio") and c.endswith(" quickpass")
               for c in calls)
    venv = f"{root}/opt/quickpass/.venv"
    assert f"python3 -m venv {venv}" in calls
    assert f"pip install --quiet --upgrade {SYSTEMD.parent}[pi,acquirer]" in calls
    assert (f"acquirer-stub init --world {root}/var/lib/quickpass/world --instance {root}/var/lib/quickpass/acquirer"
            in calls)
    for unit in ("pos-terminal.service", "acquirer-stub.service"):
        assert (root / "etc/systemd/system" / unit).read_text() == (SYSTEMD / unit).read_text()
        assert f"systemctl enable {unit}" in calls
    # doctor runs as the service user with the reader to itself, then the service starts
    order = [c for c in calls if c.startswith(("systemctl stop", "runuser", "pos-terminal", "systemctl start"))]
    assert order[-4:] == ["systemctl stop pos-terminal.service",
                          f"runuser -u quickpass -- {venv}/bin/pos-terminal --config {root}/etc/quickpass/terminal.toml"
                          " doctor",
                          f"pos-terminal --config {root}/etc/quickpass/terminal.toml doctor",
                          "systemctl start pos-terminal.service"]

    config = root / "etc/quickpass/terminal.toml"
    text = config.read_text()
    assert oct(config.stat().st_mode & 0o777) == "0o640" and 'port = "/dev/serial0"' in text
    assert 'path = "/var/lib/quickpass/terminal-journal.sqlite3"' in text
    # the configuration loads: journal in the state folder, CAPK and PSAM keys from the installed world
    staged = tmp_path / "staged.toml"
    staged.write_text(text.replace("/var/lib/quickpass", f"{root}/var/lib/quickpass"))
    loaded = load_config(staged)
    assert loaded.journal.path == root / "var/lib/quickpass/terminal-journal.sqlite3"
    assert loaded.gpio.backend == "rpi" and loaded.terminal.id in world.path(Path("terminal.toml")).read_text()
    # the offline floor limits the acquirer holds for this terminal (the world's), not the built-in default
    assert loaded.limits == load_config(world.path(Path("terminal.toml"))).limits
    assert loaded.limits.aid_limits
    # the local register's secret is made for this install, not the world's
    assert loaded.ecr.secret is not None and loaded.ecr.secret not in world.path(Path("terminal.toml")).read_text()

    # a second run: the user exists (usermod, no useradd), no new venv, world and configuration kept
    config.write_text(text + "# edited by the merchant\n")
    (stubs / "calls").write_text("")
    second = _install(stubs, root, world, "--with-acquirer")
    assert second.returncode == 0, second.stderr
    calls = (stubs / "calls").read_text().splitlines()
    assert "usermod --append --groups dialout,gpio quickpass" in calls
    assert not [c for c in calls if c.startswith(("useradd", "groupadd", "python3", "pos-card", "acquirer-stub"))]
    assert config.read_text().endswith("# edited by the merchant\n")
    assert "kept the existing /etc/quickpass/terminal.toml" in second.stderr


def test_a_folder_that_is_not_a_world_is_refused(tmp_path: Path, world: World) -> None:
    stubs = tmp_path / "stubs"
    _stubs(stubs)
    done = _install(stubs, tmp_path / "root", world, "--world", str(tmp_path))
    assert done.returncode == 1 and "is not a test world" in done.stderr
    assert not (stubs / "calls").exists()  # refused before touching anything


def test_with_display_the_kiosk_unit_is_installed_for_the_desktop_session(tmp_path: Path, world: World) -> None:
    stubs, root = tmp_path / "stubs", tmp_path / "root"
    _stubs(stubs)
    refused = _install(stubs, root, world, "--with-display", "--no-start")
    assert refused.returncode == 1 and "needs Chromium: sudo apt install chromium" in refused.stderr
    assert not (stubs / "calls").exists()  # refused before touching anything
    chromium = root / "usr/bin/chromium"
    chromium.parent.mkdir(parents=True)
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    done = _install(stubs, root, world, "--with-display", "--no-start")
    assert done.returncode == 0, done.stderr
    unit = root / "etc/systemd/user/pos-display.service"
    assert unit.read_text() == (SYSTEMD / "pos-display.service").read_text()
    assert "systemctl --global enable pos-display.service" in (stubs / "calls").read_text().splitlines()


def _model(root: Path, model: str) -> None:
    """What /proc/device-tree/model holds on a Pi: the model name and a NUL."""
    path = root / "proc/device-tree/model"
    path.parent.mkdir(parents=True)
    path.write_bytes(model.encode() + b"\x00")


@pytest.mark.parametrize(("model", "extra", "port"), [
    ("Raspberry Pi 5 Model B Rev 1.0", "pi5", "/dev/ttyAMA0"),
    ("Raspberry Pi 4 Model B Rev 1.5", "pi", "/dev/serial0"),
])
def test_the_pi_model_picks_the_gpio_driver_and_the_header_uart(tmp_path: Path, world: World, model: str,
                                                                   extra: str, port: str) -> None:
    stubs, root = tmp_path / "stubs", tmp_path / "root"
    _stubs(stubs)
    _model(root, model)
    done = _install(stubs, root, world, "--with-acquirer")
    assert done.returncode == 0, done.stderr
    assert f"== {model}: GPIO driver {'rpi-lgpio' if extra == 'pi5' else 'RPi.GPIO'}, reader on {port}" in done.stderr
    calls = (stubs / "calls").read_text().splitlines()
    assert f"pip install --quiet --upgrade {SYSTEMD.parent}[{extra},acquirer]" in calls
    # a Pi 5 must not keep RPi.GPIO from an earlier install (both are the module RPi.GPIO)
    assert ("pip uninstall --quiet --yes RPi.GPIO" in calls) == (extra == "pi5")
    assert f'port = "{port}"' in (root / "etc/quickpass/terminal.toml").read_text()


def test_the_pi5_extra_is_rpi_lgpio_and_the_pi_extra_rpi_gpio() -> None:
    extras = tomllib.loads((SYSTEMD.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["pi5"][0].startswith("rpi-lgpio") and extras["pi"][0].startswith("RPi.GPIO")


def test_a_failing_doctor_leaves_the_service_stopped(tmp_path: Path, world: World) -> None:
    stubs, root = tmp_path / "stubs", tmp_path / "root"
    _stubs(stubs)
    done = _install(stubs, root, world, DOCTOR_FAILS="1")
    assert done.returncode == 1
    assert "reader: no answer from a PN532" in done.stderr  # what doctor said, shown
    assert "the service was NOT started" in done.stderr and "sudo systemctl start pos-terminal" in done.stderr
    calls = (stubs / "calls").read_text().splitlines()
    assert "systemctl stop pos-terminal.service" in calls
    assert not [c for c in calls if c.startswith("systemctl start") or c.startswith("systemctl restart pos-t")]
