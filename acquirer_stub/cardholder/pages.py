"""The mock wallet website (acquirer.md §11 "lost phone"): a cardholder turns a phone's wallet off and on.

Forms are CSRF-protected (the app's CSRFProtect); every device and token is checked against the logged-in
cardholder, and someone else's is answered 404 as if it did not exist. A hold the bank placed (a fraud
suspension, a wallet the operator turned off) shows as "held by your bank" without a button, and a forged
POST to lift it is refused with 403.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from acquirer_stub.store import tokens
from acquirer_stub.store.db import get_db
from acquirer_stub.tsp import binding, lifecycle
from acquirer_stub.web import role_required

bp = Blueprint("cardholder", __name__, url_prefix="/cardholder")
SELF_SUSPEND_REASONS = ("LOST", "STOLEN", "OTHER")


def _user_id() -> int:
    return int(current_user.user_id)


@bp.get("/")
@role_required("cardholder")
def index() -> Any:
    """My phones, each with its cards (masked) and the lost-phone switch."""
    connection = get_db()
    devices = [
        {**dataclasses.asdict(device),
         "tokens": lifecycle.tokens_of_device(connection, device.id, include_deleted=False)}
        for device in tokens.devices_of(connection, _user_id())
    ]
    return render_template("cardholder/index.html", devices=devices, suspend_reasons=SELF_SUSPEND_REASONS,
                           cardholder=lifecycle.CARDHOLDER)


@bp.post("/devices/<device_id>/wallet")
@role_required("cardholder")
def device_wallet(device_id: str) -> Any:
    """Lost phone: off suspends every card on it (taps declined); on resumes exactly those cards."""
    connection = get_db()
    device = tokens.device_of(connection, device_id, _user_id())
    if device is None:
        abort(404)
    enabled = request.form.get("enabled") == "1"
    try:
        changes = lifecycle.set_device_wallet(connection, device_id, enabled, "FOUND" if enabled else "LOST",
                                              by=lifecycle.CARDHOLDER, actor=current_user.username)
    except lifecycle.HeldByBankError as error:
        abort(403, description=str(error))
    if enabled:
        flash(f"Wallet on {device.name} turned on: {len(changes)} card(s) can pay again.")
    else:
        flash(f"Wallet on {device.name} turned off: {len(changes)} card(s) suspended; taps will be declined.")
    return redirect(url_for("cardholder.index"))


@bp.post("/tokens/<int:token_id>/status")
@role_required("cardholder")
def token_status(token_id: int) -> Any:
    """Suspend or resume one card on one phone (e.g. the card was lost, the phone was not)."""
    connection = get_db()
    token_masked = tokens.token_masked_of(connection, token_id, _user_id())
    if token_masked is None:
        abort(404)
    action = request.form.get("action")
    if action == "suspend":
        reason = request.form.get("reason", "OTHER")
        if reason not in SELF_SUSPEND_REASONS:
            abort(400)
        status = lifecycle.SUSPENDED
    elif action == "resume":
        status, reason = lifecycle.ACTIVE, "FOUND"
    else:
        abort(400)
    try:
        lifecycle.set_token_status(connection, token_id, status, reason, by=lifecycle.CARDHOLDER,
                                   actor=current_user.username)
    except lifecycle.HeldByBankError as error:
        abort(403, description=str(error))
    except lifecycle.LifecycleError as error:
        flash(f"Not changed: {error}.")
    else:
        flash(f"Card {token_masked} {'suspended' if status == lifecycle.SUSPENDED else 'resumed'}.")
    return redirect(url_for("cardholder.index"))


@bp.get("/sms")
@role_required("cardholder")
def sms() -> Any:
    """The stub's stand-in for the phone's messages: where the binding codes arrive."""
    return render_template("cardholder/sms.html", messages=binding.sms_inbox(get_db(), _user_id()))
