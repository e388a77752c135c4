"""The local ECR link: a cash register on the same machine or LAN asks for a sale over plain HTTP.

``POST /sale`` with ``{"amount": 1234}`` (fen) blocks until the sale has an outcome and answers the
SaleResult JSON (plus ``stan`` and the masked ``receipt`` lines): 200 whatever the outcome, because the
register needs the outcome, not an HTTP error, for a declined card. 400 for a missing or bad amount, 409
while another sale runs or waits (the register must not queue sales behind the shopper's back), 503 once
the terminal is stopping. ``GET /status`` answers the service's status object.

The standard library's ThreadingHTTPServer is enough: one register, a handful of requests a minute, and
the Pi needs no extra dependency. Bind it to 127.0.0.1 unless the register is on the LAN: there is no
authentication on this link, as with a serial ECR cable.
"""

from __future__ import annotations

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from terminal.config import MAX_AMOUNT

if TYPE_CHECKING:
    from terminal.service.service import TerminalService

log = logging.getLogger("terminal.service")

MAX_BODY_BYTES = 4096


class EcrServer(ThreadingHTTPServer):
    daemon_threads = True  # a register that hangs up must not keep the service from stopping

    def __init__(self, address: tuple[str, int], service: TerminalService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class _EcrServer6(EcrServer):
    address_family = socket.AF_INET6


def open_server(address: tuple[str, int], service: TerminalService) -> EcrServer:
    """Bind now (an address in use fails the start, not the first sale); serve_forever() is the caller's."""
    server_class = _EcrServer6 if ":" in address[0] else EcrServer
    return server_class(address, service)


def base_url(server: EcrServer) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: EcrServer
    server_version = "pos-terminal"

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/status":
            self._answer(200, self.server.service.status())
        else:
            self._answer(404, {"error": "not found: GET /status, POST /sale"})

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/sale":
            self._answer(404, {"error": "not found: GET /status, POST /sale"})
            return
        amount = self._amount()
        if isinstance(amount, str):
            self._answer(400, {"error": amount})
            return
        service = self.server.service
        job = service.submit_local(amount)
        if job is None:
            if service.stopping:
                self._answer(503, {"error": "the terminal is stopping"})
            else:
                self._answer(409, {"error": "a sale is already running", "state": service.state})
            return
        if not job.done.wait(service.local_wait_limit):
            self._answer(504, {"error": "the sale has no outcome yet; see GET /status"})
            return
        self._answer(200, job.answer())

    def _amount(self) -> int | str:
        """The amount in fen, or what is wrong with the request (never echoing it)."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return "bad Content-Length"
        if not 0 < length <= MAX_BODY_BYTES:
            return f'send a JSON body of at most {MAX_BODY_BYTES} bytes: {{"amount": fen}}'
        try:
            data = json.loads(self.rfile.read(length))
        except (ValueError, RecursionError):
            return "the body is not JSON"
        amount = data.get("amount") if isinstance(data, dict) else None
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
            return f"amount: a whole number of fen, 1 to {MAX_AMOUNT}"
        return amount

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
        except OSError as error:  # the register hung up; the sale itself is recorded anyway
            log.info("ecr: could not answer %s %s: %s", self.command, self.path, error)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ecr: %s %s", self.address_string(), format % args)
