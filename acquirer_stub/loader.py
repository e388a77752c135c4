"""`acquirer-stub init`: load the test world (issuers, accounts, tokens, terminals, users) into the database."""

from __future__ import annotations

import datetime
import re
import sqlite3
from pathlib import Path
from typing import Any

from werkzeug.security import generate_password_hash

from acquirer_stub.instance import DEFAULT_LISTEN, DEFAULT_WEB_LISTEN, Instance, create_instance
from acquirer_stub.store import db, transit
from acquirer_stub.store.db import transaction
from acquirer_stub.vault import Vault
from firmware.jsonfile import FileFormatError
from firmware.world.layout import ACQUIRER_TERMINALS, World
from hostproto.messages import MAX_AMOUNT

DEMO_PROMOTION_PERCENT, DEMO_PROMOTION_CAP = 10, 2_000  # the seed's bank promotion: 10 % off, up to ¥20


def init_instance(root: Path, world: World, *, listen: str = DEFAULT_LISTEN, web_listen: str = DEFAULT_WEB_LISTEN,
                  today: datetime.date | None = None) -> tuple[Instance, dict]:
    """A new instance folder with `world` in its database: `acquirer-stub init`, and every test's acquirer."""
    instance = create_instance(root, world, listen=listen, web_listen=web_listen)
    connection = db.connect(instance.database)
    try:
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
        if connection.execute("SELECT COUNT(*) FROM issuers").fetchone()[0]:
            raise RuntimeError("the database already holds a world")
        for issuer in world.issuers():
            connection.execute(
                "INSERT INTO issuers (code, name, kind, bin, algorithm) VALUES (?, ?, ?, ?, ?)",
                (issuer["code"], issuer["name"], issuer["kind"], issuer["bin"], issuer["algorithm"]),
            )
        user_ids = {}
        for user in world.users():
            cursor = connection.execute(
                "INSERT INTO users (username, password_hash, role, phone) VALUES (?, ?, ?, ?)",
                (user["username"], generate_password_hash(user["password"]), user["role"], user.get("phone")),
            )
            user_ids[user["role"]] = cursor.lastrowid
        account_ids = {}
        for card in world.cards():
            account = card["account"]
            cursor = connection.execute(
                "INSERT INTO accounts (issuer, pan_hash, pan_sealed, pan_masked, psn, expiry, kind, balance,"
                " credit_limit, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (card["issuer"], vault.pan_hash(card["pan"]), vault.seal(card["pan"]), vault.masked(card["pan"]),
                 card["psn"], card["expiry"], card["kind"], account.get("balance"), account.get("credit_limit"),
                 user_ids.get("cardholder")),
            )
            account_ids[card["pan"]] = cursor.lastrowid
        for token in world.tsp()["tokens"]:
            connection.execute(
                "INSERT OR IGNORE INTO devices (id, owner_id, name) VALUES (?, ?, ?)",
                (token["wallet_id"], user_ids.get("cardholder"), "Demo phone"),
            )
            connection.execute(
                "INSERT INTO tokens (token_hash, token_sealed, token_masked, account_id, device_id, wallet_card_id,"
                " par, expiry, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (vault.pan_hash(token["token_pan"]), vault.seal(token["token_pan"]), vault.masked(token["token_pan"]),
                 account_ids[token["funding_pan"]], token["wallet_id"], token["card_id"], token["par"],
                 token["expiry"], token["status"], today.isoformat()),
            )
        for number, terminal in enumerate(world.terminals()):
            connection.execute(
                "INSERT INTO terminals (tid, mid, name) VALUES (?, ?, ?)",
                (terminal["tid"], terminal["mid"], terminal["name"]),
            )
            connection.executemany(
                "INSERT INTO terminal_floor_limits (tid, aid, floor_limit) VALUES (?, ?, ?)",
                [(terminal["tid"], aid, limit) for aid, limit in floor_limits(terminal, f"terminals[{number}]")],
            )
        transit.add_cities(connection, [(city["city_code"], city["name"]) for city in world.transit_keys()])
        connection.execute(
            "INSERT INTO promotions (issuer, title, percent, cap, starts, ends) VALUES (?, ?, ?, ?, ?, ?)",
            ("boc-credit", "Bank of China QuickPass: 10 % off, up to ¥20", DEMO_PROMOTION_PERCENT,
             DEMO_PROMOTION_CAP, today.isoformat(), today.replace(year=today.year + 1).isoformat()),
        )
    return {
        "issuers": len(world.issuers()), "accounts": len(account_ids), "tokens": len(world.tsp()["tokens"]),
        "terminals": len(world.terminals()),
    }
