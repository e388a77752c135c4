"""The issuer decision for one online authorization, inside the caller's database transaction.

Contract used by the terminal API (and the ISO 8583 endpoint): the caller validates the message (hostproto's
parsers: every field's format and the DE4 = 9F02, DE49 = 5F2A cross-checks), opens the transaction, handles
idempotency and stores the answer; `authorize` takes that validated message as it is, decides, and applies the
money and ATC effects of an approval in that same transaction.

Stages run in the order of acquirer.md §8, each with its own response code, so a dashboard can tell a
cloned card (88 / ATC_REPLAY) from a poor one (51). Nothing here logs or returns a full PAN.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass

from acquirer_stub.issuer import cryptogram
from acquirer_stub.issuer.cryptogram import IccError, SessionKey
from acquirer_stub.issuer.promotions import Discount, best_discount
from acquirer_stub.keys import KeyStore
from acquirer_stub.store import cards, issuers, tokens, transactions
from acquirer_stub.store.cards import Account
from acquirer_stub.store.issuers import Issuer
from acquirer_stub.store.tokens import PaymentToken
from acquirer_stub.store.transactions import Transaction
from acquirer_stub.vault import Vault
from emvcore.bcd import BcdError, parse_date_n6
from emvcore.crypto.cryptogram import Algorithm
from emvcore.qpboc import Cryptogram
from hostproto.limits import over_floor_limit
from hostproto.messages import Financial

__all__ = [
    "ACCOUNT_STATUS_CODES",
    "TOKEN_ENTRY_MODES",
    "Decision",
    "authorize",
    "record_offline_advice",
    "reverse",
]

ACCOUNT_STATUS_CODES: Mapping[str, tuple[str, str]] = {
    "lost": ("41", "CARD_LOST"),
    "stolen": ("43", "CARD_STOLEN"),
    "restricted": ("62", "CARD_RESTRICTED"),
    "closed": ("46", "ACCOUNT_CLOSED"),
}
"""Account states other than 'active' and their DE39; any state not listed declines with 05."""

TOKEN_ENTRY_MODES: frozenset[str] = frozenset({"07", "98", "96"})
VELOCITY_DAILY_COUNT = 30  # approvals per account per day before 65 (exceeds frequency limit)
VELOCITY_DAILY_AMOUNT = 5_000_000  # fen per account per day before 61 (exceeds amount limit): ¥50,000
"""Token domain (acquirer.md §11): a device token only pays by contactless chip (qPBOC, PBOC, CUP-Mobile)."""

TOKEN_PSN = 0  # the TSP personalises every token card with PSN 00


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
    cryptogram_verified: bool = False  # the ARQC/TC matched the issuer's (or TSP's) keys
    delay_ms: int = 0  # a slow issuer (demo switch): the caller holds the answer back this long, after committing

    @property
    def approved(self) -> bool:
        return self.rc == "00"


class _Stop(Exception):
    """A stage's verdict; carries the DE39 and the internal reason."""

    def __init__(self, rc: str, reason: str) -> None:
        super().__init__(rc, reason)
        self.rc, self.reason = rc, reason


@dataclass
class _Case:
    """What the stages have learnt so far, so a decline at any stage reports as much as is known."""

    request: Financial
    pan_masked: str
    issuer: str | None = None
    account: Account | None = None
    token: PaymentToken | None = None
    routed: Issuer | None = None  # the issuer its BIN routed to, read with its switches
    key: SessionKey | None = None
    atc: int | None = None
    atc_advances: bool = False  # verified and above the holder's last: to be stored, approved or declined
    delay_ms: int = 0

    def decision(self, rc: str, reason: str, offer: Discount | None = None, *, arpc: bool = True) -> Decision:
        icc = self.request.icc
        tag91 = None
        if arpc and self.key is not None:
            tag91 = cryptogram.issuer_authentication_data(self.key, bytes(icc[0x9F26]), rc)
        approved = rc == "00"
        charged = approved and self.account is not None
        return Decision(
            rc=rc,
            reason=reason,
            issuer=self.issuer,
            account_id=self.account.id if self.account is not None else None,
            token_id=self.token.id if self.token is not None else None,
            pan_masked=self.pan_masked,
            amount=self.request.amount,
            charged=(offer.charged(self.request.amount) if offer else self.request.amount) if charged else 0,
            discount=offer.discount if offer and approved else 0,
            promotion_id=offer.promotion_id if offer and approved else None,
            promotion_title=offer.title if offer and approved else None,
            issuer_authentication_data=tag91,
            atc=self.atc,
            cryptogram_verified=self.key is not None,
            delay_ms=self.delay_ms,
        )


# -- public API ---------------------------------------------------------------------------------------------


