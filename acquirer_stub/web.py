"""People on the web pages: login, logout and password change, server-side sessions, CSRF, roles and headers.

Operators watch and manage (dashboard); cardholders serve themselves (bind a card, turn a lost phone's
wallet off). The terminal API is machine-to-machine (signed requests) and exempt from CSRF.

The browser's cookie holds a session id that the database must still know (`accounts`): logout and a
password change end it on the server. Every response carries the security headers below; the pages have
no inline script or style, so the policy allows none.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.routing import IntegerConverter

from acquirer_stub import accounts, fields, throttle
from acquirer_stub.store import users
from acquirer_stub.store.db import get_db

csrf = CSRFProtect()
login_manager = LoginManager()
bp = Blueprint("auth", __name__)
HOME = {"operator": "dashboard.index", "cardholder": "cardholder.index"}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: over HTTPS Flask-WTF's CSRF check wants the Referer of our own forms
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000"
MAX_ROW_ID = 2**63 - 1  # SQLite's INTEGER: a larger id in a URL is no row, not an overflow


class RowId(IntegerConverter):
    """`<int:…>` in every route of the app: 0 … 2⁶³−1, so a 30-digit id is a 404 and never reaches SQLite."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ROW_ID)
        super().__init__(url_map, *args, **kwargs)


class User(UserMixin):
    """A logged-in person; the id Flask-Login keeps in the cookie is the server-side session id."""

    def __init__(self, user: users.User, session_id: str) -> None:
        self.id = session_id
        self.user_id = user.id
        self.username = user.username
        self.role = user.role


@login_manager.user_loader
def _load(session_id: str) -> User | None:
    user = accounts.session_user(get_db(), session_id, accounts.WEB)
    return User(user, session_id) if user else None


def role_required(role: str) -> Callable:
    """Pages for one role: others are sent to log in (or refused if logged in with the wrong role)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role != role:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorate


def bearer_token() -> str | None:
    """The token of the request's `Authorization: Bearer …` header; None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def client_address() -> str:
    """The peer's address as the server saw it (no X-Forwarded-For: nothing here runs behind a proxy)."""
    return request.remote_addr or "unknown"


def refused(template: str, status: int, message: str, retry_after: int | None = None) -> Response:
    """A form page again, with the reason on it, and the status a client can act on."""
    flash(message)
    response = Response(render_template(template), status=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "GET":
        return render_template("login.html")
    try:
        username = fields.text(request.form.get("username"), "user name", max_length=accounts.MAX_USERNAME)
        password = fields.text(request.form.get("password"), "password", max_length=accounts.MAX_PASSWORD)
    except fields.FieldError as error:
        return refused("login.html", 400, f"Not logged in: {error}.")
    assert username is not None and password is not None
    try:
        done = accounts.log_in(get_db(), username, password, address=client_address(), kind=accounts.WEB,
                               lifetime=accounts.WEB_SESSION_SECONDS)
    except throttle.Throttled as error:
        return refused("login.html", 429, f"Not logged in: {error}.", error.retry_after)
    if done is None:
        return refused("login.html", 200, "Wrong user name or password.")
    login_user(User(done.user, done.session_id))
    return redirect(url_for(HOME[done.user.role]))


@bp.post("/logout")
def logout() -> Any:
    if current_user.is_authenticated:
        accounts.end_session(get_db(), current_user.id)
    logout_user()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    """Current and new password; every session of the user ends (this browser gets a new one)."""
    if request.method == "GET":
        return render_template("password.html")
    try:
        current = fields.text(request.form.get("current"), "current password", max_length=accounts.MAX_PASSWORD)
        new = fields.text(request.form.get("new"), "new password", max_length=accounts.MAX_PASSWORD)
        repeated = fields.text(request.form.get("repeat"), "new password again", max_length=accounts.MAX_PASSWORD)
    except fields.FieldError as error:
        return refused("password.html", 400, f"Not changed: {error}.")
    if new != repeated:
        return refused("password.html", 400, "Not changed: the two new passwords differ.")
    assert current is not None and new is not None
    try:
        session_id = accounts.change_password(get_db(), current_user.user_id, current, new,
                                              address=client_address())
    except throttle.Throttled as error:
        return refused("password.html", 429, f"Not changed: {error}.", error.retry_after)
    except accounts.PasswordError as error:
        return refused("password.html", 400, f"Not changed: {error}.")
    user = users.find(get_db(), current_user.user_id)
    assert user is not None  # change_password found them a moment ago, and users are never deleted
    login_user(User(user, session_id))
    flash("Password changed: every other session has been logged out.")
    return redirect(url_for(HOME[user.role]))


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = RowId  # before any blueprint adds a rule
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    app.after_request(_security_headers)
    app.register_blueprint(bp)
