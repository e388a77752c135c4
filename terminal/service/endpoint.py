"""The local ECR link: a cash register on the same machine or LAN asks for a sale over plain HTTP.

``POST /sale`` with ``{"amount": 1234}`` (fen) blocks until the sale has an outcome and answers the
SaleResult JSON (plus ``stan`` and the masked ``receipt`` lines): 200 whatever the outcome, because the
register needs the outcome, not an HTTP error, for a declined card. ``GET /status`` answers the service's
status object. Every error is JSON ``{"error": …}``.

Anything that can reach this port may try to start a sale, including a web page the merchant opens (a
browser sends a cross-origin ``text/plain`` POST without asking) and a page whose DNS name is rebound to
127.0.0.1. So, in this order:

* 421 unless ``Host`` names this endpoint (`HostCheck`): a rebound name is refused, an IP literal cannot be
  rebound;
* 403 for an ``Origin`` other than this endpoint's own, or a ``Sec-Fetch-Site`` other than same-origin / none;
  no CORS header is ever sent, so a browser never lets a page read an answer;
* ``POST /sale`` only: 401 without ``Authorization: Bearer <[ecr] secret>`` (compared in constant time),
  415 unless ``Content-Type: application/json``, 400 for a missing or bad amount, 409 while another sale runs
  or waits (the register must not queue sales behind the shopper's back), 503 once the terminal is stopping.

``GET /display`` is the customer display (`terminal.ui.screen`): a page with its script, style and symbol from
this endpoint only, following ``GET /display/events`` (Server-Sent Events: the view as JSON at every change, a
comment every `HEARTBEAT_SECONDS`, and the end of the stream after `DISPLAY_STREAM_SECONDS`, when the browser
connects again); at most `MAX_DISPLAYS` streams at once (503 beyond). Like ``/status`` it needs no secret: it
shows what the shopper sees anyway, never a card number.

``GET /keypad`` is the merchant's keypad page (touch-sized keys: an amount, then the PIN, then the sale followed
on the display's stream, its outcome and receipt). It sends ``POST /keypad/sale`` with ``{"amount", "pin"}``:
the PIN is ``[ecr] keypad_pin`` (no PIN configured: 403, the keypad is off), compared in constant time; after
`KEYPAD_TRIES` wrong ones in a row every PIN is refused (429) for `KEYPAD_LOCK_SECONDS`. The rest is ``/sale``'s.
Its "Top up transit card" sends ``POST /keypad/load`` the same way: a top-up of that amount (at most the purse's
limit) on the transit card presented, answered like a sale (``charged`` is the amount loaded).

``GET /metrics`` is the Prometheus text format (`terminal.service.metrics`), for ``Authorization: Bearer
<[ecr] metrics_token>`` (a token of its own: the register's secret starts sales, a scraper's must not), or for
anyone with ``metrics_public = true``; without either it is off (403).

``GET /status`` needs no secret: it holds no secret (no key, no PAN but the receipt's masked one), the Host and
Origin checks keep web pages from reading it, and health checks can read it without holding the secret that
starts sales.

A client gets `REQUEST_SECONDS` for its whole request (line, headers, body) and `WRITE_SECONDS` to take the
answer; then its connection is closed, so a stalled or trickling client holds a thread only that long, and
at most `MAX_CONNECTIONS` connections are served at once (503 beyond). The standard library's
ThreadingHTTPServer is enough: one register, a handful of requests a minute, no extra dependency on the Pi.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import math
import select
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from emvcore.epurse import PURSE_LIMIT
from hostproto.messages import MAX_AMOUNT
from terminal.config import ECR_SECRET_MIN

if TYPE_CHECKING:
    from terminal.service.service import TerminalService

log = logging.getLogger("terminal.service")

MAX_BODY_BYTES = 4096
REQUEST_SECONDS = 10.0  # the whole request must arrive within this
WRITE_SECONDS = 10.0  # the client must take the answer within this
MAX_CONNECTIONS = 64  # served at once; a stalled one counts until REQUEST_SECONDS cut it off
ROUTES = "GET /status, GET /metrics, GET /display, GET /keypad, POST /sale, POST /keypad/sale, POST /keypad/load"
PAGE_FILES = Path(__file__).with_name("pages")
PAGE_TYPES = {"display.css": "text/css; charset=utf-8", "display.js": "text/javascript; charset=utf-8",
              "keypad.js": "text/javascript; charset=utf-8", "keypad.css": "text/css; charset=utf-8",
              "contactless.svg": "image/svg+xml"}
KEYPAD_TRIES = 5
KEYPAD_LOCK_SECONDS = 300
DISPLAY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MAX_DISPLAYS = 8
HEARTBEAT_SECONDS = 15.0
DISPLAY_STREAM_SECONDS = 300.0
STREAM_CHECK_SECONDS = 1.0  # how soon a stream notices that the terminal stops
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
         b'{"error": "too many connections; try again"}')


class HostCheck:
    """Which ``Host`` values name this endpoint: the configured address and port, ``localhost`` when bound to
    loopback, and, when bound to every address, any IP literal (a DNS name could be rebound, an IP cannot)."""

    def __init__(self, host: str, port: int) -> None:
        self.port = port
        self.name = host.lower()
        try:
            self.address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
        except ValueError:
            self.address = None
        self.wildcard = self.address is not None and self.address.is_unspecified
        self.loopback = self.wildcard or self.name == "localhost" or bool(self.address and self.address.is_loopback)

    def allows(self, value: str) -> bool:
        host, port = _split_host(value.strip().lower())
        if port != self.port or not host:
            return False
        if host == self.name or (host == "localhost" and self.loopback):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return self.wildcard or address == self.address or (self.loopback and address.is_loopback)


def _split_host(value: str) -> tuple[str, int | None]:
    """``host:port`` or ``[v6]:port`` → (host, port); no port or a bad one → port None."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.rpartition(":")
    return host, int(port) if port.isdigit() and len(port) <= 5 else None


