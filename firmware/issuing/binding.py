"""The wallet app's "add a bank card": log in, key the card, enter the SMS code, receive the token.

Talks to the acquirer stub's token service (/tsp/v1) with the standard library only. The token PAN and key
arrive once, in the verify answer, and go straight into the wallet's secure element; nothing here prints
or logs a full PAN or token PAN.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from firmware.apps.cards.qpboc import QPbocKeys, QPbocProfile
from firmware.apps.wallet.wallet import MAX_PAYMENT_CARDS, Wallet, WalletCard, WalletError
from firmware.issuing import tokens

DEFAULT_TIMEOUT = 10.0


class BindingError(Exception):
    """The token service refused a step or could not be reached; the message is what the user sees."""


class TokenServiceClient:
    """One wallet app session with the token service (a bearer token after login)."""

    def __init__(self, host: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base = host.rstrip("/") + "/tsp/v1"
        self.timeout = timeout
        self._token: str | None = None

    def login(self, username: str, password: str) -> None:
        self._token = str(self._call("POST", "/sessions", {"username": username, "password": password})["token"])

    def add_card(self, device_id: str, pan: str, expiry: str, *, name_on_card: str | None = None,
                 device_name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"pan": pan, "expiry": expiry}
        if name_on_card:
            body["name_on_card"] = name_on_card
        if device_name:
            body["device_name"] = device_name
        return self._call("POST", f"/devices/{urllib.parse.quote(device_id)}/cards", body)

    def sms(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/sms")["messages"])

    def verify(self, binding_id: int, code: str, card_id: str) -> dict[str, Any]:
        return self._call("POST", f"/bindings/{binding_id}/verify", {"code": code, "card_id": card_id})

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                message = _error_message(error.read()) or error.reason
            finally:
                error.close()
            raise BindingError(f"token service: {message} (HTTP {error.code})") from None
        except urllib.error.URLError as error:
            raise BindingError(f"cannot reach the token service at {self.base}: {error.reason}") from None
        except (OSError, ValueError) as error:
            raise BindingError(f"token service at {self.base}: {error}") from None
        if not isinstance(answer, dict):
            raise BindingError(f"token service at {self.base}: unexpected answer")
        return answer


def code_from_sms(messages: list[dict[str, Any]], binding_id: int) -> str:
    """The code in the newest SMS for this binding (its text carries "(ref <binding id>)")."""
    for message in messages:
        text = str(message.get("text", ""))
        if f"(ref {binding_id})" in text:
            found = re.search(r"code is ([0-9]{6})", text)
            if found:
                return found.group(1)
    raise BindingError(f"no SMS with the code for binding {binding_id} in the inbox")


def delivered_card(payload: Any) -> tuple[str, QPbocProfile, QPbocKeys]:
    """The token as the secure element stores it, checked so a malformed delivery never reaches the wallet."""
    try:
        return tokens.decode(payload)
    except tokens.TokenPayloadError as error:
        raise BindingError(f"the token service delivered a malformed token: {error}") from None


def bind_card(
    wallet: Wallet,
    client: TokenServiceClient,
    *,
    username: str,
    password: str,
    pan: str,
    expiry: str,
    card_id: str | None,
    read_code: Callable[[TokenServiceClient, int], str],
    report: Callable[[str], None],
) -> WalletCard:
    """The four steps of binding, each reported as the user sees it; the wallet's own limits come first."""
    if not re.fullmatch(r"[0-9]{13,19}", pan):
        raise BindingError("the card number is 13 to 19 digits")
    if not re.fullmatch(r"(0[1-9]|1[0-2])[0-9]{2}", expiry):
        raise BindingError("the expiry date is MMYY, e.g. 1230")
    if len(wallet.cards) >= MAX_PAYMENT_CARDS:
        raise WalletError(f"the wallet already holds {MAX_PAYMENT_CARDS} payment cards; remove one first")
    card_id = card_id or default_card_id(wallet, pan)
    wallet.check_new_id(card_id)

    client.login(username, password)
    report(f"logged in as {username}")
    started = client.add_card(wallet.wallet_id, pan, expiry, device_name=f"{wallet.owner}'s phone")
    report(f"card details sent: card •••• {pan[-4:]}, expiry {expiry[:2]}/{expiry[2:]}")
    report(f"SMS sent to {started['phone_masked']}")
    binding_id = int(started["binding_id"])
    code = read_code(client, binding_id).strip()
    payload = client.verify(binding_id, code, card_id)
    report("code verified")
    label, profile, keys = delivered_card(payload)
    report(f"token •••• {profile.pan[-4:]} delivered to the phone")
    return wallet.add_card(card_id, label, profile, keys)


def default_card_id(wallet: Wallet, pan: str) -> str:
    """card-1234 (the card's last four), made unique in this wallet."""
    taken = {card.id for card in wallet.cards} | {transit.id for transit in wallet.transit}
    candidate, suffix = f"card-{pan[-4:]}", 2
    while candidate in taken:
        candidate, suffix = f"card-{pan[-4:]}-{suffix}", suffix + 1
    return candidate


def _error_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    message = data.get("error") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None
