"""The seed's story on the running stack, each step printed as the shopper and the merchant see it, and checked.

1. the cardholder logs in to the wallet app and binds a bank card (ICBC debit): card details, SMS code, token
   delivered; the Bank of China credit token stays the default;
2. a ¥12.34 sale from the dashboard's virtual ECR, paid with the card just bound (chosen in the wallet for this
   tap): the phone answers "See phone" until the fingerprint, then the re-tap is approved on the new token;
3. a ¥2.00 metro fare at the gate's reader on the phone's transit card, no fingerprint (express mode), then sent to
   the acquirer's transit clearing, which verifies its TAC;
4. "I lost this phone" on the cardholder pages → the next sale is declined (05); "I found this phone" → approved
   on the default card with the Bank of China promotion (10 % off: ¥11.11 charged).
"""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emvcore.tags import mask_pan
from firmware.apps.wallet.wallet import Wallet
from firmware.issuing import binding
from hostproto.money import format_yuan
from posdemo.stack import ECR_URL, ROOT, WEB_URL, Stack, get_json, post_json
from terminal.kernel.params import DEBIT_AID

BOUND_ISSUER, BOUND_ID = "icbc-debit", "icbc"
PROMOTED_CARD = "boc-credit"  # the demo phone's Bank of China credit token: its issuer runs the 10 % promotion
SALE_AMOUNT, SALE_DISCOUNT = 1234, 123
FARE = "2.00"
STEP_TIMEOUT = 30.0


class StepFailed(Exception):
    """A step did not have the expected outcome; the message says what was seen."""


@dataclass
class StepResult:
    number: int
    title: str
    ok: bool
    detail: str
    seconds: float


def yuan(fen: int | None) -> str:
    return "-" if fen is None else format_yuan(fen)


