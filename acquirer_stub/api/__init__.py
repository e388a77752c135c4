"""The terminal API (`/api/v1`): signed JSON messages for sign-on, authorizations, reversals, advices and
settlement. Machine to machine, so it is exempt from the web pages' CSRF protection: the HMAC signature
already proves who sent each request."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from acquirer_stub.api.routes import bp
    from acquirer_stub.iso8583 import endpoint  # noqa: F401  (adds POST /api/v1/iso8583 to bp before it is registered)
    from acquirer_stub.web import csrf

    csrf.exempt(bp)
    app.register_blueprint(bp)
