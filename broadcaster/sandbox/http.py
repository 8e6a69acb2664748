"""Server plumbing shared by the X and Mastodon sandboxes.

Each sandbox is a ``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port by default) served
from a daemon thread. Requests are parsed into ``Request`` objects, run through the fault
injector, and handed to the platform's ``_route``; the platform returns a ``Response``.
The plumbing, not the platform, implements the faults that happen "on the wire" (latency,
hangs, dropped connections), so both platforms misbehave in exactly the same ways.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .faults import FaultDecision, Faults

log = logging.getLogger(__name__)

Clock = Callable[[], float]


# -- records ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Post:
    """One post the sandbox accepted (and so would be public on the real platform)."""

    id: str
    account: str  # the username of the author
    text: str
    in_reply_to: str | None
    created_at: float  # epoch seconds, from the sandbox clock
    idempotency_key: str | None = None
    language: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it.

    ``status`` is None when no response was sent (a hang or a dropped connection); then
    ``fault`` says which, and ``handled_status`` says what the platform logic answered
    before the response was thrown away (None if it never ran).
    """

    method: str
    path: str
    status: int | None
    time: float
    fault: str | None = None
    handled_status: int | None = None


class PostStore:
    """Posts in creation order. Not locked itself: the owning server's lock guards it."""

    def __init__(self) -> None:
        self._posts: dict[str, Post] = {}

    def add(self, post: Post) -> None:
        self._posts[post.id] = post

    def get(self, post_id: str) -> Post | None:
        return self._posts.get(post_id)

    def mark_deleted(self, post_id: str) -> None:
        post = self._posts[post_id]
        self._posts[post_id] = replace(post, deleted=True)

    def all(self) -> list[Post]:
        return list(self._posts.values())

    def root_of(self, post: Post) -> Post:
        seen = {post.id}
        while post.in_reply_to is not None:
            parent = self._posts.get(post.in_reply_to)
            if parent is None or parent.id in seen:
                break
            seen.add(parent.id)
            post = parent
        return post

    def threads(self) -> dict[str, list[Post]]:
        """Root id → the thread in reading order (depth first, each branch oldest first)."""
        children: dict[str, list[Post]] = {}
        roots: list[Post] = []
        for post in self._posts.values():
            parent = post.in_reply_to
            if parent is not None and parent in self._posts:
                children.setdefault(parent, []).append(post)
            else:
                roots.append(post)
        result: dict[str, list[Post]] = {}
        for root in roots:
            chain: list[Post] = []
            stack = [root]
            while stack:
                post = stack.pop()
                chain.append(post)
                stack.extend(reversed(children.get(post.id, [])))
            result[root.id] = chain
        return result


# -- rate-limit windows -----------------------------------------------------------------


@dataclass(frozen=True)
class WindowState:
    limit: int
    remaining: int
    reset: float  # epoch seconds at which the window ends

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0


@dataclass
class FixedWindows:
    """Fixed-window request counters, one window per key.

    ``aligned=True`` starts windows at multiples of ``period`` since the epoch (Mastodon's
    rack-attack); ``aligned=False`` starts a window at the first request after the previous
    one ended (X's per-endpoint 15-minute windows). Not locked: the server lock guards it.
    """

    limit: int
    period: float
    aligned: bool = False
    _windows: dict[Any, tuple[float, int]] = field(default_factory=dict)

    def _current(self, key: Any, now: float) -> tuple[float, int]:
        reset, used = self._windows.get(key, (0.0, 0))
        if now >= reset:
            start = now // self.period * self.period if self.aligned else now
            reset = start + self.period
            used = 0
        return reset, used

    def peek(self, key: Any, now: float) -> WindowState:
        reset, used = self._current(key, now)
        return WindowState(self.limit, max(0, self.limit - used), reset)

    def hit(self, key: Any, now: float) -> WindowState:
        reset, used = self._current(key, now)
        used += 1
        self._windows[key] = (reset, used)
        return WindowState(self.limit, max(0, self.limit - used), reset)

    def clear(self) -> None:
        self._windows.clear()


# -- request / response -----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query exactly as on the request line (signatures cover it)
    path: str  # without query and without a trailing slash (Rails ignores it; Mastodon.py
    # asks for /api/v1/instance/)
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    client: str

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers])

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, text.encode(), [("Content-Type", "text/html; charset=utf-8")])

    def with_headers(self, headers: Iterable[tuple[str, str]]) -> Response:
        self.headers.extend(headers)
        return self


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def utc_iso(epoch: float, *, digits: int = 3) -> str:
    """ISO 8601 in UTC with ``digits`` fractional digits and a Z, as both platforms write."""
    moment = datetime.fromtimestamp(epoch, UTC)
    fraction = f"{moment.microsecond:06d}"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"


