"""Attack: any web page the merchant opens posts a sale to the terminal's local ECR.

A browser sends a cross-origin POST with ``Content-Type: text/plain`` without asking first (a CORS "simple
request"), so a page on any site could start a sale at the counter. Now: an ``Origin`` (or ``Sec-Fetch-Site``)
that is not the ECR's own is refused with 403, a body that is not ``application/json`` with 415, and no answer
carries a CORS header, so a page can neither start a sale nor read an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecr_rig import ServiceThread, assert_a_sale_starts, assert_no_sale, local_ecr

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig

SALE = json.dumps({"amount": 100}).encode()


@pytest.fixture
def ecr(world: World, tmp_path: Path, rig: SoftwareRig) -> Iterator[ServiceThread]:
    with local_ecr(world, tmp_path) as service:
        yield service


def test_a_web_pages_text_plain_post_starts_no_sale(ecr: ServiceThread) -> None:
    host = f"127.0.0.1:{ecr.port}"
    page = {"Host": host, "Content-Type": "text/plain;charset=UTF-8", "Origin": "https://ads.example",
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}  # what fetch(…, {mode: "no-cors"}) sends
    code, body, headers = ecr.call("POST", "/sale", SALE, page, timeout=5)
    assert code == 403 and "cross-origin" in body["error"]
    assert not [name for name in headers if name.startswith("access-control-")]

    # each sign of another origin is enough on its own, even with the secret a page cannot know
    for foreign in ({"Origin": "https://ads.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}, {"Origin": f"http://{host}.ads.example"}):
        assert ecr.call("POST", "/sale", SALE, ecr.own(**foreign), timeout=5)[0] == 403, foreign

    # a preflight gets no CORS permission either
    code, _, headers = ecr.call("OPTIONS", "/sale", None, {"Host": host, "Origin": "https://ads.example",
                                                           "Access-Control-Request-Method": "POST"}, timeout=5)
    assert code == 405 and not [name for name in headers if name.startswith("access-control-")]

    # same origin, the secret, but not JSON: 415
    code, body, _ = ecr.call("POST", "/sale", SALE, ecr.own(**{"Content-Type": "text/plain"}), timeout=5)
    assert code == 415 and "application/json" in body["error"]
    assert_no_sale(ecr)

    assert_a_sale_starts(ecr, ecr.own(Origin=f"http://{host}", **{"Sec-Fetch-Site": "same-origin"}))
