"""The phone wallet (Mi Pay style): up to eight tokenized bank cards and transit cards behind one antenna.

A payment tap needs the holder's fingerprint first (GPO answers 6986, "see phone", until then); the
express transit card pays without it. Every tap shows a new random UID, as phones do.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.card import Chip
from firmware.apps.cards.qpboc import QPbocApplication, QPbocKeys, QPbocProfile, QPbocState
from firmware.apps.cards.transit import TransitKeys, TransitProfile, TransitPurse, TransitState
from firmware.apps.wallet import secure_element
from firmware.apps.wallet.fingerprint import DEFAULT_WINDOW_SECONDS, FingerprintGate, finger_digest
from firmware.jsonfile import TEST_ONLY, Fields, FileFormatError, read_json, write_json_atomic
from firmware.privatefiles import write_private

WALLET_FORMAT = "quickpass-wallet"
WALLET_VERSION = 1
MAX_PAYMENT_CARDS = 8
CARD_ID_PATTERN = r"[a-z0-9][a-z0-9-]{0,31}"


class WalletError(Exception):
    """A wallet operation the user asked for is not possible (full wallet, unknown card …)."""


@dataclass
class WalletCard:
    """A tokenized bank card: the token's profile and counters (its keys sit in the secure element)."""

    id: str
    label: str  # what the wallet shows, e.g. "ICBC Credit •••• 1234" (funding card's last 4)
    profile: QPbocProfile
    state: QPbocState


@dataclass
class WalletTransitCard:
    id: str
    label: str
    profile: TransitProfile
    state: TransitState


def device_key_path(wallet_path: Path) -> Path:
    """The device key lives beside the wallet file, apart from it (the phone's hardware key)."""
    return wallet_path.with_name(wallet_path.name.removesuffix(".json") + ".device-key")


