"""Consumer-device CVM: the fingerprint gate that turns a "see phone" tap into an approved one.

A verified fingerprint opens a window (60 s by default); the next payment tap inside it uses the
verification up. Only salted digests of the enrolled fingers are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

DEFAULT_WINDOW_SECONDS = 60


def finger_digest(salt: bytes, finger: str) -> str:
    return hashlib.sha256(salt + finger.encode()).hexdigest()


class FingerprintGate:
    def __init__(
        self,
        salt: bytes,
        enrolled: list[str],
        *,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        verified_until: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.salt = salt
        self.enrolled = list(enrolled)
        self.window_seconds = window_seconds
        self.verified_until = verified_until
        self._clock = clock

    def verify(self, finger: str) -> bool:
        """A matching finger opens the window; a wrong one closes any open window (never unlocks)."""
        digest = finger_digest(self.salt, finger)
        if any(hmac.compare_digest(digest, known) for known in self.enrolled):
            self.verified_until = self._clock() + self.window_seconds
            return True
        self.verified_until = 0.0
        return False

    @property
    def verified(self) -> bool:
        return self._clock() <= self.verified_until

    def consume(self) -> bool:
        """True once per verification: the payment tap that uses it."""
        if not self.verified:
            return False
        self.verified_until = 0.0
        return True
