"""The token a phone receives when a card is bound (the token service's verify answer): written by the acquirer
stub's token service, read by the wallet app's binding client, defined here once.

The wallet's limits the token service holds a phone to (eight payment cards, the card id's form) are the wallet's
own (firmware.apps.wallet); they are named here too so that the acquirer reads them from the issuing side only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.qpboc import QPbocKeys, QPbocProfile
from firmware.apps.wallet.wallet import CARD_ID_PATTERN, MAX_PAYMENT_CARDS
from firmware.jsonfile import Fields, FileFormatError

__all__ = ["CARD_ID_PATTERN", "MAX_PAYMENT_CARDS", "DeliveredToken", "TokenPayloadError", "decode", "encode"]

PAR_PATTERN = r"[0-9A-Z]{29}"  # EMVCo Payment Account Reference: 29 characters


class TokenPayloadError(ValueError):
    """A delivery that must not reach the wallet: a field missing or malformed, or a profile that is not the token's."""


@dataclass(frozen=True)
class DeliveredToken:
    token_id: int
    card_id: str  # the id the card gets in the wallet
    card_label: str  # what the wallet shows, e.g. "ICBC Debit •••• 3013"
    kind: str  # debit, credit
    profile: QPbocProfile  # the token's card application: token PAN, PAR and expiry inside
    icc_master_key: bytes  # the token's cryptogram key, for the secure element; nothing else secret travels


def encode(token: DeliveredToken) -> dict[str, Any]:
    profile = token.profile
    return {
        "token_id": token.token_id,
        "card_id": token.card_id,
        "token_pan": profile.pan,
        "expiry": profile.expiry.isoformat(),
        "par": profile.par,
        "kind": token.kind,
        "card_label": token.card_label,
        "profile": qpboc_schema.profile_to_dict(profile),
        "keys": {"icc_master_key": token.icc_master_key.hex().upper()},
    }


def decode(payload: Any) -> tuple[str, QPbocProfile, QPbocKeys]:
    """(label, profile, keys) as the secure element stores them; TokenPayloadError names what is wrong."""
    if not isinstance(payload, dict):
        raise TokenPayloadError("the token is not a JSON object")
    try:
        fields = Fields(payload, "token")
        profile = qpboc_schema.profile_from_dict(fields.obj("profile"))
        keys = qpboc_schema.keys_from_dict(fields.obj("keys"))
        label = fields.str("card_label")
        token_pan = fields.digits("token_pan", length=(13, 19))
        par = fields.str("par", pattern=PAR_PATTERN)
    except FileFormatError as error:
        raise TokenPayloadError(str(error)) from None
    if profile.pan != token_pan or profile.par != par or profile.expiry.isoformat() != payload.get("expiry"):
        raise TokenPayloadError("its profile is not the token's (PAN, PAR or expiry differ)")
    return label, profile, keys
