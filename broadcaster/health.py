"""What the daemon's health check reports: shared by the service shell that computes it and
by the HTTP listener, the metrics and the systemd watchdog that show it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .logs import redact


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
    # Maintenances still "scheduled" after their start (ops to start, move or cancel them).
    maintenances_not_started: int = 0

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
