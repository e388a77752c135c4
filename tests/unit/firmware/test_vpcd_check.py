"""`pos-card vpcd`'s first look at vpcd: nothing listening, and a listener that takes no more cards (vpcd holds one
per slot and accepts no other while it does; here a socket that never accepts, its queue full)."""

from __future__ import annotations

import contextlib
import socket

import pytest

from firmware.simulator.vpcd import Endpoint, VirtualSlot, VpcdError


def _refusal(port: int) -> str:
    slot = VirtualSlot(Endpoint("127.0.0.1", port))
    try:
        with pytest.raises(VpcdError) as refused:
            slot.check_reachable()
    finally:
        slot.close()
    return str(refused.value)


def test_a_slot_that_takes_no_card_is_told_apart_from_no_vpcd() -> None:
    with socket.socket() as listener, contextlib.ExitStack() as waiting:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):  # fill its queue; later connections are left unanswered
            client = waiting.enter_context(socket.socket())
            client.settimeout(0.5)
            with contextlib.suppress(OSError):
                client.connect(("127.0.0.1", port))
        taken = _refusal(port)
    assert "holds another one" in taken and f"--vpcd 127.0.0.1:{port + 1}" in taken, taken
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        absent = _refusal(port)
    assert absent.startswith(f"no vpcd on 127.0.0.1:{port}") and "is pcscd running" in absent, absent
