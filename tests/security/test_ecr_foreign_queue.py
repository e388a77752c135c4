"""Attack: a signed terminal polls or answers another terminal's virtual-ECR queue on the acquirer.

The queue is always the signed caller's (X-Terminal-Id whose key checked out), never a TID from the URL or the
body: asking for another TID's queue is 403, another terminal's sale is 404 to every call, and nothing of it
changes. Two terminals with their own TIDs and keys, over real HTTP with the terminal's own signed client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from ecr_rig import send_sale
from flask import Flask
from fleet import grow_world
from hostserver import HostServer

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from terminal.host.client import HostClient, HostRejected


@pytest.fixture
def world(world: World) -> World:
    """The world with a second terminal, its own TID and key, before the acquirer is loaded from it."""
    grow_world(world, terminals=1, cards=0)
    return world


@pytest.fixture
def acquirer(instance: Instance) -> Iterator[HostServer]:
    app: Flask = create_app(instance.root, overrides={"TESTING": True})
    server = HostServer(app)
    server.start()
    yield server
    server.stop()


def _row(instance: Instance) -> dict[str, Any]:
    connection = db.connect(instance.database)
    try:
        row = connection.execute("SELECT id, tid, state, offer, result FROM ecr_requests").fetchone()
        events = [json.loads(r[0]) for r in connection.execute("SELECT body FROM events WHERE kind = 'ecr'")]
    finally:
        connection.close()
    return {**dict(row), "events": events}


def _refused(call: Any) -> int:
    with pytest.raises(HostRejected) as refused:
        call()
    return refused.value.status


def test_a_terminal_sees_and_answers_only_its_own_queue(world: World, instance: Instance,
                                                       acquirer: HostServer) -> None:
    counter, other = world.terminals()[0], world.terminals()[-1]
    assert counter["tid"] != other["tid"] and counter["key"] != other["key"]
    mine = HostClient(acquirer.url, counter["tid"], bytes.fromhex(counter["key"]))
    thief = HostClient(acquirer.url, other["tid"], bytes.fromhex(other["key"]))
    send_sale(acquirer.url, world, mine.tid, "12.34")

    # the other terminal asks for the counter's queue by name (403), and its own has nothing (204)
    assert _refused(lambda: thief.get(f"/api/v1/ecr/next?tid={mine.tid}")) == 403
    assert _refused(lambda: thief.get(f"/api/v1/ecr/next?tid={other['tid']}&tid={mine.tid}")) == 403
    assert thief.get("/api/v1/ecr/next") is None
    assert _row(instance)["state"] == "pending"

    offer = mine.get("/api/v1/ecr/next")
    assert offer is not None and offer["tid"] == mine.tid
    ecr_id, token = offer["id"], offer["offer"]
    before = _row(instance)
    # it knows the id, and even the offer's token: it can neither take the sale nor answer it
    accept, result = f"/api/v1/ecr/{ecr_id}/accept", f"/api/v1/ecr/{ecr_id}/result"
    assert _refused(lambda: thief.post(accept, {"offer": token, "seconds": 60})) == 404
    assert _refused(lambda: thief.post(f"{accept}?tid={mine.tid}", {"offer": token, "seconds": 60})) == 404
    assert _refused(lambda: thief.post(result, {"rc": "00", "text": "APPROVED", "stan": "000001"})) == 404
    assert _row(instance) == before  # offered to the counter, same token, no result, no event

    assert mine.post(accept, {"offer": token, "seconds": 60}) == {"id": ecr_id, "state": "taken"}
    taken = _row(instance)
    assert _refused(lambda: thief.post(result, {"rc": "05", "text": "DECLINED", "stan": None})) == 404
    assert _refused(lambda: thief.post(accept, {"offer": token, "seconds": 60})) == 404
    assert _row(instance) == taken and taken["state"] == "taken"

    answer = {"rc": "00", "text": "APPROVED", "stan": "000042"}
    assert mine.post(result, answer) == {"id": ecr_id, "state": "done"}
    done = _row(instance)
    assert done["state"] == "done" and json.loads(done["result"]) == answer
    assert all(event["tid"] == mine.tid for event in done["events"])
    assert not [event for event in done["events"] if other["tid"] in event["text"]]
