"""The phone wallet checked from the outside: a reader taps it, the token service and a PSAM check its answers.

Covers the wallet's acceptance list: eight tokenized cards at most, PPSE order (default, chosen card, same-AID
cards), tokens with PAR and token-key ARQCs, the fingerprint gate (consumer-device CVM), express transit,
random UIDs, and keys kept out of the wallet file.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyemv import kd, mac, tools
from reader import PPSE, gpo, select, send, tap, terminal_data

from emvcore import tlv
from emvcore.apdu import CommandApdu, ResponseApdu
from emvcore.crypto import transit as transit_crypto
from emvcore.crypto.transit import diversify_card_key
from firmware.apps.cards.card import Chip
from firmware.apps.wallet import secure_element
from firmware.apps.wallet.wallet import Wallet, WalletError, device_key_path
from firmware.issuing.layout import World
from firmware.issuing.personalize import new_pan, new_par, token_card
from firmware.issuing.provisioning import add_card_to_wallet
from firmware.jsonfile import FileFormatError

DEBIT_AID = bytes.fromhex("A000000333010101")
CREDIT_AID = bytes.fromhex("A000000333010102")
TRANSIT_AID = bytes.fromhex("A000000632010105")
SEE_PHONE = 0x6986
WRONG_FINGER = "left-little"
DEMO_CARD = "boc-credit"  # the demo phone's one card at creation
TERMINAL_ID = bytes.fromhex("000000000042")


class FakeClock:
    """A wall clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- helpers: the world's side ------------------------------------------------------------------------------


def _add(world: World, issuer: str, card_id: str | None = None) -> str:
    """Tokenize the world's plain card of `issuer` into the demo phone (the local provisioning path)."""
    entry = next(c for c in world.cards() if c["issuer"] == issuer)
    card_id = card_id or issuer
    add_card_to_wallet(world.root, world.demo_phone, world.path(Path(entry["file"])), card_id)
    return card_id


def _vault_entry(world: World, card_id: str) -> dict[str, Any]:
    wallet_id = json.loads(world.demo_phone.read_text())["wallet_id"]
    matches = [t for t in world.tsp()["tokens"] if t["wallet_id"] == wallet_id and t["card_id"] == card_id]
    assert len(matches) == 1, f"{card_id}: {len(matches)} vault entries"
    return matches[0]


def _token_udk(world: World, token_pan: str) -> bytes:
    return kd.derive_icc_mk_a(bytes.fromhex(world.tsp()["token_imk"]), token_pan, "00")


def _pyemv_arqc(udk: bytes, terminal: dict[int, bytes], card: dict[int, bytes]) -> bytes:
    """The token service's check, with pyemv only: ATC session key, ISO 9797-1 MAC 3 over the CVN 01 data."""
    atc = card[0x9F36]
    session_key = tools.encrypt_tdes_ecb(udk, bytes(6) + atc + bytes(6) + bytes(b ^ 0xFF for b in atc))
    data = b"".join(terminal[t] for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37))
    data += card[0x82] + atc + card[0x9F10][3:7]
    return mac.mac_iso9797_3(session_key[:8], session_key[8:], data, 2)


def _atc(path: Path, card_id: str = DEMO_CARD) -> int:
    return next(c.state.atc for c in Wallet.load(path).cards if c.id == card_id)


# -- helpers: the reader's side -----------------------------------------------------------------------------


def _ppse(chip: Chip) -> list[tuple[bytes, int]]:
    """(AID, priority) of every PPSE entry, in the order the phone lists them."""
    answer = send(chip, PPSE)
    assert answer.ok, f"PPSE {answer.sw:04X}"
    entries = [obj for _, obj in tlv.walk(answer.data) if obj.tag == 0x61]
    return [(tlv.find(e.value, 0x4F) or b"", (tlv.find(e.value, 0x87) or b"\x00")[0]) for e in entries]


def _pay(wallet: Wallet, amount: int = 1234) -> tuple[ResponseApdu, dict[int, bytes], dict[int, bytes]]:
    """A phone-capable reader's tap: PPSE, SELECT of the first-priority AID, GPO; then the phone leaves."""
    chip = wallet.chip()
    values = terminal_data(amount)
    answer, data = tap(chip, _ppse(chip)[0][0], values)
    chip.field_off()
    return answer, data, values


def _token_pan_of(data: dict[int, bytes]) -> str:
    return data[0x57].hex().upper().split("D")[0]


