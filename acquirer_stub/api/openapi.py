"""The OpenAPI 3.1 description of `/api/v1`, built from the same field specs that validate requests."""

from __future__ import annotations

from typing import Any

from acquirer_stub.limits import API_BODY_BYTES
from hostproto import messages, signing

_RC = {"type": "string", "pattern": "^[0-9A-Z]{2}$", "description": "Response code (DE39)."}
_TEXT = {"type": "string", "description": "The response code in words (for a receipt or a log)."}
_STAN = {"type": "string", "pattern": "^[0-9]{6}$", "description": "The request's STAN, echoed."}
_FEN = {"type": "integer", "minimum": 0, "description": "Fen."}
_NULLABLE_BATCH = {"type": ["integer", "null"], "description": "Batch number, or null when none is open."}


def _mti(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": "Response message type."}


def _object(description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties,
            "required": list(properties) if required is None else required}


_TOTALS = _object("Counts and amounts (fen) for a batch.", {
    "debit_count": {"type": "integer"}, "debit_amount": {"type": "integer"},
    "credit_count": {"type": "integer"}, "credit_amount": {"type": "integer"},
})

_FIGURES = _object("A count and an amount (fen) of the batch's sales.", {
    "count": {"type": "integer"}, "amount": {"type": "integer"},
})

RESPONSES: dict[str, dict[str, Any]] = {
    "Error": _object(
        "An HTTP error: nothing of the request was stored.",
        {
            "error": {"type": "string", "description": "What is wrong, in words."},
            "field": {"type": "string", "description": "400: the dotted path of the first bad field (icc.9F02)."},
            "reason": {"type": "string", "enum": ["missing_header", "malformed_header", "unknown_terminal",
                                                  "bad_signature", "clock_skew", "replayed_nonce",
                                                  "terminal_inactive"],
                       "description": "401/403: why the request was refused."},
            "rc": {"type": "string", "description": "97 unknown terminal (401), 58 inactive (403), 96 (500)."},
            "host_time": {"type": "integer", "description": "clock_skew: the host's unix time, to resynchronise."},
        },
        ["error"],
    ),
    "SignOnResponse": _object("0810: the batch now open.", {
        "mti": _mti("0810"), "rc": _RC, "text": _TEXT, "stan": _STAN,
        "batch": {"type": "integer", "minimum": 1, "description": "The new batch number (CUP 60.2)."},
        "host_time": {"type": "integer", "description": "Host unix time."},
    }),
    "EchoResponse": _object("0810: liveness and the host's view of the terminal.", {
        "mti": _mti("0810"), "rc": _RC, "text": _TEXT, "stan": _STAN,
        "signed_on": {"type": "boolean"}, "batch": _NULLABLE_BATCH,
        "host_time": {"type": "integer", "description": "Host unix time."},
    }),
    "AuthorizationResponse": _object("0210/0110: the decision, stored before it was sent.", {
        "mti": _mti("0210", "0110"), "rc": _RC, "text": _TEXT, "stan": _STAN,
        "rrn": {"type": "string", "pattern": "^[0-9]{12}$", "description": "Retrieval reference number (DE37)."},
        "auth_code": {"type": ["string", "null"], "pattern": "^[0-9A-Z]{6}$",
                      "description": "Approval code (DE38) on approval, else null."},
        "amount": _FEN, "charged": {**_FEN, "description": "What the account paid (after a bank promotion)."},
        "discount": {**_FEN, "description": "The bank promotion's discount."},
        "promotion": {"type": ["string", "null"], "description": "The promotion's title for the receipt."},
        "batch": _NULLABLE_BATCH,
        "icc": {"type": "object", "description": "Response DE55 when the issuer computed an ARPC.",
                "properties": {"91": {"type": "string", "pattern": "^([0-9A-F]{2}){8,16}$",
                                      "description": "Issuer authentication data: ARPC ‖ ARC."}}},
    }, ["mti", "rc", "text", "stan", "rrn", "auth_code", "amount", "charged", "discount", "promotion", "batch"]),
    "DuplicateResponse": _object("Different content under an idempotency key already used: rc 94, nothing changed.", {
        "mti": {"type": "string"}, "rc": {"const": "94"}, "text": _TEXT, "stan": _STAN,
    }),
    "AdviceResponse": _object(
        "0230: the advice is recorded and acknowledged (never declined: the goods are gone). `outcome` says whether "
        "money moved: accepted (the TC verified, the card paid) or exception (no money moved; `exception` says why, "
        "and an operator resolves it).", {
            "mti": _mti("0230"), "rc": {"const": "00"}, "text": _TEXT, "stan": _STAN,
            "rrn": {"type": "string", "pattern": "^[0-9]{12}$"}, "amount": _FEN, "charged": _FEN, "discount": _FEN,
            "promotion": {"type": ["string", "null"]}, "batch": {"type": "integer"},
            "outcome": {"type": "string", "enum": ["accepted", "exception"]},
            "exception": {"type": "string", "description": "Why no money moved: TC_UNVERIFIED, NOT_A_TC, "
                                                           "OVER_FLOOR_LIMIT, UNKNOWN_CARD, NO_ROUTE, ATC_REPLAY, "
                                                           "TOKEN_SUSPENDED, CARD_LOST, …"},
        }, ["mti", "rc", "text", "stan", "rrn", "amount", "charged", "discount", "promotion", "batch", "outcome"]),
    "ReversalResponse": _object("0410/0430: always 00; `outcome` says what the host did.", {
        "mti": _mti("0410", "0430"), "rc": {"const": "00"}, "text": _TEXT, "stan": _STAN,
        "original_stan": {"type": "string", "pattern": "^[0-9]{6}$"},
        "outcome": {"type": "string", "enum": ["reversed", "partial", "orphan", "already_reversed", "not_approved",
                                               "settled", "exceeds_original", "exceeds_remaining"],
                    "description": "reversed: all of the sale undone; partial: the amount (DE4) is less than the "
                                   "sale's, that share of the charge was given back; orphan: original unknown, a "
                                   "tombstone now declines it if it arrives late; settled: its batch was already "
                                   "settled; exceeds_original / exceeds_remaining: more than the sale, or than what "
                                   "still stands of it after partial reversals. Only reversed and partial move money."},
    }),
    "SettlementResponse": _object("0510: reconciliation result (rc 77 when the batch is not the open one).", {
        "mti": _mti("0510"), "rc": _RC, "text": _TEXT, "stan": _STAN, "batch": _NULLABLE_BATCH,
        "balanced": {"type": "boolean", "description": "true closes the batch: sign on again for a new one."},
        "reconciliation": {"type": "string", "enum": ["1", "2"], "description": "1 balanced, 2 not balanced."},
        "host_totals": _TOTALS,
        "accepted": {**_FIGURES, "description": "The host's sales that moved money (cleared)."},
        "exceptions": {**_FIGURES, "description": "Advices taken as exceptions: in host_totals (the terminal "
                                                  "rightly counts them), not cleared."},
    }, ["mti", "rc", "text", "stan", "batch"]),
    "TransitClearingResponse": _object("The batch's fares, each cleared, a repeat or refused (in request order).", {
        "rc": {"const": "00"}, "text": _TEXT,
        "cleared": {"type": "integer", "description": "Fares cleared now."},
        "repeat": {"type": "integer", "description": "Fares already cleared with the same content (a resend)."},
        "refused": {"type": "integer", "description": "Fares refused; nothing of them was stored."},
        "amount": {**_FEN, "description": "The sum of the fares cleared now."},
        "results": {"type": "array", "items": _object("One fare's fate.", {
            "status": {"type": "string", "enum": ["cleared", "repeat", "refused"]},
            "reason": {"type": ["string", "null"], "description": "Why it was refused."}})},
    }),
    "TransitLoadResponse": _object(
        "0210: 00 with MAC2 and the date-time to send in CREDIT FOR LOAD (stored before it was sent), or a "
        "refusal that stored nothing: 88 MAC1 does not verify, 92 no load key for the city, 13 amount past the "
        "purse limit, 63 a load at this serial was already credited; `reason` says which.", {
            "mti": _mti("0210"), "rc": _RC, "text": _TEXT, "stan": _STAN,
            "amount": {"type": "integer"}, "reason": {"type": "string"},
            "mac2": {"type": "string", "pattern": "^[0-9A-F]{8}$", "description": "MAC2 for CREDIT FOR LOAD."},
            "date_time": {"type": "string", "pattern": "^[0-9]{14}$", "description": "YYYYMMDDhhmmss, host time."},
        }, ["mti", "rc", "text", "stan"]),
    "TransitLoadConfirmationResponse": _object(
        "0230: 00 when the TAC verifies (`outcome` completed, or already_completed); 88 a TAC that does not "
        "verify, 12 no such load (nothing stored).", {
            "mti": _mti("0230"), "rc": _RC, "text": _TEXT, "stan": _STAN,
            "original_stan": {"type": "string", "pattern": "^[0-9]{6}$"},
            "outcome": {"type": "string", "enum": ["completed", "already_completed"]},
            "reason": {"type": "string"},
        }, ["mti", "rc", "text", "stan"]),
}

_SIGNED = [{"terminalId": [], "timestamp": [], "nonce": [], "signature": []}]
_SIGNING_TEXT = (
    "Every request except this document is signed with the terminal's HMAC key: X-Signature = hex "
    "HMAC-SHA256(key, METHOD \\n PATH \\n X-Timestamp \\n X-Nonce \\n hex SHA-256(body)), PATH being the full "
    f"path (/api/v1/...). The timestamp must be within {signing.DEFAULT_WINDOW_SECONDS} s of the host's clock "
    "and each nonce is accepted once; a retransmission is signed afresh over the same body. Authorizations, "
    "advices, reversals and settlements are idempotent on (kind, TID, STAN, local date): the same content "
    "again returns the stored response byte for byte; different content returns rc 94."
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _request_schema(name: str) -> str:
    return "".join(part[0].upper() + part[1:] for part in name.split("_")) + "Request"


def _errors() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": _ref("Error")}}}
    return {
        "400": {"description": "A field is missing or wrong (`field` names it).", **error},
        "401": {"description": "Unsigned, forged, skewed or replayed request, or unknown terminal (rc 97).",
                **error},
        "403": {"description": "The terminal is inactive (rc 58).", **error},
        "413": {"description": f"The body is larger than {API_BODY_BYTES // 1024} KiB.", **error},
        "500": {"description": "Internal error (rc 96): nothing was stored, retransmit.", **error},
    }


def _operation(summary: str, request: str, response: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "operationId": request,
            "security": _SIGNED,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref(_request_schema(request))}}},
            "responses": {"200": {"description": "The message's answer.",
                                  "content": {"application/json": {"schema": response}}}, **_errors()},
        }
    }


