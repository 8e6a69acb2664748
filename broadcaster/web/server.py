"""Run an ASGI app with uvicorn in a thread: bound synchronously, stopped cleanly.

``AsgiServer(app, address).start()`` binds the socket itself (so an address in use is an
``OSError`` raised to the caller, and port 0 gives the real port in ``bound_address``), then
serves from a background thread with its own event loop. ``close()`` stops accepting, lets
requests in progress finish (at most ``grace`` seconds) and joins the thread.

Connections are kept alive between requests (HTTP/1.1), so a client posting many events
connects once. Slow clients still cannot hold the listener: every request on a connection
has its own whole-request deadline (``request_deadline`` seconds from its first byte, or
from the connection for the first one, to the last byte of its body), not a per-read
timeout. A request still incomplete by then is answered 408 and closed. A connection idle
between two requests is closed after ``keep_alive`` seconds; one whose client half-closed
is closed once answered; an answer given before the request's body arrived (a refusal)
closes it. Requests the HTTP parser cannot make sense of are answered 400 and closed,
whatever went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("broadcaster.web")

# From a request's first byte (the connection, for the first) to its last: a client slower
# than that is cut off.
REQUEST_DEADLINE = 10.0
# A kept-alive connection with no request begun for this long is closed.
KEEP_ALIVE = 5.0
# Connections open at once before new requests are answered 503 straight away.
MAX_CONNECTIONS = 512
# After refusing a request whose body we did not read: half-close, then discard what the
# client still sends for this long, so the kernel does not reset our answer away.
LINGER_SECONDS = 1.0


def _raw_response(code: int, reason: str, message: str) -> bytes:
    body = json.dumps({"errors": [{"field": None, "message": message}]}).encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nServer: broadcaster\r\n\r\n"
    ).encode() + body


TIMED_OUT = _raw_response(408, "Request Timeout", "the request took too long to arrive")
MALFORMED = _raw_response(400, "Bad Request", "malformed HTTP request")


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a whole-request deadline per request, kept-alive
    connections closed when the client is done, and a 400 for whatever the parser (or
    uvicorn's handling of what it parsed) cannot take."""

    deadline: float = REQUEST_DEADLINE
    _timer: asyncio.TimerHandle | None = None  # the deadline of the request being read
    _next_began: float | None = None  # first byte of a request pipelined behind the current
    _draining = False
    _eof = False  # the client half-closed: nothing more will come

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # An answer is written in pieces (head, body): with Nagle's algorithm the body waits
        # for the client's delayed ACK of the head, 40 ms per request on a kept-alive
        # connection. asyncio sets TCP_NODELAY only on sockets made with IPPROTO_TCP.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._start_deadline(self.loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        self._eof = True
        # A client that half-closes after its request still gets the answer.
        if self.cycle is not None and not self.cycle.response_complete:
            return True
        return None

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # answered already; what the client still sends is discarded
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if self._timer is None:  # the first byte of the next request on this connection
                self._start_deadline(self.loop.time())
        elif not cycle.more_body and self._next_began is None:
            self._next_began = self.loop.time()  # pipelined behind the one being answered
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._stop_deadline()
        began, self._next_began = self._next_began, None
        cycle = self.cycle
        if not self.transport.is_closing():
            if cycle is not None and cycle.more_body:
                # Answered before its body arrived (a refusal): the rest of the body would
                # be read as the next request. Closed, as the answer said.
                self._answer_and_close(b"")
                return
            if self._eof:
                self._answer_and_close(b"")
                return
            if self.conn.trailing_data[0]:  # a pipelined request: its clock is running
                self._start_deadline(self.loop.time() if began is None else began)
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own (plain text, closed at once): ours, in the JSON shape, lingering.
        self._answer_and_close(MALFORMED)

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except Exception:
            log.debug("malformed HTTP request from %s", self.client, exc_info=True)
            self._answer_and_close(MALFORMED)

    def _start_deadline(self, began: float) -> None:
        self._stop_deadline()
        self._timer = self.loop.call_at(began + self.deadline, self._deadline_passed)

    def _stop_deadline(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_passed(self) -> None:
        self._timer = None
        cycle = self.cycle
        # Still waiting for headers (of the first request or the next), or for a body
        # nobody answered yet. Once the whole request is in, the application's work (a
        # store commit) is not cut short.
        if (
            cycle is None
            or cycle.response_complete
            or (cycle.more_body and not cycle.response_started)
        ):
            self._answer_and_close(TIMED_OUT)

    def _answer_and_close(self, answer: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if answer and (
            self.cycle is None or self.cycle.response_complete or not self.cycle.response_started
        ):
            with contextlib.suppress(Exception):
                transport.write(answer)
        if transport.can_write_eof():
            self._draining = True
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on ``host:port``, or the ``OSError`` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class AsgiServer:
    def __init__(
        self,
        app: Callable[..., Any],
        address: tuple[str, int],
        *,
        request_deadline: float | None = None,
        keep_alive: float | None = None,
        max_connections: int = MAX_CONNECTIONS,
        grace: float = 30.0,
        name: str = "http",
    ) -> None:
        self.app = app
        self.requested = address
        self.name = name
        deadline = REQUEST_DEADLINE if request_deadline is None else request_deadline
        protocol = type("Protocol", (_Protocol,), {"deadline": deadline})
        self._config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            limit_concurrency=max_connections,
            timeout_keep_alive=KEEP_ALIVE if keep_alive is None else keep_alive,  # type: ignore[arg-type]
            backlog=128,
            timeout_graceful_shutdown=int(grace),
            ws="none",
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._bound: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None

    @property
    def bound_address(self) -> tuple[str, int]:
        assert self._bound is not None, "bound by start()"
        return self._bound

    def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the address cannot be bound."""
        host, port = self.requested
        sock = listen_socket(host, port)
        self._socket = sock
        bound_host, bound_port = sock.getsockname()[:2]
        self._bound = (str(bound_host), int(bound_port))
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        started = threading.Event()

        def wait() -> bool:
            return self._server.started or not self._thread_alive()

        while not wait():
            started.wait(0.01)
        if not self._server.started:
            self.close()
            raise OSError(f"the HTTP server on {host}:{port} did not start")

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        assert self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except Exception:
            log.exception("the HTTP server stopped on an error")

    def close(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._socket is not None:
            self._socket.close()


def serve(app: Any, sock: socket.socket) -> None:
    """Serve on ``sock`` (from ``listen_socket``, so an address in use was an ``OSError``
    before anything was announced) in the foreground until SIGINT or SIGTERM (uvicorn
    handles both and lets open requests finish), with the same deadlines as the daemon's
    listener."""
    protocol = type("Protocol", (_Protocol,), {"deadline": REQUEST_DEADLINE})
    config = uvicorn.Config(
        app,
        http=protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE,  # type: ignore[arg-type]
        ws="none",
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


class ServerThread:
    """An app served on a background thread (tests, drills); ``port`` 0 picks a free one
    (see ``url``)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = AsgiServer(app, (host, port), name="console")
        self.host = host

    def start(self) -> ServerThread:
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return self._server.bound_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.close()
