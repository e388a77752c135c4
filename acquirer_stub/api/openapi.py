"""The OpenAPI 3.1 description of `/api/v1`, built from the same field specs that validate requests and answers."""

from __future__ import annotations

from typing import Any

from acquirer_stub.limits import API_BODY_BYTES
from hostproto import messages, responses, signing

# The answers' schemas come from the specs the terminal validates them with (`hostproto.responses`).
_ANSWERS = {"SignOnResponse": "signon", "EchoResponse": "echo", "AuthorizationResponse": "authorization",
            "DuplicateResponse": "refusal", "AdviceResponse": "advice", "ReversalResponse": "reversal",
            "SettlementResponse": "settlement", "SettlementRefusal": "settlement_refusal",
            "TransitClearingResponse": "transit_clearing", "TransitLoadResponse": "transit_load",
            "TransitLoadConfirmationResponse": "transit_load_confirmation",
            "TransitLoadRefusal": "transit_load_refusal"}


def _object(description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, "required": required}


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
    **{name: responses.ANSWER_SPECS[kind].schema() for name, kind in _ANSWERS.items()},
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
    """The whole document; request and answer schemas come from `hostproto`, so it always matches validation."""
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
                {"oneOf": [_ref("SettlementResponse"), _ref("SettlementRefusal"), _ref("DuplicateResponse")]},
                "Debit = sales (approved, not reversed authorizations and advices), credit = refunds/voids (none "
                "yet); amounts are the sale amounts (DE4), not the promotion-discounted charge."),
            "/transit/fares": _operation(
                "Transit clearing (fares of a gate's PSAM)", "transit_clearing", _ref("TransitClearingResponse"),
                "Each fare is checked by its TAC (the card issuer's key), must come from this terminal's PSAM and is "
                "cleared once per card and purse transaction: `results[i].status` is cleared, repeat (already "
                "cleared with the same content) or refused (`reason`); nothing of a refused fare is stored."),
            "/transit/loads": _operation(
                "E-purse load (0200)", "transit_load",
                {"oneOf": [_ref("TransitLoadResponse"), _ref("TransitLoadRefusal"), _ref("DuplicateResponse")]},
                "The host checks the card's MAC1 with the issuer's load key and answers MAC2. The card's online "
                "serial settles earlier loads of the card: the same serial voids an unconfirmed one, a higher "
                "serial counts it credited."),
            "/transit/load-confirmations": _operation(
                "E-purse load confirmation (0220/0221)", "transit_load_confirmation",
                {"oneOf": [_ref("TransitLoadConfirmationResponse"), _ref("TransitLoadRefusal"),
                           _ref("DuplicateResponse")]},
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
