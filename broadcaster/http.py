"""The HTTP listener: event intake, health and metrics, on the standard library alone.

- ``POST /v1/events``: one JSON object (an incident ``id`` and any state-file fields), with
  ``Authorization: Bearer <token>``. 202 once the store committed it; 401, 411, 413, 400 or
  422 (with field-level errors) otherwise; 503 while the service stops.
- ``GET /healthz``: 200 when the daemon does its job, 503 with the reasons otherwise.
- ``GET /metrics``: Prometheus text exposition.

It binds loopback by default: /healthz and /metrics need no token, and say nothing secret.
Every request is answered then the connection closed, so a stop never waits on idle
keep-alive clients. The service shell opens it as a push source (``sources/http.py``),
and the listener asks the shell (an ``IntakeService``) for the settings, health and
metrics it serves.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from .config import IntakeConfig, Secret
from .events import EventError
from .health import Health
from .logs import redact
from .metrics import Metrics
from .sources.base import ServiceStopping, Submit
from .store import StoreUnavailable

log = logging.getLogger("broadcaster.http")

# A client that stalls mid-request must not hold a handler thread, or a stop, for longer.
REQUEST_TIMEOUT = 10.0
# After refusing a request whose body we did not read, swallow at most this much of it
# (for at most LINGER_SECONDS) so the refusal reaches the client instead of a reset.
DRAIN_LIMIT = 1024 * 1024
LINGER_SECONDS = 1.0
# Each connection costs a thread: past this many at once, a flood of (slow) clients gets an
# immediate 503 instead of exhausting threads and memory.
MAX_CONNECTIONS = 64
_BUSY_BODY = b'{"errors": [{"field": null, "message": "too many connections"}]}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: "
    + str(len(_BUSY_BODY)).encode()
    + b"\r\n\r\n"
    + _BUSY_BODY
)
SOURCE = "http"


class IntakeService(Protocol):
    """What the listener asks of the service around it, at each request."""

    @property
    def stopping(self) -> bool: ...

    @property
    def metrics(self) -> Metrics: ...

    def intake_config(self) -> IntakeConfig | None:
        """The settings in force (token, body limit); None once the service stopped."""

    def inspect(self) -> Health: ...


class IntakeServer(ThreadingHTTPServer):
    # Handlers are joined on close: an event being committed during a stop still gets its
    # answer, and the store is not closed under it.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: IntakeService, submit: Submit) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        self.submit = submit
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, IntakeHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves its own name (getfqdn), a DNS round trip that can
        # stall a start for seconds in a container; nothing here uses that name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nobody else will give the slot back
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Through logging (and its redaction), not socketserver's print to stderr.
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, ConnectionError):
            log.debug("client %s went away", client_address[0])
        else:
            log.exception("HTTP request from %s failed", client_address[0])

    @property
    def bound_address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()


class RequestRefused(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        headers: dict[str, str] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.field = field


class IntakeHandler(BaseHTTPRequestHandler):
    server: IntakeServer
    protocol_version = "HTTP/1.1"  # needed for Expect: 100-continue
    server_version = "broadcaster"
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self._body_read = False
        self._route = ""

    # -- routing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._route = urlsplit(self.path).path
        if self._route == "/healthz":
            self._healthz()
        elif self._route == "/metrics":
            self._metrics()
        elif self._route == "/v1/events":
            self._refuse(RequestRefused(405, "use POST", {"Allow": "POST"}))
        else:
            self._refuse(RequestRefused(404, "not found"))

    def do_POST(self) -> None:
        self._route = urlsplit(self.path).path
        if self._route == "/v1/events":
            try:
                self._events()
            except RequestRefused as e:
                self._refuse(e)
        elif self._route in ("/healthz", "/metrics"):
            self._refuse(RequestRefused(405, "use GET", {"Allow": "GET"}))
        else:
            self._refuse(RequestRefused(404, "not found"))

    def handle_expect_100(self) -> bool:
        # A client that asks first (curl does for large bodies) is refused before it sends
        # a body we would not read anyway.
        if self.command == "POST" and urlsplit(self.path).path == "/v1/events":
            self._route = "/v1/events"
            try:
                self._check_headers()
            except RequestRefused as e:
                self._refuse(e)
                return False
        return super().handle_expect_100()

    # -- endpoints -----------------------------------------------------------------------

    def _healthz(self) -> None:
        health = self.server.service.inspect()
        self._reply(200 if health.ok else 503, health.to_json())

    def _metrics(self) -> None:
        body, content_type = self.server.service.metrics.render(self.headers.get("Accept"))
        self._send(200, body, content_type)

    def _check_headers(self) -> int:
        """Refuse what can be refused before reading the body; returns its length."""
        try:
            return self._body_length()
        except RequestRefused as e:
            if e.code in (400, 413):  # an event after all, only a malformed or oversized one
                self.server.service.metrics.event_rejected(SOURCE)
            raise

    def _body_length(self) -> int:
        service = self.server.service
        if service.stopping:
            raise RequestRefused(503, "the service is stopping", {"Retry-After": "5"})
        intake = service.intake_config()
        token = intake.http_token if intake is not None else None
        if not self._authorized(token):
            value = 'Bearer realm="broadcaster"'
            if self.headers.get("Authorization"):
                value += ', error="invalid_token"'
            raise RequestRefused(
                401, "a valid bearer token is required", {"WWW-Authenticate": value}
            )
        if self.headers.get("Transfer-Encoding"):
            # Chunked bodies would let a client stream past the size limit; refusing every
            # transfer coding also closes the Content-Length/Transfer-Encoding smuggling gap.
            raise RequestRefused(411, "send a Content-Length; chunked bodies are not accepted")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise RequestRefused(411, "a Content-Length is required")
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
            raise RequestRefused(400, "invalid Content-Length")
        length = int(lengths[0])
        limit = intake.http_max_body if intake is not None else 0
        if length > limit:
            raise RequestRefused(413, f"the body is larger than {limit} bytes")
        return length

    def _authorized(self, token: Secret | None) -> bool:
        if token is None:
            return False
        scheme, _, given = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: how much of a guess matched must not show in the response time.
        return hmac.compare_digest(given.strip().encode(), token.reveal().encode())

    def _events(self) -> None:
        service = self.server.service
        length = self._check_headers()
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            raise RequestRefused(400, "the body ended before Content-Length bytes")
        host = self.client_address[0]
        origin = f"http {host}"
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as e:
            service.metrics.event_rejected(SOURCE)
            log.warning("event refused from %s: invalid JSON: %s", host, e)
            raise RequestRefused(400, f"invalid JSON: {e}") from None
        if not isinstance(data, dict):
            service.metrics.event_rejected(SOURCE)
            raise RequestRefused(400, "an event must be one JSON object with an 'id'")
        started = time.perf_counter()
        try:
            incident_id = self.server.submit(data, origin)
        except EventError as e:
            service.metrics.event_rejected(SOURCE)
            log.warning("event refused from %s:\n%s", host, e)
            errors = [{"field": p.field, "message": p.message} for p in e.problems]
            self._reply(422, {"errors": errors})
            return
        except ServiceStopping:
            raise RequestRefused(503, "the service is stopping", {"Retry-After": "5"}) from None
        except StoreUnavailable as e:
            log.error("event from %s not applied: the store is unreachable: %s", host, e)
            raise RequestRefused(
                503, "the store is unreachable; the event was not applied", {"Retry-After": "5"}
            ) from None
        except Exception:
            log.exception("event from %s could not be applied", host)
            raise RequestRefused(500, "internal error; the event was not applied") from None
        service.metrics.event_accepted(SOURCE)
        log.info(
            "event for %s accepted from %s (%.1f ms)",
            incident_id,
            host,
            (time.perf_counter() - started) * 1000,
        )
        self._reply(202, {"id": incident_id, "status": "accepted"})

    # -- responses -----------------------------------------------------------------------

    def _refuse(self, e: RequestRefused) -> None:
        self._reply(e.code, {"errors": [{"field": e.field, "message": e.message}]}, e.headers)

    def _reply(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        # Whatever a message quotes back (an event's own values) goes through the same
        # redaction as the logs: a token pasted into a field is never echoed.
        body = redact(json.dumps(payload, ensure_ascii=False)).encode()
        self._send(code, body, "application/json; charset=utf-8", headers)

    def _send(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True
        self.server.service.metrics.http_request(self._route, code)
        if self.command == "POST" and not self._body_read:
            self._linger()

    def _linger(self) -> None:
        """Closing with unread input makes the kernel send a reset, which can destroy our
        answer before the client reads it: half-close, then swallow what it still sends."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            deadline = time.monotonic() + LINGER_SECONDS
            left = DRAIN_LIMIT
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(65536, left))
                if not chunk:
                    break
                left -= len(chunk)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (malformed request line, unsupported method, huge
        # headers) in the same JSON shape as ours, instead of an HTML page.
        self.close_connection = True
        try:
            self._route = urlsplit(self.path).path if hasattr(self, "path") else ""
        except ValueError:
            self._route = ""
        self._reply(code, {"errors": [{"field": None, "message": message or str(code)}]})

    def version_string(self) -> str:
        return self.server_version  # no Python version for scanners to match

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # events are logged with their outcome; health checks and scrapes are noise

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("%s: %s", self.address_string(), format % args)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")
