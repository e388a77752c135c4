"""The phone's secure element: card keys sealed under a device key, never in the wallet's clear state.

The wallet file carries one AES-256-GCM blob; the device key lives in a separate file (the phone's
hardware key). No command exports keys: only the applications built from them can use them.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.jsonfile import FileFormatError

DEVICE_KEY_BYTES = 32


def new_device_key() -> bytes:
    return AESGCM.generate_key(bit_length=8 * DEVICE_KEY_BYTES)


def seal(device_key: bytes, wallet_id: str, keys: dict[str, Any]) -> str:
    """Encrypt the key set; the wallet id is bound in so a blob cannot move to another wallet."""
    nonce = os.urandom(12)
    plaintext = json.dumps(keys, sort_keys=True).encode()
    sealed = AESGCM(device_key).encrypt(nonce, plaintext, wallet_id.encode())
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(device_key: bytes, wallet_id: str, blob: str) -> dict[str, Any]:
    try:
        raw = base64.b64decode(blob, validate=True)
        plaintext = AESGCM(device_key).decrypt(raw[:12], raw[12:], wallet_id.encode())
    except (ValueError, InvalidTag):
        raise FileFormatError(
            "secure_element.sealed_keys: cannot be opened (wrong device key, or the blob was altered)"
        ) from None
    keys = json.loads(plaintext)
    if not isinstance(keys, dict):
        raise FileFormatError("secure_element.sealed_keys: sealed content is not a key set")
    return keys
