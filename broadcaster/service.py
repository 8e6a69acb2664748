"""What makes the daemon a well-kept service: health, HTTP intake, metrics, systemd.

``ServiceShell`` wraps a daemon it sees only through ``DaemonControl``: ``app.py`` builds
both and attaches the shell, which the daemon then calls ``start()`` once it serves,
``stop()`` first thing when it shuts down and ``reload()`` instead of reloading itself.
One health check (the daemon's ``health()``, through ``inspect``) answers ``/healthz``,
feeds ``/metrics`` and decides whether the systemd watchdog is pinged, so the three can
never disagree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from .config import ConfigError, ConfigProblem, IntakeConfig
from .control import DaemonControl
from .health import Health
from .metrics import Metrics
from .notify import Notifier, Watchdog
from .sources.http import HttpIntake
from .web.intake import IntakeService

__all__ = ["ServiceShell"]

log = logging.getLogger("broadcaster.service")

HTTP_SOURCE = HttpIntake.name

# Opens the HTTP listener on an address, serving the given shell (``HttpIntake`` itself).
Listen = Callable[[tuple[str, int], IntakeService], HttpIntake]


class ServiceShell:
    """HTTP intake, /healthz, /metrics and sd_notify around one daemon."""

    def __init__(
        self,
        daemon: DaemonControl,
        *,
        metrics: Metrics,
        notifier: Notifier,
        listen: Listen,
    ) -> None:
        self.daemon = daemon
        self.metrics = metrics
        self.notifier = notifier
        self._listen_on = listen
        # Pings only while the shell's own health check says so.
        self.watchdog = Watchdog(notifier, self._watchdog_check)
        self.http: HttpIntake | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the listener is swapped by start, reload and stop

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set() or self.daemon.stopping

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the listener is bound (the real port when the config said port 0)."""
        server = self.http
        return server.bound_address if server is not None else None

    def intake_config(self) -> IntakeConfig | None:
        """The intake settings in force (read per request: a reload rotates the token)."""
        return self.daemon.intake_config()

    def inspect(self) -> Health:
        return self.daemon.health(stopping=self._stopping.is_set())

    def _watchdog_check(self) -> tuple[bool, str]:
        health = self.inspect()
        # Halted (store or lock file gone): a watchdog restart would re-announce everything.
        return health.ok or health.halted, health.summary()

    # -- lifecycle, called by the daemon -------------------------------------------------

    def start(self) -> None:
        """Once the daemon serves: listen, tell systemd we are ready, start the watchdog.

        Raises ``ConfigError`` when the HTTP address cannot be bound: a daemon that was told
        to accept events and cannot must not report itself ready.
        """
        intake = self.daemon.intake_config()
        assert intake is not None, "ServiceShell.start() is called at the end of Daemon.start()"
        self.metrics.reloaded(True)  # the configuration loaded at start counts as the first
        self._touch_sources(intake, self.daemon.source_names())
        self._listen(intake, starting=True)
        self.notifier.ready(self.inspect().summary())
        self.watchdog.start()

    def stop(self) -> None:
        """First thing at shutdown: refuse new work, tell systemd, let requests finish."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.notifier.stopping()
        self.watchdog.stop()
        with self._lock:
            server, self.http = self.http, None
        if server is not None:
            server.close()  # waits for requests in progress: an accepted event gets its 202

    def reload(self) -> bool:
        """SIGHUP: the daemon's reload with systemd told, the result counted, HTTP re-bound."""
        self.notifier.reloading()
        ok = False
        try:
            ok = self.daemon.reload()
            intake = self.daemon.intake_config()
            if ok and intake is not None:
                self._touch_sources(intake, self.daemon.source_names())
                self._listen(intake)
        finally:
            # Whatever happened, systemd must hear READY=1 again or it waits out its timeout.
            self.metrics.reloaded(ok)
            self.notifier.ready(
                self.inspect().summary() if ok else "reload refused: running on the previous config"
            )
        return ok

    # -- internals -----------------------------------------------------------------------

    def _touch_sources(self, intake: IntakeConfig, names: list[str]) -> None:
        # Zero-valued series from the start: rate() and alerts need a first sample.
        if intake.http_address is not None:
            names = [*names, HTTP_SOURCE]
        self.metrics.touch_sources(names)

    def _open(self, address: tuple[str, int]) -> HttpIntake:
        """Bind ``address`` and start serving; raises ``OSError`` if it cannot be bound."""
        intake = self._listen_on(address, self)
        intake.start(self._submit)
        return intake

    def _submit(self, data: dict[str, object], origin: str) -> Future[str]:
        return self.daemon.hand_over(data, origin=origin, source=HTTP_SOURCE)

    def _listen(self, intake: IntakeConfig, *, starting: bool = False) -> None:
        """Bind the configured address, or move the listener after a reload changed it."""
        wanted = intake.http_address
        with self._lock:
            if self._stopping.is_set():
                return
            current = self.http
            if (current.requested if current else None) == wanted:
                return  # the token is read per request: a reload rotates it without a re-bind
            # Close first: the new address may share the old one's port (another host).
            if current is not None:
                current.close()
                self.http = None
            if wanted is None:
                log.info("HTTP intake closed")
                return
            try:
                server = self._open(wanted)
            except OSError as e:
                problem = f"cannot listen on {_fmt(wanted)}: {e.strerror or e}"
                if starting:
                    raise ConfigError(
                        [
                            ConfigProblem(
                                str(self.daemon.config_path), None, "intake.http.listen", problem
                            )
                        ]
                    ) from None
                log.error("reload: %s", problem)
                if current is not None:
                    try:
                        server = self._open(current.requested)
                    except OSError:
                        log.error("HTTP intake is down until the next reload or restart")
                        return
                else:
                    return
            self.http = server
        log.info(
            "HTTP intake listening on http://%s (POST /v1/events, GET /healthz, GET /metrics)",
            _fmt(server.bound_address),
        )


def _fmt(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