def _transit_purchase(world: World, wallet: Wallet, fare: int) -> tuple[ResponseApdu, bytes, bytes, int]:
    """The gate plays the PSAM: INITIALIZE, MAC1 from the city's master key, DEBIT.

    Returns the DEBIT answer, the MAC2 and TAC the card must give, and the balance quoted at INITIALIZE.
    """
    chip = wallet.chip()
    fci = select(chip, TRANSIT_AID)
    assert fci.ok, f"SELECT transit {fci.sw:04X}"
    public = tlv.find(fci.data, 0x9F0C) or b""
    card_number, city_code = public[10:20].hex()[1:17], public[28:30].hex()
    init = send(chip, CommandApdu(0x80, 0x50, 0x01, 0x02, b"\x01" + fare.to_bytes(4, "big") + TERMINAL_ID, le=15))
    assert init.ok, f"INITIALIZE FOR PURCHASE {init.sw:04X}"
    balance, serial = int.from_bytes(init.data[:4], "big"), int.from_bytes(init.data[4:6], "big")
    card_random = init.data[11:15]
    city = next(c for c in world.transit_keys() if c["city_code"] == city_code)
    purchase_key = diversify_card_key(bytes.fromhex(city["purchase_master_key"]), card_number)
    tac_key = diversify_card_key(bytes.fromhex(city["tac_master_key"]), card_number)
    terminal_serial = bytes.fromhex("0000002A")
    now = bytes.fromhex("20261127083000")
    session = transit_crypto.purchase_session_key(purchase_key, card_random, serial, terminal_serial)
    mac1 = transit_crypto.purchase_mac1(session, fare, 0x06, TERMINAL_ID, now)
    debit = send(chip, CommandApdu(0x80, 0x54, 0x01, 0x00, terminal_serial + now + mac1, le=8))
    chip.field_off()
    tac = transit_crypto.purchase_tac(tac_key, fare, 0x06, TERMINAL_ID, terminal_serial, now)
    return debit, transit_crypto.purchase_mac2(session, fare), tac, balance


# -- eight cards at most ------------------------------------------------------------------------------------


def test_eight_payment_cards_fit_and_the_ninth_is_refused_without_changing_anything(world: World) -> None:
    others = [c["issuer"] for c in world.cards() if c["issuer"] != DEMO_CARD]
    added = [_add(world, issuer) for issuer in others[:7]]
    wallet = Wallet.load(world.demo_phone)
    assert [c.id for c in wallet.cards] == [DEMO_CARD, *added]
    assert len({_vault_entry(world, c.id)["token_pan"] for c in wallet.cards}) == 8
    # PPSE: eight payment cards with priorities 1..8, the express transit card ninth
    entries = _ppse(wallet.chip())
    assert [priority for _, priority in entries] == list(range(1, 10))
    assert entries[-1][0] == TRANSIT_AID

    wallet_bytes, vault_tokens = world.demo_phone.read_bytes(), world.tsp()["tokens"]
    with pytest.raises(WalletError, match=r"already holds 8 payment cards; remove one first"):
        _add(world, others[7])
    assert world.demo_phone.read_bytes() == wallet_bytes
    assert world.tsp()["tokens"] == vault_tokens

    # the wallet refuses on its own too, whoever calls it
    profile, keys = token_card(
        bytes(16), token_pan=new_pan("628888"), par=new_par(), kind="debit", expiry=datetime.date(2031, 12, 31)
    )
    with pytest.raises(WalletError, match="8 payment cards"):
        wallet.add_card("ninth", "Ninth", profile, keys)
    assert world.demo_phone.read_bytes() == wallet_bytes
    assert len(Wallet.load(world.demo_phone).cards) == 8


@pytest.mark.parametrize("card_id", ["ICBC", "shanghai-transit", "boc-credit"])
def test_a_refused_card_id_leaves_no_token_behind(world: World, card_id: str) -> None:
    vault_tokens = world.tsp()["tokens"]
    with pytest.raises(WalletError):
        _add(world, "icbc-debit", card_id)
    assert world.tsp()["tokens"] == vault_tokens


# -- PPSE order: default, chosen card, same AID ---------------------------------------------------------------


def test_ppse_lists_the_cards_by_priority_default_first_then_the_express_transit_card(world: World) -> None:
    _add(world, "icbc-debit", "icbc")
    wallet = Wallet.load(world.demo_phone)
    assert wallet.default_card == DEMO_CARD
    assert _ppse(wallet.chip()) == [(CREDIT_AID, 1), (DEBIT_AID, 2), (TRANSIT_AID, 3)]


