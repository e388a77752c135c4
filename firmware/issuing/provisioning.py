"""Local token provisioning: bind a plain card of the world to a phone wallet through the world's TSP vault.

The acquirer stub's token service does the same online (card details, SMS code, token delivered); this
path exists so the card side can be set up and tested on its own.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from emvcore.qpboc import aid_kind
from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.cards.qpboc import QPbocApplication
from firmware.apps.wallet.wallet import MAX_PAYMENT_CARDS, Wallet, WalletCard, WalletError
from firmware.issuing import layout
from firmware.issuing.personalize import new_pan, new_par, token_card
from firmware.jsonfile import FileFormatError, write_json_atomic


class ProvisioningError(Exception):
    """The card cannot be tokenized into this wallet (not a bank card, not of this world …)."""


def add_card_to_wallet(world_root: Path, wallet_path: Path, card_path: Path, card_id: str) -> WalletCard:
    world = layout.World.open(world_root)
    wallet = Wallet.load(wallet_path)
    if len(wallet.cards) >= MAX_PAYMENT_CARDS:
        raise WalletError(f"the wallet already holds {MAX_PAYMENT_CARDS} payment cards; remove one first")
    funding = next(
        (app for app in PlainCard.load(card_path).applications if isinstance(app, QPbocApplication)), None
    )
    if funding is None:
        raise ProvisioningError(f"{card_path}: not a bank card (no UnionPay debit/credit application)")
    issuer = next((c for c in world.cards() if c["pan"] == funding.profile.pan), None)
    if issuer is None:
        raise ProvisioningError(f"{card_path}: this card was not issued in the world {world_root}")
    wallet.check_new_id(card_id)

    vault = world.tsp()
    token_pan, par = new_pan(vault["token_bin"]), new_par()
    kind = aid_kind(funding.profile.aid) or "debit"
    expiry = funding.profile.expiry
    profile, keys = token_card(
        bytes.fromhex(vault["token_imk"]), token_pan=token_pan, par=par, kind=kind, expiry=expiry
    )
    if not isinstance(vault.get("tokens"), list):
        raise FileFormatError(f"{world_root / layout.TSP}: tokens: must be a list")
    vault["tokens"].append({
        "token_pan": token_pan, "funding_pan": funding.profile.pan, "par": par, "issuer": issuer["issuer"],
        "wallet_id": wallet.wallet_id, "card_id": card_id, "expiry": expiry.isoformat(), "status": "active",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    })
    # The vault learns the token before the phone holds it: a crash in between leaves an unused token,
    # never a phone paying with a token the host cannot map.
    write_json_atomic(world_root / layout.TSP, vault)
    bank = issuer["issuer"].split("-")[0].upper()
    return wallet.add_card(card_id, f"{bank} {kind.title()} •••• {funding.profile.pan[-4:]}", profile, keys)
