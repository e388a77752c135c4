"""Attack: any process that can reach the local ECR starts a sale; there was no secret at all. Now ``POST
/sale`` needs ``Authorization: Bearer <[ecr] secret>`` (from terminal.toml, compared in constant time): 401
without it or with a wrong one, nothing queued, and the secret never shows in ``/status`` or the log."""

from __future__ import annotations

import base64
import json
import logging
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


def test_a_sale_needs_the_configured_secret(ecr: ServiceThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = ecr.secret
    assert len(secret) >= 32
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # as long, one character off
    wrong = [None, "", "Bearer", "Bearer ", f"Bearer {flipped}", f"Bearer {secret[:-1]}", f"Bearer {secret}x",
             f"Basic {base64.b64encode(f'register:{secret}'.encode()).decode()}", f"Token {secret}", secret]
    for authorization in wrong:
        headers = ecr.own()
        if authorization is None:
            del headers["Authorization"]
        else:
            headers["Authorization"] = authorization
        code, body, answer_headers = ecr.call("POST", "/sale", SALE, headers, timeout=5)
        assert code == 401 and "Authorization: Bearer" in body["error"], authorization
        assert answer_headers.get("www-authenticate", "").startswith("Bearer")
    # the right one among two Authorization headers is no way round it
    code, _, _ = ecr.call("POST", "/sale", SALE, {**ecr.own(), "authorization": f"Bearer {flipped}"}, timeout=5)
    assert code == 401
    assert_no_sale(ecr)
    assert secret not in json.dumps(ecr.status())

    assert_a_sale_starts(ecr, ecr.own(Authorization=f"bearer {secret}"))  # the scheme is case-insensitive
    assert secret not in caplog.text
