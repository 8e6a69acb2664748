"""The daemon's health check: what it reports (``Health``), and how it is assessed from the
components in service (``assess``, called by ``Daemon.health``). The HTTP listener, the
metrics and the systemd watchdog all show this one answer, so they can never disagree."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .components import App
from .logs import redact
from .model import PostState
from .status import read_status

# A promise is "overdue" once its time passed by more than this without a post being
# planned: the planner wakes at the promised second, so anything later is a real miss.
OVERDUE_GRACE = timedelta(seconds=5)
# Planning or a pushed event holds the daemon's plan lock for milliseconds; held this long,
# the daemon is stuck and must be reported (and restarted by the watchdog), not waited on.
LOCK_TIMEOUT = 5.0


# What an unauthenticated /healthz must not tell about the network behind it (errors quote
# the hosts, addresses and ports they failed on); ``status`` and the logs keep all of it.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()]+")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])")
_IPV6 = re.compile(
    r"\[[0-9a-fA-F:.]*:[0-9a-fA-F:.]*\](?::\d{1,5})?"
    r"|(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
)
_FILE_SUFFIXES = "toml|json|jsonl|lock|log|txt|error|yaml|yml|py|md|j2|sqlite3|part"
_HOST = re.compile(
    r"(?<![\w./-])(?:[a-zA-Z0-9-]+\.)+(?!(?:" + _FILE_SUFFIXES + r")(?![\w-]))[a-zA-Z]{2,63}"
    r"(?::\d{1,5})?(?![\w/.-])"
)
_PORT = re.compile(r"\b(port\s*[=:]?\s*)\d{1,5}\b", re.IGNORECASE)


def _address_or_time(m: re.Match[str]) -> str:
    found = m.group(0)
    colons = found.count(":")
    bracketed = found.startswith("[")
    looks_v6 = "::" in found or re.search(r"[a-fA-F]", found) or colons >= 5
    return "<address>" if bracketed or (colons >= 2 and looks_v6) else found  # not 10:30:00


def hide_hosts(text: str) -> str:
    """``text`` without URLs, host names, IP addresses and ports."""
    text = _URL.sub("<url>", text)
    text = _IPV4.sub("<address>", text)
    text = _IPV6.sub(_address_or_time, text)
    text = _HOST.sub("<host>", text)
    return _PORT.sub(r"\1<port>", text)


def _shown(text: str | None, internal: bool) -> str | None:
    if not text:
        return None
    shown = redact(text) if internal else hide_hosts(redact(text))
    return shown[:300]


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

    def to_json(self, now: datetime, *, internal: bool = False) -> dict[str, Any]:
        """``internal``: errors as they are (for those with the token), not host-free."""
        return {
            "healthy": self.healthy,
            "worker_alive": self.worker_alive,
            "platform_healthy": self.platform_healthy,
            "paused": self.pause_remaining(now) > 0,
            "paused_until": (
                self.paused_until.isoformat()
                if self.paused_until is not None and self.pause_remaining(now)
                else None
            ),
            "sent": self.sent,
            "failed": self.failed,
            "undelivered": self.undelivered,
            "oldest_undelivered_seconds": round(self.oldest_undelivered_seconds, 3),
            "overdue": self.overdue,
            # Platform errors never carry our credentials, but redact as the logs do.
            "last_error": _shown(self.last_error, internal),
        }


@dataclass(frozen=True)
class Health:
    state: str  # "ok" | "starting" | "degraded" | "unhealthy" | "stopping"
    reasons: tuple[str, ...]
    checked_at: datetime
    channels: Mapping[str, ChannelHealth] = field(default_factory=dict)
    sources: Mapping[str, str | None] = field(default_factory=dict)  # name → last error
    dry_run: bool = False
    # Maintenances still "scheduled" after their start (ops to start, move or cancel them).
    maintenances_not_started: int = 0
    # "incident on channel" → why its posts cannot be recorded (a restart would not help).
    unplannable: Mapping[str, str] = field(default_factory=dict)
    # Stopped on purpose (its store or lock file is gone): unhealthy, yet a restart would
    # make it worse (a fresh store announces everything again), so the watchdog is fed.
    halted: bool = False

    @property
    def ok(self) -> bool:
        """Serving: "degraded" is ok too (a restart would not fix it), only shown, and so
        is "starting" (events are taken while everything open is being planned)."""
        return self.state in ("ok", "starting", "degraded")

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
        if self.unplannable:
            text += f"; {len(self.unplannable)} thread(s) cannot be planned"
        return text + (f"; unhealthy channel(s): {', '.join(degraded)}" if degraded else "")

    def to_json(self, *, internal: bool = False) -> dict[str, Any]:
        """The /healthz answer. Without ``internal`` (no token given), errors name no host,
        address, URL or port: the unauthenticated page must not map the network."""
        text: Callable[[str], str] = redact if internal else (lambda t: hide_hosts(redact(t)))
        return {
            "status": self.state,
            "reasons": [text(r) for r in self.reasons],
            "checked_at": self.checked_at.isoformat(),
            "dry_run": self.dry_run,
            "channels": {
                n: c.to_json(self.checked_at, internal=internal) for n, c in self.channels.items()
            },
            "sources": {
                n: {"ok": e is None, "last_error": _shown(e, internal)}
                for n, e in self.sources.items()
            },
            "unplannable": {k: text(v)[:300] for k, v in self.unplannable.items()},
            "halted": self.halted,
        }


def assess(app: App, *, scheduler_alive: bool, now: datetime) -> Health:
    """The health of the daemon serving ``app``: is it doing its job, and how is each
    channel doing. Called with planning held still, so a reload cannot swap ``app`` midway.

    Only what a restart could fix makes the daemon unhealthy (a dead scheduler or delivery
    worker, a store that cannot be read; a stuck plan is the caller's to see). A platform
    that is down, a channel paused by a rate limit or a broken state file are reported per
    channel or source but leave the daemon "ok": restarting it would not bring X back, and
    the watchdog would otherwise kill the one process that keeps the outbox until it does.
    """
    reasons: list[str] = []
    if not scheduler_alive:
        reasons.append("the scheduler is not running")
    alive = {name: w.is_alive() for name, w in app.delivery.workers.items()}
    reasons += [f"the delivery worker of {n} is not running" for n, ok in alive.items() if not ok]
    sources = {s.name: s.last_error for s in app.sources}
    try:
        status = read_status(app.store, app.config.channels, now, incidents=False)
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
    unplannable = {f"{i} on {c}": why for (i, c), why in app.editor.unplannable.items()}
    return Health(
        "unhealthy" if reasons else "degraded" if unplannable else "ok",
        tuple(reasons),
        now,
        channels,
        sources,
        dry_run=app.dry_run,
        maintenances_not_started=len(status.not_started),
        unplannable=unplannable,
    )
