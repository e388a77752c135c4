"""Issue #11 §5, as found: live-feed streams, stalled connections and a login flood took every server thread and
connection, and the terminal API stopped answering. Here the attack runs against `acquirer-stub serve` in a child
process (on its web listener: the terminal API's listener serves no pages, so that is where an attacker must go),
and a terminal's signed echoes (each a durable write, like every accepted request) must all be answered
meanwhile, each within its client's 10 s timeout: a "does not hang" bound, not a speed figure
(bench/availability.py measures the latency).
"""

from __future__ import annotations

import json
import urllib.request

from hostserver import ServedAcquirer
from siege import Probe, Siege, log_in

from firmware.issuing.layout import World
from terminal.host.client import HostClient

FEEDS = 50
STALLED = 200
LOGIN_CLIENTS = 4
PROBES = 40
MAX_PROBES = 1000
ANSWER_SECONDS = 10.0


def test_the_terminal_api_answers_through_feeds_stalled_connections_and_a_login_flood(served: ServedAcquirer,
                                                                                      world: World) -> None:
    operator = next(u for u in world.users() if u["role"] == "operator")
    terminal = world.terminals()[0]
    probe = Probe(HostClient(f"http://127.0.0.1:{served.port}", terminal["tid"], bytes.fromhex(terminal["key"]),
                             timeout=ANSWER_SECONDS))
    assert probe.echo()["rc"] == "00"
    assert served.web_port is not None
    cookie = log_in(served.web_port, operator["username"], operator["password"])

    with Siege(served.web_port, cookie, operator["username"], api_port=served.port, feeds=FEEDS, stalled=STALLED,
               login_clients=LOGIN_CLIENTS) as siege:
        logins_before = siege.tally.answered_logins()
        answers = []  # at least PROBES, and on until a login attempt was answered meanwhile (at most MAX_PROBES)
        while len(answers) < PROBES or (siege.tally.answered_logins() == logins_before and len(answers) < MAX_PROBES):
            answers.append(probe.echo())  # HostTimeout if one is not answered within 10 s
        logins_during = siege.tally.answered_logins() - logins_before
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/health", timeout=ANSWER_SECONDS) as health:
            health_answer = json.load(health)
        most_stalled = siege.tally.most_stalled_open

    assert [answer["rc"] for answer in answers] == ["00"] * len(answers)
    assert health_answer == {"status": "ok"}
    # the attack was there while the terminal sent: streams running, every stalled connection open at once,
    # and login attempts answered
    seen = siege.tally.snapshot()
    assert seen["feed 200"] >= 1 and seen["feed opened"] >= FEEDS, seen
    assert most_stalled == STALLED
    assert logins_during >= 1, seen
