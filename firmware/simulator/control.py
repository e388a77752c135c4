"""The rig's control socket: one JSON request per connection, one JSON answer; a bad request gets an error.

Requests: {"cmd": "present", "file": PATH, "seconds": S?}, {"cmd": "remove"}, {"cmd": "fingerprint",
"finger": NAME, "file": PATH?}, {"cmd": "fault", "kind": KIND, "value": V?, "chip": NAME?},
{"cmd": "reset", "chip": NAME?}, {"cmd": "status"}.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import Any, Protocol

from firmware.simulator.rig import RigError

MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The request is malformed, or the rig refused it."""


class Controlled(Protocol):
    """What the socket drives: the software PN532's rig, or a virtual PC/SC reader's slot (vpcd.VirtualSlot)."""

    def present(self, path: Path, *, seconds: float | None = None) -> Any: ...
    def remove(self) -> None: ...
    def fingerprint(self, finger: str, path: Path | None = None) -> bool: ...
    def remove_card_after(self, exchanges: int, *, tear: bool = False) -> None: ...
    def chip(self, name: str | None) -> Any: ...
    def reset(self, name: str | None = None) -> None: ...
    def status(self) -> dict[str, Any]: ...


def handle(rig: Controlled, request: Any) -> dict[str, Any]:
    """Carry out one request; every failure is a ControlError with a message for a person."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise ControlError('a request is a JSON object with "cmd"')
    command = request["cmd"]

    def text(name: str, *, required: bool = True) -> str | None:
        value = request.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise ControlError(f"{command}: {name!r} must be a non-empty string")
        return value

    def number(name: str) -> float | None:
        value = request.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ControlError(f"{command}: {name!r} must be a number ≥ 0")
        return float(value)

    try:
        if command == "present":
            card = rig.present(Path(text("file") or ""), seconds=number("seconds"))
            return {"present": card.name}
        if command == "remove":
            rig.remove()
            return {}
        if command == "fingerprint":
            file = text("file", required=False)
            accepted = rig.fingerprint(text("finger") or "", Path(file) if file else None)
            return {"accepted": accepted}
        if command == "fault":
            kind = text("kind") or ""
            if kind == "remove_after":
                value = request.get("value")
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ControlError("fault remove_after: value is the exchange number, 1 or more")
                rig.remove_card_after(value, tear=bool(request.get("tear", False)))
            else:
                rig.chip(text("chip", required=False)).faults.arm(kind, request.get("value", True))
            return {}
        if command == "reset":
            rig.reset(text("chip", required=False))
            return {}
        if command == "status":
            return rig.status()
    except (RigError, ValueError) as error:
        raise ControlError(str(error)) from None
    raise ControlError(f"unknown cmd {command!r}; known: present, remove, fingerprint, fault, reset, status")


class ControlServer:
    def __init__(self, path: Path, rig: Controlled) -> None:
        if path.exists() or path.is_symlink():
            if _alive(path):
                raise ControlError(f"{path} is the control socket of a running rig")
            path.unlink()
        rig_ref = rig

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(MAX_REQUEST)
                if not line:  # connected and gone without a word: another rig checking this one is alive
                    return
                try:
                    answer = {"ok": True, **handle(rig_ref, json.loads(line))}
                except json.JSONDecodeError:
                    answer = {"ok": False, "error": "not a JSON request"}
                except ControlError as error:
                    answer = {"ok": False, "error": str(error)}
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client left before its answer
                    self.wfile.write(json.dumps(answer).encode() + b"\n")

        self.path = path
        self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._server.daemon_threads = True
        os.chmod(path, 0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pn532-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Client side: send one request; raises ControlError with the rig's message when it says no."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(path))
            client.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"nothing is listening on {path} (start pos-card pn532 or pos-card vpcd)") from None
    except OSError as error:
        raise ControlError(f"control socket {path}: {error}") from None
    answer = json.loads(data)
    if not answer.pop("ok", False):
        raise ControlError(answer.get("error", "refused"))
    return answer


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
