"""`pos-terminal` as a merchant meets it (issue #12 §2 and §5): one clear line per outcome, what the shopper must do
as it happens, Ctrl-C without a traceback, amounts only in plain decimals, options anywhere, totals, every check."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hostserver import HostServer

from acquirer_stub.dashboard import views
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from hostproto import money
from terminal import cli
from terminal.reader.pn532 import Pn532Reader

ROOT = Path(__file__).resolve().parents[2]


def _plain_card(world: World, issuer: str = "icbc-debit") -> Path:
    card = next(c for c in world.cards() if c["issuer"] == issuer)
    return world.path(Path(card["file"]))


# -- amounts and options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1e9", "1e2", "1E2", "NaN", "Infinity", "1_000", "-1", "0", "0.00", "1.234", ".5",
                                  "12.", "1,23", "١٢"])
def test_only_plain_decimal_yuan_are_amounts(text: str) -> None:
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["pay", text])
    assert exit_.value.code == 2


def test_amounts_in_yuan_become_fen_with_one_parser() -> None:
    assert [cli.parse_amount(t) for t in ("12.34", "0.01", "2", "2.5", "¥1,234.56")] == [1234, 1, 200, 250, 123456]
    assert views.parse_yuan is money.parse_yuan  # the dashboard's forms read amounts with the same parser


@pytest.mark.parametrize("command", [["pay", "1.00"], ["fare", "2.00"], ["read"], ["doctor"], ["run"], ["settle"]])
def test_config_is_taken_before_and_after_every_command(command: list[str]) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["--config", "before.toml", *command]).config == "before.toml"
    assert parser.parse_args([*command, "--config", "after.toml"]).config == "after.toml"
    assert parser.parse_args(command).config == str(cli.DEFAULT_CONFIG)
    assert parser.parse_args([*command, "-v"]).verbose is True


# -- pay: what the merchant reads ------------------------------------------------------------------------------


def test_pay_without_an_acquirer_is_one_clear_line(rig: SoftwareRig, world: World, config: Path,
                                                   host_server: HostServer, capsys: pytest.CaptureFixture[str]) -> None:
    host_server.stop()
    rig.present(_plain_card(world))
    assert cli.main(["--config", str(config), "pay", "2500.00", "--wait", "10"]) == 1  # above the floor: online
    out = capsys.readouterr().out
    outcome = next(line for line in out.splitlines() if line.startswith("Declined"))
    assert "Declined: Declined" not in out and outcome.count("Declined") == 1
    assert f"(acquirer {host_server.url})" in outcome and "did not reach a decision" in outcome


def test_pay_prints_see_phone_and_the_approval_once(rig: SoftwareRig, world: World, config: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rig.present(world.demo_phone)
    told = threading.Event()
    say = cli._say

    def merchant_reads(line: str) -> None:
        say(line)
        if line.startswith("See phone"):
            told.set()

    def shopper() -> None:  # touches the sensor once the merchant was told "See phone"
        if told.wait(10):
            rig.fingerprint("right-thumb", world.demo_phone)

    monkeypatch.setattr(cli, "_say", merchant_reads)
    thread = threading.Thread(target=shopper, daemon=True)
    thread.start()
    code = cli.main(["--config", str(config), "pay", "12.34", "--wait", "15"])
    thread.join(5)
    out = capsys.readouterr().out
    assert code == 0 and told.is_set()
    assert "See phone: the shopper unlocks the phone (fingerprint)" in out
    assert "\nApproved ¥11.11\n" in out and "Approved: Approved" not in out


@pytest.mark.parametrize("as_json", [False, True])
def test_a_phone_never_unlocked_says_so(rig: SoftwareRig, world: World, config: Path, as_json: bool,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rig.present(world.demo_phone)
    code = cli.main(["--config", str(config), "pay", "12.34", "--wait", "3", *(["--json"] if as_json else [])])
    out = capsys.readouterr().out
    expected = "No payment: the shopper never confirmed on the phone (See phone timed out)"
    assert code == 1 and "No card presented" not in out
    if as_json:
        assert json.loads(out.strip().splitlines()[-1])["message"] == expected and "See phone:" not in out
    else:
        assert "See phone: the shopper unlocks" in out and f"End Application: {expected}" in out


def test_no_card_at_all_still_says_no_card(config: Path, rig: SoftwareRig,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config), "pay", "1.00", "--wait", "0.5"]) == 1
    assert "End Application: No card presented" in capsys.readouterr().out


# -- Ctrl-C ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["pay", "1.00"], ["fare", "2.00"], ["read"]])
def test_ctrl_c_while_waiting_for_a_card_is_one_line_and_130(config: Path, rig: SoftwareRig, command: list[str],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self: Pn532Reader, timeout: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Pn532Reader, "wait_for_card", interrupted)
    try:
        code = cli.main(["--config", str(config), *command])
    except KeyboardInterrupt:  # would end the whole test session: a failure of this test only
        pytest.fail("the KeyboardInterrupt came out of pos-terminal as a traceback")
    assert code == 130
    err = capsys.readouterr().err
    assert err == f"pos-terminal: {command[0]}: stopped (Ctrl-C)\n"


def test_a_real_sigint_in_pay_ends_cleanly(config: Path, rig: SoftwareRig) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "terminal.cli", "--config", str(config), "pay", "1.00"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # "…; present the card or phone for ¥1.00": waiting now
        assert "present the card or phone" in first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert err == "pos-terminal: pay: stopped (Ctrl-C)\n" and "Traceback" not in out


# -- settle and doctor -----------------------------------------------------------------------------------------


def test_settle_prints_counts_and_amounts(rig: SoftwareRig, world: World, config: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rig.present(_plain_card(world))
    assert cli.main(["--config", str(config), "pay", "2500.00", "--json", "--wait", "10"]) == 0
    assert cli.main(["--config", str(config), "pay", "8.00", "--json", "--wait", "10"]) == 0  # offline: an advice
    capsys.readouterr()
    assert cli.main(["--config", str(config), "settle"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^batch \d{6}: balanced \(rc 00\)$", out, re.M), out
    assert "  terminal: 2 sale(s) ¥2,508.00, 0 refund(s) ¥0.00\n" in out
    assert "  host:     2 sale(s) ¥2,508.00, 0 refund(s) ¥0.00\n" in out


def test_clear_fares_sends_the_waiting_fares_once(rig: SoftwareRig, world: World, config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rig.present(world.path(Path(world.transit_cards()[0]["file"])))
    assert cli.main(["--config", str(config), "fare", "2.00", "--wait", "10"]) == 0
    capsys.readouterr()
    assert cli.main(["--config", str(config), "clear-fares"]) == 0
    assert capsys.readouterr().out == "transit clearing: 1 fare(s) cleared, 0 already cleared, 0 refused, 0 waiting\n"
    assert cli.main(["--config", str(config), "clear-fares", "--json"]) == 0  # nothing left to send
    assert json.loads(capsys.readouterr().out) == {"cleared": 0, "repeat": 0, "refused": 0, "waiting": 0,
                                                   "error": None}
    no_keys = config.with_name("no-transit.toml")
    no_keys.write_text(re.sub(r'^keys = "transit/psam.json".*$', "", config.read_text(), flags=re.M))
    assert cli.main(["--config", str(no_keys), "clear-fares"]) == 2
    assert "this terminal takes no fares" in capsys.readouterr().err


def _set_key(config: Path, key: str) -> None:
    text = config.read_text()
    assert re.search(r'^key = "[0-9a-f]{64}"$', text, re.M)
    config.write_text(re.sub(r'^key = "[0-9a-f]{64}"$', f'key = "{key}"', text, count=1, flags=re.M))


def test_doctor_names_a_wrong_key_not_a_stopped_host(rig: SoftwareRig, config: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _set_key(config, "00" * 32)
    assert cli.main(["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] host:" in out and "refused our signature" in out and "[host] key" in out
    assert "is acquirer-stub serve running" not in out
    assert "[pass] reader:" in out and "[pass] capk:" in out


def test_doctor_runs_every_check_when_the_reader_is_missing(config: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # no rig: the configured reader port does not exist
    assert not (tmp_path / "pos").exists()
    assert cli.main(["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] reader:" in out and "hint: check the wiring" in out
    for name in ("gpio", "capk", "host", "clock"):
        assert f"[pass] {name}:" in out, out
