"""The host killed with SIGKILL in the middle of a stream of authorizations, then restarted.

Every answer a client received must be in the database, byte for byte; retransmitting every request
afterwards must give each sale exactly one row; and the money must add up to the cent.
"""

from __future__ import annotations

import http.client
import json
import signal
import sqlite3
import threading
import time
import urllib.request
from typing import Any

from hostserver import free_port, serve_acquirer
from test_api import MMDD, financial

from acquirer_stub.instance import Instance
from acquirer_stub.store import db
from firmware.issuing.layout import World
from hostproto import signing

ISSUERS = ("icbc-debit", "ccb-debit", "cmb-credit", "abc-credit")
SALES_PER_CARD = 8


class HttpTerminal:
    def __init__(self, world: World, port: int) -> None:
        entry = world.terminals()[0]
        self.tid, self.key, self.port = entry["tid"], bytes.fromhex(entry["key"]), port
        self._stan = 0

    def next_stan(self) -> str:
        self._stan += 1
        return f"{self._stan:06d}"

    def post(self, path: str, body: dict[str, Any], timeout: float = 5.0) -> bytes:
        raw = json.dumps(body).encode()
        full = f"/api/v1{path}"
        headers = signing.sign(self.key, self.tid, "POST", full, raw, now=time.time())
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{full}", data=raw, method="POST",
                                         headers={**headers, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()


def _money(connection: sqlite3.Connection) -> dict[str, tuple[int | None, int]]:
    rows = connection.execute("SELECT issuer, balance, credit_used FROM accounts").fetchall()
    return {row["issuer"]: (row["balance"], row["credit_used"]) for row in rows}


def test_sigkill_during_a_stream_of_authorizations_loses_and_doubles_nothing(
    instance: Instance, world: World
) -> None:
    port = free_port()
    connection = db.connect(instance.database)
    money_before = _money(connection)
    connection.close()
    server = serve_acquirer(instance.root, port).process
    terminal = HttpTerminal(world, port)
    answers: dict[str, bytes] = {}
    try:
        batch = json.loads(terminal.post("/signon", {"mti": "0800", "tid": terminal.tid,
                                                     "stan": terminal.next_stan(), "local_date": MMDD}))["batch"]
        # real cryptograms, each card's ATC rising; sent by one client thread per card
        requests = {issuer: [financial(terminal, world, issuer, 1000 + n, batch) for n in range(SALES_PER_CARD)]
                    for issuer in ISSUERS}

        def stream(issuer: str) -> None:
            for body in requests[issuer]:
                try:
                    answers[body["stan"]] = terminal.post("/authorizations", body)
                except (OSError, http.client.HTTPException):  # URLError is an OSError
                    return  # the host is gone (before or while answering): no answer, as a terminal would see

        clients = [threading.Thread(target=stream, args=(issuer,)) for issuer in ISSUERS]
        for client in clients:
            client.start()
        while len(answers) < len(ISSUERS) * SALES_PER_CARD // 2:
            time.sleep(0.001)
        server.send_signal(signal.SIGKILL)
        server.wait()
        for client in clients:
            client.join(timeout=10)
        received_before_crash = dict(answers)
        assert 0 < len(received_before_crash) < len(ISSUERS) * SALES_PER_CARD

        server = serve_acquirer(instance.root, port).process
        # after the restart: everything answered before the crash is there, exactly as it was sent
        connection = db.connect(instance.database)
        for stan, raw in received_before_crash.items():
            row = connection.execute("SELECT response FROM transactions WHERE kind = 'authorization' AND stan = ?",
                                     (stan,)).fetchone()
            assert row is not None, f"STAN {stan} was answered but is not in the database"
            assert row["response"].encode() == raw
        connection.close()
        # the terminal retransmits everything it has no answer for (and, to be sure, everything else too)
        for issuer in ISSUERS:
            for body in requests[issuer]:
                again = terminal.post("/authorizations", body)
                if body["stan"] in received_before_crash:
                    assert again == received_before_crash[body["stan"]]
                answers[body["stan"]] = again
    finally:
        server.kill()
        server.wait()

    connection = db.connect(instance.database)
    try:
        rows = connection.execute(
            "SELECT stan, issuer, rc, charged, state FROM transactions WHERE kind = 'authorization'").fetchall()
        assert sorted(row["stan"] for row in rows) == sorted(answers)  # one row per sale, none twice
        for row in rows:
            assert json.loads(answers[row["stan"]])["rc"] == row["rc"]
        money_after = _money(connection)
        for issuer in ISSUERS:
            charged = sum(r["charged"] for r in rows if r["issuer"] == issuer and r["rc"] == "00")
            balance, used = money_before[issuer]
            if balance is not None:
                assert money_after[issuer][0] == balance - charged  # debit: to the cent
            else:
                assert money_after[issuer][1] == used + charged  # credit
        approved = [r for r in rows if r["rc"] == "00"]
        assert len(approved) == len(ISSUERS) * SALES_PER_CARD  # a retransmitted in-flight sale is decided once
    finally:
        connection.close()
