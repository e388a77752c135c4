"""`POST /api/v1/iso8583`: a CUP-style terminal's raw ISO 8583 message, decided by the JSON API's own service.

Contract:

* Body: the message bytes exactly as a terminal frames them after the 2-byte length (TPDU + CUP header + BCD MTI
  + bitmap + fields, `spec`); Content-Type ``application/octet-stream``; at most 8 KiB.
* Authentication: the JSON API's request signature (`hostproto.signing`) over these bytes, checked before any
  parsing; refusals are the JSON API's JSON errors (401 unsigned/forged/skewed/replayed/unknown, 403 inactive,
  413 too large).
* 400 (JSON, ``field`` ``h`` or ``t``): no CUP TPDU or no request MTI, so there is nothing to address an ISO
  answer to. Everything else is answered 200 with ISO bytes (MTI + 10, `mapping`): DE39 30 for a malformed
  message or a field against the rules of the JSON API (DE41 must be the signing terminal), 12 for a transaction
  this host does not offer, 03 when DE42 is not the terminal's registered MID; none of these is stored.
* Otherwise the message goes to the same `service` function as its JSON twin, with the hash of the same JSON body:
  one idempotency key (kind, TID, STAN, date) across both formats, one stored answer (a retransmission gets the
  same decision, different content under the key gets 94), one transaction per decision.
* 500 (JSON, rc 96) only for an internal failure, as on the JSON API: nothing was decided, retransmit.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from flask import Response, current_app, request

from acquirer_stub.api import service
from acquirer_stub.api.routes import bp
from acquirer_stub.api.security import ApiError, Caller, authenticate
from acquirer_stub.iso8583 import mapping, spec
from acquirer_stub.store import terminals
from acquirer_stub.store.db import get_db

__all__ = ["MIMETYPE", "PATH", "iso8583_message"]

PATH = "/iso8583"
MIMETYPE = "application/octet-stream"

_DECIDERS: dict[str, Callable[..., str]] = {
    "signon": service.sign_on,
    "echo": service.echo,
    "authorization": service.authorize,
    "advice": service.advise,
    "reversal": service.reverse,
    "settlement": service.settle,
}
_IDEMPOTENT = frozenset({"authorization", "advice", "reversal", "settlement"})


def _octets(doc: dict[str, str]) -> Response:
    return Response(spec.encode(doc), status=200, mimetype=MIMETYPE)


def _rejected(rejected: mapping.Rejected, caller: Caller) -> Response:
    # the field number, never its value: a half-decoded message may hold a PAN or track 2
    current_app.logger.warning("iso8583: %s answered %s (field %s) for terminal %r", rejected.response["t"],
                               rejected.rc, rejected.field, caller.tid)
    return _octets(rejected.response)


def _unaddressable(field: str) -> ApiError:
    what = "a CUP TPDU (60 …) and header" if field == "h" else "a request MTI (BCD, e.g. 0200)"
    return ApiError(400, f"not an ISO 8583 terminal message: expected {what}", field=field)


@bp.post(PATH)
def iso8583_message() -> Response:
    """Authenticate, decode, translate, decide through `service`, answer in ISO: the same steps as the JSON views."""
    started = time.perf_counter()
    connection = get_db()
    caller = authenticate(connection)
    now = datetime.datetime.now().astimezone()
    try:
        doc = spec.decode(request.get_data(cache=True))
    except spec.IsoFormatError as error:
        field = mapping.unanswerable(error.partial)
        if field is not None:
            raise _unaddressable(field) from None
        return _rejected(mapping.reject(error.partial, error.field), caller)
    field = mapping.unanswerable(doc)
    if field is not None:
        raise _unaddressable(field)
    parsed = mapping.to_request(doc, today=now.date())
    if isinstance(parsed, mapping.Rejected):
        return _rejected(parsed, caller)
    if parsed.body["tid"] != caller.tid:
        return _rejected(mapping.reject(doc, "41"), caller)
    terminal = terminals.find(connection, caller.tid)
    if terminal is None or doc["42"] != terminal.mid:
        return _rejected(mapping.reject(doc, "42", "03"), caller)
    context = service.Context(
        connection=connection, keys=current_app.config["KEYS"], vault=current_app.config["VAULT"], caller=caller,
        now=now, started=started,
    )
    decide = _DECIDERS[parsed.kind]
    if parsed.kind in _IDEMPOTENT:
        stored = decide(context, parsed.message, service.request_hash(parsed.body))
    else:
        stored = decide(context, parsed.message)
    return _octets(mapping.to_response(parsed, stored))