def authorize(
    connection: sqlite3.Connection,
    keys: KeyStore,
    vault: Vault,
    request: Financial,
    *,
    now: datetime.datetime,
) -> Decision:
    """Decide an online ARQC request; on approval the account is charged and the ATC moved, uncommitted."""
    case = _Case(request, vault.masked(request.pan))
    try:
        _check_icc(request)
        case.atc = cryptogram.icc_atc(request.icc)
        _route(connection, keys, vault, case)
        _issuer_switches(connection, case)
        _check_account(case, now.date())
        _verify_arqc(keys, case)
        _check_atc_advances(case)
        offer = best_discount(connection, _issuer(case), now.date(), request.amount)
        charged = offer.charged(request.amount) if offer else request.amount
        _check_velocity(connection, case, charged, now.date())
        _check_funds(case, charged)
    except _Stop as stop:
        if case.atc_advances:  # the cryptogram was genuine and new: the card reached that ATC, declined or not
            _store_atc_if_higher(connection, case)
        return case.decision(stop.rc, stop.reason)
    _take_funds(connection, case, charged)
    return case.decision("00", "APPROVED", offer)


def record_offline_advice(
    connection: sqlite3.Connection,
    keys: KeyStore,
    vault: Vault,
    request: Financial,
    *,
    sale_date: datetime.date,
    floor_limit: int,
) -> Decision:
    """Post a sale the card approved offline only if the host can prove it: an active card and token on the
    sale's date, a TC that verifies with the issuer's (or the TSP's) keys over this amount, an ATC never used
    before by this card or token, and an amount within the terminal's floor limit for the AID (in that order:
    the first failure is the reason).

    Anything else is not refused (the goods are gone, the terminal must not resend it forever) but moves no
    money: the decision is not approved and its reason says why, for the exception queue. An approved one is
    charged even below zero, and the sale's own date picks the promotion. Issuer switches do not apply.
    """
    case = _Case(request, vault.masked(request.pan))
    try:
        _check_icc(request)
        case.atc = cryptogram.icc_atc(request.icc)
        _route(connection, keys, vault, case)
        _check_account(case, sale_date)
        _verify_tc(keys, case)
        _check_advice_atc(connection, case)
        if over_floor_limit(request.amount, floor_limit):  # a genuine TC, but the terminal should have gone online
            raise _Stop("13", "OVER_FLOOR_LIMIT")
    except _Stop as stop:
        if case.key is not None:  # a genuine cryptogram (a replay, or over the limit): the card did reach that ATC
            _store_atc_if_higher(connection, case)
        return case.decision(stop.rc, stop.reason, arpc=False)
    _store_atc_if_higher(connection, case)
    offer = best_discount(connection, _issuer(case), sale_date, request.amount)
    _debit(connection, _account(case), offer.charged(request.amount) if offer else request.amount)
    return case.decision("00", "OFFLINE_APPROVED", offer, arpc=False)


def reverse(connection: sqlite3.Connection, original: Transaction, amount: int | None = None) -> int:
    """Give back what an approval charged for `amount` of its sale (None: all that still stands); call it with
    the row as read before marking it. Returns the fen given back to the account.

    A partial reversal gives back the charge in proportion, computed from what stands after it (so two
    partials give back exactly what one full reversal would, to the fen, promotion included). A row already
    marked reversed, declined, or that charged nothing is left alone, so a repeated reversal (which the
    caller answers 00 again) never refunds twice.
    """
    if original.kind == "reversal" or original.rc != "00" or original.state.lower() == "reversed":
        return 0
    if original.account_id is None or original.charged <= 0:
        return 0
    refund = original.charged - original.reversed_charged
    if amount is not None:
        gross, standing = original.amount, original.amount - original.reversed_amount
        if gross <= 0 or not 0 <= amount <= standing:
            raise ValueError("a reversal amount must be between 0 and what of the sale still stands")
        refund -= original.charged * (standing - amount) // gross
    account = cards.account(connection, original.account_id)
    if account is None or refund <= 0:
        return 0
    _debit(connection, account, -refund)
    return refund


# -- stages -------------------------------------------------------------------------------------------------


def _check_icc(request: Financial) -> None:
    """DE55 this issuer can recompute (CVN 01), before any key is touched; the message's formats were checked by
    its parser."""
    try:
        cryptogram.check_icc(request.icc)
        if 0x5F24 in request.icc:
            parse_date_n6(bytes(request.icc[0x5F24]))
    except (IccError, BcdError, ValueError):
        raise _Stop("30", "FORMAT_ICC") from None