def _iso8583_operation() -> dict[str, Any]:
    """The ISO 8583 twin of the JSON operations: raw bytes in and out, same signature, same decisions."""
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    octets = {"application/octet-stream": {"schema": binary}}
    return {
        "post": {
            "summary": "Any terminal message as ISO 8583 (CUP POS layout)",
            "description": (
                "The body is one message as a CUP terminal frames it after the 2-byte length: 5-byte TPDU (60 …) + "
                "6-byte header, BCD MTI, binary bitmap, BCD numeric fields (acquirer_stub/iso8583/spec.py). 0800 "
                "(60.3 001/003/004 sign-on, 301 echo), 0100/0200 authorization, 0220/0221 advice, 0400/0420 "
                "(+ repeats) reversal with DE39 reason and DE90, 0500 (60.3 201, DE48 totals) settlement. Decided "
                "by the same service as the JSON operations under the same idempotency key, so a message sent in "
                "both formats is one transaction. The answer is the response message (MTI + 10, swapped TPDU); "
                "DE39 30 = format error, 12 = transaction not offered, 03 = DE42 is not the terminal's MID: none of "
                "them stored."),
            "operationId": "iso8583",
            "security": _SIGNED,
            "requestBody": {"required": True, "content": octets},
            "responses": {
                "200": {"description": "The ISO 8583 response message.", "content": octets},
                **_errors(),
                "400": {"description": "No CUP TPDU or no request MTI: nothing to address an ISO answer to "
                                       "(`field` is h or t).",
                        "content": {"application/json": {"schema": _ref("Error")}}},
            },
        }
    }


