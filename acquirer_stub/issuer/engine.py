"""The issuer decision for one online authorization, inside the caller's database transaction.

Contract used by the terminal API (and the ISO 8583 endpoint): the caller validates the message, opens
the transaction, handles idempotency and stores the answer; `authorize` decides and applies the money
and ATC effects of an approval in that same transaction.
"""

from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass, field

from acquirer_stub.keys import KeyStore
from acquirer_stub.vault import Vault


@dataclass(frozen=True)
class AuthorizationRequest:
    tid: str
    stan: str
    pan: str  # DE2: the card's PAN, or the token (DPAN) for a phone wallet
    psn: int | None  # DE23 / 5F34
    expiry: str  # DE14 YYMM
    amount: int  # DE4, fen
    currency: str  # DE49, n3 ("156")
    entry_mode: str  # DE22, n3 ("071", "072", "981", "962" …)
    icc: dict[int, bytes] = field(default_factory=dict)  # DE55 as tag → value
    local_date: datetime.date = field(default_factory=datetime.date.today)


@dataclass(frozen=True)
class Decision:
    rc: str  # DE39
    reason: str  # internal reason for logs and the dashboard (e.g. "ARQC_MISMATCH", "TOKEN_SUSPENDED")
    issuer: str | None = None
    account_id: int | None = None
    token_id: int | None = None
    pan_masked: str = ""
    amount: int = 0
    charged: int = 0  # after a bank promotion
    discount: int = 0
    promotion_id: int | None = None
    promotion_title: str | None = None
    issuer_authentication_data: bytes | None = None  # tag 91: ARPC ‖ ARC
    atc: int | None = None

    @property
    def approved(self) -> bool:
        return self.rc == "00"


def authorize(
    connection: sqlite3.Connection,
    keys: KeyStore,
    vault: Vault,
    request: AuthorizationRequest,
    *,
    now: datetime.datetime,
) -> Decision:
    raise NotImplementedError