def _route(connection: sqlite3.Connection, keys: KeyStore, vault: Vault, case: _Case) -> None:
    """Token BIN → the TSP's vault and the token's controls; any other BIN → its issuer and the card's account."""
    request = case.request
    if request.pan.startswith(keys.token_bin):
        token = tokens.payment_token(connection, vault.pan_hash(request.pan))
        if token is None:
            raise _Stop("14", "UNKNOWN_TOKEN")
        case.token = token
        case.account = cards.account(connection, token.account_id)
        if case.account is not None:  # a token declined below is still its card's issuer's (declines by bank)
            case.issuer = case.account.issuer
        _check_token(connection, token, request.entry_mode)
        if case.account is None:
            raise _Stop("14", "TOKEN_WITHOUT_ACCOUNT")
    else:
        routed = issuers.route(connection, request.pan)
        if routed is None:
            raise _Stop("92", "NO_ROUTE")
        case.issuer, case.routed = routed.code, routed
        case.account = cards.account_by_hash(connection, vault.pan_hash(request.pan))
        if case.account is None:
            raise _Stop("14", "UNKNOWN_CARD")
    case.issuer = case.account.issuer


def _check_token(connection: sqlite3.Connection, token: PaymentToken, entry_mode: str) -> None:
    if token.status == "suspended":
        raise _Stop("05", "TOKEN_SUSPENDED")
    if token.status == "deleted":
        raise _Stop("46", "TOKEN_DELETED")
    if token.device_id is not None:
        device = tokens.device(connection, token.device_id)
        if device is not None and not device.wallet_enabled:
            raise _Stop("05", "WALLET_OFF")
    if entry_mode[:2] not in TOKEN_ENTRY_MODES:
        raise _Stop("57", "TOKEN_DOMAIN")


def _issuer_switches(connection: sqlite3.Connection, case: _Case) -> None:
    """Demo controls: a down issuer is answered by the switch (91, at once); a slow one delays its verdict.

    The delay is only noted: sleeping here would hold the database's write lock and stall every terminal."""
    issuer = case.routed
    if issuer is None or issuer.code != _issuer(case):  # a token's, or a card whose BIN another issuer holds
        issuer = issuers.issuer(connection, _issuer(case))
    if issuer is None:
        raise _Stop("92", "NO_ROUTE")
    if issuer.status == "down":
        raise _Stop("91", "ISSUER_DOWN")
    case.delay_ms = max(0, issuer.added_latency_ms)
    if issuer.forced_decline:
        raise _Stop(str(issuer.forced_decline), "FORCED_DECLINE")


def _check_account(case: _Case, today: datetime.date) -> None:
    account = case.account
    assert account is not None
    status = account.status
    if status != "active":
        raise _Stop(*ACCOUNT_STATUS_CODES.get(status, ("05", f"ACCOUNT_{str(status).upper()}")))
    if _date_passed(account.expiry, today):
        raise _Stop("54", "CARD_EXPIRED")
    if case.token is not None and _date_passed(case.token.expiry, today):
        raise _Stop("54", "TOKEN_EXPIRED")
    expiry = case.request.expiry  # YYMM, its month checked by the parser: valid to the end of that month
    if (2000 + int(expiry[:2]), int(expiry[2:])) < (today.year, today.month):
        raise _Stop("54", "EXPIRED")
    if 0x5F24 in case.request.icc and parse_date_n6(bytes(case.request.icc[0x5F24])) < today:
        raise _Stop("54", "EXPIRED")


def _verify_arqc(keys: KeyStore, case: _Case) -> None:
    icc = case.request.icc
    if cryptogram.cryptogram_type(icc) is not Cryptogram.ARQC:
        raise _Stop("30", "NOT_AN_ARQC")
    if 0x9F27 in icc and (len(icc[0x9F27]) != 1 or icc[0x9F27][0] & 0xC0 != 0x80):
        raise _Stop("30", "NOT_AN_ARQC")
    if _key_material(keys, case) is None:
        raise _Stop("96", "NO_ISSUER_KEY")
    case.key = _verified_key(keys, case)
    if case.key is None:
        raise _Stop("88", "ARQC_MISMATCH")


def _verify_tc(keys: KeyStore, case: _Case) -> None:
    """An advice's cryptogram must be a TC (CVR byte 2, and 9F27 when sent) made with the card's keys."""
    icc = case.request.icc
    if cryptogram.cryptogram_type(icc) is not Cryptogram.TC:
        raise _Stop("30", "NOT_A_TC")
    if 0x9F27 in icc and (len(icc[0x9F27]) != 1 or icc[0x9F27][0] & 0xC0 != 0x40):
        raise _Stop("30", "NOT_A_TC")
    if _key_material(keys, case) is None:
        raise _Stop("96", "NO_ISSUER_KEY")
    case.key = _verified_key(keys, case)
    if case.key is None:
        raise _Stop("88", "TC_UNVERIFIED")