class KeypadLock:
    """Wrong keypad PINs: after `KEYPAD_TRIES` in a row the keypad refuses every PIN for `KEYPAD_LOCK_SECONDS`
    (a 4-digit PIN must not be guessable from the shop's network)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._wrong = 0
        self._until = 0.0

    def seconds_left(self) -> int:
        with self._lock:
            return max(0, math.ceil(self._until - self._clock()))

    def wrong(self) -> None:
        with self._lock:
            self._wrong += 1
            if self._wrong >= KEYPAD_TRIES:
                self._wrong, self._until = 0, self._clock() + KEYPAD_LOCK_SECONDS

    def forgive(self) -> None:
        with self._lock:
            self._wrong = 0


class EcrServer(ThreadingHTTPServer):
    daemon_threads = True  # a register that hangs up must not keep the service from stopping

    def __init__(self, address: tuple[str, int], service: TerminalService, secret: str, *,
                 request_seconds: float = REQUEST_SECONDS, max_connections: int = MAX_CONNECTIONS) -> None:
        if len(secret) < ECR_SECRET_MIN:
            raise ValueError(f"the local ECR needs a secret of at least {ECR_SECRET_MIN} characters")
        self.service = service
        self.secret = secret.encode()
        self.request_seconds = request_seconds
        self._slots = threading.BoundedSemaphore(max_connections)
        self.displays = threading.BoundedSemaphore(MAX_DISPLAYS)
        self.keypad_lock = KeypadLock()
        super().__init__(address, _Handler)
        self.host_check = HostCheck(address[0], int(self.server_address[1]))

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("ecr: %d connections open already; one refused", MAX_CONNECTIONS)
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _EcrServer6(EcrServer):
    address_family = socket.AF_INET6


def open_server(address: tuple[str, int], service: TerminalService, secret: str, *,
                request_seconds: float = REQUEST_SECONDS) -> EcrServer:
    """Bind now (an address in use fails the start, not the first sale); serve_forever() is the caller's."""
    server_class = _EcrServer6 if ":" in address[0] else EcrServer
    return server_class(address, service, secret, request_seconds=request_seconds)


