"""Which blueprints the app serves (each package registers its own routes)."""

from __future__ import annotations

from flask import Flask, jsonify


def register(app: Flask) -> None:
    from acquirer_stub import web

    web.init_app(app)

    @app.get("/health")
    def health() -> object:
        return jsonify(status="ok")
