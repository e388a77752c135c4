"""The control socket of `pos-card pn532` / `pos-card vpcd` (firmware/simulator/control.py): a client that leaves
without a request (another rig checking whether this one is alive) or before its answer costs the running rig no
traceback, and the socket goes on answering."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from waits import until

from firmware.simulator.control import ControlError, ControlServer, request
from firmware.simulator.vpcd import Endpoint, VirtualSlot


def _handlers_done() -> bool:
    return not any("process_request_thread" in thread.name for thread in threading.enumerate())


def test_clients_that_leave_early_cost_no_traceback(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    slot = VirtualSlot(Endpoint("127.0.0.1", 9))  # no card in it: it never connects anywhere
    path = tmp_path / "rig.ctl"
    server = ControlServer(path, slot)
    try:
        with pytest.raises(ControlError, match="is the control socket of a running rig"):
            ControlServer(path, slot)  # connects and closes without a word
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as early:
            early.connect(str(path))
            early.sendall(b'{"cmd": "status"}\n')  # and gone before the answer
        assert request(path, {"cmd": "status"})["taps"] == 0
        until(_handlers_done, 10, "the control socket's handlers")
    finally:
        server.close()
        slot.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
