"""The benchmark's test world: the ordinary one, plus more cards and terminals for the host benchmark.

The issuer refuses a card's 31st approval of the day (65) and an ATC that is not higher than the last one it
saw (05), so concurrent terminals must not share a card: each card belongs to one benchmark terminal, which
sends its cryptograms in ATC order. The extra cards are personalised by the world's own code (online-only,
no ICC key to generate), registered in cards/index.json, and loaded into the acquirer like the others.
"""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import Any

from acquirer_stub.instance import Instance
from acquirer_stub.loader import init_instance
from acquirer_stub.store import db
from emvcore.crypto.cryptogram import Algorithm
from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.cardfile import application_entry, write_card
from firmware.apps.cards.qpboc import QPbocState
from firmware.issuing import layout
from firmware.issuing.build import create_world
from firmware.issuing.layout import World
from firmware.issuing.personalize import IssuerKeys, new_pan, qpboc_card
from firmware.jsonfile import read_json, write_json_atomic


def build_world(root: Path, *, extra_cards: int, terminals: int) -> World:
    """A fresh world in `root` with `extra_cards` more bank cards and `terminals` terminals in all."""
    create_world(root)
    world = World.open(root)
    _add_cards(world, extra_cards)
    _add_terminals(world, terminals)
    return world


def _add_cards(world: World, count: int) -> None:
    issuers = world.issuers()
    index_path = world.path(layout.CARDS_INDEX)
    index = read_json(index_path)
    expiry = datetime.date.fromisoformat(index["cards"][0]["expiry"])
    for number in range(count):
        issuer = issuers[number % len(issuers)]
        imk = bytes.fromhex(world.issuer_keys(issuer["code"])["imk_ac"])
        keys = IssuerKeys(imk, None, b"", b"", Algorithm.named(issuer["algorithm"]))  # type: ignore[arg-type]  # no RSA
        pan = new_pan(issuer["bin"])
        profile, card_keys = qpboc_card(keys, kind=issuer["kind"], pan=pan, expiry=expiry, with_oda=False)
        entry = application_entry("qpboc", qpboc_schema.profile_to_dict(profile),
                                  qpboc_schema.keys_to_dict(card_keys), qpboc_schema.state_to_dict(QPbocState()))
        relative = Path("cards") / f"bench-{number:03d}.json"
        write_card(world.path(relative), f"bench card {number}", secrets.token_bytes(4), [entry])
        account = {"balance": 500_000} if issuer["kind"] == "debit" else {"credit_limit": 2_000_000}
        index["cards"].append({"file": str(relative), "issuer": issuer["code"], "kind": issuer["kind"], "pan": pan,
                               "psn": profile.psn, "expiry": expiry.isoformat(), "account": account})
    write_json_atomic(index_path, index)


def _add_terminals(world: World, count: int) -> None:
    path = world.path(layout.ACQUIRER_TERMINALS)
    data = read_json(path)
    demo = data["terminals"][0]
    for number in range(len(data["terminals"]), count):
        data["terminals"].append({"tid": f"QB{number:06d}", "mid": demo["mid"], "name": f"bench terminal {number}",
                                  "key": secrets.token_bytes(32).hex()})
    write_json_atomic(path, data)


def make_instance(world: World, root: Path, database: str = "") -> Instance:
    """An acquirer instance folder with `world` loaded (what `acquirer-stub init --database …` does): its SQLite
    file, or the (empty) PostgreSQL database at the `database` URL."""
    return init_instance(root, world, database=database)[0]


def terminals(world: World) -> list[dict[str, Any]]:
    return world.terminals()


def reset_velocity(database: db.Target) -> None:
    """The issuer approves a card 30 times a day: move earlier approvals to yesterday (between timed rounds). Either
    backend: `database` is the instance's (`Instance.database`)."""
    yesterday = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    connection = db.connect(database)
    try:
        with db.transaction(connection):
            connection.execute("UPDATE transactions SET created = ? || substr(created, 11) "
                               "WHERE kind = 'authorization'", (yesterday,))
    finally:
        connection.close()
