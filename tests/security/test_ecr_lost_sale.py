"""Attack (availability): a virtual-ECR sale was lost when the terminal's poll timed out, e.g. while closed
dashboard tabs still held the acquirer's threads. The acquirer had already marked the sale taken when it
answered; the answer never reached the terminal, which never ran the sale, and the sale stayed "taken" for ever.

Now a poll only offers the sale; it is the terminal's when the terminal accepts the offer. Here a proxy in
front of the real acquirer loses the poll's answer (the acquirer acted, the terminal's connection just ends),
with the real terminal service on the software PN532 and a card held in the field throughout, so a sale run
twice would be charged twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ecr_rig import LossyProxy, ServiceThread, send_sale, write_config
from flask import Flask
from hostserver import HostServer, free_port
from waits import until

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from posdemo.story import WebSession

AMOUNT, YUAN = 210_000, "2100.00"  # above the floor limit: online, one authorization on the host per run
LEASE = 1.0  # seconds an offer lasts in the test of a terminal that goes away (30 by default)
BOUND = 60.0  # a liveness bound: far above what each step takes


@pytest.fixture
def acquirer(instance: Instance) -> Iterator[HostServer]:
    app: Flask = create_app(instance.root, overrides={"TESTING": True})
    server = HostServer(app)
    server.start()
    yield server
    server.stop()


def _is_offer(method: str, path: str, status: int) -> bool:
    return method == "GET" and path.startswith("/api/v1/ecr/next") and status == 200


def _ecr(instance: Instance) -> dict[str, Any]:
    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT id, tid, state, result FROM ecr_requests").fetchone()
        states = [json.loads(r[0])["state"] for r in connection.execute("SELECT body FROM events WHERE kind = 'ecr'")]
        runs = connection.execute("SELECT COUNT(*) FROM transactions WHERE kind = 'authorization' AND tid = ?"
                                  " AND amount = ?", (row["tid"], AMOUNT)).fetchone()[0]
    finally:
        connection.close()
    return {"state": row["state"], "result": json.loads(row["result"] or "null"), "events": states, "runs": runs}


def _card(world: World) -> Path:
    return world.path(Path(next(c for c in world.cards() if c["issuer"] == "icbc-debit")["file"]))


def test_an_offer_whose_answer_is_lost_is_offered_again_and_runs_once(
        world: World, instance: Instance, acquirer: HostServer, rig: SoftwareRig, tmp_path: Path) -> None:
    proxy = LossyProxy(acquirer.port, lose=lambda *request: _is_offer(*request) and not proxy.lost)
    service = ServiceThread(write_config(world, tmp_path, host_url=proxy.url, port=free_port())).start()
    try:
        rig.present(_card(world))  # held there: a second run of the sale would be approved and charged too
        send_sale(acquirer.url, world, service.config.terminal.id, YUAN)
        done = until(lambda: (row := _ecr(instance))["state"] == "done" and row, BOUND, "the ECR sale's result")
        until(lambda: service.status()["state"] == "idle", BOUND, "the counter to be idle again")
    finally:
        service.stop()
        rig.remove()
        proxy.close()
    assert proxy.lost == ["GET /api/v1/ecr/next 200"]  # the acquirer answered, the terminal never saw it
    assert done["result"]["rc"] == "00"
    assert done["runs"] == 1 == _ecr(instance)["runs"]
    assert done["events"][0] == "pending" and done["events"][-2:] == ["taken", "done"]
    assert done["events"].count("offered") >= 2 and done["events"].count("taken") == 1


def test_an_offer_lost_by_a_terminal_that_stops_goes_back_to_pending_and_runs_once(
        world: World, instance: Instance, acquirer: HostServer, rig: SoftwareRig, tmp_path: Path) -> None:
    acquirer.app.config["ECR_LEASE_SECONDS"] = LEASE
    losing = [True]
    proxy = LossyProxy(acquirer.port, lose=lambda *request: _is_offer(*request) and losing[0])
    config = write_config(world, tmp_path, host_url=proxy.url, port=free_port())
    rig.present(_card(world))
    try:
        first = ServiceThread(config).start()
        try:
            send_sale(acquirer.url, world, first.config.terminal.id, YUAN)
            assert proxy.lost_one.wait(BOUND), "the terminal never polled"
        finally:
            first.stop()  # the terminal goes away with the offer's answer lost
        assert _ecr(instance)["runs"] == 0

        operator = next(u for u in world.users() if u["role"] == "operator")
        web = WebSession(acquirer.url)
        web.log_in(operator["username"], operator["password"])
        # the operator's page shows it back in the queue once the lease is over: not taken, not lost
        until(lambda: 'class="ecr-pending"' in web.get("/dashboard/ecr")[1], BOUND, "the sale back to pending")
        assert _ecr(instance)["state"] == "pending"

        losing[0] = False
        second = ServiceThread(config).start()  # the terminal is back
        try:
            done = until(lambda: (row := _ecr(instance))["state"] == "done" and row, BOUND, "the ECR sale's result")
        finally:
            second.stop()
    finally:
        rig.remove()
        proxy.close()
    assert done["result"]["rc"] == "00" and done["runs"] == 1 == _ecr(instance)["runs"]
    assert done["events"].count("taken") == 1 and "pending" in done["events"][1:]


def test_an_acceptance_whose_answer_is_lost_is_sent_again_and_the_sale_runs_once(
        world: World, instance: Instance, acquirer: HostServer, rig: SoftwareRig, tmp_path: Path) -> None:
    """The next step's crash point: the acquirer handed the sale over, the terminal never heard so. It asks
    again with the same offer (200 again) and runs the sale once; the acquirer never offers a taken sale."""

    def lose_first_acceptance(method: str, path: str, status: int) -> bool:
        return method == "POST" and path.endswith("/accept") and status == 200 and not proxy.lost

    proxy = LossyProxy(acquirer.port, lose=lose_first_acceptance)
    service = ServiceThread(write_config(world, tmp_path, host_url=proxy.url, port=free_port())).start()
    try:
        rig.present(_card(world))
        send_sale(acquirer.url, world, service.config.terminal.id, YUAN)
        done = until(lambda: (row := _ecr(instance))["state"] == "done" and row, BOUND, "the ECR sale's result")
        until(lambda: service.status()["state"] == "idle", BOUND, "the counter to be idle again")
    finally:
        service.stop()
        rig.remove()
        proxy.close()
    assert len(proxy.lost) == 1 and proxy.lost[0].endswith("/accept 200")
    assert done["result"]["rc"] == "00" and done["runs"] == 1 == _ecr(instance)["runs"]
    assert done["events"] == ["pending", "offered", "taken", "done"]
