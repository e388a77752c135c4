"""Request size limits, declared once for the server and the app.

The server (`serving`) refuses a body over `MAX_REQUEST_BYTES` with 413 as soon as the headers announce it,
before reading a byte of it; below that, each area of the app has its own limit, checked before the body is read
(Flask's `max_content_length`), so no view ever holds more than its limit in memory.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

MAX_REQUEST_BYTES = 64 * 1024
"""Any body: the largest legitimate one (a dashboard form) is about 1 KiB."""

MAX_HEADER_BYTES = 16 * 1024
"""Request line and headers together (a browser's cookies and headers are well under 4 KiB)."""

API_BODY_BYTES = 8 * 1024
"""The terminal API: a DE55-sized purchase is well under 2 KiB."""

BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/v1/", API_BODY_BYTES),
    ("/tsp/v1/", 8 * 1024),  # a wallet's login, card details or SMS code: a few hundred bytes
)
"""Per area (path prefix), below the global limit."""


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    return next((limit for prefix, limit in BODY_LIMITS if path.startswith(prefix)), MAX_REQUEST_BYTES)


def _too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
    return jsonify(error=f"the request body is too large: at most {body_limit(request.path)} bytes here"), 413


def init_app(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.before_request
    def _limit_body() -> None:
        request.max_content_length = body_limit(request.path)

    app.register_error_handler(RequestEntityTooLarge, _too_large)
