"""The token vault's protection of card numbers: sealed at rest, looked up by keyed hash, shown masked.

The vault key lives in the instance folder (never in source or the database); a database copy alone
reveals no PAN.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from emvcore.tags import mask_pan


class Vault:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the vault key is 32 bytes")
        self._seal_key = AESGCM(hashlib.sha256(b"seal" + key).digest())
        self._hash_key = hashlib.sha256(b"hash" + key).digest()

    def seal(self, pan: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._seal_key.encrypt(nonce, pan.encode(), b"pan")

    def unseal(self, sealed: bytes) -> str:
        return self._seal_key.decrypt(sealed[:12], sealed[12:], b"pan").decode()

    def pan_hash(self, pan: str) -> str:
        return hmac.new(self._hash_key, pan.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def masked(pan: str) -> str:
        return mask_pan(pan)
