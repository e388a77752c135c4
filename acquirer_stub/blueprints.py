"""Which blueprints the app serves (each package registers its own routes)."""

from __future__ import annotations

from flask import Flask, jsonify


def register(app: Flask) -> None:
    from acquirer_stub import web

    web.init_app(app)

    from acquirer_stub.cardholder import pages as cardholder_pages
    from acquirer_stub.tsp import api as tsp_api

    app.register_blueprint(tsp_api.bp)
    app.register_blueprint(cardholder_pages.bp)

    from acquirer_stub import ecr
    from acquirer_stub.dashboard import views as dashboard_views

    app.register_blueprint(dashboard_views.bp)
    app.register_blueprint(ecr.bp)

    from acquirer_stub import api, metrics

    api.init_app(app)
    app.register_blueprint(metrics.bp)

    @app.get("/health")
    def health() -> object:
        return jsonify(status="ok")
