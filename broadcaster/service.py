"""What makes the daemon a well-kept service: health, HTTP intake, metrics, systemd.

``ServiceShell`` wraps a ``Daemon`` without the daemon knowing much about it: the daemon
creates one, calls ``start()`` once it serves, ``stop()`` first thing when it shuts down and
``reload()`` instead of reloading itself, and reports queue events to ``metrics``. One health
check (``inspect``) answers ``/healthz``, feeds ``/metrics`` and decides whether the systemd
watchdog is pinged, so the three can never disagree.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError, ConfigProblem
from .http import IntakeServer
from .logs import redact
from .metrics import Metrics
from .model import PostState
from .notify import Notifier, Watchdog
from .status import read_status

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .daemon import Daemon

log = logging.getLogger("broadcaster.service")

# A promise is "overdue" once its time passed by more than this without a post being
# planned: the planner wakes at the promised second, so anything later is a real miss.
OVERDUE_GRACE = timedelta(seconds=5)
# Planning or a pushed event holds the daemon's plan lock for milliseconds; held this long,
# the daemon is stuck and must be reported (and restarted by the watchdog), not waited on.
LOCK_TIMEOUT = 5.0
HTTP_SOURCE = "http"


@dataclass(frozen=True)
class ChannelHealth:
    name: str
    platform: str
    worker_alive: bool
    platform_healthy: bool  # false once the platform refused our credentials
    paused_until: datetime | None  # a rate-limit pause
    sent: int
    failed: int
    undelivered: int  # pending + sending
    oldest_undelivered_seconds: float
    overdue: int  # open threads whose promised update was not even planned on time
    last_error: str | None

    @property
    def healthy(self) -> bool:
        return self.worker_alive and self.platform_healthy

    def pause_remaining(self, now: datetime) -> float:
        if self.paused_until is None or self.paused_until <= now:
            return 0.0
        return (self.paused_until - now).total_seconds()

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "worker_alive": self.worker_alive,
            "platform_healthy": self.platform_healthy,
            "paused": self.pause_remaining(now) > 0,
            "paused_until": self.paused_until.isoformat() if self.pause_remaining(now) else None,
            "sent": self.sent,
            "failed": self.failed,
            "undelivered": self.undelivered,
            "oldest_undelivered_seconds": round(self.oldest_undelivered_seconds, 3),
            "overdue": self.overdue,
            # Platform errors never carry our credentials, but redact as the logs do.
            "last_error": redact(self.last_error)[:300] if self.last_error else None,
        }


@dataclass(frozen=True)
class Health:
    state: str  # "ok" | "unhealthy" | "stopping"
    reasons: tuple[str, ...]
    checked_at: datetime
    channels: Mapping[str, ChannelHealth] = field(default_factory=dict)
    sources: Mapping[str, str | None] = field(default_factory=dict)  # name → last error
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    def summary(self) -> str:
        """One line for systemd's STATUS= and the logs."""
        if not self.ok:
            return f"{self.state}: {'; '.join(self.reasons)}"
        undelivered = sum(c.undelivered for c in self.channels.values())
        overdue = sum(c.overdue for c in self.channels.values())
        degraded = [n for n, c in self.channels.items() if not c.healthy]
        text = (
            f"serving {len(self.channels)} channel(s): {undelivered} undelivered, {overdue} overdue"
        )
        return text + (f"; unhealthy channel(s): {', '.join(degraded)}" if degraded else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.state,
            "reasons": list(self.reasons),
            "checked_at": self.checked_at.isoformat(),
            "dry_run": self.dry_run,
            "channels": {n: c.to_json(self.checked_at) for n, c in self.channels.items()},
            "sources": {
                n: {"ok": e is None, "last_error": redact(e)[:300] if e else None}
                for n, e in self.sources.items()
            },
        }


def inspect(daemon: Daemon, *, stopping: bool = False) -> Health:
    """The daemon's health: is it doing its job, and how is each channel doing.

    Only what a restart could fix makes the daemon unhealthy (a dead scheduler or delivery
    worker, a store that cannot be read, a stuck plan). A platform that is down, a channel
    paused by a rate limit or a broken state file are reported per channel or source but
    leave the daemon "ok": restarting it would not bring X back, and the watchdog would
    otherwise kill the one process that keeps the outbox until it does.
    """
    now = daemon.clock()
    # The daemon's own lock and stop flag: no public accessor exists, and taking the lock is
    # what makes the answer consistent across a reload that swaps the whole App.
    if stopping or daemon._stop.is_set():
        return Health("stopping", ("the service is stopping",), now, dry_run=daemon.dry_run)
    lock = daemon._plan_lock
    if not lock.acquire(timeout=LOCK_TIMEOUT):
        return Health(
            "unhealthy",
            (f"planning has been stuck for more than {LOCK_TIMEOUT:g}s",),
            now,
            dry_run=daemon.dry_run,
        )
    try:
        return _inspect_locked(daemon, now)
    finally:
        lock.release()


def _inspect_locked(daemon: Daemon, now: datetime) -> Health:
    app = daemon.app
    if app is None:
        return Health("stopping", ("the service is not running",), now, dry_run=daemon.dry_run)
    reasons: list[str] = []
    scheduler = daemon.scheduler
    thread = getattr(scheduler, "_thread", None)
    if not scheduler.running or (thread is not None and not thread.is_alive()):
        reasons.append("the scheduler is not running")
    alive = {name: w._thread.is_alive() for name, w in app.delivery.workers.items()}
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
    )


class ServiceShell:
    """HTTP intake, /healthz, /metrics and sd_notify around one ``Daemon``."""

    def __init__(self, daemon: Daemon, *, environ: Mapping[str, str] | None = None) -> None:
        self.daemon = daemon
        self.metrics = Metrics(self.inspect)
        self.notifier = Notifier(environ)
        self.watchdog = Watchdog(self.notifier, self._watchdog_check)
        self.http: IntakeServer | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the listener is swapped by start, reload and stop

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set() or self.daemon._stop.is_set()

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the listener is bound (the real port when the config said port 0)."""
        server = self.http
        return server.bound_address if server is not None else None

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
        """SIGHUP: ``Daemon.reload()`` with systemd told, the result counted, HTTP re-bound."""
        self.notifier.reloading()
        before = self.daemon.app
        ok = False
        try:
            result = self.daemon.reload()
            # Daemon.reload() keeps the old App when it refuses the new config, so a new App
            # object is the sign of success (a bool result, if it ever returns one, wins).
            ok = result if isinstance(result, bool) else self.daemon.app is not before
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
                server = IntakeServer(wanted, self)
            except OSError as e:
                problem = f"cannot listen on {_fmt(wanted)}: {e.strerror or e}"
                if starting:
                    raise ConfigError(
                        [ConfigProblem(str(config.path), None, "intake.http.listen", problem)]
                    ) from None
                log.error("reload: %s", problem)
                if current is not None:
                    try:
                        server = IntakeServer(current.requested, self)
                    except OSError:
                        log.error("HTTP intake is down until the next reload or restart")
                        return
                else:
                    return
            server.start()
            self.http = server
        log.info(
            "HTTP intake listening on http://%s (POST /v1/events, GET /healthz, GET /metrics)",
            _fmt(server.bound_address),
        )


def _fmt(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