def test_a_new_default_card_comes_first_and_stays_first_after_a_reload(world: World) -> None:
    _add(world, "icbc-debit", "icbc")
    wallet = Wallet.load(world.demo_phone)
    wallet.set_default("icbc")
    assert _ppse(wallet.chip()) == [(DEBIT_AID, 1), (CREDIT_AID, 2), (TRANSIT_AID, 3)]
    assert _ppse(Wallet.load(world.demo_phone).chip())[0] == (DEBIT_AID, 1)

    before = world.demo_phone.read_bytes()
    with pytest.raises(WalletError, match="no payment card 'nope'"):
        wallet.set_default("nope")
    assert world.demo_phone.read_bytes() == before


def test_a_card_chosen_for_the_next_tap_pays_once_then_the_default_is_first_again(world: World) -> None:
    _add(world, "icbc-debit", "icbc")
    wallet = Wallet.load(world.demo_phone)
    wallet.choose_for_next_tap("icbc")
    assert _ppse(wallet.chip())[0] == (DEBIT_AID, 1)

    # a "see phone" tap is not a payment: the choice stays
    refused, _, _ = _pay(wallet)
    assert refused.sw == SEE_PHONE
    assert _ppse(Wallet.load(world.demo_phone).chip())[0] == (DEBIT_AID, 1)

    wallet = Wallet.load(world.demo_phone)
    assert wallet.authenticate(world.demo_fingers[0])
    answer, data, _ = _pay(wallet)
    assert answer.ok
    assert _token_pan_of(data) == _vault_entry(world, "icbc")["token_pan"]

    # used once: the default leads again, in this process and in the file
    assert _ppse(wallet.chip())[0] == (CREDIT_AID, 1)
    reloaded = Wallet.load(world.demo_phone)
    assert reloaded.next_tap_card is None
    assert reloaded.authenticate(world.demo_fingers[0])
    answer, data, _ = _pay(reloaded)
    assert answer.ok
    assert _token_pan_of(data) == _vault_entry(world, DEMO_CARD)["token_pan"]


def test_select_next_occurrence_reaches_the_second_card_with_the_same_aid(world: World) -> None:
    _add(world, "icbc-credit")
    wallet = Wallet.load(world.demo_phone)
    assert [aid for aid, _ in _ppse(wallet.chip())] == [CREDIT_AID, CREDIT_AID, TRANSIT_AID]
    finger = world.demo_fingers[0]

    assert wallet.authenticate(finger)
    chip = wallet.chip()
    assert select(chip, CREDIT_AID).ok
    second = select(chip, CREDIT_AID, next_occurrence=True)
    assert second.ok and tlv.find(second.data, 0x84) == CREDIT_AID
    answer = gpo(chip, tlv.find(second.data, 0x9F38) or b"", terminal_data(500))
    assert answer.ok
    assert _token_pan_of(tlv.flatten(answer.data)) == _vault_entry(world, "icbc-credit")["token_pan"]

    assert wallet.authenticate(finger)
    answer, data = tap(wallet.chip(), CREDIT_AID, terminal_data(500))  # plain SELECT: the first occurrence
    assert answer.ok and _token_pan_of(data) == _vault_entry(world, DEMO_CARD)["token_pan"]

    chip = wallet.chip()
    assert select(chip, CREDIT_AID).ok
    assert select(chip, CREDIT_AID, next_occurrence=True).ok
    assert select(chip, CREDIT_AID, next_occurrence=True).sw == 0x6A82  # no third credit card


