"""The terminal's CA public key list (the world's scheme/capk.json): every entry checked against its checksum."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from emvcore.crypto.oda import CaPublicKey, RsaPublicKey


class CapkError(Exception):
    """The CAPK file is missing, malformed, or an entry does not match its checksum."""


def load_capks(path: Path) -> tuple[CaPublicKey, ...]:
    try:
        data = json.loads(path.read_text())
        keys = []
        for number, entry in enumerate(data["keys"]):
            expiry = entry.get("expiry") or None
            key = CaPublicKey(
                bytes.fromhex(entry["rid"]), int(entry["index"]),
                RsaPublicKey(bytes.fromhex(entry["modulus"]), bytes.fromhex(entry["exponent"])),
                datetime.date.fromisoformat(expiry) if expiry else None,
            )
            if key.checksum() != bytes.fromhex(entry["checksum"]):
                raise CapkError(f"{path}: keys[{number}]: checksum does not match the key (corrupted entry)")
            keys.append(key)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CapkError(f"{path}: not a CAPK list ({error})") from None
    return tuple(keys)