class WebSession:
    """A browser, as far as the stub's HTML pages go: cookies, CSRF tokens from the forms, redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> tuple[str, str]:
        with self._opener.open(self.base + path, timeout=10) as answer:
            return answer.geturl(), answer.read().decode()

    def post(self, path: str, form: dict[str, str]) -> tuple[str, str]:
        data = urllib.parse.urlencode(form).encode()
        with self._opener.open(urllib.request.Request(self.base + path, data=data, method="POST"), timeout=10) as a:
            return a.geturl(), a.read().decode()

    def log_in(self, username: str, password: str) -> str:
        """The login form, as a person fills it; returns the page it lands on."""
        _, page = self.get("/login")
        landed, html = self.post("/login", {"username": username, "password": password,
                                            "csrf_token": csrf_token(page)})
        if "/login" in landed:
            raise StepFailed(f"could not log in as {username}")
        return html


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if not found:
        raise StepFailed("the page has no CSRF token")
    return found.group(1)


def flash_text(page: str) -> str:
    found = re.search(r'class="flash[^"]*"[^>]*>(.*?)<', page, re.S)
    return html.unescape(" ".join(found.group(1).split())) if found else ""


class Story:
    def __init__(self, stack: Stack, *, say: Callable[[str], None] = print) -> None:
        assert stack.world is not None and stack.phone is not None and stack.rig is not None
        self.stack, self.world, self.phone, self.rig = stack, stack.world, stack.phone, stack.rig
        self.say = say
        users = self.world.users()
        self.operator = next(u for u in users if u["role"] == "operator")
        self.cardholder = next(u for u in users if u["role"] == "cardholder")
        fingers = self.world.demo_fingers
        self.finger = "right-thumb" if "right-thumb" in fingers else fingers[0]
        self.tid = self.world.terminals()[0]["tid"]
        self.bound_token: str | None = None  # the token PAN step 1 delivered (kept in memory only, shown masked)

    # -- the whole story ---------------------------------------------------------------------------------------

    def play(self) -> list[StepResult]:
        steps = [
            (1, "the cardholder binds a bank card to the phone", self.bind_card),
            (2, "a ¥12.34 sale from the virtual ECR on the card just bound: See phone, fingerprint, approved",
             self.ecr_sale),
            (3, "a ¥2.00 metro fare on the phone's transit card, no fingerprint", self.transit_fare),
            (4, "the phone reported lost: declined; wallet back on: approved", self.lost_phone),
        ]
        results = []
        for number, title, run in steps:
            self.say(f"\n== step {number}: {title}")
            started = time.monotonic()
            try:
                detail, ok = run(), True
            except (StepFailed, binding.BindingError, OSError, ValueError, KeyError) as error:
                kind = "" if isinstance(error, StepFailed) else f"{type(error).__name__}: "
                detail, ok = f"{kind}{error}", False
            seconds = time.monotonic() - started
            mark = "ok" if ok else "FAILED"
            self.say(f"[{mark}] step {number}: {detail}  ({seconds:.1f} s)")
            results.append(StepResult(number, title, ok, detail, seconds))
        return results

    def shopper(self, text: str) -> None:
        self.say(f"  shopper  | {text}")

    def merchant(self, text: str) -> None:
        self.say(f"  merchant | {text}")

    # -- 1. binding --------------------------------------------------------------------------------------------

    def bind_card(self) -> str:
        card = next(c for c in self.world.cards() if c["issuer"] == BOUND_ISSUER)
        expiry = f"{card['expiry'][5:7]}{card['expiry'][2:4]}"  # YYYY-MM-DD → MMYY
        wallet = Wallet.load(self.phone)
        client = binding.TokenServiceClient(WEB_URL)
        self.shopper(f"opens the wallet app → Add a bank card (phone: {wallet.owner})")

        def read_code(client: binding.TokenServiceClient, binding_id: int) -> str:
            code = binding.code_from_sms(client.sms(), binding_id)
            self.shopper(f"SMS arrives: code {code} → typed into the app")
            return code

        added = binding.bind_card(
            wallet, client, username=self.cardholder["username"], password=self.cardholder["password"],
            pan=card["pan"], expiry=expiry, card_id=BOUND_ID, read_code=read_code, report=self.shopper,
        )
        wallet = Wallet.load(self.phone)
        wallet.set_default(PROMOTED_CARD)  # the sale goes on the promoted card, as the shopper chooses
        cards = ", ".join(c.id + (" [default]" if c.id == wallet.default_card else "") for c in wallet.cards)
        self.shopper(f"wallet now holds: {cards}")
        if added.id not in {c.id for c in wallet.cards}:
            raise StepFailed("the token is not in the wallet")
        self.bound_token = added.profile.pan
        return f"{added.label} bound as token {mask_pan(added.profile.pan)}; default stays {PROMOTED_CARD}"

    # -- 2. the virtual ECR sale -------------------------------------------------------------------------------

    def ecr_sale(self) -> str:
        if self.bound_token is None:
            raise StepFailed("step 1 bound no card to pay with")
        web = WebSession(WEB_URL)
        web.log_in(self.operator["username"], self.operator["password"])
        _, page = web.get("/dashboard/ecr")
        self.merchant(f"virtual ECR ({WEB_URL}/dashboard/ecr): sale {yuan(SALE_AMOUNT)} → terminal {self.tid}")
        _, html = web.post("/dashboard/ecr", {"csrf_token": csrf_token(page), "tid": self.tid,
                                              "amount": f"{SALE_AMOUNT / 100:.2f}"})
        if note := flash_text(html):
            self.merchant(f"dashboard: {note}")
        wallet = Wallet.load(self.phone)
        wallet.choose_for_next_tap(BOUND_ID)
        self.shopper(f"wallet app: picks {next(c.label for c in wallet.cards if c.id == BOUND_ID)} for this payment")
        self.shopper("holds the phone to the terminal (screen locked, no fingerprint yet)")
        status = self._wait_status(lambda s: s.get("message") == "See phone", "the terminal to show See phone")
        ecr_id = (status.get("sale") or {}).get("ecr_id")
        if ecr_id is None:
            raise StepFailed(f"the sale on the terminal is not the ECR's: {status.get('sale')}")
        self.merchant(f'terminal shows "See phone" (ECR sale #{ecr_id})')
        self.shopper("phone: unlock to pay → touches the fingerprint sensor")
        if not self.rig.fingerprint(self.finger, self.phone):
            raise StepFailed("the fingerprint was not accepted")
        last = self._wait_sale(ecr_id, refinger=True)
        self._show_sale(last)
        if last["outcome"] != "Approved" or last.get("charged") != SALE_AMOUNT:
            raise StepFailed(f"expected Approved for {yuan(SALE_AMOUNT)}, got {last['outcome']} "
                             f"rc {last.get('rc')} charged {yuan(last.get('charged'))}")
        paid_with = str(last.get("pan_masked") or "")
        debit = any(line.endswith(DEBIT_AID.hex().upper()) for line in last.get("receipt") or [])  # ICBC: debit
        if paid_with != mask_pan(self.bound_token) or not debit:
            raise StepFailed(f"paid with {paid_with or 'no card'}, not the token bound in step 1 "
                             f"({mask_pan(self.bound_token)})")
        row = self._wait_ecr_done(ecr_id)
        self.merchant(f"virtual ECR: sale #{ecr_id} {row['state']}: {row.get('text') or ''}".rstrip())
        return f"See phone → fingerprint → Approved {yuan(last['charged'])} on the new token {paid_with}"

    def _wait_status(self, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            status = get_json(f"{ECR_URL}/status", timeout=5)
            if done(status):
                return status
            time.sleep(0.05)
        raise StepFailed(f"waited {STEP_TIMEOUT:.0f} s for {what}")

    def _wait_sale(self, ecr_id: int, *, refinger: bool) -> dict[str, Any]:
        deadline = time.monotonic() + STEP_TIMEOUT
        fingered = time.monotonic()
        while time.monotonic() < deadline:
            status = get_json(f"{ECR_URL}/status", timeout=5)
            last = status.get("last_sale") or {}
            if last.get("ecr_id") == ecr_id:
                return last
            if refinger and status.get("message") == "See phone" and time.monotonic() - fingered > 5:
                self.rig.fingerprint(self.finger, self.phone)  # the phone missed the touch: touch again
                fingered = time.monotonic()
            time.sleep(0.1)
        raise StepFailed(f"ECR sale #{ecr_id} did not finish within {STEP_TIMEOUT:.0f} s")

    def _wait_ecr_done(self, ecr_id: int) -> dict[str, Any]:
        """The dashboard's side: the terminal posts the result back to the ECR request (read-only look)."""
        database = self.stack.instance / "acquirer.sqlite3"
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
            try:
                row = connection.execute("SELECT state, result FROM ecr_requests WHERE id = ?", (ecr_id,)).fetchone()
            finally:
                connection.close()
            if row is not None and row[0] == "done":
                result = json.loads(row[1] or "{}")
                return {"state": "done", "text": " ".join(str(result.get(k, "")) for k in ("rc", "text")).strip()}
            time.sleep(0.2)
        raise StepFailed(f"the dashboard never heard the result of ECR sale #{ecr_id}")

    def _show_sale(self, sale: dict[str, Any]) -> None:
        self.shopper(f"phone: paid with {sale.get('label') or 'the card'} {sale.get('pan_masked') or ''}".rstrip())
        self.merchant(f"terminal: {sale.get('message')}  (rc {sale.get('rc')}, STAN {sale.get('stan')})")
        for line in sale.get("receipt") or []:
            self.merchant(f"  receipt | {line}")

    # -- 3. the metro fare -------------------------------------------------------------------------------------

    def transit_fare(self) -> str:
        config = self.stack.gate_config
        self.shopper("walks through the metro gate, phone still locked (express transit card)")
        status, fare = _pos_terminal(config, "fare", FARE, "--json", "--wait", "15")
        balance = yuan(fare.get("balance_after"))
        self.merchant(f"gate reader ({self.stack.gate_link.name}): {fare['outcome']}: {fare['message']}")
        self.shopper(f"gate opens; transit card balance {balance}")
        if status != 0 or fare.get("outcome") != "Approved":
            raise StepFailed(f"expected the fare approved, got {fare.get('outcome')}: {fare.get('message')}")
        status, clearing = _pos_terminal(config, "clear-fares", "--json")
        if status != 0 or clearing.get("cleared", 0) < 1:
            raise StepFailed(f"expected the fare in transit clearing, got {clearing}")
        self.merchant(f"gate: the fare sent to transit clearing, its TAC verified ({WEB_URL}/dashboard/transit)")
        return f"fare ¥{FARE} Approved without fingerprint, balance {balance}, cleared (TAC verified)"

    # -- 4. lost phone -----------------------------------------------------------------------------------------

    def lost_phone(self) -> str:
        web = WebSession(WEB_URL)
        web.log_in(self.cardholder["username"], self.cardholder["password"])
        self.shopper(f"logs in to {WEB_URL}/cardholder/ as {self.cardholder['username']}")
        page = self._wallet_switch(web, enabled=False)
        self.shopper(f'presses "I lost this phone": {page}')
        declined = self._local_sale("the phone, reported lost, is tapped")
        if declined.get("outcome") != "Declined" or declined.get("rc") != "05":
            raise StepFailed(f"expected Declined (05) for the lost phone, got {declined.get('outcome')} "
                             f"rc {declined.get('rc')}")
        page = self._wallet_switch(web, enabled=True)
        self.shopper(f'presses "I found this phone": {page}')
        approved = self._local_sale("the phone is tapped again")
        if approved.get("outcome") != "Approved" or approved.get("discount") != SALE_DISCOUNT:
            raise StepFailed(f"expected Approved with {yuan(SALE_DISCOUNT)} off once the wallet is on, got "
                             f"{approved.get('outcome')} rc {approved.get('rc')} discount "
                             f"{yuan(approved.get('discount'))}")
        for line in approved.get("receipt") or []:
            self.merchant(f"  receipt | {line}")
        return (f"lost → Declined (05); found → Approved {yuan(approved.get('charged'))} "
                f"({yuan(SALE_AMOUNT)} less {yuan(approved['discount'])} bank promotion)")

    def _wallet_switch(self, web: WebSession, *, enabled: bool) -> str:
        _, html = web.get("/cardholder/")
        wallet_id = Wallet.load(self.phone).wallet_id
        action = f"/cardholder/devices/{urllib.parse.quote(wallet_id)}/wallet"
        if f'action="{action}"' not in html:
            raise StepFailed("the cardholder page does not list the demo phone")
        _, html = web.post(action, {"csrf_token": csrf_token(html), "enabled": "1" if enabled else "0"})
        state = "wallet on" if enabled else "wallet off"
        section = html[html.find(f'id="device-{wallet_id}"'):]
        if state not in section[:600]:
            raise StepFailed(f"the cardholder page does not show {state!r} after the switch")
        return flash_text(html) or state

    def _local_sale(self, what: str) -> dict[str, Any]:
        self.shopper(f"{what}; fingerprint first")
        if not self.rig.fingerprint(self.finger, self.phone):
            raise StepFailed("the fingerprint was not accepted")
        self.merchant(f"register: POST {ECR_URL}/sale {{\"amount\": {SALE_AMOUNT}}}")
        code, answer = post_json(f"{ECR_URL}/sale", {"amount": SALE_AMOUNT}, secret=self.stack.ecr_secret)
        if code != 200:
            raise StepFailed(f"the local ECR answered HTTP {code}: {answer.get('error')}")
        self.merchant(f"terminal: {answer.get('message')}  (rc {answer.get('rc')})")
        return answer


def summary_lines(results: list[StepResult], world_users: list[dict[str, Any]]) -> list[str]:
    operator = next(u for u in world_users if u["role"] == "operator")
    cardholder = next(u for u in world_users if u["role"] == "cardholder")
    passed = sum(r.ok for r in results)
    lines = [f"\n{passed}/{len(results)} steps had the expected outcome"]
    lines += [f"  {'ok    ' if r.ok else 'FAILED'} {r.number}. {r.title}" for r in results]
    lines += [
        f"customer display: {ECR_URL}/display  (the shopper's screen, live)",
        f"dashboard: {WEB_URL}/dashboard/  operator login: {operator['username']} / {operator['password']}",
        f"cardholder pages: {WEB_URL}/cardholder/  login: {cardholder['username']} / {cardholder['password']}",
    ]
    return lines


def _pos_terminal(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """A `pos-terminal --json` command as its own process, as an operator would run it: exit status, answer."""
    run = subprocess.run([sys.executable, "-m", "terminal.cli", "--config", str(config), *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    try:
        return run.returncode, dict(json.loads(run.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        raise StepFailed(f"pos-terminal {args[0]} (status {run.returncode}): {run.stderr.strip()[-300:]}") from None
