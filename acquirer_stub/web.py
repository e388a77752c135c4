"""People on the web pages: login with hashed passwords, sessions, CSRF, and the two roles.

Operators watch and manage (dashboard); cardholders serve themselves (bind a card, turn a lost phone's
wallet off). The terminal API is machine-to-machine (signed requests) and exempt from CSRF.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from werkzeug.security import check_password_hash

from acquirer_stub.app import get_db

csrf = CSRFProtect()
login_manager = LoginManager()
bp = Blueprint("auth", __name__)
HOME = {"operator": "dashboard.index", "cardholder": "cardholder.index"}


class User(UserMixin):
    def __init__(self, row: Any) -> None:
        self.id = str(row["id"])
        self.username = row["username"]
        self.role = row["role"]


@login_manager.user_loader
def _load(user_id: str) -> User | None:
    row = get_db().execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    return User(row) if row else None


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if request.method == "POST":
        username = request.form.get("username", "")
        row = get_db().execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        if row is not None and check_password_hash(row["password_hash"], request.form.get("password", "")):
            login_user(User(row))
            return redirect(url_for(HOME[row["role"]]))
        flash("Wrong user name or password.")
    return render_template("login.html")


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    app.register_blueprint(bp)