def _check_advice_atc(connection: sqlite3.Connection, case: _Case) -> None:
    """A TC's ATC must be new for its card (or token): a higher one, or a lower one no verified cryptogram of
    this card ever used (a late advice, e.g. from a terminal that was offline while the card went on online).
    One already used is a replayed cryptogram."""
    assert case.atc is not None
    holder = case.token if case.token is not None else case.account
    assert holder is not None
    if case.atc > holder.last_atc:
        return
    token_id = case.token.id if case.token is not None else None
    if transactions.atc_used(connection, case.atc, token_id=token_id, account_id=holder.id):
        raise _Stop("05", "ATC_REPLAY")


def _check_atc_advances(case: _Case) -> None:
    """Forward-only ATC per token (or per card): an equal or lower one is a replayed or cloned cryptogram. A higher
    one is stored whatever the verdict (`authorize`; with the charge when approved: one statement for a card)."""
    assert case.atc is not None
    holder = case.token if case.token is not None else case.account
    assert holder is not None
    if case.atc <= holder.last_atc:
        raise _Stop("05", "ATC_REPLAY")
    case.atc_advances = True


def _check_velocity(connection: sqlite3.Connection, case: _Case, charged: int, today: datetime.date) -> None:
    """Per-account daily limits on contactless approvals (count → 65, amount → 61), as issuers run them."""
    assert case.account is not None
    count, total = transactions.approved_on(connection, case.account.id, today.isoformat())
    if count >= VELOCITY_DAILY_COUNT:
        raise _Stop("65", "VELOCITY_COUNT")
    if total + charged > VELOCITY_DAILY_AMOUNT:
        raise _Stop("61", "VELOCITY_AMOUNT")


def _check_funds(case: _Case, charged: int) -> None:
    account = case.account
    assert account is not None
    if account.kind == "debit":
        if (account.balance or 0) < charged:
            raise _Stop("51", "INSUFFICIENT_FUNDS")
    elif (account.credit_limit or 0) - account.credit_used < charged:
        raise _Stop("51", "CREDIT_LIMIT_EXCEEDED")


def _take_funds(connection: sqlite3.Connection, case: _Case, charged: int) -> None:
    """The approval's effects: the charge, and the ATC `_check_atc_advances` let through (a card's in the same
    statement; a token's is its own row)."""
    account = _account(case)
    if case.token is not None:
        _store_atc_if_higher(connection, case)
        _debit(connection, account, charged)
    else:
        assert case.atc is not None
        cards.charge(connection, account.id, account.kind, charged, atc=case.atc)


# -- helpers ------------------------------------------------------------------------------------------------


def _key_material(keys: KeyStore, case: _Case) -> tuple[Algorithm, bytes, int] | None:
    """A token's cryptogram is the TSP's (token IMK, PSN 0, 3DES); a card's is its issuer's (DE23 PSN)."""
    if case.token is not None:
        return Algorithm.TDES, keys.token_imk, TOKEN_PSN
    issuer = _issuer(case)
    imk, algorithm = keys.imk_ac.get(issuer), keys.algorithms.get(issuer)
    if imk is None or algorithm is None:
        return None
    psn = case.request.psn
    if psn is None:  # no DE23: the card's own 5F34 (n2), else 00
        sequence = bytes(case.request.icc.get(0x5F34, b"")).hex()
        psn = int(sequence) if len(sequence) == 2 and sequence.isdigit() else 0
    return Algorithm.named(algorithm), imk, psn


def _verified_key(keys: KeyStore, case: _Case) -> SessionKey | None:
    """The session key if the request's AC verifies with it, else None (no key, or a mismatch)."""
    material = _key_material(keys, case)
    if material is None or case.atc is None:
        return None
    algorithm, imk, psn = material
    key = cryptogram.session_key(algorithm, imk, case.request.pan, psn, case.atc)
    return key if cryptogram.verify_ac(key, case.request.icc) else None


def _store_atc_if_higher(connection: sqlite3.Connection, case: _Case) -> None:
    assert case.atc is not None
    if case.token is not None:
        tokens.raise_atc(connection, case.token.id, case.atc)
    else:
        assert case.account is not None
        cards.raise_atc(connection, case.account.id, case.atc)


def _debit(connection: sqlite3.Connection, account: Account, charged: int) -> None:
    """Move money in SQL (not from the row read earlier) so nothing else's change is overwritten."""
    cards.charge(connection, account.id, account.kind, charged)


def _account(case: _Case) -> Account:
    assert case.account is not None
    return case.account


def _issuer(case: _Case) -> str:
    assert case.issuer is not None
    return case.issuer


def _date_passed(iso_date: str | None, today: datetime.date) -> bool:
    if not iso_date:
        return False
    return datetime.date.fromisoformat(str(iso_date)[:10]) < today
