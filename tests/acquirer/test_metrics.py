"""The acquirer's /metrics: who may read it, that prometheus-client's own parser reads it, and that it moves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_api import Terminal, financial
from webform import post_login, world_login

from acquirer_stub import throttle
from acquirer_stub.app import create_app
from acquirer_stub.instance import CONFIG, Instance
from firmware.issuing.layout import World


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels), parsed by prometheus-client itself."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _scrape(client: FlaskClient, instance: Instance) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape, also left in the instance folder (under basetemp) for the end-of-session secret scan."""
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {instance.metrics_token}"})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = answer.get_data(as_text=True)
    with (instance.root / "metrics-scraped.txt").open("a", encoding="utf-8") as kept:
        kept.write(text)
    return _samples(text)


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_not_for_anonymous_clients(client: FlaskClient, instance: Instance, world: World) -> None:
    assert len(instance.metrics_token) >= 40  # made by init, kept in the 0600 config.json
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {instance.metrics_token}"},
                    {"Authorization": "Bearer "}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "quickpass_" not in answer.get_data(as_text=True)
    post_login(client, *world_login(world, "cardholder"))
    assert client.get("/metrics").status_code == 401  # a cardholder is not an operator


def test_an_operator_session_reads_them_and_public_is_a_choice(operator: FlaskClient, instance: Instance) -> None:
    assert operator.get("/metrics").status_code == 200
    config = json.loads((instance.root / CONFIG).read_text())
    config["metrics_public"] = True
    (instance.root / CONFIG).write_text(json.dumps(config))
    assert create_app(instance.root).test_client().get("/metrics").status_code == 200


def test_a_sale_moves_the_counters_and_the_histogram(client: FlaskClient, instance: Instance, world: World) -> None:
    before = _scrape(client, instance)
    terminal = Terminal(client, world)
    batch = terminal.sign_on()
    approved = terminal.post("/authorizations", financial(terminal, world, "icbc-debit", 12_34, batch))
    assert approved.json["rc"] == "00"
    after = _scrape(client, instance)
    name = "quickpass_acquirer_authorizations_total"
    assert _value(after, name, rc="00", issuer="icbc-debit") == _value(before, name, rc="00", issuer="icbc-debit") + 1
    histogram = "quickpass_acquirer_decision_seconds"
    assert _value(after, f"{histogram}_count") == _value(before, f"{histogram}_count") + 1
    assert _value(after, f"{histogram}_bucket", le="+Inf") == _value(after, f"{histogram}_count")
    assert _value(after, f"{histogram}_sum") > _value(before, f"{histogram}_sum")
    bounds = sorted((float(labels[0][1]), value) for (sample, labels), value in after.items()
                    if sample == f"{histogram}_bucket" and labels[0][1] != "+Inf")
    assert [value for _, value in bounds] == sorted(value for _, value in bounds)  # cumulative
    assert _value(after, "quickpass_acquirer_open_batches") == 1  # the sale sits in the terminal's open batch
    assert _value(after, "quickpass_acquirer_exception_items", state="open") == 0
    assert _value(after, "quickpass_acquirer_tokens", status="active") >= 1


def test_a_rate_limit_refusal_is_counted(app: Flask, client: FlaskClient, instance: Instance, world: World) -> None:
    scope = throttle.LOGIN_FAILURES_PER_ACCOUNT.scope
    before = _value(_scrape(client, instance), "quickpass_acquirer_rate_limit_refusals_total", limit=scope)
    username, _ = world_login(world, "operator")
    statuses = [post_login(client, username, "not the password")[1].status_code
                for _ in range(throttle.LOGIN_FAILURES_PER_ACCOUNT.count + 1)]
    assert statuses[-1] == 429
    after = _value(_scrape(client, instance), "quickpass_acquirer_rate_limit_refusals_total", limit=scope)
    assert after == before + statuses.count(429)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_figures_are_counted_from_the_database(app: Flask, instance: Instance, world: World) -> None:
    """Two apps on one database (two processes, as gunicorn's workers are) report the same business figures."""
    first, second = app.test_client(), create_app(instance.root).test_client()
    terminal = Terminal(first, world)
    batch = terminal.sign_on()
    assert terminal.post("/authorizations", financial(terminal, world, "icbc-debit", 5_00, batch)).json["rc"] == "00"
    name = "quickpass_acquirer_authorizations_total"
    assert _value(_scrape(second, instance), name, rc="00", issuer="icbc-debit") == 1
