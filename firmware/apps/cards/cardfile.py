"""A plain contactless card as a file: its applications, keys and counters, saved after every change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.card import Chip
from firmware.apps.cards.qpboc import QPbocApplication
from firmware.apps.cards.transit import TransitKeys, TransitProfile, TransitPurse, TransitState
from firmware.jsonfile import TEST_ONLY, Fields, FileFormatError, read_json, write_json_atomic

CARD_FORMAT = "quickpass-card"
CARD_VERSION = 1


class PlainCard:
    """A bank or transit card: fixed UID, its applications in PPSE order, its own file as EEPROM."""

    def __init__(self, path: Path, name: str, uid: bytes, entries: list[dict[str, Any]]) -> None:
        self.path = path
        self.name = name
        self.uid = uid
        self._entries = entries
        self.applications = [self._build(entry) for entry in entries]

    @classmethod
    def load(cls, path: Path) -> PlainCard:
        fields = Fields(read_json(path), "")
        try:
            fields.header(CARD_FORMAT, CARD_VERSION)
            entries = [_validated_entry(app) for app in fields.objects("applications")]
            if not entries:
                raise FileFormatError("applications: a card needs at least one application")
            card = cls(path, fields.str("name"), fields.hex("uid", length=(4, 7)), entries)
        except FileFormatError as error:
            raise FileFormatError(f"{path}: {error}") from None
        return card

    def uid_for_tap(self) -> bytes:
        return self.uid

    def chip(self) -> Chip:
        """The chip as a reader finds it on a new tap: nothing selected."""
        return Chip(self.applications)

    def save(self) -> None:
        write_json_atomic(self.path, self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        applications = []
        for entry, app in zip(self._entries, self.applications, strict=True):
            if isinstance(app, QPbocApplication):
                state = qpboc_schema.state_to_dict(app.state)
            else:
                state = app.state.to_dict()
            applications.append({**entry, "state": state})
        return {
            "format": CARD_FORMAT,
            "version": CARD_VERSION,
            "test_only": TEST_ONLY,
            "name": self.name,
            "uid": self.uid.hex().upper(),
            "applications": applications,
        }

    def _build(self, entry: dict[str, Any]) -> QPbocApplication | TransitPurse:
        where = "applications"
        if entry["type"] == "qpboc":
            return QPbocApplication(
                qpboc_schema.profile_from_dict(Fields(entry["profile"], f"{where}.profile")),
                qpboc_schema.keys_from_dict(Fields(entry["keys"], f"{where}.keys")),
                qpboc_schema.state_from_dict(Fields(entry["state"], f"{where}.state")),
                on_change=self.save,
            )
        return TransitPurse(
            TransitProfile.from_dict(Fields(entry["profile"], f"{where}.profile")),
            TransitKeys.from_dict(Fields(entry["keys"], f"{where}.keys")),
            TransitState.from_dict(Fields(entry["state"], f"{where}.state")),
            on_change=self.save,
        )


def _validated_entry(app: Fields) -> dict[str, Any]:
    """Check one application entry completely before anything is built from it."""
    kind = app.choice("type", ("qpboc", "transit"))
    if kind == "qpboc":
        qpboc_schema.profile_from_dict(app.obj("profile"))
        qpboc_schema.keys_from_dict(app.obj("keys"))
        qpboc_schema.state_from_dict(app.obj("state"))
    else:
        TransitProfile.from_dict(app.obj("profile"))
        TransitKeys.from_dict(app.obj("keys"))
        TransitState.from_dict(app.obj("state"))
    return app.data


def application_entry(kind: str, profile: dict[str, Any], keys: dict[str, Any], state: dict[str, Any]) -> dict:
    return {"type": kind, "profile": profile, "keys": keys, "state": state}


def write_card(path: Path, name: str, uid: bytes, entries: list[dict[str, Any]]) -> PlainCard:
    """Personalize: write a new card file and return it loaded (so a bad entry fails here, not at a tap)."""
    card = PlainCard(path, name, uid, entries)
    card.save()
    return PlainCard.load(path)