def base_url(server: EcrServer) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _event(view: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(view, ensure_ascii=False).encode() + b"\n\n"


class _RequestReader(io.RawIOBase):
    """The connection's reading side with one deadline for the whole request: a client that trickles a byte
    every few seconds is cut off as surely as one that stops."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: EcrServer
    server_version = "pos-terminal"

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced by one that keeps the request's deadline
        self.rfile = io.BufferedReader(_RequestReader(self.connection,
                                                      time.monotonic() + self.server.request_seconds))

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError) as error:  # stalled, too slow, or gone: close, nothing was started
            log.info("ecr: %s: connection closed (%s)", self.client_address[0], error)
            self.close_connection = True

    def do_GET(self) -> None:
        if not self._allowed():
            return
        path = self.path.split("?")[0]
        if path == "/status":
            self._answer(200, self.server.service.status())
        elif path == "/metrics":
            self._metrics()
        elif path in ("/display", "/keypad"):
            self._file(path[1:] + ".html", "text/html; charset=utf-8")
        elif path == "/display/events":
            self._display_events()
        elif path.startswith("/display/") and path[len("/display/"):] in PAGE_TYPES:
            name = path[len("/display/"):]
            self._file(name, PAGE_TYPES[name])
        else:
            self._answer(404, {"error": f"not found: {ROUTES}"})

    def _gone(self) -> bool:
        """The display closed its end (a tab closed, a browser restarted): its slot is free at once."""
        if not select.select([self.connection], [], [], 0)[0]:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _file(self, name: str, content_type: str) -> None:
        data = (PAGE_FILES / name).read_bytes()
        self._send(200, data, content_type, {"Content-Security-Policy": DISPLAY_POLICY, "X-Frame-Options": "DENY",
                                             "Referrer-Policy": "no-referrer"})

    def _display_events(self) -> None:
        """The customer display's stream: the view now, then at each change, until the terminal stops."""
        service = self.server.service
        if not self.server.displays.acquire(blocking=False):
            self._answer(503, {"error": f"at most {MAX_DISPLAYS} displays at once"}, {"Retry-After": "5"})
            return
        try:
            self.close_connection = True
            self.connection.settimeout(WRITE_SECONDS)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            screen = service.parts.screen
            version, view = screen.current()
            self.wfile.write(b"retry: 1000\n" + _event(view))
            ends, quiet_since = time.monotonic() + DISPLAY_STREAM_SECONDS, time.monotonic()
            while time.monotonic() < ends and not service.stopping and not self._gone():
                newer = screen.after(version, STREAM_CHECK_SECONDS)
                for _, view in newer:
                    self.wfile.write(_event(view))
                if newer:
                    version, quiet_since = newer[-1][0], time.monotonic()
                elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = time.monotonic()
                    self.wfile.write(b": still here\n\n")
                self.wfile.flush()
        except OSError as error:  # the display went away
            log.info("display: %s: stream closed (%s)", self.client_address[0], error)
        finally:
            self.server.displays.release()

    def do_POST(self) -> None:
        if not self._allowed():
            return
        path = self.path.split("?")[0]
        if path not in ("/sale", "/keypad/sale", "/keypad/load"):
            self._answer(404, {"error": f"not found: {ROUTES}"})
            return
        if path == "/sale" and not self._authorized():
            self._answer(401, {"error": "send the terminal's [ecr] secret as Authorization: Bearer …"},
                         {"WWW-Authenticate": 'Bearer realm="pos-terminal"'})
            return
        if self.headers.get_content_type() != "application/json":
            self._answer(415, {"error": "send Content-Type: application/json"})
            return
        body = self._json_body()
        if isinstance(body, str):
            self._answer(400, {"error": body})
            return
        if path.startswith("/keypad/") and not self._keypad_pin_ok(body.get("pin")):
            return
        kind = "load" if path == "/keypad/load" else "sale"
        most = PURSE_LIMIT if kind == "load" else MAX_AMOUNT
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= most:
            self._answer(400, {"error": f"amount: a whole number of fen, 1 to {most}"})
            return
        service = self.server.service
        job = service.submit_local(amount, kind=kind)
        if job is None:
            if service.stopping:
                self._answer(503, {"error": "the terminal is stopping"})
            elif service.gate:
                self._answer(409, {"error": "this terminal is a metro gate: it charges its fare at every tap and "
                                            "takes no sales"})
            else:
                self._answer(409, {"error": "a sale is already running", "state": service.state})
            return
        if not job.done.wait(service.local_wait_limit):
            self._answer(504, {"error": "the sale has no outcome yet; see GET /status"})
            return
        self._answer(200, job.answer())

    def _keypad_pin_ok(self, pin: object) -> bool:
        """The keypad's PIN, in constant time, with a lock-out after `KEYPAD_TRIES` wrong ones (else answered)."""
        expected = self.server.service.config.ecr.keypad_pin
        if expected is None:
            self._answer(403, {"error": "the keypad is off: set [ecr] keypad_pin in the terminal's configuration"})
            return False
        locked = self.server.keypad_lock.seconds_left()
        if locked:
            self._answer(429, {"error": f"too many wrong PINs: try again in {locked} s"}, {"Retry-After": str(locked)})
            return False
        if isinstance(pin, str) and hmac.compare_digest(pin.encode(), expected.encode()):
            self.server.keypad_lock.forgive()
            return True
        self.server.keypad_lock.wrong()
        log.warning("ecr: wrong keypad PIN from %s", self.client_address[0])
        self._answer(403, {"error": "wrong PIN"})
        return False

    def _allowed(self) -> bool:
        """Host names this endpoint, and the request comes from no other origin (else answered here)."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) != 1 or not self.server.host_check.allows(hosts[0]):
            self._answer(421, {"error": "the Host header does not name this terminal's ECR endpoint"})
            return False
        origins = self.headers.get_all("Origin") or []
        site = self.headers.get("Sec-Fetch-Site")
        if (len(origins) > 1 or (origins and origins[0].strip().lower() != f"http://{hosts[0].strip().lower()}")
                or (site is not None and site.strip().lower() not in ("same-origin", "none"))):
            self._answer(403, {"error": "cross-origin requests are refused"})
            return False
        return True

    def _metrics(self) -> None:
        ecr = self.server.service.config.ecr
        if not ecr.metrics_public:
            if ecr.metrics_token is None:
                self._answer(403, {"error": "metrics are off: set [ecr] metrics_token (a scraper's bearer token) or "
                                            "metrics_public = true"})
                return
            if not self._bearer(ecr.metrics_token.encode()):
                self._answer(401, {"error": "GET /metrics needs Authorization: Bearer <[ecr] metrics_token>"},
                             {"WWW-Authenticate": 'Bearer realm="metrics"'})
                return
        self._send(200, self.server.service.metrics.render(), CONTENT_TYPE_LATEST, {"Cache-Control": "no-store"})

    def _authorized(self) -> bool:
        return self._bearer(self.server.secret)

    def _bearer(self, secret: bytes) -> bool:
        values = self.headers.get_all("Authorization") or []
        scheme, _, token = (values[0] if len(values) == 1 else "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), secret)

    def _json_body(self) -> dict[str, Any] | str:
        """The request's JSON object, or what is wrong with it (never echoing it)."""
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
        return data if isinstance(data, dict) else 'send a JSON object: {"amount": fen}'

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's refusals (bad request line, headers too long, unknown method) as JSON too."""
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method we have no handler for
            self._answer(405, {"error": f"method not allowed: {ROUTES}"}, {"Allow": "GET, POST"})
        else:
            self._answer(code, {"error": HTTPStatus(code).phrase})  # the base's message may quote the request

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, ensure_ascii=False).encode(), "application/json; charset=utf-8", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.connection.settimeout(WRITE_SECONDS)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError as error:  # the register hung up; the sale itself is recorded anyway
            log.info("ecr: could not answer %s %s: %s", self.command, self.path, error)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ecr: %s %s", self.address_string(), format % args)
