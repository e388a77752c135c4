"""Issue #11 §4: every response (pages, API, static files, errors) carries CSP, X-Frame-Options, nosniff and a
Referrer-Policy, and no page needs an inline script or style to work under that policy.

Found by an attacker: none of these headers was sent.
"""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from webform import post_login, world_login
from werkzeug.test import TestResponse

from firmware.issuing.layout import World

INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),  # a script element without src
    re.compile(r"<style\b", re.I),
    re.compile(r"\sstyle\s*=", re.I),
    re.compile(r"\son[a-z]+\s*=", re.I),  # onclick=, onload= …
    re.compile(r"javascript:", re.I),
]


def _assert_headers(answer: TestResponse, what: str) -> None:
    policy = answer.headers.get("Content-Security-Policy", "")
    directives = dict(part.strip().partition(" ")[::2] for part in policy.split(";") if part.strip())
    assert directives.get("default-src") == "'self'", f"{what}: {policy!r}"
    assert directives.get("script-src") == "'self'" and directives.get("style-src") == "'self'", what
    assert directives.get("frame-ancestors") == "'none'" and directives.get("object-src") == "'none'", what
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, what
    assert answer.headers.get("X-Frame-Options") == "DENY", what
    assert answer.headers.get("X-Content-Type-Options") == "nosniff", what
    assert answer.headers.get("Referrer-Policy") in ("no-referrer", "same-origin"), what


def _pages(app: Flask, client: FlaskClient) -> dict[str, TestResponse]:
    """Every GET page without URL parameters, as the logged-in client sees it (the feed stream excepted)."""
    answers = {}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and not rule.arguments and rule.endpoint != "dashboard.feed_stream":
            answers[rule.rule] = client.get(rule.rule)
    return answers


def test_every_kind_of_response_carries_the_headers(app: Flask, client: FlaskClient, world: World) -> None:
    answers = {
        "login page": client.get("/login"),
        "a page for the logged-in only": client.get("/dashboard/"),
        "stylesheet": client.get("/static/style.css"),
        "script": client.get("/static/dashboard.js"),
        "health": client.get("/health"),
        "OpenAPI": client.get("/api/v1/openapi.json"),
        "unsigned terminal API call": client.post("/api/v1/echo", json={}),
        "token service without a session": client.get("/tsp/v1/sms"),
        "token service login refused": client.post("/tsp/v1/sessions", json={"username": "x", "password": "y"}),
        "no such page": client.get("/no/such/page"),
        "wrong method": client.get("/logout"),
        "form without CSRF token": client.post("/login", data={"username": "x", "password": "y"}),
    }
    for what, answer in answers.items():
        _assert_headers(answer, what)
        answer.close()  # the static files are streamed from open files
    assert {answers["no such page"].status_code, answers["wrong method"].status_code} == {404, 405}


def test_every_page_of_both_roles_has_the_headers_and_no_inline_code(app: Flask, world: World) -> None:
    for role in ("operator", "cardholder"):
        client = app.test_client()
        assert post_login(client, *world_login(world, role))[1].status_code == 302
        for path, answer in _pages(app, client).items():
            _assert_headers(answer, f"{role} {path}")
            if answer.mimetype == "text/html":
                html = answer.get_data(as_text=True)
                for pattern in INLINE:
                    assert not pattern.search(html), f"{role} {path}: inline code {pattern.pattern}"
