"""Logging in through the acquirer's HTML forms as a person does: the world's logins and the CSRF token."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from firmware.issuing.layout import World


def world_login(world: World, role: str) -> tuple[str, str]:
    user = next(u for u in world.users() if u["role"] == role)
    return user["username"], user["password"]


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def post_login(client: FlaskClient, username: str, password: str) -> tuple[str, TestResponse]:
    """The login form filled in and sent; returns the CSRF token used and the answer."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return token, client.post("/login", data={"username": username, "password": password, "csrf_token": token})