class SnowflakeIds:
    """Time-ordered numeric string ids, strictly increasing even within one millisecond."""

    def __init__(self, clock: Clock, *, epoch_ms: int, shift: int) -> None:
        self._clock = clock
        self._epoch_ms = epoch_ms
        self._shift = shift
        self._last = 0

    def next(self) -> str:
        candidate = (int(self._clock() * 1000) - self._epoch_ms) << self._shift
        self._last = max(candidate, self._last + 1)
        return str(self._last)


# -- the server -------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: eight clients connecting at once on a loaded
    # machine overflow it, and a dropped SYN costs a second (a client's connect timeout).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds on badly configured hosts; we only ever need the address.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout fired during a hang) makes our late write
        # fail; that is the scenario working as intended, not a server bug worth a trace.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug(
                "%s sandbox: client %s went away: %s", self.sandbox.platform, client_address, error
            )
            return
        log.exception("%s sandbox: error serving %s", self.sandbox.platform, client_address)

    def close_all_connections(self) -> None:
        # Idle keep-alive connections park a handler thread in readline(); shutting the
        # sockets down lets those threads finish now instead of at their idle timeout.
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; tests see pooled reuse
    timeout = 30  # idle keep-alive connections give up eventually even without stop()
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK and every keep-alive request costs an extra ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "broadcaster-sandbox"

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header must come from the injected clock: Mastodon.py shifts the
        # X-RateLimit-Reset it parses by (local time - Date), so a real-time Date with a
        # fake-time reset would put the reset hours away once a test advances the clock.
        return http_date(self.server.sandbox.clock() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.sandbox.platform, format % args)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_request(self) -> Request | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._send(Response.json(411, {"error": "Length Required"}))
            return None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        return Request(
            method=self.command,
            target=self.path,
            path=path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client=self.client_address[0],
        )

    def _handle(self) -> None:
        sandbox = self.server.sandbox
        request = self._read_request()
        if request is None:
            return
        decision = sandbox._decide_fault(request)
        if decision.latency > 0 and sandbox._stopping.wait(decision.latency):
            self._abort()
            return
        if decision.action == "hang" and not decision.hang_after_processing:
            sandbox._record(request, None, "timeout")
            sandbox._stopping.wait(decision.hang_seconds)
            self._abort()
            return
        if decision.action in ("error", "rate_limit"):
            response = sandbox._fault_response(request, decision)
        else:
            response = sandbox._dispatch(request)
        if decision.action == "drop":
            sandbox._record(request, None, "drop", handled=response.status)
            self._abort()
            return
        if decision.action == "hang":
            sandbox._record(request, None, "timeout", handled=response.status)
            sandbox._stopping.wait(decision.hang_seconds)
            self._abort()
            return
        sandbox._record(request, response.status, decision.action)
        self._send(response, head=request.method == "HEAD")

    def _send(self, response: Response, *, head: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    def _abort(self) -> None:
        # Close without a single response byte: the client sees "connection aborted",
        # exactly like a load balancer dropping the request or a timed-out upstream.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """Base class: lifecycle, locking, request log, fault plumbing.

    Subclasses set ``platform`` and implement ``_route``, ``_is_posting`` and
    ``_fault_response``. ``_route`` runs with ``self._lock`` held, so platform state needs
    no further locking; latency and hangs happen outside the lock, so a hanging request
    never blocks the others.
    """

    platform = "sandbox"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock = time.time,
        faults: Faults | None = None,
    ) -> None:
        self.clock = clock
        self.faults = faults if faults is not None else Faults()
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._log: list[RequestRecord] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.platform}-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency or hang faults
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.platform} sandbox is not running")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # -- observation ---------------------------------------------------------------------

    def requests_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def clear_requests_log(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate()`` is true, re-checking after every request.

        Use this instead of sleeping: e.g. ``x.wait_for(lambda: len(x.posts()) == 3)``.
        The predicate runs with the server lock held (it is re-entrant).
        """
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # -- plumbing used by the handler ----------------------------------------------------

    def _record(
        self,
        request: Request,
        status: int | None,
        fault: str | None,
        *,
        handled: int | None = None,
    ) -> None:
        entry = RequestRecord(request.method, request.path, status, self.clock(), fault, handled)
        with self._changed:
            self._log.append(entry)
            self._changed.notify_all()

    def _decide_fault(self, request: Request) -> FaultDecision:
        if request.path == "/":
            return FaultDecision()  # the HTML view is for humans watching a drill
        return self.faults.decide(posting=self._is_posting(request))

    def _dispatch(self, request: Request) -> Response:
        try:
            with self._changed:
                response = self._route(request)
                self._changed.notify_all()
                return response
        except Exception:
            log.exception("%s sandbox failed on %s %s", self.platform, request.method, request.path)
            return self._fault_response(request, FaultDecision(action="error", status=500))

    # -- platform hooks ------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        raise NotImplementedError

    def _is_posting(self, request: Request) -> bool:
        raise NotImplementedError

    def _fault_response(self, request: Request, decision: FaultDecision) -> Response:
        raise NotImplementedError
