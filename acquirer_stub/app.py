"""The Flask application factory: one app for the terminal API, token service, cardholder pages and dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from acquirer_stub.instance import Instance
from acquirer_stub.store import db


def create_app(instance_path: Path, *, overrides: dict[str, Any] | None = None) -> Flask:
    instance = Instance.open(instance_path)
    app = Flask(__name__, instance_path=str(instance_path.resolve()), instance_relative_config=True)
    app.config.update(
        SECRET_KEY=instance.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=instance.https,
        INSTANCE=instance,
        VAULT=instance.vault(),
        KEYS=instance.keys(),
        DATABASE=instance.database,
        SIGNATURE_WINDOW_SECONDS=300,
    )
    app.config.update(overrides or {})
    connection = db.connect(instance.database)
    try:
        db.migrate(connection)
    finally:
        connection.close()

    app.teardown_appcontext(db.close_db)

    from acquirer_stub import blueprints, limits

    limits.init_app(app)  # first: its body limit must be set before any hook reads a form
    blueprints.register(app)
    return app

