"""`acquirer-stub init`: load the test world (issuers, accounts, tokens, terminals, users) into the database."""

from __future__ import annotations

import datetime
import re
import sqlite3
from pathlib import Path
from typing import Any

from werkzeug.security import generate_password_hash

from acquirer_stub.instance import DEFAULT_LISTEN, DEFAULT_WEB_LISTEN, Instance, InstanceError, create_instance
from acquirer_stub.store import cards, db, issuers, terminals, tokens, transit, users
from acquirer_stub.store.db import transaction
from acquirer_stub.vault import Vault
from firmware.issuing.layout import ACQUIRER_TERMINALS, World
from firmware.jsonfile import FileFormatError
from hostproto.messages import MAX_AMOUNT

DEMO_PROMOTION_PERCENT, DEMO_PROMOTION_CAP = 10, 2_000  # the seed's bank promotion: 10 % off, up to ¥20


def init_instance(root: Path, world: World, *, listen: str = DEFAULT_LISTEN, web_listen: str = DEFAULT_WEB_LISTEN,
                  database: str = "", replace: bool = False,
                  today: datetime.date | None = None) -> tuple[Instance, dict]:
    """A new instance folder with `world` in its database: `acquirer-stub init`, and every test's acquirer.

    A PostgreSQL database must be empty, unless `replace` (`--force`) says to clear it first."""
    instance = create_instance(root, world, listen=listen, web_listen=web_listen, database=database)
    connection = db.connect(instance.database)
    try:
        if db.holds_data(connection):
            if not replace:
                raise InstanceError(f"the database {db.shown(instance.database)} already holds an acquirer; "
                                    "use --force to replace it")
            db.clear(connection)
        db.migrate(connection)
        counts = load_world(connection, world, instance.vault(), today=today or datetime.date.today())
    finally:
        connection.close()
    return instance, counts


def floor_limits(terminal: dict[str, Any], where: str) -> list[tuple[str, int]]:
    """A terminal entry's offline floor limits as (AID hex, fen), '' for any other AID. An entry without
    `floor_limit` gets 0: every offline advice of that terminal is an exception until one is set."""
    def amount(value: object, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
            raise FileFormatError(f"{ACQUIRER_TERMINALS} {where}.{field}: must be an amount in fen, 0 to {MAX_AMOUNT}")
        return value

    limits = [("", amount(terminal.get("floor_limit", 0), "floor_limit"))]
    per_aid = terminal.get("aid_floor_limits", {})
    if not isinstance(per_aid, dict):
        raise FileFormatError(f"{ACQUIRER_TERMINALS} {where}.aid_floor_limits: must be an object of AID → fen")
    for aid, limit in per_aid.items():
        if not re.fullmatch(r"([0-9A-F]{2}){5,16}", str(aid)):
            raise FileFormatError(f"{ACQUIRER_TERMINALS} {where}.aid_floor_limits: {str(aid)[:40]!r} is not an AID"
                                  " (5 to 16 bytes of upper-case hex)")
        limits.append((aid, amount(limit, f"aid_floor_limits.{aid}")))
    return limits


def load_world(connection: sqlite3.Connection, world: World, vault: Vault, *, today: datetime.date) -> dict:
    """Insert everything once, in one transaction; returns counts for the report."""
    with transaction(connection):
        if issuers.any_issuer(connection):
            raise RuntimeError("the database already holds a world")
        for issuer in world.issuers():
            issuers.add_issuer(connection, issuer["code"], issuer["name"], issuer["kind"], issuer["bin"],
                               issuer["algorithm"])
        user_ids = {user["role"]: users.add(connection, user["username"], generate_password_hash(user["password"]),
                                            user["role"], user.get("phone")) for user in world.users()}
        account_ids = {}
        for card in world.cards():
            account = card["account"]
            account_ids[card["pan"]] = cards.add_card(
                connection, issuer=card["issuer"], pan_hash=vault.pan_hash(card["pan"]),
                pan_sealed=vault.seal(card["pan"]), pan_masked=vault.masked(card["pan"]), psn=card["psn"],
                expiry=card["expiry"], kind=card["kind"], balance=account.get("balance"),
                credit_limit=account.get("credit_limit"), owner_id=user_ids.get("cardholder"))
        for token in world.tsp()["tokens"]:
            tokens.add_device(connection, token["wallet_id"], user_ids.get("cardholder"), "Demo phone")
            tokens.add_token(
                connection, token_hash=vault.pan_hash(token["token_pan"]), token_sealed=vault.seal(token["token_pan"]),
                token_masked=vault.masked(token["token_pan"]), account_id=account_ids[token["funding_pan"]],
                device_id=token["wallet_id"], wallet_card_id=token["card_id"], par=token["par"],
                expiry=token["expiry"], status=token["status"], created=today.isoformat())
        for number, terminal in enumerate(world.terminals()):
            terminals.add_terminal(connection, terminal["tid"], terminal["mid"], terminal["name"],
                                   floor_limits(terminal, f"terminals[{number}]"))
        transit.add_cities(connection, [(city["city_code"], city["name"]) for city in world.transit_keys()])
        issuers.add_promotion(connection, "boc-credit", "Bank of China QuickPass: 10 % off, up to ¥20",
                              DEMO_PROMOTION_PERCENT, DEMO_PROMOTION_CAP, today.isoformat(),
                              today.replace(year=today.year + 1).isoformat())
    return {
        "issuers": len(world.issuers()), "accounts": len(account_ids), "tokens": len(world.tsp()["tokens"]),
        "terminals": len(world.terminals()),
    }