def document() -> dict[str, Any]:
    """The whole document; request schemas come from `hostproto.messages`, so it always matches validation."""
    requests = {_request_schema(name): spec.schema() for name, spec in messages.REQUEST_SPECS.items()}
    header = {"type": "apiKey", "in": "header"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "QuickPass acquirer stub: terminal API", "version": "1.0.0",
                 "description": "Test-only acquirer for a qPBOC terminal. " + _SIGNING_TEXT},
        "servers": [{"url": "/api/v1"}],
        "security": _SIGNED,
        "paths": {
            "/signon": _operation("Sign on (0800)", "signon", _ref("SignOnResponse"),
                                  "Opens a new batch; required before authorizations."),
            "/echo": _operation("Echo test (0800)", "echo", _ref("EchoResponse"), "Heartbeat; changes nothing."),
            "/authorizations": _operation(
                "Online purchase (0200) or authorization (0100)", "authorization",
                {"oneOf": [_ref("AuthorizationResponse"), _ref("DuplicateResponse")]},
                "Declines: 77 not signed on or wrong batch, 05 already reversed (orphan reversal), and the issuer's "
                "codes (14, 51, 54, 88, 91, …)."),
            "/reversals": _operation("Reversal (0400/0420, repeats 0401/0421)", "reversal",
                                     {"oneOf": [_ref("ReversalResponse"), _ref("DuplicateResponse")]},
                                     "Undoes an approved, unsettled original; always answered 00."),
            "/advices": _operation("Offline approval advice (0220/0221)", "advice",
                                   {"oneOf": [_ref("AdviceResponse"), _ref("DuplicateResponse")]},
                                   "Records a sale the card approved offline (TC); never declined. Money moves "
                                   "only for a TC that verifies, with a new ATC, an active card or token and an "
                                   "amount within the terminal's floor limit for the AID (DE55 84); any other is "
                                   "an exception (outcome)."),
            "/settlements": _operation(
                "Batch settlement (0500)", "settlement",
                {"oneOf": [_ref("SettlementResponse"), _ref("DuplicateResponse")]},
                "Debit = sales (approved, not reversed authorizations and advices), credit = refunds/voids (none "
                "yet); amounts are the sale amounts (DE4), not the promotion-discounted charge."),
            "/transit/fares": _operation(
                "Transit clearing (fares of a gate's PSAM)", "transit_clearing", _ref("TransitClearingResponse"),
                "Each fare is checked by its TAC (the card issuer's key), must come from this terminal's PSAM and is "
                "cleared once per card and purse transaction: `results[i].status` is cleared, repeat (already "
                "cleared with the same content) or refused (`reason`); nothing of a refused fare is stored."),
            "/transit/loads": _operation(
                "E-purse load (0200)", "transit_load",
                {"oneOf": [_ref("TransitLoadResponse"), _ref("DuplicateResponse")]},
                "The host checks the card's MAC1 with the issuer's load key and answers MAC2. The card's online "
                "serial settles earlier loads of the card: the same serial voids an unconfirmed one, a higher "
                "serial counts it credited."),
            "/transit/load-confirmations": _operation(
                "E-purse load confirmation (0220/0221)", "transit_load_confirmation",
                {"oneOf": [_ref("TransitLoadConfirmationResponse"), _ref("DuplicateResponse")]},
                "The TAC of CREDIT FOR LOAD, checked with the issuer's TAC key: the load is completed."),
            "/iso8583": _iso8583_operation(),
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {}}}}}},
        },
        "components": {
            "schemas": {**requests, **RESPONSES},
            "securitySchemes": {
                "terminalId": {**header, "name": signing.HEADER_TID, "description": "TID (8 characters)."},
                "timestamp": {**header, "name": signing.HEADER_TIMESTAMP, "description": "Unix seconds."},
                "nonce": {**header, "name": signing.HEADER_NONCE, "description": "32 lowercase hex digits, once."},
                "signature": {**header, "name": signing.HEADER_SIGNATURE, "description": _SIGNING_TEXT},
            },
        },
    }
