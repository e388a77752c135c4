"""The terminal service's /metrics: its own token, prometheus-client's parser reads it, and a sale moves it."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostserver import HostServer, free_port
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_service import ISSUER, _http, _write_config
from waits import until

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.assemble import terminal
from terminal.config import ConfigError, load_config
from terminal.service import TerminalService

TOKEN = secrets.token_urlsafe(32)


def _get(url: str, token: str | None) -> tuple[int, str, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def service(rig: SoftwareRig, world: World, tmp_path: Path, host_server: HostServer) -> Iterator[tuple[str, str]]:
    """The service in a thread with a metrics token; (its base URL, the register's secret)."""
    port = free_port()
    path = _write_config(world, tmp_path, host_server.url, port)
    path.write_text(path.read_text() + f'metrics_token = "{TOKEN}"\n')
    config = load_config(path)
    services: list[TerminalService] = []

    def run() -> None:
        with terminal(config) as parts:
            services.append(TerminalService(config, parts, sale_wait=10))
            services[0].run()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    base = f"http://127.0.0.1:{port}"
    until(lambda: services and services[0].state == "idle", 15, "the service to start")
    try:
        yield base, str(config.ecr.secret)
    finally:
        services[0].stop()
        worker.join(10)


def test_the_service_reports_its_health_to_the_host(service: tuple[str, str], instance: Instance,
                                                    world: World) -> None:
    """At start (and every minute) the echo carries the service's health, which the terminal page shows."""
    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT health, health_at FROM terminals WHERE tid = ?",
                                 (world.terminals()[0]["tid"],)).fetchone()
    finally:
        connection.close()
    health = json.loads(row["health"])
    assert (health["reader"], health["reader_resets"], health["pending_reversals"], health["pending_advices"]) == (
        "ok", 0, 0, 0)
    assert 0 <= health["uptime"] < 60 and row["health_at"]


def test_metrics_need_their_own_token(service: tuple[str, str]) -> None:
    base, register_secret = service
    for token in (None, "wrong", register_secret):  # the register's secret starts sales; it does not read metrics
        status, _, body = _get(f"{base}/metrics", token)
        assert status == 401 and "quickpass_" not in body
    status, content_type, _ = _get(f"{base}/metrics", TOKEN)
    assert status == 200 and content_type == CONTENT_TYPE_LATEST


def test_a_sale_moves_the_taps_and_the_card_in_field_histogram(service: tuple[str, str], rig: SoftwareRig,
                                                               world: World, tmp_path: Path) -> None:
    base, secret = service
    before = _samples(_get(f"{base}/metrics", TOKEN)[2])
    assert _value(before, "quickpass_terminal_signed_on") == 1
    assert _value(before, "quickpass_terminal_journal_backlog", kind="reversal") == 0
    card = next(c for c in world.cards() if c["issuer"] == ISSUER)
    done: list[tuple[int, Any]] = []
    sale = threading.Thread(target=lambda: done.append(_http("POST", f"{base}/sale", {"amount": 210000},
                                                             secret=secret)), daemon=True)
    sale.start()
    until(lambda: _http("GET", f"{base}/status")[1]["state"] == "waiting for card", 5, "the card wait")
    rig.present(world.path(Path(card["file"])))
    sale.join(15)
    assert done and done[0][1]["outcome"] == "Approved", done
    text = _get(f"{base}/metrics", TOKEN)[2]
    (tmp_path / "metrics-scraped.txt").write_text(text, encoding="utf-8")  # for the end-of-session secret scan
    assert card["pan"] not in text
    after = _samples(text)
    taps = "quickpass_terminal_taps_total"
    assert _value(after, taps, kind="sale", outcome="Approved") == _value(before, taps, kind="sale",
                                                                          outcome="Approved") + 1
    histogram = "quickpass_terminal_card_in_field_seconds"
    assert _value(after, f"{histogram}_count", kind="sale") == _value(before, f"{histogram}_count", kind="sale") + 1
    assert 0 < _value(after, f"{histogram}_sum", kind="sale") < 10
    contact = _value(after, "quickpass_terminal_last_host_contact_timestamp_seconds")
    assert time.time() - 30 < contact <= time.time()  # the authorization just now
    assert _value(after, "quickpass_terminal_reader_resets_total") == 0


@pytest.mark.parametrize(("line", "message"), [
    ('metrics_token = "tok3n"', "ecr.metrics_token: 5 characters is too short"),
    ('metrics_token = "tok3n!tok3n!tok3n!tok3n!tok3n!tok3n!"', "ecr.metrics_token: not a string of letters"),
    ("metrics_public = \"yes\"", "ecr.metrics_public: 'yes' is not true or false"),
])
def test_bad_metrics_settings_are_named(world: World, tmp_path: Path, line: str, message: str) -> None:
    path = _write_config(world, tmp_path, "http://127.0.0.1:1", free_port())
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value) and "tok3n" not in str(refused.value)  # a token is never echoed


def test_without_a_token_metrics_are_off_unless_public(rig: SoftwareRig, world: World, tmp_path: Path,
                                                       host_server: HostServer) -> None:
    for extra, expected in (("", 403), ("metrics_public = true\n", 200)):
        port = free_port()
        path = _write_config(world, tmp_path, host_server.url, port)
        path.write_text(path.read_text() + extra)
        config = load_config(path)
        with terminal(config) as parts:
            service = TerminalService(config, parts)
            service.start()
            try:
                assert _get(f"http://127.0.0.1:{port}/metrics", None)[0] == expected
            finally:
                service.close()
