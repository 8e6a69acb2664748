"""The HTTP intake as a push source: each ``POST /v1/events`` is handed to ``submit`` and
answered once the store committed it. The app (which also answers ``/healthz`` and
``/metrics``) is ``broadcaster.web.intake``, served by uvicorn through ``web.server``."""

from __future__ import annotations

from ..web.intake import SOURCE, IntakeService, create_app
from ..web.server import AsgiServer
from .base import PushSource, Submit


class HttpIntake(PushSource):
    """The HTTP listener as a push source: bound and served by ``start``, closed by
    ``close`` (which lets the requests in progress finish)."""

    name = SOURCE

    def __init__(self, address: tuple[str, int], service: IntakeService) -> None:
        self.requested = address
        self.service = service
        self._server: AsgiServer | None = None

    def start(self, submit: Submit) -> None:
        server = AsgiServer(create_app(self.service, submit), self.requested)
        server.start()
        self._server = server

    @property
    def bound_address(self) -> tuple[str, int]:
        assert self._server is not None, "bound by start()"
        return self._server.bound_address

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
