"""The daemon's HTTP endpoints, as a Starlette app (served by ``web.server``).

- ``POST /v1/events``: one JSON object (an incident ``id`` and any state-file fields), with
  ``Authorization: Bearer <token>``. 202 once the store committed it; 401, 411, 413, 400 or
  422 (with field-level errors) otherwise; 503 while the service stops or the store is
  unreachable.
- ``GET /healthz``: 200 when the daemon does its job, 503 with the reasons otherwise.
- ``GET /metrics``: Prometheus text exposition.

It binds loopback by default: /healthz and /metrics need no token, and say nothing secret.
Connections are kept alive between answers (a client posting a storm of events connects
once), except after a refusal given before the body was read (401, 411, 413, 405...), which
closes it; a stop closes idle connections at once. The service shell opens it as a push
source (``sources/http.py``); the app asks the shell (an ``IntakeService``) for the
settings, health and metrics it serves, at each request.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..config import IntakeConfig, Secret
from ..events import EventError, decode
from ..health import Health
from ..logs import redact_json
from ..metrics import Metrics
from ..sources.base import ServiceStopping, Submit
from ..store import StoreUnavailable

log = logging.getLogger("broadcaster.http")

SOURCE = "http"
EVENTS = "/v1/events"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class IntakeService(Protocol):
    """What the intake asks of the service around it, at each request."""

    @property
    def stopping(self) -> bool: ...

    @property
    def metrics(self) -> Metrics: ...

    def intake_config(self) -> IntakeConfig | None:
        """The settings in force (token, body limit); None once the service stopped."""

    def inspect(self) -> Health: ...


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


def reply(code: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    # Whatever a message quotes back (an event's own values) goes through the same
    # redaction as the logs, before JSON escaping: a token pasted into a field never shows.
    body = redact_json(payload).encode()
    return Response(
        body, code, headers=_headers(headers), media_type="application/json; charset=utf-8"
    )


def refusal(e: RequestRefused, *, close: bool = True) -> Response:
    """The answer to a refused request; ``close`` unless its whole body was read (what is
    left of it must not be read as the next request)."""
    headers = {**e.headers, "Connection": "close"} if close else e.headers
    return reply(e.code, {"errors": [{"field": e.field, "message": e.message}]}, headers)


def _headers(extra: dict[str, str] | None) -> dict[str, str]:
    return {"Cache-Control": "no-store", **(extra or {})}


def create_app(service: IntakeService, submit: Submit) -> Starlette:
    """The intake, /healthz and /metrics for one service shell."""

    async def healthz(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return refusal(RequestRefused(405, "use GET", {"Allow": "GET"}))
        health = await run_in_threadpool(service.inspect)
        # Errors in full (hosts, addresses) only for those holding the intake token.
        intake = service.intake_config()
        internal = _authorized(request, intake.http_token if intake is not None else None)
        return reply(200 if health.ok else 503, health.to_json(internal=internal))

    async def metrics(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return refusal(RequestRefused(405, "use GET", {"Allow": "GET"}))
        body, content_type = await run_in_threadpool(
            service.metrics.render, request.headers.get("Accept")
        )
        return Response(body, 200, headers=_headers(None), media_type=content_type)

    async def events(request: Request) -> Response:
        if request.method != "POST":
            return refusal(RequestRefused(405, "use POST", {"Allow": "POST"}))
        try:
            return await _event(request)
        except RequestRefused as e:
            return refusal(e)

    async def _event(request: Request) -> Response:
        length = _check_headers(request)
        body = await _read_body(request, length)
        host = request.client.host if request.client else "?"
        origin = f"http {host}"
        try:
            data = decode(body, origin=origin, limit=None)
        except EventError as e:
            service.metrics.event_rejected(SOURCE)
            message = "; ".join(p.message for p in e.problems)
            log.warning("event refused from %s: %s", host, message)
            return refusal(RequestRefused(400, message), close=False)
        started = time.perf_counter()
        try:
            # The committer thread answers the future: awaited here, on the event loop,
            # with no worker thread parked on it per request.
            incident_id = await asyncio.wrap_future(submit(data, origin))
        except EventError as e:
            service.metrics.event_rejected(SOURCE)
            log.warning("event refused from %s:\n%s", host, e)
            errors = [{"field": p.field, "message": p.message} for p in e.problems]
            return reply(422, {"errors": errors})
        except ServiceStopping as e:
            raise RequestRefused(
                503, str(e) or "the service is stopping", {"Retry-After": "5"}
            ) from None
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
        return reply(202, {"id": incident_id, "status": "accepted"})

    def _check_headers(request: Request) -> int:
        """Refuse what can be refused before reading the body; returns its length."""
        try:
            return _body_length(request)
        except RequestRefused as e:
            if e.code in (400, 413):  # an event after all, only a malformed or oversized one
                service.metrics.event_rejected(SOURCE)
            raise

    def _body_length(request: Request) -> int:
        if service.stopping:
            raise RequestRefused(503, "the service is stopping", {"Retry-After": "5"})
        intake = service.intake_config()
        token = intake.http_token if intake is not None else None
        if not _authorized(request, token):
            value = 'Bearer realm="broadcaster"'
            if request.headers.get("Authorization"):
                value += ', error="invalid_token"'
            raise RequestRefused(
                401, "a valid bearer token is required", {"WWW-Authenticate": value}
            )
        if request.headers.get("Transfer-Encoding"):
            # Chunked bodies would let a client stream past the size limit; refusing every
            # transfer coding also closes the Content-Length/Transfer-Encoding smuggling gap.
            raise RequestRefused(411, "send a Content-Length; chunked bodies are not accepted")
        lengths = request.headers.getlist("Content-Length")
        if not lengths:
            raise RequestRefused(411, "a Content-Length is required")
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
            raise RequestRefused(400, "invalid Content-Length")
        length = int(lengths[0])
        limit = intake.http_max_body if intake is not None else 0
        if length > limit:
            raise RequestRefused(413, f"the body is larger than {limit} bytes")
        return length

    async def _read_body(request: Request, length: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > length:
                    raise RequestRefused(400, "the body is longer than its Content-Length")
                chunks.append(chunk)
        except ClientDisconnect:
            raise RequestRefused(400, "the body ended before Content-Length bytes") from None
        if size < length:
            raise RequestRefused(400, "the body ended before Content-Length bytes")
        return b"".join(chunks)

    async def not_found(request: Request, exc: Exception) -> Response:
        return refusal(RequestRefused(404, "not found"))

    app = Starlette(
        routes=[
            Route(EVENTS, events, methods=METHODS),
            Route("/healthz", healthz, methods=METHODS),
            Route("/metrics", metrics, methods=METHODS),
        ],
        exception_handlers={404: not_found},
    )
    return _Counted(app, service)  # type: ignore[return-value]


class _Counted:
    """Counts every answer per route and status, and names the server."""

    def __init__(self, app: Starlette, service: IntakeService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = str(scope.get("path", ""))

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"server", b"broadcaster")]
                self.service.metrics.http_request(path, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counted)


def _authorized(request: Request, token: Secret | None) -> bool:
    if token is None:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: how much of a guess matched must not show in the response time.
    return hmac.compare_digest(given.strip().encode(), token.reveal().encode())