# -- tokens ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [DEMO_CARD, "ccb-debit"], ids=["created-with-the-phone", "provisioned"])
def test_payment_tap_carries_the_token_and_an_arqc_that_the_token_keys_verify(world: World, card: str) -> None:
    if card != DEMO_CARD:
        _add(world, card)
        Wallet.load(world.demo_phone).set_default(card)
    token = _vault_entry(world, card)
    funding_pan = token["funding_pan"]
    assert funding_pan in {c["pan"] for c in world.cards()}
    assert token["token_pan"] != funding_pan and not token["token_pan"].startswith(funding_pan[:6])

    wallet = Wallet.load(world.demo_phone)
    assert wallet.authenticate(world.demo_fingers[0])
    answer, data, values = _pay(wallet)
    assert answer.ok
    assert data[0x57].hex().upper().startswith(token["token_pan"] + "D")
    if 0x5A in data:
        assert data[0x5A].hex().upper().rstrip("F") == token["token_pan"]
    assert funding_pan not in answer.data.hex().upper()
    assert data[0x9F24] == token["par"].encode("ascii")
    assert data[0x9F10][4] == 0xA0  # CVR: ARQC
    assert data[0x9F26] == _pyemv_arqc(_token_udk(world, token["token_pan"]), values, data)
    # the funding card's keys (its issuer's master key and the real PAN) do not make this cryptogram
    entry = next(c for c in world.cards() if c["pan"] == funding_pan)
    issuer_imk = bytes.fromhex(world.issuer_keys(entry["issuer"])["imk_ac"])
    funding_udk = kd.derive_icc_mk_a(issuer_imk, funding_pan, f"{entry['psn']:02d}")
    assert data[0x9F26] != _pyemv_arqc(funding_udk, values, data)


# -- fingerprint (consumer-device CVM) ----------------------------------------------------------------------


def test_a_tap_before_the_fingerprint_is_see_phone_and_leaves_the_atc(world: World) -> None:
    atc = _atc(world.demo_phone)
    answer, data, _ = _pay(Wallet.load(world.demo_phone))
    assert answer.sw == SEE_PHONE
    assert answer.data == b"" and data == {}
    assert _atc(world.demo_phone) == atc


