"""The token service's JSON API for phone wallets, at /tsp/v1 (bearer tokens, no cookies, so no CSRF).

A session token is a server-side session id (`accounts`) signed with the app's SECRET_KEY (itsdangerous)
and a timestamp; it expires after TSP_SESSION_SECONDS (default one hour), and ends earlier on
DELETE /tsp/v1/sessions or a password change. Logins share the web form's lock-outs. The verify answer
is the only place a token PAN and its key ever leave the host: it goes to the phone's secure element.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from acquirer_stub import accounts, fields, throttle
from acquirer_stub.store.db import get_db
from acquirer_stub.tsp import binding
from acquirer_stub.web import bearer_token, client_address, csrf

bp = Blueprint("tsp", __name__, url_prefix="/tsp/v1")
csrf.exempt(bp)

SESSION_SALT = "tsp-session"
DEFAULT_SESSION_SECONDS = 3600
STATUS = {
    "bad_request": 400, "wrong_code": 400, "forbidden": 403, "not_found": 404, "conflict": 409, "gone": 410,
    "mismatch": 422, "locked": 423, "too_many": 429,
}
MAX_FIELD = 256  # fields whose own format bounds them (PAN, expiry, card id); free text has its own limit
PUBLIC = {"tsp.sessions"}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SESSION_SALT)


def _error(status: int, message: str, *, retry_after: int | None = None, **extra: Any) -> Any:
    response = jsonify(error=message, **extra)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tsp"'
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise binding.BindingError("bad_request", "expected a JSON object")
    return data


def _text(data: dict[str, Any], name: str, *, required: bool = True, max_length: int = MAX_FIELD) -> str | None:
    try:
        return fields.text(data.get(name), name, max_length=max_length, required=required)
    except fields.FieldError as error:
        raise binding.BindingError("bad_request", str(error)) from None


@bp.errorhandler(binding.BindingError)
def _refused(error: binding.BindingError) -> Any:
    return _error(STATUS[error.kind], error.message, retry_after=error.retry_after, **error.extra)


@bp.before_request
def _authenticate() -> Any:
    """Every path but the login needs `Authorization: Bearer <token>` of a cardholder."""
    if request.endpoint in PUBLIC:
        return None
    token = bearer_token()
    if token is None:
        return _error(401, "log in first: POST /tsp/v1/sessions, then send Authorization: Bearer <token>")
    max_age = int(current_app.config.get("TSP_SESSION_SECONDS", DEFAULT_SESSION_SECONDS))
    try:
        claims = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        return _error(401, "the session has expired; log in again")
    except BadSignature:
        return _error(401, "not a valid session token; log in again")
    session_id = claims.get("session") if isinstance(claims, dict) else None
    user = accounts.session_user(get_db(), session_id, accounts.TSP) if isinstance(session_id, str) else None
    if user is None or user.role != "cardholder":
        return _error(401, "the session has ended or is not valid; log in again")
    g.tsp_user = user.id
    g.tsp_session = session_id
    return None


@bp.post("/sessions")
def sessions() -> Any:
    """The wallet app's login (the Mi Account step): a bearer token for the next calls."""
    data = _body()
    username = _text(data, "username", max_length=accounts.MAX_USERNAME) or ""
    password = _text(data, "password", max_length=accounts.MAX_PASSWORD) or ""
    max_age = int(current_app.config.get("TSP_SESSION_SECONDS", DEFAULT_SESSION_SECONDS))
    try:
        done = accounts.log_in(get_db(), username, password, address=client_address(), kind=accounts.TSP,
                               lifetime=max_age, role="cardholder")
    except throttle.Throttled as error:
        return _error(429, str(error), retry_after=error.retry_after)
    if done is None:
        return _error(401, "wrong user name or password")
    return jsonify(token=_serializer().dumps({"session": done.session_id}), expires_in=max_age)


@bp.delete("/sessions")
def end_session() -> Any:
    """The wallet app's logout: this session's token stops working at once."""
    accounts.end_session(get_db(), g.tsp_session)
    return jsonify(status="logged out")


@bp.post("/devices/<device_id>/cards")
def add_card(device_id: str) -> Any:
    """Card details keyed on the phone → an SMS code to the cardholder's phone."""
    data = _body()
    # on the real form too; the stub's cards carry no name
    _text(data, "name_on_card", required=False, max_length=binding.MAX_NAME_ON_CARD)
    started = binding.start_binding(
        get_db(), current_app.config["VAULT"], user_id=g.tsp_user, device_id=device_id,
        pan=_text(data, "pan") or "", expiry=_text(data, "expiry") or "",
        device_name=_text(data, "device_name", required=False, max_length=binding.MAX_DEVICE_NAME),
    )
    response = jsonify(binding_id=started.binding_id, phone_masked=started.phone_masked,
                       expires_in=started.expires_in)
    response.status_code = 201
    return response


@bp.get("/sms")
def sms() -> Any:
    """The stub's SMS inbox for the logged-in cardholder's phone (scripted demos read the code here)."""
    return jsonify(messages=binding.sms_inbox(get_db(), g.tsp_user))


@bp.post("/bindings/<int:binding_id>/verify")
def verify(binding_id: int) -> Any:
    data = _body()
    code = _text(data, "code", max_length=binding.MAX_CODE) or ""
    payload = binding.verify_binding(
        get_db(), current_app.config["VAULT"], current_app.config["KEYS"], user_id=g.tsp_user,
        binding_id=binding_id, code=code.strip(), card_id=_text(data, "card_id", required=False),
    )
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete("/tokens/<int:token_id>")
def delete_token(token_id: int) -> Any:
    """The cardholder removed the card from the phone."""
    binding.delete_token(get_db(), user_id=g.tsp_user, token_id=token_id)
    return jsonify(token_id=token_id, status="deleted", reason="CONSUMER_DELETED")
