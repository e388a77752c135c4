"""The bound card pays (issue #12 §6): `pos-card wallet bind` with the SMS code, then `pos-terminal pay` on the phone
is approved on the token just delivered, and the acquirer charges that token's card."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hostserver import HostServer

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from emvcore.tags import mask_pan
from firmware import cli as pos_card
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal import cli as pos_terminal
from terminal.kernel.params import DEBIT_AID


def test_bind_with_sms_then_tap_is_approved_on_the_new_token(
    rig: SoftwareRig, world: World, config: Path, host_server: HostServer, instance: Instance,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    card = next(c for c in world.cards() if c["issuer"] == "icbc-debit")
    user = next(u for u in world.users() if u["role"] == "cardholder")
    expiry = f"{card['expiry'][5:7]}{card['expiry'][2:4]}"  # YYYY-MM-DD → MMYY
    phone = str(world.demo_phone)
    assert pos_card.main(["wallet", "bind", phone, "--host", host_server.url, "--user", user["username"],
                          "--password", user["password"], "--pan", card["pan"], "--expiry", expiry, "--id", "icbc",
                          "--code-from-sms"]) == 0
    token = next(c for c in Wallet.load(world.demo_phone).cards if c.id == "icbc").profile.pan
    assert pos_card.main(["wallet", "choose", phone, "icbc"]) == 0  # the shopper picks it for this payment
    capsys.readouterr()

    rig.present(world.demo_phone)
    told = threading.Event()
    say = pos_terminal._say

    def merchant_reads(line: str) -> None:
        say(line)
        if line.startswith("See phone"):
            told.set()

    def shopper() -> None:  # unlocks the phone once the terminal asked for it
        if told.wait(10):
            rig.fingerprint("right-thumb", world.demo_phone)

    monkeypatch.setattr(pos_terminal, "_say", merchant_reads)
    thread = threading.Thread(target=shopper, daemon=True)
    thread.start()
    code = pos_terminal.main(["--config", str(config), "pay", "12.34", "--wait", "15"])
    thread.join(5)
    out = capsys.readouterr().out
    assert code == 0 and told.is_set(), out
    assert "\nApproved ¥12.34\n" in out  # the ICBC token: no Bank of China promotion
    assert f"  | Card {mask_pan(token)}\n" in out and f"  | UICS DEBIT {DEBIT_AID.hex().upper()}\n" in out

    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT t.rc, t.charged, k.wallet_card_id FROM transactions t JOIN tokens k "
                                 "ON k.id = t.token_id WHERE t.kind = 'authorization'").fetchone()
    finally:
        connection.close()
    assert (row["rc"], row["charged"], row["wallet_card_id"]) == ("00", 1234, "icbc")
    assert card["pan"] not in out and token not in out and user["password"] not in out
