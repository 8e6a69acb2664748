"""What makes the daemon a well-kept service: health, HTTP intake, metrics, systemd.

``ServiceShell`` wraps a daemon it sees only through ``DaemonControl``: ``app.py`` builds
both and attaches the shell, which the daemon then calls ``start()`` once it serves,
``stop()`` first thing when it shuts down and ``reload()`` instead of reloading itself.
One health check (``inspect``) answers ``/healthz``, feeds ``/metrics`` and decides whether
the systemd watchdog is pinged, so the three can never disagree.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from .config import Config, ConfigError, ConfigProblem, IntakeConfig
from .control import DaemonControl
from .health import ChannelHealth, Health
from .http import IntakeService
from .metrics import Metrics
from .model import PostState
from .notify import Notifier, Watchdog
from .sources.http import HttpIntake
from .status import read_status

__all__ = ["ChannelHealth", "Health", "ServiceShell", "inspect"]

log = logging.getLogger("broadcaster.service")

# A promise is "overdue" once its time passed by more than this without a post being
# planned: the planner wakes at the promised second, so anything later is a real miss.
OVERDUE_GRACE = timedelta(seconds=5)
# Planning or a pushed event holds the daemon's plan lock for milliseconds; held this long,
# the daemon is stuck and must be reported (and restarted by the watchdog), not waited on.
LOCK_TIMEOUT = 5.0
HTTP_SOURCE = HttpIntake.name

# Opens the HTTP listener on an address, serving the given shell (``HttpIntake`` itself).
Listen = Callable[[tuple[str, int], IntakeService], HttpIntake]


def inspect(daemon: DaemonControl, *, stopping: bool = False) -> Health:
    """The daemon's health: is it doing its job, and how is each channel doing.

    Only what a restart could fix makes the daemon unhealthy (a dead scheduler or delivery
    worker, a store that cannot be read, a stuck plan). A platform that is down, a channel
    paused by a rate limit or a broken state file are reported per channel or source but
    leave the daemon "ok": restarting it would not bring X back, and the watchdog would
    otherwise kill the one process that keeps the outbox until it does.
    """
    now = daemon.clock()
    if stopping or daemon.stopping:
        return Health("stopping", ("the service is stopping",), now, dry_run=daemon.dry_run)
    # Holding the daemon still is what makes the answer consistent across a reload that
    # swaps the whole App.
    with daemon.hold(LOCK_TIMEOUT) as held:
        if not held:
            return Health(
                "unhealthy",
                (f"planning has been stuck for more than {LOCK_TIMEOUT:g}s",),
                now,
                dry_run=daemon.dry_run,
            )
        return _inspect_locked(daemon, now)


def _inspect_locked(daemon: DaemonControl, now: datetime) -> Health:
    app = daemon.app
    if app is None:
        return Health("stopping", ("the service is not running",), now, dry_run=daemon.dry_run)
    reasons: list[str] = []
    if not daemon.scheduler_alive:
        reasons.append("the scheduler is not running")
    alive = {name: w.is_alive() for name, w in app.delivery.workers.items()}
    reasons += [f"the delivery worker of {n} is not running" for n, ok in alive.items() if not ok]
    sources = {s.name: s.last_error for s in app.sources}
    try:
        status = read_status(app.store, app.config.channels, now)
    except Exception as e:
        reasons.append(f"the store cannot be read: {type(e).__name__}: {e}")
        return Health("unhealthy", tuple(reasons), now, sources=sources, dry_run=app.dry_run)
    channels = {}
    for name, config in app.config.channels.items():
        channel = status.channels[name]
        waiting_since = channel.oldest_waiting_at
        channels[name] = ChannelHealth(
            name=name,
            platform=config.platform,
            worker_alive=alive.get(name, False),
            platform_healthy=channel.state.healthy,
            paused_until=channel.state.paused_until,
            sent=channel.count(PostState.SENT),
            failed=channel.count(PostState.FAILED),
            undelivered=channel.waiting,
            oldest_undelivered_seconds=max(0.0, (now - waiting_since).total_seconds())
            if waiting_since
            else 0.0,
            overdue=channel.overdue(now, OVERDUE_GRACE),
            last_error=channel.state.last_error,
        )
    return Health(
        "unhealthy" if reasons else "ok",
        tuple(reasons),
        now,
        channels,
        sources,
        dry_run=app.dry_run,
        maintenances_not_started=len(status.not_started),
    )


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
        app = self.daemon.app
        return app.config.intake if app is not None else None

    def inspect(self) -> Health:
        return inspect(self.daemon, stopping=self._stopping.is_set())

    def _watchdog_check(self) -> tuple[bool, str]:
        health = self.inspect()
        return health.ok, health.summary()

    # -- lifecycle, called by the daemon -------------------------------------------------

    def start(self) -> None:
        """Once the daemon serves: listen, tell systemd we are ready, start the watchdog.

        Raises ``ConfigError`` when the HTTP address cannot be bound: a daemon that was told
        to accept events and cannot must not report itself ready.
        """
        app = self.daemon.app
        assert app is not None, "ServiceShell.start() is called at the end of Daemon.start()"
        self.metrics.reloaded(True)  # the configuration loaded at start counts as the first
        self._touch_sources(app.config, [s.name for s in app.sources])
        self._listen(app.config, starting=True)
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
            app = self.daemon.app
            if ok and app is not None:
                self._touch_sources(app.config, [s.name for s in app.sources])
                self._listen(app.config)
        finally:
            # Whatever happened, systemd must hear READY=1 again or it waits out its timeout.
            self.metrics.reloaded(ok)
            self.notifier.ready(
                self.inspect().summary() if ok else "reload refused: running on the previous config"
            )
        return ok

    # -- internals -----------------------------------------------------------------------

    def _touch_sources(self, config: Config, names: list[str]) -> None:
        # Zero-valued series from the start: rate() and alerts need a first sample.
        if config.intake.http_address is not None:
            names = [*names, HTTP_SOURCE]
        self.metrics.touch_sources(names)

    def _open(self, address: tuple[str, int]) -> HttpIntake:
        """Bind ``address`` and start serving; raises ``OSError`` if it cannot be bound."""
        intake = self._listen_on(address, self)
        intake.start(self._submit)
        return intake

    def _submit(self, data: dict[str, object], origin: str) -> str:
        return self.daemon.submit(data, origin=origin, source=HTTP_SOURCE)

    def _listen(self, config: Config, *, starting: bool = False) -> None:
        """Bind the configured address, or move the listener after a reload changed it."""
        wanted = config.intake.http_address
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
                        [ConfigProblem(str(config.path), None, "intake.http.listen", problem)]
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
