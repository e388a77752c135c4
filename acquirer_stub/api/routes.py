"""The `/api/v1` views: authenticate, parse, hand over to `service`, send the exact stored text."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from acquirer_stub.api import openapi, service, transit, transit_load
from acquirer_stub.api.security import ApiError, Caller, authenticate
from acquirer_stub.store.db import get_db, retrying
from hostproto import messages

bp = Blueprint("api", __name__, url_prefix="/api/v1")
Message = TypeVar("Message")


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    return error.response()


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return ApiError(error.code or 500, error.description or error.name).response()


@bp.errorhandler(Exception)
def _internal_error(error: Exception) -> Response:
    # the transaction rolled back: nothing was decided, so the terminal may retransmit; no body in the log
    current_app.logger.exception("api: %s %s failed", request.method, request.path)
    return ApiError(500, "internal error", rc="96").response()


def _json(text: str) -> Response:
    return Response(text.encode(), status=200, mimetype="application/json")


def _parse(parse: Callable[[object], Message], caller: Caller) -> tuple[Message, dict[str, Any]]:
    """The body as a message, or 400 naming the field; only after the signature over those bytes checked out."""
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        raise ApiError(400, "body is not valid JSON", field="body") from None
    try:
        message = parse(body)
    except messages.MessageError as error:
        raise ApiError(400, error.message, field=error.field) from None
    if body["tid"] != caller.tid:
        raise ApiError(400, "must equal the X-Terminal-Id header", field="tid")
    return message, body


def _handle(parse: Callable[[object], Message], decide: Callable[..., str], *, idempotent: bool) -> Response:
    started = time.perf_counter()
    connection = get_db()

    def attempt() -> str:
        caller = authenticate(connection)
        message, body = _parse(parse, caller)
        context = service.Context(
            connection=connection, keys=current_app.config["KEYS"], vault=current_app.config["VAULT"],
            caller=caller, now=datetime.datetime.now().astimezone(), started=started,
        )
        if idempotent:
            return decide(context, message, service.request_hash(body))
        return decide(context, message)

    return _json(retrying(attempt))


@bp.post("/signon")
def signon() -> Response:
    return _handle(messages.parse_signon, service.sign_on, idempotent=False)


@bp.post("/echo")
def echo() -> Response:
    return _handle(messages.parse_echo, service.echo, idempotent=False)


@bp.post("/authorizations")
def authorizations() -> Response:
    return _handle(messages.parse_authorization, service.authorize, idempotent=True)


@bp.post("/reversals")
def reversals() -> Response:
    return _handle(messages.parse_reversal, service.reverse, idempotent=True)


@bp.post("/advices")
def advices() -> Response:
    return _handle(messages.parse_advice, service.advise, idempotent=True)


@bp.post("/settlements")
def settlements() -> Response:
    return _handle(messages.parse_settlement, service.settle, idempotent=True)


@bp.post("/transit/fares")
def transit_fares() -> Response:
    """Not idempotent by key: each fare is, by its card and purse transaction (a resent batch is answered)."""
    return _handle(messages.parse_transit_clearing, transit.clear_fares, idempotent=False)


@bp.post("/transit/loads")
def transit_loads() -> Response:
    return _handle(messages.parse_transit_load, transit_load.load, idempotent=True)


@bp.post("/transit/load-confirmations")
def transit_load_confirmations() -> Response:
    return _handle(messages.parse_transit_load_confirmation, transit_load.confirm, idempotent=True)


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Unsigned: it describes the API and holds no data, and tools must be able to fetch it."""
    return _json(json.dumps(openapi.document(), ensure_ascii=False, indent=1))
