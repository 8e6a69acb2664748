"""Running an ASGI app on uvicorn: in the foreground (a command) or on a thread (tests)."""

from __future__ import annotations

import threading
from typing import Any

import uvicorn


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        lifespan="off",
    )


def serve(app: Any, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn handles both and finishes open requests)."""
    uvicorn.Server(_config(app, host, port)).run()


class ServerThread:
    """An app served on a background thread (uvicorn leaves signals to the main thread);
    ``port`` 0 picks a free one (see ``url``)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = uvicorn.Server(_config(app, host, port))
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.host = host

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        started = threading.Event()

        def check() -> bool:
            return bool(self._server.started) or not self._thread.is_alive()

        while not check():
            started.wait(0.01)
        if not self._server.started:
            raise RuntimeError("the HTTP server did not start")
        return self

    @property
    def port(self) -> int:
        servers = self._server.servers
        port: int = servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
