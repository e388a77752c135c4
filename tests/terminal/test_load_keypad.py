"""The merchant keypad's "Top up transit card" (issue #12 §3): ``POST /keypad/load`` on the terminal's endpoint,
and the page in a real headless Chromium typing an amount, the PIN and showing the new balance."""

from __future__ import annotations

from pathlib import Path

from browser import checked_page, chromium
from playwright.sync_api import expect
from test_display import STEP_SECONDS, _post, _service

from emvcore.epurse import PURSE_LIMIT
from firmware.issuing.layout import World
from firmware.jsonfile import read_json
from firmware.simulator.rig import SoftwareRig

PIN = "482916"


def _balance(path: Path) -> int:
    return int(read_json(path)["applications"][0]["state"]["balance"])


def test_keypad_load_tops_up_the_card_presented(rig: SoftwareRig, world: World, config: Path) -> None:
    entry = world.transit_cards()[3]
    card = world.path(Path(entry["file"]))
    before = _balance(card)
    with _service(config, keypad_pin=PIN) as running:
        assert _post(running.base, "/keypad/load", {"amount": 1_000, "pin": "000000"})[0] == 403
        assert _post(running.base, "/keypad/load", {"amount": PURSE_LIMIT + 1, "pin": PIN})[0] == 400
        assert _post(running.base, "/keypad/load", {"amount": 1_000, "pin": PIN},
                     {"Origin": "http://evil.example"})[0] == 403
        rig.present(card)
        code, answer, _ = _post(running.base, "/keypad/load", {"amount": 1_000, "pin": PIN})
        rig.remove()
        last = running.service.status()["last_sale"]
    assert code == 200 and (answer["outcome"], answer["charged"], answer["label"]) == (
        "Approved", 1_000, "Transit top-up")
    assert answer["message"] == f"Card topped up (balance ¥{(before + 1_000) / 100:,.2f})"
    assert entry["card_number"] not in str(answer) and entry["card_number"][-4:] in answer["pan_masked"]
    assert "Amount ¥10.00" in answer["receipt"] and last["amount"] == 1_000
    assert _balance(card) == before + 1_000


def test_the_keypad_in_chromium_tops_up_a_transit_card(rig: SoftwareRig, world: World, config: Path) -> None:
    card = world.path(Path(world.transit_cards()[5]["file"]))
    before = _balance(card)
    with (_service(config, keypad_pin="2468") as running, chromium() as browser,
          checked_page(browser, 800, 480) as page):
        page.goto(f"{running.base}/keypad")
        expect(page.locator("#topup")).to_be_disabled()
        for digit in "2000":
            page.locator(f'#keys button[data-key="{digit}"]').click()
        expect(page.locator("#amount")).to_have_text("¥20.00")
        page.locator("#topup").click()
        expect(page.locator("#prompt")).to_have_text("Keypad PIN")
        for digit in "2468":
            page.locator(f'#keys button[data-key="{digit}"]').click()
        rig.present(card)
        page.locator("#charge").click()  # OK: goes on with the top-up
        expected = f"Card topped up (balance ¥{(before + 2_000) / 100:,.2f})"
        expect(page.locator("#outcome")).to_have_text(expected, timeout=STEP_SECONDS * 1000)
        expect(page.locator("#receipt")).to_contain_text("Transit top-up")
        assert "2468" not in page.content()
    rig.remove()
    assert _balance(card) == before + 2_000
    assert running.service.status()["last_sale"]["charged"] == 2_000
