"""The demo's stack in this process (issue #12 §5): what a second start and a foreign server on its ports do."""

from __future__ import annotations

import fcntl
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostserver import HostServer

from acquirer_stub.app import create_app
from acquirer_stub.instance import Instance
from firmware.issuing.layout import World
from posdemo import stack as stack_module
from posdemo.stack import DemoError, Stack, is_our_acquirer, is_our_web
from terminal.config import load_config


class _Anything(http.server.BaseHTTPRequestHandler):
    """Another program on the port: 200 and a JSON object to every request."""

    def _answer(self) -> None:
        body = b'{"status": "ok", "state": "idle"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def foreign() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Anything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def ours(instance: Instance) -> Iterator[str]:
    server = HostServer(create_app(instance.root, overrides={"TESTING": True}))
    server.start()
    yield server.url
    server.stop()


def _terminal_key(world: World) -> tuple[str, bytes]:
    config = load_config(world.path(Path("terminal.toml")))
    return config.terminal.id, config.host.key


def test_only_our_acquirer_passes_the_start_up_check(world: World, foreign: str, ours: str) -> None:
    tid, key = _terminal_key(world)
    assert is_our_acquirer(ours, tid, key) and is_our_web(f"{ours}/login")
    assert not is_our_acquirer(foreign, tid, key) and not is_our_web(f"{foreign}/login")
    assert not is_our_acquirer(ours, tid, bytes(32))  # an acquirer of another world is not ours either


def test_the_start_up_wait_does_not_take_a_foreign_answer(world: World, foreign: str, tmp_path: Path) -> None:
    tid, key = _terminal_key(world)
    stack = Stack(tmp_path / "demo", say=lambda _line: None)
    with pytest.raises(DemoError, match=f"another program answers at {foreign}, not the demo's acquirer stub"):
        stack._wait_for("acquirer stub", foreign, lambda: is_our_acquirer(foreign, tid, key), timeout=1.0)


def test_a_second_start_leaves_the_running_demos_links(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir(mode=0o700)
    for name in ("pn532-pos", "pn532-gate"):
        (demo / name).symlink_to("/dev/pts/999")  # what the running demo's software PN532 made
    with open(demo / "demo.lock", "w") as held:  # the running demo holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        second = Stack(demo, say=lambda _line: None)
        with pytest.raises(DemoError, match=r"a demo is already running \(pid 4242\)"):
            second.start()
        second.stop()
    assert all((demo / name).is_symlink() for name in ("pn532-pos", "pn532-gate"))
    assert (demo / "demo.lock").exists() and not (demo / "world").exists()


def test_a_taken_port_stops_the_start_before_the_world_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 demo_ports: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        monkeypatch.setattr(stack_module, "ECR_PORT", taken.getsockname()[1])
        stack = Stack(tmp_path / "demo", say=lambda _line: None)
        try:
            with pytest.raises(DemoError, match=f"port {taken.getsockname()[1]} is in use"):
                stack.start()
        finally:
            stack.stop()
    assert not (tmp_path / "demo" / "world").exists()
