"""The test world: one consistent source of keys, certificates, issuers and cards."""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path

import pytest

from emvcore.crypto import oda
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.cards.transit import TransitPurse
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import build, layout
from firmware.issuing.layout import World
from firmware.issuing.personalize import luhn_valid
from firmware.jsonfile import TEST_ONLY, read_json


def test_twenty_credit_and_twelve_debit_issuers_with_distinct_bins(world_template: World) -> None:
    issuers = world_template.issuers()
    kinds = [issuer["kind"] for issuer in issuers]
    assert kinds.count("credit") == 20 and kinds.count("debit") == 12
    assert len({issuer["bin"] for issuer in issuers}) == 32
    names = {issuer["name"] for issuer in issuers}
    for seed_bank in ("Bank of China", "Industrial and Commercial Bank of China", "China Construction Bank",
                      "Bank of Communications", "China Merchants Bank"):
        assert seed_bank in names


def test_every_card_belongs_to_its_issuer_and_has_a_valid_pan(world_template: World) -> None:
    bins = {issuer["code"]: issuer["bin"] for issuer in world_template.issuers()}
    cards = world_template.cards()
    assert len(cards) == 34  # one per issuer, then the quasi-credit and the expired card
    for entry in cards:
        assert entry["pan"].startswith(bins[entry["issuer"]]) and luhn_valid(entry["pan"])
        card = PlainCard.load(world_template.path(Path(entry["file"])))
        assert card.applications[0].profile.pan == entry["pan"]
        assert card.applications[0].profile.aid.hex().upper() == entry["aid"]
    assert [entry["aid"] for entry in cards[32:]] == ["A000000333010103", "A000000333010101"]
    assert [entry["file"] for entry in cards[32:]] == ["cards/cbhb-quasi-credit.json", "cards/hsb-debit-expired.json"]
    assert [entry["issuer"] for entry in cards[:32]] == [issuer["code"] for issuer in world_template.issuers()]


def test_every_issuer_certificate_verifies_under_the_scheme_capk(world_template: World) -> None:
    [capk] = world_template.capks()
    assert capk.rid == bytes.fromhex("A000000333") and capk.key.length == 176
    pans = {entry["issuer"]: entry["pan"] for entry in world_template.cards()}
    for issuer in world_template.issuers():
        key = oda.recover_issuer_key(
            capk,
            bytes.fromhex(issuer["certificate"]),
            bytes.fromhex(issuer["remainder"]),
            bytes.fromhex(issuer["exponent"]),
            pans[issuer["code"]],
            datetime.date.today(),
        )
        private = oda.private_key_from_pem(world_template.issuer_keys(issuer["code"])["rsa_private_key_pem"].encode())
        assert key == oda.public_key_of(private)


def test_a_corrupted_capk_entry_is_refused(world: World) -> None:
    path = world.path(Path("scheme/capk.json"))
    data = json.loads(path.read_text())
    modulus = data["keys"][0]["modulus"]
    data["keys"][0]["modulus"] = ("0" if modulus[0] != "0" else "1") + modulus[1:]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="checksum"):
        world.capks()


def test_six_transit_cities_each_with_two_cards(world_template: World) -> None:
    cards = world_template.transit_cards()
    assert len(cards) == 12 and sorted({c["city"] for c in cards}) == [
        "beijing", "chengdu", "guangzhou", "hangzhou", "shanghai", "shenzhen"]
    assert len({c["card_number"] for c in cards}) == 12 and len({c["file"] for c in cards}) == 12
    for entry in cards:
        [purse] = PlainCard.load(world_template.path(Path(entry["file"]))).applications
        assert isinstance(purse, TransitPurse) and purse.profile.card_number == entry["card_number"]


def test_demo_phone_token_is_in_the_token_vault(world_template: World) -> None:
    wallet = Wallet.load(world_template.demo_phone)
    [token] = world_template.tsp()["tokens"]
    [card] = wallet.cards
    assert token["token_pan"] == card.profile.pan and token["wallet_id"] == wallet.wallet_id
    assert token["funding_pan"] != card.profile.pan and token["par"] == card.profile.par
    assert wallet.transit and wallet.express_transit == wallet.transit[0].id


def test_every_file_is_marked_test_only_and_secrets_are_private(world_template: World) -> None:
    json_files = list(world_template.root.rglob("*.json"))
    assert len(json_files) > 40
    for path in json_files:
        assert json.loads(path.read_text())["test_only"] == TEST_ONLY, path
    secret_files = [
        world_template.path(Path("scheme/ca-private.pem")),
        *world_template.root.glob("issuers/keys/*.json"),
        *world_template.root.glob("cards/*.json"),
        *world_template.root.glob("phones/*"),
        world_template.path(Path("tsp/tsp.json")),
    ]
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_an_interrupted_build_leaves_no_world_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_build(root: Path, today: datetime.date, progress: object) -> None:
        (root / "scheme").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_build", failing_build)
    with pytest.raises(KeyboardInterrupt):
        build.create_world(tmp_path / "world")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_world_is_kept_unless_forced(world: World) -> None:
    before = world.path(Path("WORLD.json")).read_bytes()
    with pytest.raises(build.WorldExistsError, match="--force"):
        build.create_world(world.root)
    assert world.path(Path("WORLD.json")).read_bytes() == before


def test_the_logins_passwords_are_letters_and_digits_only(world: World) -> None:
    """A password printed by `acquirer-stub init` must work pasted after `--password`: one starting with '-'
    (a token_urlsafe could) is read by argparse as an option, which failed the wallet-bind tests by chance."""
    drawn = [build._password() for _ in range(2000)] + [user["password"] for user in world.users()]
    assert all(len(password) == 16 and password.isascii() and password.isalnum() for password in drawn)
    assert len(set(drawn)) == len(drawn)


def test_a_terminals_psam_key_file_holds_the_purchase_keys_only(world_template: World) -> None:
    """The TAC keys stay with the card issuers (the acquirer): a gate holding them could forge the fares it uploads."""
    psam = read_json(world_template.path(layout.PSAM_KEYS))["cities"]
    issuers = world_template.transit_keys()
    assert [set(city) for city in psam] == [{"city", "name", "city_code", "purchase_master_key"}] * len(issuers)
    assert [c["purchase_master_key"] for c in psam] == [c["purchase_master_key"] for c in issuers]
    assert "transit/psam.json" in world_template.path(Path("terminal.toml")).read_text()
