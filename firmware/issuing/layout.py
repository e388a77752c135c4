"""Where things live in a test world, and reading them back (the terminal and the host read it too)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emvcore.crypto.oda import CaPublicKey, RsaPublicKey
from firmware.jsonfile import TEST_ONLY, Fields, FileFormatError, read_json

WORLD_FORMAT = "quickpass-world"
WORLD_VERSION = 1

MANIFEST = Path("WORLD.json")
CA_PRIVATE_KEY = Path("scheme/ca-private.pem")
CAPK = Path("scheme/capk.json")
ISSUERS = Path("issuers/issuers.json")
CARDS_INDEX = Path("cards/index.json")
TRANSIT_KEYS = Path("transit/keys.json")  # the card issuers' keys: purchase, TAC (clearing), load
PSAM_KEYS = Path("transit/psam.json")  # what a terminal's PSAM holds: the purchase master keys only
TRANSIT_INDEX = Path("transit/index.json")
TSP = Path("tsp/tsp.json")
DEMO_PHONE = Path("phones/demo-phone.json")
ACQUIRER_TERMINALS = Path("acquirer/terminals.json")
ACQUIRER_USERS = Path("acquirer/users.json")
TERMINAL_CONFIG = Path("terminal.toml")
GATE_CONFIG = Path("gate.toml")  # the demo's metro gate (its own terminal in ACQUIRER_TERMINALS)


QUASI_CREDIT_CARD = "cbhb-quasi-credit"
"""A China Bohai Bank quasi-credit card (AID A000000333010103), on the cbhb-credit issuer host."""
EXPIRED_CARD = "hsb-debit-expired"
"""A Huishang Bank debit card that expired at the end of last month, on the hsb-debit issuer host."""


def issuer_keys(code: str) -> Path:
    return Path("issuers/keys") / f"{code}.json"


def card_file(code: str) -> Path:
    return Path("cards") / f"{code}.json"


def transit_file(city: str, number: int = 1) -> Path:
    """A city's transit card files: the first is `<city>.json`, the others `<city>-<number>.json`."""
    return Path("transit") / (f"{city}.json" if number == 1 else f"{city}-{number}.json")


def capk_to_dict(keys: list[CaPublicKey]) -> dict[str, Any]:
    """The CAPK list a terminal loads, with the checksum that lets it detect a corrupted entry."""
    return {
        "format": "quickpass-capk",
        "version": 1,
        "test_only": TEST_ONLY,
        "keys": [
            {
                "rid": key.rid.hex().upper(),
                "index": key.index,
                "modulus": key.key.modulus.hex().upper(),
                "exponent": key.key.exponent.hex().upper(),
                "expiry": key.expiry.isoformat() if key.expiry else "",
                "checksum": key.checksum().hex().upper(),
            }
            for key in keys
        ],
    }


def capk_from_dict(data: dict[str, Any], where: str = "capk") -> list[CaPublicKey]:
    fields = Fields(data, "")
    fields.header("quickpass-capk", 1)
    keys = []
    for entry in fields.objects("keys"):
        expiry = entry.str("expiry", default="")
        key = CaPublicKey(
            rid=entry.hex("rid", length=5),
            index=entry.int("index", maximum=255),
            key=RsaPublicKey(entry.hex("modulus"), entry.hex("exponent", length=(1, 3))),
            expiry=datetime.date.fromisoformat(expiry) if expiry else None,
        )
        if key.checksum() != entry.hex("checksum", length=20):
            raise FileFormatError(f"{entry.path}.checksum: does not match the key (corrupted CAPK entry)")
        keys.append(key)
    return keys


@dataclass(frozen=True)
class World:
    """A created test world, opened for reading."""

    root: Path

    @classmethod
    def open(cls, root: Path) -> World:
        manifest = Fields(read_json(root / MANIFEST), "WORLD")
        try:
            manifest.header(WORLD_FORMAT, WORLD_VERSION)
        except FileFormatError as error:
            raise FileFormatError(f"{root / MANIFEST}: {error}") from None
        return cls(root)

    def path(self, relative: Path) -> Path:
        return self.root / relative

    @property
    def demo_phone(self) -> Path:
        return self.root / DEMO_PHONE

    @property
    def demo_fingers(self) -> list[str]:
        return list(read_json(self.root / MANIFEST)["demo_fingers"])

    def capks(self) -> list[CaPublicKey]:
        try:
            return capk_from_dict(read_json(self.root / CAPK))
        except FileFormatError as error:
            raise FileFormatError(f"{self.root / CAPK}: {error}") from None

    def issuers(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / ISSUERS)["issuers"])

    def issuer_keys(self, code: str) -> dict[str, Any]:
        return read_json(self.root / issuer_keys(code))

    def cards(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / CARDS_INDEX)["cards"])

    def transit_cards(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / TRANSIT_INDEX)["cards"])

    def transit_keys(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / TRANSIT_KEYS)["cities"])

    def tsp(self) -> dict[str, Any]:
        return read_json(self.root / TSP)

    def terminals(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / ACQUIRER_TERMINALS)["terminals"])

    def users(self) -> list[dict[str, Any]]:
        return list(read_json(self.root / ACQUIRER_USERS)["users"])
