"""End to end on this machine: software PN532 + demo phone or card + acquirer stub → `pos-terminal pay`."""

from __future__ import annotations

import json
import os
import select
import threading
import time
import tty
from pathlib import Path
from typing import Any

import pytest
from hostserver import HostServer

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal import cli
from terminal.assemble import terminal
from terminal.config import load_config


def _pay(config: Path, amount: str, capsys: pytest.CaptureFixture[str], *, wait: float = 10) -> tuple[int, dict]:
    code = cli.main(["--config", str(config), "pay", amount, "--json", "--wait", str(wait)])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_phone_see_phone_then_fingerprint_then_approved(
    rig: SoftwareRig, world: World, config: Path, instance: Instance, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.present(world.demo_phone)

    def shopper() -> None:  # looks at the phone after the first tap and touches the sensor
        time.sleep(0.8)
        rig.fingerprint("right-thumb", world.demo_phone)

    threading.Thread(target=shopper, daemon=True).start()
    code, sale = _pay(config, "12.34", capsys)
    assert code == 0 and sale["outcome"] == "Approved" and sale["rc"] == "00"
    assert sale["taps"] >= 2 and sale["cryptogram"] == "ARQC"
    assert sale["cvm"] == "none"  # ¥12.34 is under the CVM limit: the fingerprint unlocked the phone, no CVM asked
    assert sale["discount"] == 123 and sale["charged"] == 1111  # the Bank of China promotion: 10 % off
    assert "9F26" in sale["field55_tags"] and "57" not in sale["field55_tags"]
    assert sale["pan_masked"].startswith("628888") and "*" in sale["pan_masked"]
    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT rc, charged FROM transactions WHERE kind = 'authorization'").fetchone()
    finally:
        connection.close()
    assert (row["rc"], row["charged"]) == ("00", 1111)


def test_plain_card_online_and_offline_then_settlement_balances(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    rig.present(world.path(Path(card["file"])))
    code, online = _pay(config, "2500.00", capsys)  # above the floor limit: online
    assert code == 0 and online["outcome"] == "Approved" and online["cryptogram"] == "ARQC"
    code, offline = _pay(config, "8.00", capsys)  # small: the card approves offline with fDDA
    assert code == 0 and offline["cryptogram"] == "TC" and offline["oda"].startswith("fdda-v01")
    assert cli.main(["--config", str(config), "settle"]) == 0
    assert "balanced" in capsys.readouterr().out


def test_no_card_ends_with_a_clear_outcome(config: Path, rig: SoftwareRig,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, sale = _pay(config, "1.00", capsys, wait=0.5)
    assert code == 1 and sale["outcome"] == "End Application" and sale["message"] == "No card presented"


def test_a_wrong_configuration_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "terminal.toml"
    bad.write_text('[terminal]\nid = "X"\n')
    assert cli.main(["--config", str(bad), "pay", "1.00"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pos-terminal: ") and "terminal." in err and "Traceback" not in err


def test_read_shows_the_phone_applications_masked(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.present(world.demo_phone)
    assert cli.main(["--config", str(config), "read", "--json", "--wait", "5"]) == 0
    view = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert view["uid_random"] is True
    assert [app["label"] for app in view["applications"]] == ["UICS CREDIT", "MOT_T_EP"]
    token = world.tsp()["tokens"][0]["token_pan"]
    assert token not in json.dumps(view)


def test_read_shows_a_plain_card_masked_pan_and_expiry(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "ccb-debit")
    rig.present(world.path(Path(card["file"])))
    assert cli.main(["--config", str(config), "read", "--json", "--wait", "5"]) == 0
    [app] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["applications"]
    assert app["pan"] == card["pan"][:6] + "*" * (len(card["pan"]) - 10) + card["pan"][-4:]
    assert app["expiry"] == card["expiry"][:7]


def test_doctor_passes_every_check_on_a_working_rig(
    rig: SoftwareRig, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--config", str(config), "doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("reader", "gpio", "capk", "host", "clock"):
        assert f"[pass] {name}:" in out


def test_doctor_names_the_failing_part(rig: SoftwareRig, config: Path, host_server: HostServer,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    host_server.stop()
    assert cli.main(["--config", str(config), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] host:" in out and "hint: is acquirer-stub serve running" in out


def test_a_metro_fare_on_the_phone_without_fingerprint(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.present(world.demo_phone)
    assert cli.main(["--config", str(config), "fare", "2.00", "--json", "--wait", "5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["outcome"] == "Approved" and result["amount"] == 200 and len(result["tac"]) == 8
    assert result["balance_after"] == 5000 - 200


def test_the_receipt_prints_on_an_esc_pos_printer(
    rig: SoftwareRig, world: World, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printer is a pseudo-terminal here: the test reads what a thermal printer would receive."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    try:
        with config.open("a") as stream:
            stream.write(f'\n[receipt]\nprinter = "{os.ttyname(slave)}"\nbaud = 9600\n')
        card = next(c for c in world.cards() if c["issuer"] == "cmb-credit")
        rig.present(world.path(Path(card["file"])))
        code, sale = _pay(config, "2500.00", capsys)
        assert code == 0 and sale["outcome"] == "Approved"
        printed = b""
        while select.select([master], [], [], 1.0)[0]:
            printed += os.read(master, 4096)
            if printed.endswith(b"\x1dV\x00"):
                break
    finally:
        os.close(master)
        os.close(slave)
    assert printed.startswith(b"\x1b@") and printed.endswith(b"\x1bd\x03\x1dV\x00")  # initialise … feed, cut
    text = printed.decode("ascii")
    assert "Approved 00" in text and "CNY 2,500.00" in text and f"Approval {sale['approval_code']}" in text
    assert card["pan"] not in text and card["pan"][-4:] in text  # masked: BIN and last four only
    assert "Signature required" in text  # ¥2,500 is over the CVM limit and a plain card asks for a signature


def _sequence(parts: Any) -> list[tuple[str, object]]:
    """Messages and tones in order: what the shopper sees and hears."""
    parts.feedback.settle(2.0)
    return [(what, value) for what, event, value in parts.feedback.events() if what in ("message", "buzzer")]


def test_lights_tones_and_messages_of_an_approval_and_a_decline(
    rig: SoftwareRig, world: World, config: Path, instance: Instance
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "pab-credit")
    rig.present(world.path(Path(card["file"])))
    with terminal(load_config(config)) as parts:
        assert parts.counter.sale(250_000, wait_seconds=10).outcome == "Approved"
        approved = _sequence(parts)
        lights = [value for what, event, value in parts.feedback.events() if what == "light4"]
    assert approved == [("message", "Present card"), ("message", "Processing"), ("buzzer", (1500.0, 0.5)),
                        ("message", "Remove card"), ("message", "Approved ¥2,500.00")]  # the tone as the card is read
    assert True in lights  # all four lights on at "card read"

    connection = db.connect(instance.database)
    connection.execute("UPDATE issuers SET forced_decline = '51' WHERE code = 'pab-credit'")
    connection.close()
    with terminal(load_config(config)) as parts:
        assert parts.counter.sale(250_000, wait_seconds=10).outcome == "Declined"
        declined = _sequence(parts)
    assert declined == [("message", "Present card"), ("message", "Processing"), ("buzzer", (1500.0, 0.5)),
                        ("message", "Remove card"), ("buzzer", (750.0, 0.2)),
                        ("message", "Declined: Insufficient funds"), ("buzzer", (750.0, 0.2))]  # two low beeps