def test_a_wrong_finger_never_unlocks_and_closes_an_open_window(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    assert not wallet.authenticate(WRONG_FINGER)
    assert _pay(wallet)[0].sw == SEE_PHONE

    assert wallet.authenticate(world.demo_fingers[0])
    assert wallet.fingerprint.verified
    assert not wallet.authenticate(WRONG_FINGER)
    assert not Wallet.load(world.demo_phone).fingerprint.verified
    assert _pay(wallet)[0].sw == SEE_PHONE
    assert _pay(Wallet.load(world.demo_phone))[0].sw == SEE_PHONE
    assert _atc(world.demo_phone) == 0


@pytest.mark.parametrize("finger", [0, 1], ids=["first-finger", "second-finger"])
def test_the_right_finger_gives_one_cdcvm_arqc_then_see_phone_again(world: World, finger: int) -> None:
    wallet = Wallet.load(world.demo_phone)
    assert wallet.authenticate(world.demo_fingers[finger])
    answer, data, _ = _pay(wallet)
    assert answer.ok
    assert data[0x9F6C][1] & 0x80  # CTQ 2.8: consumer-device CVM performed
    assert data[0x9F10][4] == 0xA0 and len(data[0x9F26]) == 8
    assert data[0x9F36] == b"\x00\x01"

    # the verification is used up by that tap, in memory and in the file
    assert _pay(wallet)[0].sw == SEE_PHONE
    assert _pay(Wallet.load(world.demo_phone))[0].sw == SEE_PHONE
    assert _atc(world.demo_phone) == 1


@pytest.mark.parametrize(("elapsed", "paid"), [(-1, True), (+1, False), (+3600, False)],
                         ids=["inside-the-window", "just-after", "an-hour-later"])
def test_the_fingerprint_window_expires(world: World, elapsed: int, paid: bool) -> None:
    clock = FakeClock()
    wallet = Wallet.load(world.demo_phone, clock=clock)
    assert wallet.authenticate(world.demo_fingers[0])
    clock.now += wallet.fingerprint.window_seconds + elapsed
    answer, data, _ = _pay(wallet)
    if paid:
        assert answer.ok and data[0x9F6C][1] & 0x80
        assert _atc(world.demo_phone) == 1
    else:
        assert answer.sw == SEE_PHONE
        assert _atc(world.demo_phone) == 0


def test_the_fingerprint_window_survives_a_reload_of_the_wallet(world: World) -> None:
    clock = FakeClock()
    # another process (the phone's UI) verifies the finger and exits ...
    assert Wallet.load(world.demo_phone, clock=clock).authenticate(world.demo_fingers[0])
    clock.now += 30
    # ... and the NFC side, loading the wallet afresh, pays with it
    answer, data, _ = _pay(Wallet.load(world.demo_phone, clock=clock))
    assert answer.ok and data[0x9F6C][1] & 0x80

    assert Wallet.load(world.demo_phone, clock=clock).authenticate(world.demo_fingers[0])
    clock.now += 61
    assert not Wallet.load(world.demo_phone, clock=clock).fingerprint.verified
    assert _pay(Wallet.load(world.demo_phone, clock=clock))[0].sw == SEE_PHONE


# -- express transit ----------------------------------------------------------------------------------------------


def test_express_transit_pays_a_fare_without_fingerprint_and_the_balance_persists(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    assert not wallet.fingerprint.verified
    before = wallet.transit[0].state.balance
    debit, mac2, tac, quoted = _transit_purchase(world, wallet, 200)
    assert debit.ok, f"DEBIT FOR PURCHASE {debit.sw:04X}"
    assert quoted == before
    assert debit.data == tac + mac2

    reloaded = Wallet.load(world.demo_phone)
    assert reloaded.transit[0].state.balance == before - 200
    assert reloaded.transit[0].state.offline_serial == 1
    chip = reloaded.chip()
    assert select(chip, TRANSIT_AID).ok
    balance = send(chip, CommandApdu(0x80, 0x5C, 0x00, 0x02, le=4))
    assert balance.ok and int.from_bytes(balance.data, "big") == before - 200
    # express mode opens the purse only: payments still need the fingerprint
    assert _pay(reloaded)[0].sw == SEE_PHONE
    assert _atc(world.demo_phone) == 0


def test_a_transit_fare_does_not_use_up_the_fingerprint(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    assert wallet.authenticate(world.demo_fingers[0])
    debit, mac2, _, _ = _transit_purchase(world, wallet, 300)
    assert debit.ok and debit.data[4:] == mac2
    answer, data, _ = _pay(Wallet.load(world.demo_phone))
    assert answer.ok and data[0x9F6C][1] & 0x80


def test_a_transit_purchase_with_a_wrong_mac1_changes_nothing(world: World) -> None:
    wallet = Wallet.load(world.demo_phone)
    before = world.demo_phone.read_bytes()
    chip = wallet.chip()
    assert select(chip, TRANSIT_AID).ok
    assert send(chip, CommandApdu(0x80, 0x50, 0x01, 0x02, b"\x01" + (200).to_bytes(4, "big") + TERMINAL_ID, le=15)).ok
    debit = send(chip, CommandApdu(0x80, 0x54, 0x01, 0x00, bytes(4) + bytes.fromhex("20261127083000") + bytes(4), le=8))
    assert not debit.ok
    assert Wallet.load(world.demo_phone).transit[0].state.balance == wallet.transit[0].state.balance
    assert world.demo_phone.read_bytes() == before


# -- random UID -----------------------------------------------------------------------------------------------------


def test_every_tap_shows_a_new_random_uid(world_template: World) -> None:
    uids = [Wallet.load(world_template.demo_phone).uid_for_tap() for _ in range(3)]
    wallet = Wallet.load(world_template.demo_phone)
    uids += [wallet.uid_for_tap() for _ in range(7)]
    assert all(len(uid) == 4 and uid[0] == 0x08 for uid in uids)
    assert len(set(uids)) == len(uids)


# -- keys live apart -----------------------------------------------------------------------------------------------


def test_the_wallet_file_holds_no_key(world: World) -> None:
    _add(world, "cmb-debit")
    path = world.demo_phone
    text = path.read_text().upper()
    wallet = Wallet.load(path)
    device_key = bytes.fromhex(device_key_path(path).read_text().strip())
    blob = json.loads(path.read_text())["secure_element"]["sealed_keys"]
    sealed = secure_element.unseal(device_key, wallet.wallet_id, blob)

    for card in wallet.cards:
        udk = _token_udk(world, _vault_entry(world, card.id)["token_pan"]).hex().upper()
        assert sealed[card.id]["icc_master_key"].upper() == udk  # the key the check looks for is the real one
        assert udk not in text
    transit = wallet.transit[0].profile
    city = next(c for c in world.transit_keys() if c["city_code"] == transit.city_code)
    for name in ("purchase_master_key", "tac_master_key", "load_master_key"):
        card_key = diversify_card_key(bytes.fromhex(city[name]), transit.card_number).hex().upper()
        keys = sealed[wallet.transit[0].id]
        assert card_key in {keys["purchase_key"], keys["tac_key"], keys["load_key"]}
        assert card_key not in text
        assert city[name].upper() not in text
    assert world.tsp()["token_imk"].upper() not in text
    assert device_key.hex().upper() not in text
    assert "PRIVATE KEY" not in text
    assert device_key_path(path).stat().st_mode & 0o077 == 0


def test_another_device_key_cannot_open_the_wallet(world: World) -> None:
    key_file = device_key_path(world.demo_phone)
    key_file.write_text(secure_element.new_device_key().hex() + "\n")
    with pytest.raises(FileFormatError, match=r"secure_element\.sealed_keys: cannot be opened") as error:
        Wallet.load(world.demo_phone)
    assert str(world.demo_phone) in str(error.value)

    key_file.unlink()
    with pytest.raises(FileFormatError, match="device key"):
        Wallet.load(world.demo_phone)


def test_sealed_keys_are_bound_to_their_wallet(world: World) -> None:
    data = json.loads(world.demo_phone.read_text())
    data["wallet_id"] = "0123456789abcdef"
    world.demo_phone.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=r"secure_element\.sealed_keys"):
        Wallet.load(world.demo_phone)


def _set(*keys: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        target: Any = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


def _duplicate_first_card(data: dict[str, Any]) -> None:
    data["cards"].append(dict(data["cards"][0]))


@pytest.mark.parametrize(("edit", "message"), [
    (_set("cards", 0, "state", "atc", value="x"), "cards[0].state.atc: must be an integer"),
    (_set("cards", 0, "state", "atc", value=70_000), "cards[0].state.atc: must be an integer"),
    (_set("format", value="quickpass-card"), "format: this is a 'quickpass-card' file"),
    (_set("version", value=99), "version: version 99 is newer"),
    (_set("default_card", value="nope"), "default_card: 'nope' is not a card in this wallet"),
    (_set("next_tap_card", value="ghost"), "next_tap_card: 'ghost' is not a card in this wallet"),
    (_set("express_transit", value=DEMO_CARD), "express_transit: 'boc-credit' is not a card"),
    (_set("fingerprint", "window_seconds", value=0), "fingerprint.window_seconds"),
    (_set("cards", 0, "profile", "pan", value=6288880000000000), "cards[0].profile.pan: must be a string"),
    (_set("cards", 0, "id", value="icbc"), "cards[0].id: no keys for 'icbc'"),
    (_set("transit", 0, "state", "balance", value=-5), "transit[0].state.balance"),
    (_set("cards", value={}), "cards: must be a list"),
    (_duplicate_first_card, "cards: two cards share an id"),
], ids=["atc-text", "atc-too-big", "format", "version", "default", "next-tap", "express", "window", "pan-number",
        "id-without-keys", "transit-balance", "cards-object", "duplicate-id"])
def test_a_hand_edited_wallet_is_refused_naming_the_field(
    world: World, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = json.loads(world.demo_phone.read_text())
    edit(data)
    world.demo_phone.write_text(json.dumps(data, indent=2))
    with pytest.raises(FileFormatError, match=re.escape(message)) as error:
        Wallet.load(world.demo_phone)
    assert str(error.value).startswith(f"{world.demo_phone}: ")


def test_a_ninth_card_written_into_the_file_is_refused(world: World) -> None:
    """Even with the device key (keys re-sealed properly), the file may not hold more than eight cards."""
    path = world.demo_phone
    data = json.loads(path.read_text())
    device_key = bytes.fromhex(device_key_path(path).read_text().strip())
    keys = secure_element.unseal(device_key, data["wallet_id"], data["secure_element"]["sealed_keys"])
    for number in range(1, 9):
        data["cards"].append({**data["cards"][0], "id": f"extra-{number}"})
        keys[f"extra-{number}"] = keys[DEMO_CARD]
    data["secure_element"]["sealed_keys"] = secure_element.seal(device_key, data["wallet_id"], keys)
    path.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match=r"cards: at most 8 payment cards, found 9"):
        Wallet.load(path)

    data["cards"].pop()  # eight load
    path.write_text(json.dumps(data))
    assert len(Wallet.load(path).cards) == 8


def test_the_atc_persists_across_loads(world: World) -> None:
    atcs = []
    for _ in range(3):
        wallet = Wallet.load(world.demo_phone)  # every tap from a freshly started phone
        assert wallet.authenticate(world.demo_fingers[0])
        answer, data, _ = _pay(wallet)
        assert answer.ok
        atcs.append(int.from_bytes(data[0x9F36], "big"))
    assert atcs == [1, 2, 3]
    assert _atc(world.demo_phone) == 3
    assert json.loads(world.demo_phone.read_text())["cards"][0]["state"]["atc"] == 3
