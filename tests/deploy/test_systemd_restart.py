"""pos-terminal.service under a service manager: READY, watchdog pings, a hang, the restart, the journal kept.

The manager is the stand-in of `servicemanager` (a real systemd cannot run unprivileged in CI; its module
docstring says why), reading the real unit file's Type=, WatchdogSec=, Restart=, RestartSec= … plus a
drop-in, exactly as an administrator would override the unit: ExecStart= pointed at this venv and this
test's configuration, and a short WatchdogSec= so that a hang is noticed in seconds, not a minute.
The terminal under it is the real `pos-terminal run` against a software PN532 and `acquirer-stub serve`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import tempfile
import threading
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from deployhelp import SYSTEMD, VENV_BIN
from hostserver import free_port
from servicemanager import Event, ServiceManager, Unit, parse_timespan, should_restart

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig

ISSUER = "icbc-debit"
AMOUNT = 210000  # above the floor limit: goes online, so the acquirer assigns the batch and the STAN is used


def _config(world: World, tmp_path: Path, state: Path, host_url: str, port: int) -> Path:
    """Like /etc/quickpass/terminal.toml from install-pi.sh: absolute paths, the journal in the state folder."""
    data = tomllib.loads(world.path(Path("terminal.toml")).read_text())
    path = tmp_path / "terminal.toml"
    path.write_text(
        "[terminal]\n" + "".join(f'{key} = "{value}"\n' for key, value in data["terminal"].items())
        + f'\n[host]\nurl = "{host_url}"\nkey = "{data["host"]["key"]}"\ntimeout = 3.0\n'
        + f'\n[capk]\nfile = "{world.path(Path(data["capk"]["file"]))}"\n'
        + f'\n[reader]\nport = "{tmp_path / "pos"}"\n'
        + f'\n[journal]\npath = "{state / "terminal-journal.sqlite3"}"\n'
        + f'\n[ecr]\nlisten = "127.0.0.1:{port}"\nsecret = "{data["ecr"]["secret"]}"\n'
    )
    return path


def _http(method: str, url: str, body: dict[str, Any] | None = None, *, secret: str = "") -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=40) as answer:
        return json.loads(answer.read())


def _sale(base: str, rig: SoftwareRig, card: Path, manager: ServiceManager, secret: str) -> dict[str, Any]:
    box: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: box.append(_http("POST", f"{base}/sale", {"amount": AMOUNT},
                                                              secret=secret)), daemon=True)
    thread.start()
    manager.wait_for(lambda _: _http("GET", f"{base}/status")["state"] == "waiting for card", 15, "the card wait")
    rig.present(card)
    thread.join(40)
    rig.remove()
    assert box, "the local ECR gave no answer"
    return box[0]


def _of(events: list[Event], what: str, pid: int) -> list[Event]:
    return [e for e in events if e.what == what and e.pid == pid]


def test_a_hung_terminal_is_killed_by_the_watchdog_and_restarts_with_its_journal(
    world: World, tmp_path: Path, rig: SoftwareRig, acquirer: str
) -> None:
    state = tmp_path / "state"  # plays /var/lib/quickpass (StateDirectory=)
    state.mkdir()
    port = free_port()
    config = _config(world, tmp_path, state, acquirer, port)
    dropin = tmp_path / "pos-terminal.service.d" / "test.conf"
    dropin.parent.mkdir()
    dropin.write_text(f"[Service]\nExecStart=\nExecStart={VENV_BIN / 'pos-terminal'} --config {config} run "
                      "--wait 20\nWatchdogSec=3\n")
    unit = Unit([SYSTEMD / "pos-terminal.service", dropin])
    assert unit.get("Type") == "notify" and unit.get("Restart") == "on-failure"  # from the real unit
    card = world.path(Path(next(c for c in world.cards() if c["issuer"] == ISSUER)["file"]))
    base = f"http://127.0.0.1:{port}"
    secret = tomllib.loads(config.read_text())["ecr"]["secret"]

    with tempfile.TemporaryDirectory(prefix="sdm-") as folder:  # a short path: AF_UNIX paths ≤ 107 bytes
        manager = ServiceManager(unit, Path(folder), stderr=tmp_path / "service.log")
        manager.start()
        try:
            first = manager.main_pid
            manager.wait_for(lambda ev: bool(_of(ev, "ready", first)), 60, "READY=1")
            # pings keep coming at WatchdogSec/2, so the watchdog never fires on a healthy terminal
            events = manager.wait_for(lambda ev: len(_of(ev, "watchdog", first)) >= 5, 30, "five WATCHDOG=1")
            assert not _of(events, "watchdog-timeout", first)

            sale = _sale(base, rig, card, manager, secret)
            assert sale["outcome"] == "Approved" and sale["rc"] == "00", sale
            before = _http("GET", f"{base}/status")["host"]
            assert before["signed_on"] and before["batch"] is not None

            os.kill(first, signal.SIGSTOP)  # what a hung worker looks like from outside: no more pings
            events = manager.wait_for(lambda ev: any(e.what == "ready" and e.pid != first for e in ev), 60,
                                      "the restarted terminal's READY=1")
            second = manager.main_pid
            assert second != first
            sequence = [(e.what, e.detail) for e in events if e.pid == first and e.what in ("watchdog-timeout",
                                                                                            "exit", "restart")]
            assert sequence == [("watchdog-timeout", "no WATCHDOG=1 for 3 s"), ("exit", "signal=SIGABRT"),
                                ("restart", "watchdog")], sequence
            manager.wait_for(lambda ev: bool(_of(ev, "watchdog", second)), 10, "the new process's pings")

            after = _http("GET", f"{base}/status")
            assert after["state"] == "idle" and after["host"]["batch"] == before["batch"]  # same open batch
            again = _sale(base, rig, card, manager, secret)
            assert again["outcome"] == "Approved" and int(again["stan"]) > int(sale["stan"]), (sale, again)
        finally:
            if manager.process is not None and manager.process.poll() is None:
                os.kill(manager.main_pid, signal.SIGCONT)
            manager.stop()

    events = manager.events
    assert [(e.what, e.detail) for e in events if e.pid == second][-2:] == [("exit", "status=0"),
                                                                           ("stopped", "stop requested")]
    assert [e.what for e in events].count("restart") == 1  # a clean stop is not restarted
    with sqlite3.connect(state / "terminal-journal.sqlite3") as journal:
        assert journal.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log


def test_the_stand_in_follows_systemds_restart_table_and_time_spans() -> None:
    assert should_restart("on-failure", "watchdog") and should_restart("on-failure", "signal")
    assert should_restart("on-failure", "exit-code") and not should_restart("on-failure", "clean")
    assert not should_restart("no", "watchdog") and should_restart("on-watchdog", "watchdog")
    assert not should_restart("on-abort", "watchdog") and should_restart("always", "clean")
    with pytest.raises(ValueError):
        should_restart("sometimes", "clean")
    assert parse_timespan("60") == 60 and parse_timespan("1min 30s") == 90 and parse_timespan("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_timespan("soon")
    unit = Unit([SYSTEMD / "pos-terminal.service"])
    assert unit.exec_start() == ["/opt/quickpass/.venv/bin/pos-terminal", "--config", "/etc/quickpass/terminal.toml",
                                 "run"]
    assert unit.seconds("WatchdogSec", "0") > 2 * 10  # above an authorization and its reversal ([host] timeout 10 s)