class Wallet:
    def __init__(
        self,
        path: Path,
        wallet_id: str,
        owner: str,
        fingerprint: FingerprintGate,
        device_key: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.wallet_id = wallet_id
        self.owner = owner
        self.fingerprint = fingerprint
        self.cards: list[WalletCard] = []
        self.transit: list[WalletTransitCard] = []
        self.default_card: str | None = None
        self.express_transit: str | None = None
        self.next_tap_card: str | None = None  # chosen on the phone for the next tap only
        self._device_key = device_key
        self._keys: dict[str, dict[str, Any]] = {}
        self._clock = clock

    # -- creating, loading, saving -----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        owner: str,
        fingers: list[str],
        *,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> Wallet:
        device_key = secure_element.new_device_key()
        key_path = device_key_path(path)
        write_private(key_path, device_key.hex() + "\n")
        salt = secrets.token_bytes(16)
        gate = FingerprintGate(
            salt, [finger_digest(salt, f) for f in fingers], window_seconds=window_seconds, clock=clock
        )
        wallet = cls(path, secrets.token_hex(8), owner, gate, device_key, clock=clock)
        wallet.save()
        return wallet

    @classmethod
    def load(cls, path: Path, *, clock: Callable[[], float] = time.time) -> Wallet:
        try:
            return cls._load(path, clock)
        except FileFormatError as error:
            raise FileFormatError(f"{path}: {error}") from None

    @classmethod
    def _load(cls, path: Path, clock: Callable[[], float]) -> Wallet:
        fields = Fields(read_json(path), "")
        fields.header(WALLET_FORMAT, WALLET_VERSION)
        key_path = device_key_path(path)
        try:
            device_key = bytes.fromhex(key_path.read_text().strip())
        except (OSError, ValueError):
            raise FileFormatError(f"device key {key_path.name}: missing or not hexadecimal") from None
        finger = fields.obj("fingerprint")
        gate = FingerprintGate(
            finger.hex("salt", length=16),
            [f.str("digest", pattern=r"[0-9a-f]{64}") for f in finger.objects("enrolled")],
            window_seconds=finger.int("window_seconds", minimum=1, maximum=3600),
            verified_until=float(finger.int("verified_until", default=0)),
            clock=clock,
        )
        wallet = cls(
            path,
            fields.str("wallet_id", pattern=r"[0-9a-f]{16}"),
            fields.str("owner"),
            gate,
            device_key,
            clock=clock,
        )
        element = fields.obj("secure_element")
        keys = secure_element.unseal(device_key, wallet.wallet_id, element.str("sealed_keys"))
        for card in fields.objects("cards"):
            card_id = card.str("id", pattern=CARD_ID_PATTERN)
            if card_id not in keys:
                raise FileFormatError(f"{card.path}.id: no keys for {card_id!r} in the secure element")
            qpboc_schema.keys_from_dict(Fields(keys[card_id], f"secure_element[{card_id}]"))
            wallet.cards.append(
                WalletCard(
                    card_id,
                    card.str("label"),
                    qpboc_schema.profile_from_dict(card.obj("profile")),
                    qpboc_schema.state_from_dict(card.obj("state")),
                )
            )
        for item in fields.objects("transit"):
            card_id = item.str("id", pattern=CARD_ID_PATTERN)
            if card_id not in keys:
                raise FileFormatError(f"{item.path}.id: no keys for {card_id!r} in the secure element")
            TransitKeys.from_dict(Fields(keys[card_id], f"secure_element[{card_id}]"))
            profile = TransitProfile.from_dict(item.obj("profile"))
            state = TransitState.from_dict(item.obj("state"))
            wallet.transit.append(WalletTransitCard(card_id, item.str("label"), profile, state))
        if len(wallet.cards) > MAX_PAYMENT_CARDS:
            raise FileFormatError(f"cards: at most {MAX_PAYMENT_CARDS} payment cards, found {len(wallet.cards)}")
        ids = [c.id for c in wallet.cards] + [t.id for t in wallet.transit]
        if len(set(ids)) != len(ids):
            raise FileFormatError("cards: two cards share an id")
        wallet._keys = keys
        wallet.default_card = _optional_reference(fields, "default_card", [c.id for c in wallet.cards])
        wallet.express_transit = _optional_reference(fields, "express_transit", [t.id for t in wallet.transit])
        wallet.next_tap_card = _optional_reference(fields, "next_tap_card", [c.id for c in wallet.cards])
        return wallet

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": WALLET_FORMAT,
            "version": WALLET_VERSION,
            "test_only": TEST_ONLY,
            "wallet_id": self.wallet_id,
            "owner": self.owner,
            "default_card": self.default_card or "",
            "express_transit": self.express_transit or "",
            "next_tap_card": self.next_tap_card or "",
            "fingerprint": {
                "salt": self.fingerprint.salt.hex(),
                "enrolled": [{"digest": digest} for digest in self.fingerprint.enrolled],
                "window_seconds": self.fingerprint.window_seconds,
                "verified_until": math.ceil(self.fingerprint.verified_until),
            },
            "cards": [
                {
                    "id": card.id,
                    "label": card.label,
                    "profile": qpboc_schema.profile_to_dict(card.profile),
                    "state": qpboc_schema.state_to_dict(card.state),
                }
                for card in self.cards
            ],
            "transit": [
                {"id": t.id, "label": t.label, "profile": t.profile.to_dict(), "state": t.state.to_dict()}
                for t in self.transit
            ],
            "secure_element": {"sealed_keys": secure_element.seal(self._device_key, self.wallet_id, self._keys)},
        }

    def save(self) -> None:
        write_json_atomic(self.path, self.to_dict())

    # -- what the user does on the phone --------------------------------------------------------------

    def add_card(self, card_id: str, label: str, profile: QPbocProfile, keys: QPbocKeys) -> WalletCard:
        if len(self.cards) >= MAX_PAYMENT_CARDS:
            raise WalletError(f"the wallet already holds {MAX_PAYMENT_CARDS} payment cards; remove one first")
        self.check_new_id(card_id)
        card = WalletCard(card_id, label, profile, QPbocState())
        self.cards.append(card)
        self._keys[card_id] = qpboc_schema.keys_to_dict(keys)
        if self.default_card is None:
            self.default_card = card_id
        self.save()
        return card

    def add_transit(
        self, card_id: str, label: str, profile: TransitProfile, keys: TransitKeys, state: TransitState
    ) -> WalletTransitCard:
        self.check_new_id(card_id)
        card = WalletTransitCard(card_id, label, profile, state)
        self.transit.append(card)
        self._keys[card_id] = keys.to_dict()
        if self.express_transit is None:
            self.express_transit = card_id
        self.save()
        return card

    def remove_card(self, card_id: str) -> None:
        card = self._card(card_id)
        self.cards.remove(card)
        del self._keys[card_id]
        if self.default_card == card_id:
            self.default_card = self.cards[0].id if self.cards else None
        if self.next_tap_card == card_id:
            self.next_tap_card = None
        self.save()

    def set_default(self, card_id: str) -> None:
        self.default_card = self._card(card_id).id
        self.save()

    def choose_for_next_tap(self, card_id: str) -> None:
        self.next_tap_card = self._card(card_id).id
        self.save()

    def authenticate(self, finger: str) -> bool:
        ok = self.fingerprint.verify(finger)
        self.save()
        return ok

    # -- what the terminal sees -------------------------------------------------------------------------

    def uid_for_tap(self) -> bytes:
        """ISO 14443-3 random UID: 4 bytes starting 08, drawn anew each time a field powers the phone."""
        return b"\x08" + secrets.token_bytes(3)

    def chip(self) -> Chip:
        """The applications offered on this tap, the card to pay with first."""
        first = self.next_tap_card or self.default_card
        ordered = sorted(self.cards, key=lambda card: card.id != first)
        applications: list[QPbocApplication | TransitPurse] = [
            QPbocApplication(
                card.profile,
                qpboc_schema.keys_from_dict(Fields(self._keys[card.id], "")),
                card.state,
                on_change=self._payment_made,
                cardholder_verified=self.fingerprint.consume,
            )
            for card in ordered
        ]
        for transit in self.transit:
            if transit.id == self.express_transit:  # express mode: no fingerprint
                applications.append(
                    TransitPurse(
                        transit.profile,
                        TransitKeys.from_dict(Fields(self._keys[transit.id], "")),
                        transit.state,
                        on_change=self.save,
                    )
                )
        return Chip(applications)

    def _payment_made(self) -> None:
        self.next_tap_card = None
        self.save()

    def _card(self, card_id: str) -> WalletCard:
        for card in self.cards:
            if card.id == card_id:
                return card
        known = ", ".join(c.id for c in self.cards) or "none"
        raise WalletError(f"no payment card {card_id!r} in this wallet (cards: {known})")

    def check_new_id(self, card_id: str) -> None:
        """Refuse an id that is malformed or taken, before anything is written anywhere."""
        if not re.fullmatch(CARD_ID_PATTERN, card_id):
            raise WalletError(f"card id {card_id!r}: use lower-case letters, digits and '-' (max 32)")
        if any(c.id == card_id for c in self.cards) or any(t.id == card_id for t in self.transit):
            raise WalletError(f"card id {card_id!r} is already in this wallet")


def _optional_reference(fields: Fields, name: str, known: list[str]) -> str | None:
    value = fields.str(name, default="")
    if value and value not in known:
        raise FileFormatError(f"{name}: {value!r} is not a card in this wallet")
    return value or None
