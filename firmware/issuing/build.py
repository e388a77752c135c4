"""`pos-card world DIR`: create the one test world that card side, terminal and acquirer stub all read.

The world is built in a temporary sibling folder and renamed into place, so an interrupted run never
leaves half a world behind.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import string
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emvcore.crypto import oda
from emvcore.qpboc import AID_KINDS, RID
from firmware.apps.cards import qpboc_schema
from firmware.apps.cards.cardfile import application_entry, write_card
from firmware.apps.cards.qpboc import QPbocState
from firmware.apps.cards.transit import TransitState
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import layout
from firmware.issuing.banks import BANKS, TRANSIT_CITIES
from firmware.issuing.personalize import (
    CA_BITS,
    CA_INDEX,
    RSA_EXPONENT,
    IssuerKeys,
    issue_date,
    new_issuer,
    new_pan,
    new_par,
    qpboc_card,
    token_card,
    transit_card,
)
from firmware.jsonfile import TEST_ONLY, write_json_atomic
from firmware.privatefiles import private_dir, write_private
from hostproto.limits import DEFAULT_FLOOR_LIMIT

DEMO_FINGERS = ["right-thumb", "right-index"]
DEBIT_BALANCE = 500_000  # fen: ¥5,000.00 in each debit account
CREDIT_LIMIT = 2_000_000  # fen: ¥20,000.00 on each credit account
CARD_OFFLINE_BALANCE = 100_000  # fen: what a plain card may spend offline before going online again
TRANSIT_BALANCE = 5_000  # fen: ¥50.00 on each transit card
TRANSIT_CARDS_PER_CITY = 2  # plain cards (files); a gate's acceptance run taps ten cards of the six cities
TOKEN_BIN = "628888"
DEMO_FUNDING_ISSUER = "boc-credit"
DEMO_TID, DEMO_MID = "QP000001", "898310054110001"
GATE_TID, GATE_MID = "QP000002", "898310041110001"  # the demo's metro gate: its own TID, key and PSAM number
DEMO_CARDHOLDER = "zhangwei"
OFFLINE_FLOOR_LIMITS = {aid.hex().upper(): DEFAULT_FLOOR_LIMIT for aid in AID_KINDS.values()}
"""The demo terminal's offline floor limit per AID, declared here once: written to acquirer/terminals.json (the
acquirer takes an advice above it as an exception) and to terminal.toml (the terminal goes online above it)."""
TERMINAL_TOML = """# {test_only}
# {what}'s configuration (pos-terminal --config); paths are relative to this file.
[terminal]
id = "{tid}"
merchant_id = "{mid}"
country = "0156"
currency = "0156"

[host]
url = "http://127.0.0.1:8380"
key = "{key}"

[capk]
file = "scheme/capk.json"

[limits]
# the offline floor limit (fen) the acquirer also holds for this terminal (acquirer/terminals.json): above it the
# card must go online, and an offline advice above it moves no money on the host
floor_limit = {floor_limit}
{aid_tables}

[reader]
port = "../{reader}"  # the demo's software PN532: pos-card pn532 --link var/{reader}

[journal]
path = "{journal}"

[transit]
keys = "transit/psam.json"  # the software PSAM's purchase master keys (test only)
{more}"""
COUNTER_ECR = """
[ecr]
listen = "127.0.0.1:8381"  # the local ECR (POST /sale, GET /status); "" turns it off
secret = "{ecr_secret}"  # a local register sends it as Authorization: Bearer …
"""
GATE_ECR = """
[ecr]
listen = ""  # the gate takes fares only, no register
"""


def _password() -> str:
    """16 letters and digits (95 bits): nothing a shell or argparse reads specially (a token_urlsafe one may
    start with '-', and `--password -x…` is then taken for an option)."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


class WorldExistsError(Exception):
    """The folder already holds a world (or other files) and overwriting was not asked for."""


