"""firmware/ is three rooms (issue 15 §4) that import downwards only: the card applications import neither of the
others, the issuing side not the simulator; the acquirer stub reads `firmware` through the issuing side and the
file helpers alone; the token payload is written and read through `firmware.issuing.tokens` only."""

from __future__ import annotations

import ast
import datetime
from pathlib import Path

import pytest

from firmware.issuing import tokens
from firmware.issuing.personalize import token_card

ROOT = Path(__file__).resolve().parents[3]
HELPERS = ("firmware.jsonfile", "firmware.privatefiles")
ALLOWED = {  # package folder → the firmware modules it may import (prefixes)
    "firmware/apps": ("firmware.apps", *HELPERS),
    "firmware/issuing": ("firmware.issuing", "firmware.apps", *HELPERS),
    "firmware/simulator": ("firmware.simulator", "firmware.apps", *HELPERS),
    "acquirer_stub": ("firmware.issuing", *HELPERS),
    "terminal": (),
    "hostproto": (),
    "emvcore": (),
}


def firmware_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "firmware":
            names = [node.module] if node.module != "firmware" else [f"firmware.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "firmware"]
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_each_room_imports_only_downwards(folder: str) -> None:
    allowed = ALLOWED[folder]
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for path in sorted((ROOT / folder).rglob("*.py"))
                 for line, name in firmware_imports(path)
                 if not any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)]
    assert offenders == []


def test_the_rule_sees_every_import_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import firmware.simulator.rig\nfrom firmware import cli\nfrom firmware.issuing import tokens\n"
                      "def late():\n    from firmware.apps.wallet.wallet import Wallet\n")
    assert sorted(name for _, name in firmware_imports(sample)) == [
        "firmware.apps.wallet.wallet", "firmware.cli", "firmware.issuing", "firmware.simulator.rig"]


def test_the_token_payload_round_trips_and_a_changed_profile_is_refused() -> None:
    profile, card_keys = token_card(bytes(range(16)), token_pan="6288880000000001", par="A" * 29, kind="credit",
                                    expiry=datetime.date(2030, 12, 31))
    token = tokens.DeliveredToken(7, "boc-credit", "BOC Credit •••• 0001", "credit", profile, card_keys.icc_master_key)
    payload = tokens.encode(token)
    label, decoded, decoded_keys = tokens.decode(payload)
    assert (label, decoded, decoded_keys.icc_master_key) == (token.card_label, profile, card_keys.icc_master_key)
    assert set(payload) == {"token_id", "card_id", "token_pan", "expiry", "par", "kind", "card_label", "profile",
                            "keys"}
    with pytest.raises(tokens.TokenPayloadError, match="not the token's"):
        tokens.decode({**payload, "par": "B" * 29})
    with pytest.raises(tokens.TokenPayloadError, match=r"token\.keys"):
        tokens.decode({**payload, "keys": {}})
    with pytest.raises(tokens.TokenPayloadError, match="not a JSON object"):
        tokens.decode([payload])
