"""Card files: a malformed file names the field; a crash while saving never loses the old counters."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from reader import TTQ_CARD_READER, tap, terminal_data

from firmware.apps.cards.cardfile import PlainCard
from firmware.apps.present import load_presentable
from firmware.issuing.layout import World
from firmware.jsonfile import FileFormatError


def _card_path(world: World, issuer: str = "icbc-debit") -> Path:
    return world.path(Path(next(c["file"] for c in world.cards() if c["issuer"] == issuer)))


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["applications"][0]["state"].update(atc=-1), "applications[0].state.atc"),
    (lambda d: d["applications"][0]["state"].update(atc="7"), "applications[0].state.atc"),
    (lambda d: d["applications"][0]["profile"].update(pan="62ABC"), "applications[0].profile.pan"),
    (lambda d: d["applications"][0]["profile"].update(expiry="2031-02-30"), "applications[0].profile.expiry"),
    (lambda d: d["applications"][0]["profile"].update(algorithm="aes"), "applications[0].profile.algorithm"),
    (lambda d: d["applications"][0]["keys"].update(icc_master_key="00"), "applications[0].keys.icc_master_key"),
    (lambda d: d["applications"][0]["profile"]["offline"].pop("enabled"), "applications[0].profile.offline.enabled"),
    (lambda d: d["applications"][0].update(type="mifare"), "applications[0].type"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.update(format="quickpass-wallet"), "format"),
    (lambda d: d.update(applications=[]), "applications"),
    (lambda d: d.update(uid="0102"), "uid"),
])
def test_a_malformed_card_file_is_refused_naming_the_field(world: World, change: Any, field: str) -> None:
    path = _card_path(world)
    _edit(path, change)
    with pytest.raises(FileFormatError) as error:
        PlainCard.load(path)
    assert str(error.value).startswith(f"{path}: {field}:")


def test_a_malformed_transit_card_names_the_field(world: World) -> None:
    path = world.path(Path(world.transit_cards()[0]["file"]))
    _edit(path, lambda d: d["applications"][0]["state"].update(balance=-5))
    with pytest.raises(FileFormatError, match=r"applications\[0\]\.state\.balance"):
        PlainCard.load(path)


def test_invalid_json_says_where(world: World) -> None:
    path = _card_path(world)
    path.write_text('{"format": "quickpass-card",\n "version": 1,,}')
    with pytest.raises(FileFormatError, match="line 2"):
        load_presentable(path)


def test_a_file_that_is_neither_card_nor_wallet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"format": "something-else"}')
    with pytest.raises(FileFormatError, match="neither a card"):
        load_presentable(path)


def test_a_crash_while_saving_keeps_the_previous_file(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _card_path(world)
    card = PlainCard.load(path)
    before = path.read_bytes()

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    # the card goes mute: no cryptogram leaves it with an ATC that was not stored
    with pytest.raises(OSError, match="power cut"):
        tap(card.chip(), card.applications[0].aid, terminal_data(150_000, ttq=TTQ_CARD_READER))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left



def test_a_binary_file_is_refused_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(FileFormatError, match="invalid UTF-8"):
        load_presentable(path)