def create_world(
    root: Path, *, force: bool = False, today: datetime.date | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """Create the world in `root`; returns the demo phone's wallet file."""
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / layout.MANIFEST).is_file():
            raise WorldExistsError(f"{root} is not empty and is not a test world; choose another folder")
        if not force:
            raise WorldExistsError(f"{root} already holds a test world; use --force to replace it")
    private_dir(root.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _build(staging, today or datetime.date.today(), progress)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / layout.DEMO_PHONE


def _plain_card(root: Path, keys: IssuerKeys, issuer: str, what: str, kind: str, expiry: datetime.date,
                effective: datetime.date, *, name: str | None = None) -> dict[str, Any]:
    """One plain qPBOC card written to cards/NAME.json (NAME = the issuer's code unless given); its index entry."""
    pan = new_pan(next(bank.bin for bank in BANKS if bank.code == issuer))
    profile, card_keys = qpboc_card(keys, kind=kind, pan=pan, expiry=expiry, effective=effective)
    state = QPbocState(offline_balance=CARD_OFFLINE_BALANCE)
    entry = application_entry(
        "qpboc", qpboc_schema.profile_to_dict(profile), qpboc_schema.keys_to_dict(card_keys),
        qpboc_schema.state_to_dict(state),
    )
    relative = layout.card_file(name or issuer)
    write_card(root / relative, what, secrets.token_bytes(4), [entry])
    account_kind = "debit" if kind == "debit" else "credit"  # a quasi-credit account is a credit line at the host
    account = {"balance": DEBIT_BALANCE} if account_kind == "debit" else {"credit_limit": CREDIT_LIMIT}
    return {
        "file": str(relative), "issuer": issuer, "kind": account_kind, "aid": profile.aid.hex().upper(), "pan": pan,
        "psn": profile.psn, "expiry": expiry.isoformat(), "account": account,
    }


def _build(root: Path, today: datetime.date, progress: Callable[[str], None]) -> None:
    card_expiry = datetime.date(today.year + 5, 12, 31)
    issued = datetime.date(today.year - 1, today.month, 1)  # every card of the world is effective (5F25) today
    certificate_expiry = datetime.date(today.year + 10, 12, 31)

    progress(f"scheme CA (RID {RID.hex().upper()}, test index {CA_INDEX:02X}, {CA_BITS} bits)")
    ca_private = oda.generate_rsa_key(CA_BITS, RSA_EXPONENT)
    ca_public = oda.public_key_of(ca_private)
    capk = oda.CaPublicKey(RID, CA_INDEX, ca_public, datetime.date(today.year + 15, 12, 31))
    write_private(root / layout.CA_PRIVATE_KEY, oda.private_key_to_pem(ca_private).decode())
    write_json_atomic(root / layout.CAPK, layout.capk_to_dict([capk]), mode=0o644)

    issuers: list[dict[str, Any]] = []
    cards: list[dict[str, Any]] = []
    imks: dict[str, bytes] = {}
    issuer_keys: dict[str, IssuerKeys] = {}
    for count, bank in enumerate(BANKS, start=1):
        progress(f"issuer {count}/{len(BANKS)}: {bank.name} ({bank.kind}, BIN {bank.bin}, {bank.algorithm.file_name})")
        keys = new_issuer(ca_private, bank.bin, bank.algorithm, certificate_expiry)
        imks[bank.code] = keys.imk_ac
        issuer_keys[bank.code] = keys
        issuers.append({
            "code": bank.code, "name": bank.name, "kind": bank.kind, "bin": bank.bin,
            "algorithm": bank.algorithm.file_name,
            "certificate": keys.certificate.hex().upper(), "remainder": keys.remainder.hex().upper(),
            "exponent": oda.public_key_of(keys.rsa_private).exponent.hex().upper(),
        })
        write_json_atomic(root / layout.issuer_keys(bank.code), {
            "format": "quickpass-issuer-keys", "version": 1, "test_only": TEST_ONLY, "code": bank.code,
            "imk_ac": keys.imk_ac.hex().upper(),
            "rsa_private_key_pem": oda.private_key_to_pem(keys.rsa_private).decode(),
        })
        cards.append(_plain_card(root, keys, bank.code, f"{bank.name} {bank.kind} card", bank.kind, card_expiry,
                                 issued))
    # Two cards a real terminal meets: a quasi-credit one (the third UnionPay AID) and one past its expiry date.
    quasi = next(bank for bank in BANKS if bank.code == "cbhb-credit")
    cards.append(_plain_card(root, issuer_keys[quasi.code], quasi.code, f"{quasi.name} quasi-credit card",
                             "quasi-credit", card_expiry, issued, name=layout.QUASI_CREDIT_CARD))
    stale = next(bank for bank in BANKS if bank.code == "hsb-debit")
    expired = today.replace(day=1) - datetime.timedelta(days=1)  # the last day of last month
    cards.append(_plain_card(root, issuer_keys[stale.code], stale.code, f"{stale.name} debit card (expired)",
                             "debit", expired, issue_date(expired), name=layout.EXPIRED_CARD))
    write_json_atomic(root / layout.ISSUERS, {
        "format": "quickpass-issuers", "version": 1, "test_only": TEST_ONLY, "issuers": issuers,
    }, mode=0o644)
    write_json_atomic(root / layout.CARDS_INDEX, {
        "format": "quickpass-cards", "version": 1, "test_only": TEST_ONLY, "cards": cards,
    })

    progress(f"transit cards for {len(TRANSIT_CITIES)} cities")
    transit_keys, transit_index = [], []
    transit_cards: dict[str, tuple[Any, Any]] = {}
    for number, city in enumerate(TRANSIT_CITIES, start=1):
        purchase_master, tac_master, load_master = (secrets.token_bytes(16) for _ in range(3))
        transit_keys.append({  # the PSAMs read only the purchase keys; the load host the load and TAC keys
            "city": city.code, "name": city.name, "city_code": city.city_code,
            "purchase_master_key": purchase_master.hex().upper(), "tac_master_key": tac_master.hex().upper(),
            "load_master_key": load_master.hex().upper(),
        })
        for serial in range(1, TRANSIT_CARDS_PER_CITY + 2):  # the plain cards, then one for a phone
            card_number = f"{city.city_code}{number:02d}{serial:010d}"
            profile, keys = transit_card(
                purchase_master, tac_master, load_master, card_number=card_number, city_code=city.city_code,
                city_name=city.name, valid_from=today.replace(day=1), valid_to=card_expiry,
            )
            if serial <= TRANSIT_CARDS_PER_CITY:
                relative = layout.transit_file(city.code, serial)
                entry = application_entry(
                    "transit", profile.to_dict(), keys.to_dict(), TransitState(balance=TRANSIT_BALANCE).to_dict()
                )
                write_card(root / relative, f"{city.name} transit card", secrets.token_bytes(4), [entry])
                transit_index.append({"file": str(relative), "city": city.code, "card_number": card_number})
            else:
                transit_cards[city.code] = (profile, keys)
    write_json_atomic(root / layout.TRANSIT_KEYS, {
        "format": "quickpass-transit-keys", "version": 1, "test_only": TEST_ONLY, "cities": transit_keys,
    })
    write_json_atomic(root / layout.PSAM_KEYS, {  # a gate that held the TAC keys could forge the fares it uploads
        "format": "quickpass-psam-keys", "version": 1, "test_only": TEST_ONLY,
        "cities": [{k: city[k] for k in ("city", "name", "city_code", "purchase_master_key")} for city in transit_keys],
    })
    write_json_atomic(root / layout.TRANSIT_INDEX, {
        "format": "quickpass-transit-cards", "version": 1, "test_only": TEST_ONLY, "cards": transit_index,
    })

    progress("token service and the demo phone")
    token_imk = secrets.token_bytes(16)
    funding = next(card for card in cards if card["issuer"] == DEMO_FUNDING_ISSUER)
    token_pan, par = new_pan(TOKEN_BIN), new_par()
    wallet = Wallet.create(root / layout.DEMO_PHONE, "Zhang Wei", DEMO_FINGERS)
    profile, keys = token_card(token_imk, token_pan=token_pan, par=par, kind="credit", expiry=card_expiry)
    wallet.add_card("boc-credit", f"Bank of China Credit •••• {funding['pan'][-4:]}", profile, keys)
    transit_profile, transit_keys_ = transit_cards["shanghai"]
    wallet.add_transit(
        "shanghai-transit", "Shanghai Transit", transit_profile, transit_keys_,
        TransitState(balance=TRANSIT_BALANCE),
    )
    write_json_atomic(root / layout.TSP, {
        "format": "quickpass-tsp", "version": 1, "test_only": TEST_ONLY,
        "token_bin": TOKEN_BIN, "token_imk": token_imk.hex().upper(),
        "tokens": [{
            "token_pan": token_pan, "funding_pan": funding["pan"], "par": par, "issuer": DEMO_FUNDING_ISSUER,
            "wallet_id": wallet.wallet_id, "card_id": "boc-credit", "expiry": card_expiry.isoformat(),
            "status": "active",
        }],
    })
    progress("the demo terminals (shop counter, metro gate) and the acquirer's users (operator, cardholder)")
    terminal_key, gate_key = secrets.token_bytes(32), secrets.token_bytes(32)
    write_json_atomic(root / layout.ACQUIRER_TERMINALS, {
        "format": "quickpass-terminals", "version": 1, "test_only": TEST_ONLY,
        "terminals": [{"tid": tid, "mid": mid, "name": name, "key": key.hex(),
                       "floor_limit": DEFAULT_FLOOR_LIMIT, "aid_floor_limits": OFFLINE_FLOOR_LIMITS}
                      for tid, mid, name, key in ((DEMO_TID, DEMO_MID, "Demo counter", terminal_key),
                                                  (GATE_TID, GATE_MID, "Demo metro gate", gate_key))],
    })
    write_json_atomic(root / layout.ACQUIRER_USERS, {
        "format": "quickpass-users", "version": 1, "test_only": TEST_ONLY,
        "users": [
            {"username": "operator", "password": _password(), "role": "operator"},
            {"username": DEMO_CARDHOLDER, "password": _password(), "role": "cardholder",
             "phone": "13800138000", "name": "Zhang Wei"},
        ],
    })
    floor_limits = {"floor_limit": DEFAULT_FLOOR_LIMIT,  # the AIDs accepted, each with the acquirer's floor limit
                    "aid_tables": "\n".join(f"\n[aids.{aid}]\nfloor_limit = {limit}"
                                            for aid, limit in OFFLINE_FLOOR_LIMITS.items())}
    write_private(root / layout.TERMINAL_CONFIG, TERMINAL_TOML.format(
        test_only=TEST_ONLY, what="The demo terminal", tid=DEMO_TID, mid=DEMO_MID, key=terminal_key.hex(),
        reader="pn532-pos", journal="terminal-journal.sqlite3", **floor_limits,
        more=COUNTER_ECR.format(ecr_secret=secrets.token_urlsafe(32)),
    ))
    write_private(root / layout.GATE_CONFIG, TERMINAL_TOML.format(
        test_only=TEST_ONLY, what="The demo metro gate", tid=GATE_TID, mid=GATE_MID, key=gate_key.hex(),
        reader="pn532-gate", journal="gate-journal.sqlite3", **floor_limits, more=GATE_ECR,
    ))
    write_json_atomic(root / layout.MANIFEST, {
        "format": layout.WORLD_FORMAT, "version": layout.WORLD_VERSION, "test_only": TEST_ONLY,
        "created": today.isoformat(), "scheme": {"rid": RID.hex().upper(), "ca_index": CA_INDEX},
        "demo_phone": str(layout.DEMO_PHONE), "demo_fingers": DEMO_FINGERS,
    }, mode=0o644)
